"""Offline image datasets built from the photographs shipped in scikit-image's wheel.

No network: the photos are read with PIL straight from the files bundled in
``<site-packages>/skimage/data/`` (never through ``skimage.data``'s loaders, which
may fetch missing files with pooch).

Photos and split (by source photo, so the splits share no pixels):

* train: ``astronaut.png``, ``coffee.png``, ``motorcycle_left.png``,
  ``motorcycle_right.png`` (the same scene, so both stay in train),
  ``hubble_deep_field.jpg``, ``retina.jpg``, ``ihc.png``;
* val: ``chelsea.png`` (the cat);
* test: ``rocket.jpg``.

Crops (deterministic; the default ``seed=0`` is what the configs use): crop ``i``
of a split comes from photo ``i % len(photos)`` of that split, at a position (and,
for the image-to-image sets, a size) drawn by ``numpy.random.default_rng([seed,
split, stream])``. Near-flat crops (grey-level std < 0.04) are redrawn, up to 50
times. Image-to-image crops cover a square of 25-60 % of the photo's shorter side
(at least ``image_size``), resized to ``image_size`` (bicubic, antialiased), so a
64x64 crop shows objects rather than texture; SR crops are native-resolution
pixels (no resampling). ``image_size`` may be 16 up to 300 (the smallest photo,
chelsea, is 451x300).

Edge maps (domain A of the image-to-image sets) are ``skimage.feature.canny`` of
the grey crop (``sigma`` configurable, default 1.0; default thresholds), drawn
**black edges on a white background** as edges2shoes/edges2handbags: -1 on an
edge, +1 elsewhere, the same on all 3 channels.

Built crops are cached in memory (``functools.lru_cache`` keyed by the
arguments), so repeated construction is instant; building 400 crops takes well
under a second.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from mtbench import validate
from mtbench.data.base import DataError, DataSplits
from mtbench.data.transforms import bicubic_downscale, to_rgb8, uint8_to_pm1

#: Source photos of each split (files in scikit-image's data folder).
EMBEDDED_PHOTOS: dict[str, tuple[str, ...]] = {
    "train": ("astronaut.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
              "hubble_deep_field.jpg", "retina.jpg", "ihc.png"),
    "val": ("chelsea.png",),
    "test": ("rocket.jpg",),
}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_CROP_FRACTION = (0.25, 0.6)  # crop side as a fraction of the photo's shorter side (image-to-image sets)
_MIN_STD = 0.04               # redraw crops flatter than this (grey levels in [0, 1])
_MAX_TRIES = 50


def skimage_data_dir() -> Path:
    """The folder of photos bundled in the installed scikit-image wheel."""
    import skimage  # only the package path; skimage.data is not imported

    return Path(skimage.__file__).parent / "data"


@lru_cache(maxsize=None)
def load_photo(filename: str) -> np.ndarray:
    """A bundled photo as an (H, W, 3) uint8 array (grey, RGBA or 16-bit converted to 8-bit RGB)."""
    path = skimage_data_dir() / filename
    if not path.is_file():
        raise DataError(f"scikit-image's bundled photo {path} is missing; reinstall scikit-image "
                        f"(pip install --force-reinstall scikit-image)")
    with Image.open(path) as im:
        arr = np.asarray(to_rgb8(im, path))
    arr.setflags(write=False)
    return arr


def _max_image_size(split: str) -> int:
    return min(min(load_photo(f).shape[:2]) for f in EMBEDDED_PHOTOS[split])


@lru_cache(maxsize=64)
def build_crops(split: str, n: int, image_size: int, seed: int = 0, stream: int = 0,
                native: bool = False) -> Tensor:
    """``n`` deterministic square crops of the ``split`` photos, a (n, 3, S, S) uint8 tensor.

    Parameters
    ----------
    split:
        ``"train"``, ``"val"`` or ``"test"`` (see :data:`EMBEDDED_PHOTOS`).
    n:
        Number of crops.
    image_size:
        Output side ``S``.
    seed, stream:
        The crops are drawn by ``numpy.random.default_rng([seed, split id, stream])``;
        different streams give independent crop sets (CycleGAN's unpaired domains).
    native:
        True: ``S`` x ``S`` crops of the photo's own pixels (SR). False: a square of
        25-60 % of the shorter side (at least ``S``), resized to ``S`` (bicubic).

    The result is cached: treat it as read-only.
    """
    if split not in EMBEDDED_PHOTOS:
        raise ValueError(f"split must be one of {tuple(EMBEDDED_PHOTOS)}, got {split!r}")
    image_size, n = int(image_size), int(n)
    largest = _max_image_size(split)
    if not 1 <= image_size <= largest:
        raise ValueError(f"image_size must be between 1 and {largest} (the smallest {split} photo), got {image_size}")
    if n < 0:
        raise ValueError(f"the number of crops must be >= 0, got {n}")
    rng = np.random.default_rng([int(seed), _SPLIT_ID[split], int(stream)])
    photos = [load_photo(f) for f in EMBEDDED_PHOTOS[split]]
    out = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        short = min(h, w)
        for _ in range(_MAX_TRIES):
            if native:
                side = image_size
            else:
                side = int(round(rng.uniform(*_CROP_FRACTION) * short))
                side = min(max(side, image_size), short)
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
            patch = photo[top:top + side, left:left + side]
            if side != image_size:
                patch = np.asarray(Image.fromarray(patch).resize((image_size, image_size), Image.BICUBIC))
            if (patch.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).std() / 255 >= _MIN_STD:
                break
        out[i] = patch
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@lru_cache(maxsize=64)
def build_edges(split: str, n: int, image_size: int, seed: int = 0, stream: int = 0,
                sigma: float = 1.0) -> Tensor:
    """Canny edge maps of :func:`build_crops` (same arguments), a (n, S, S) bool tensor (True = edge)."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    crops = build_crops(split, n, image_size, seed, stream).permute(0, 2, 3, 1).numpy()
    edges = np.stack([canny(rgb2gray(c), sigma=float(sigma)) for c in crops]) if n else \
        np.zeros((0, image_size, image_size), dtype=bool)
    return torch.from_numpy(edges)


def edges_to_image(edges: Tensor) -> Tensor:
    """A bool edge map (H, W) as a (3, H, W) float image: -1 (black) on edges, +1 (white) elsewhere."""
    return (1.0 - 2.0 * edges.to(torch.float32)).unsqueeze(0).expand(3, -1, -1).contiguous()


def _maybe_flip(flip: bool, *images: Tensor) -> tuple[Tensor, ...]:
    if flip and torch.rand(()).item() < 0.5:
        return tuple(x.flip(-1) for x in images)
    return images


class EdgesPhotoDataset(Dataset):
    """Paired edges -> photo items ``{"A": edge map, "B": photo}`` in [-1, 1].

    Parameters
    ----------
    edges:
        (n, S, S) bool edge maps (True = edge).
    photos:
        (n, 3, S, S) uint8 photo crops; ``edges[i]`` must be the edges of ``photos[i]``.
    flip:
        Random horizontal flip (torch RNG), the same for A and B.
    """

    def __init__(self, edges: Tensor, photos: Tensor, flip: bool = False) -> None:
        if len(edges) != len(photos):
            raise ValueError(f"{len(edges)} edge maps for {len(photos)} photos")
        self.edges, self.photos, self.flip = edges, photos, bool(flip)

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        a, b = edges_to_image(self.edges[index]), uint8_to_pm1(self.photos[index])
        a, b = _maybe_flip(self.flip, a, b)
        return {"A": a, "B": b}


class UnpairedEdgesPhotoDataset(Dataset):
    """Unpaired items ``{"A": edge map, "B": photo}`` as CycleGAN's unaligned dataset.

    Item ``i`` is ``A[i % len(A)]`` with a random B (``torch.randint``), or
    ``B[i % len(B)]`` with ``serial_batches``; each domain is flipped independently.
    """

    def __init__(self, edges: Tensor, photos: Tensor, flip: bool = False, serial_batches: bool = False) -> None:
        if len(edges) == 0 or len(photos) == 0:
            raise ValueError("both domains need at least one image")
        self.edges, self.photos = edges, photos
        self.flip, self.serial_batches = bool(flip), bool(serial_batches)

    def __len__(self) -> int:
        return max(len(self.edges), len(self.photos))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if self.serial_batches:
            index_b = index % len(self.photos)
        else:
            index_b = int(torch.randint(0, len(self.photos), ()).item())
        (a,) = _maybe_flip(self.flip, edges_to_image(self.edges[index % len(self.edges)]))
        (b,) = _maybe_flip(self.flip, uint8_to_pm1(self.photos[index_b]))
        return {"A": a, "B": b}


class SRCropsDataset(Dataset):
    """``{"lr", "hr"}`` items from fixed uint8 HR crops and their LR (see :func:`build_sr_crops`).

    With ``flip``, HR and LR are flipped together (bicubic downscaling by an
    integer factor commutes with the flip).
    """

    def __init__(self, hr: Tensor, lr: Tensor, flip: bool = False) -> None:
        if len(hr) != len(lr):
            raise ValueError(f"{len(lr)} LR crops for {len(hr)} HR crops")
        self.hr, self.lr, self.flip = hr, lr, bool(flip)

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        lr, hr = _maybe_flip(self.flip, uint8_to_pm1(self.lr[index]), uint8_to_pm1(self.hr[index]))
        return {"lr": lr, "hr": hr}


@lru_cache(maxsize=64)
def build_sr_crops(split: str, n: int, crop_size: int, scale: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(hr, lr)`` uint8 tensors: native :func:`build_crops` and their bicubic downscale by ``scale`` (cached)."""
    hr = build_crops(split, n, crop_size, seed, 0, native=True)
    n, _, s, _ = hr.shape
    out = torch.empty((n, 3, s // scale, s // scale), dtype=torch.uint8)
    for i in range(n):
        img = Image.fromarray(hr[i].permute(1, 2, 0).numpy())
        out[i] = torch.from_numpy(np.asarray(bicubic_downscale(img, scale)).copy()).permute(2, 0, 1)
    return hr, out


def _counts(**counts: int) -> dict[str, int]:
    for key, value in counts.items():
        validate.positive_int(key, int(value))
    return {k: int(v) for k, v in counts.items()}


def pix2pix_embedded(image_size: int = 64, n_train: int = 400, n_val: int = 50, n_test: int = 50,
                     seed: int = 0, flip: bool = True, sigma: float = 1.0) -> DataSplits:
    """Offline pix2pix task: edges -> photo on crops of scikit-image's photos (see module doc).

    Parameters
    ----------
    image_size:
        Side of the square crops (16..300; the configs use 64).
    n_train, n_val, n_test:
        Number of crops per split (train/val/test come from disjoint photos).
    seed:
        Seed of the crop positions and sizes (default 0).
    flip:
        Random horizontal flip of train pairs, the same for A and B (torch RNG).
    sigma:
        Gaussian width of the Canny edge detector (larger: fewer, smoother edges).

    Returns
    -------
    DataSplits
        Items ``{"A": edge map (black edges on white), "B": photo}``, (3, S, S) in [-1, 1].
    """
    c = _counts(n_train=n_train, n_val=n_val, n_test=n_test)
    args = dict(image_size=int(image_size), seed=int(seed), sigma=float(sigma))

    def split(name: str, n: int, train: bool) -> Dataset:
        edges = build_edges(name, n, args["image_size"], args["seed"], 0, args["sigma"])
        photos = build_crops(name, n, args["image_size"], args["seed"], 0)
        return EdgesPhotoDataset(edges, photos, flip=flip and train)

    return DataSplits(train=split("train", c["n_train"], True), val=split("val", c["n_val"], False),
                      test=split("test", c["n_test"], False), name=f"pix2pix_embedded{int(image_size)}")


def cyclegan_embedded(image_size: int = 64, n_train: int = 400, n_val: int = 50, n_test: int = 50,
                      seed: int = 0, flip: bool = True, sigma: float = 1.0,
                      serial_batches: bool = False) -> DataSplits:
    """Offline CycleGAN task: unpaired edges <-> photos on crops of scikit-image's photos.

    Train domain A is the edge maps of one set of ``n_train`` crops (stream 1),
    domain B the photos of an independent set of ``n_train`` crops (stream 2), so
    no A has its B in the data. Items follow :mod:`mtbench.data.unaligned`: A[i]
    with a random B (torch RNG) unless ``serial_batches``, independent flips.

    The val and test splits are serial and *paired* (A[i] = the edges of B[i]), as
    CycleGAN's benchmarks on paired datasets: translation quality can be scored
    against the true counterpart (PSNR/SSIM) besides FID. Parameters as
    :func:`pix2pix_embedded`.
    """
    c = _counts(n_train=n_train, n_val=n_val, n_test=n_test)
    size, seed, sigma = int(image_size), int(seed), float(sigma)
    train = UnpairedEdgesPhotoDataset(build_edges("train", c["n_train"], size, seed, 1, sigma),
                                      build_crops("train", c["n_train"], size, seed, 2),
                                      flip=flip, serial_batches=serial_batches)

    def paired(name: str, n: int) -> Dataset:
        return UnpairedEdgesPhotoDataset(build_edges(name, n, size, seed, 0, sigma),
                                         build_crops(name, n, size, seed, 0), flip=False, serial_batches=True)

    return DataSplits(train=train, val=paired("val", c["n_val"]), test=paired("test", c["n_test"]),
                      name=f"cyclegan_embedded{size}")


def sr_embedded(crop_size: int = 64, scale: int = 4, n_train: int = 400, n_val: int = 20, n_test: int = 20,
                seed: int = 0, flip: bool = True) -> DataSplits:
    """Offline super-resolution: native-resolution HR crops of scikit-image's photos, LR by bicubic.

    Parameters
    ----------
    crop_size:
        HR crop side, a multiple of ``scale`` (LR side ``crop_size // scale``).
    scale:
        Downscaling factor (SRGAN: 4).
    n_train, n_val, n_test:
        Crops per split (disjoint photos, see module doc).
    seed:
        Seed of the crop positions.
    flip:
        Random horizontal flip of train items (LR and HR together).

    Returns
    -------
    DataSplits
        Items ``{"lr": (3, s, s), "hr": (3, S, S)}`` in [-1, 1]. All crops have the
        same size, so eval loaders may batch them. Metrics are reported on ``test``.
    """
    c = _counts(n_train=n_train, n_val=n_val, n_test=n_test)
    crop_size, scale, seed = int(crop_size), int(scale), int(seed)
    if scale < 1 or crop_size < scale or crop_size % scale:
        raise ValueError(f"crop_size ({crop_size}) must be a positive multiple of scale ({scale})")

    def split(name: str, n: int, train: bool) -> Dataset:
        return SRCropsDataset(*build_sr_crops(name, n, crop_size, scale, seed), flip=flip and train)

    return DataSplits(train=split("train", c["n_train"], True), val=split("val", c["n_val"], False),
                      test=split("test", c["n_test"], False), name=f"sr_embedded{crop_size}x{scale}")
