"""Shared image helpers: listing and validating image files, and paired transforms.

The paired transform follows pix2pix/CycleGAN's ``get_params``/``get_transform``
(junyanz/pytorch-CycleGAN-and-pix2pix, ``data/base_dataset.py``): resize, crop,
horizontal flip, then a tensor in [-1, 1]. Its random parameters (crop position
and flip) are drawn **once** by :meth:`PairedTransform.get_params` and applied
to every image of a pair, so an A|B pair stays pixel-aligned.

All randomness uses torch's RNG (``torch.randint``/``torch.rand``), never Python's
``random``: ``torch.manual_seed`` (and DataLoader's per-worker seeding) make a
run, and its resume, reproducible.

Resizing uses ``torchvision.transforms.v2.functional`` on PIL images (which calls
PIL's antialiased resampling), bicubic as in the reference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from mtbench import validate
from mtbench.data.base import DataError

#: File extensions treated as images (case-insensitive), as in the reference's ``image_folder.py``.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

#: The reference's ``--preprocess`` choices.
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")

_READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError)


def describe(path: str | os.PathLike) -> str:
    """``path`` as given, plus its absolute form when it is relative (for error messages)."""
    p = Path(path)
    return str(p) if p.is_absolute() else f"{p} (= {p.absolute()})"


def list_images(folder: str | os.PathLike, what: str, hint: str = "",
                max_items: int | None = None) -> list[Path]:
    """Sorted image files under ``folder`` (recursively), at most ``max_items`` of them.

    Parameters
    ----------
    folder:
        The folder to list.
    what:
        What the folder is, for the error message (``"pix2pix train folder"``).
    hint:
        What to do, appended to the error when the folder is missing.
    max_items:
        Keep only the first ``max_items`` files (sorted by path); None keeps all.

    Raises
    ------
    DataError
        The folder is missing, not a folder, holds no image file, or a folder
        under it cannot be read (named; never skipped silently).
    """
    folder = Path(folder)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "not found"
        raise DataError(f"{what} {state}: {describe(folder)}" + (f"; {hint}" if hint else ""))
    def unreadable(err: OSError) -> None:  # os.walk would skip the folder silently
        raise DataError(f"{what}: cannot read the folder {err.filename} under {describe(folder)} "
                        f"({err.strerror or err}); fix its permissions or move it out")

    paths = sorted(
        Path(dirpath) / f
        for dirpath, _, files in os.walk(folder, onerror=unreadable)
        for f in files
        if f.lower().endswith(IMG_EXTENSIONS)
    )
    if not paths:
        raise DataError(f"{what} is empty: {describe(folder)} holds no image file "
                        f"({', '.join(IMG_EXTENSIONS)}); put the images there or fix the path")
    if max_items is not None:
        validate.positive_int("max_items", int(max_items))
        paths = paths[: int(max_items)]
    return paths


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image from its header only (``PIL.Image.open`` is lazy).

    Cheap enough to validate a whole dataset at construction; a file whose header
    is garbage raises :class:`DataError` naming it.
    """
    try:
        with Image.open(path) as im:
            return im.size
    except _READ_ERRORS as exc:
        raise DataError(f"unreadable or corrupt image file {path}: {exc}; replace or delete it") from exc


def read_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """:func:`read_size` of every path (validates them all, first bad file raises)."""
    return [read_size(p) for p in paths]


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully as 8-bit RGB (:func:`to_rgb8`); a corrupt or truncated file raises
    :class:`DataError` naming it."""
    try:
        with Image.open(path) as im:
            return to_rgb8(im, path)  # forces the full decode
    except _READ_ERRORS as exc:
        raise DataError(f"unreadable or corrupt image file {path}: {exc}; replace or delete it") from exc


def to_rgb8(im: Image.Image, path: str | os.PathLike) -> Image.Image:
    """``im`` as 8-bit RGB, whatever its depth.

    PIL's ``convert("RGB")`` clips the integer modes to 255 (a 16-bit ramp 0..65535
    becomes almost all white), so single-channel integer images (``I;16*``, and ``I``
    with values above 255) are scaled: ``round(v / 257)``, 0 -> 0 and 65535 -> 255.
    An ``I`` image with values in 0..255 is 8-bit data and kept. Values outside
    0..65535 and floating-point images (``F``) raise :class:`DataError` naming
    ``path``. Other modes (L, P, RGBA, CMYK, 16-bit RGB PNGs, which PIL reads as
    8-bit RGB...) go through ``convert("RGB")``.
    """
    if im.mode == "F":
        raise DataError(f"image file {path} has floating-point pixels (PIL mode F); convert it to an 8- or 16-bit "
                        f"RGB or grey image")
    if im.mode != "I" and not im.mode.startswith("I;16"):
        return im.convert("RGB")
    values = np.asarray(im).astype(np.int64)
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise DataError(f"image file {path} has {im.mode} pixels outside 0..65535 (min {lo}, max {hi}); "
                        f"convert it to an 8- or 16-bit RGB or grey image")
    if im.mode.startswith("I;16") or hi > 255:
        values = (values * 255 + 32767) // 65535  # round(v * 255 / 65535) = round(v / 257)
    return Image.fromarray(values.astype(np.uint8), "L").convert("RGB")


def to_tensor(img: Image.Image | Tensor) -> Tensor:
    """A PIL image (or uint8 tensor) as a float32 (C, H, W) tensor in [-1, 1]."""
    x = F.to_dtype(F.to_image(img), torch.float32, scale=True).as_subclass(Tensor)
    return x.mul_(2.0).sub_(1.0)


def uint8_to_pm1(x: Tensor) -> Tensor:
    """A uint8 image tensor as float32 in [-1, 1] (a new tensor)."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)


def resize_bicubic(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bicubic, antialiased resize of a PIL image to ``size = (height, width)``."""
    return F.resize(img, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)


def bicubic_downscale(img: Image.Image, scale: int) -> Image.Image:
    """Downscale a PIL image by an integer ``scale`` (bicubic, antialiased, as PIL/MATLAB ``imresize``).

    The image's sides should be multiples of ``scale`` (see :func:`mod_crop`).
    """
    w, h = img.size
    return resize_bicubic(img, (h // scale, w // scale))


def mod_crop(img: Image.Image, scale: int) -> Image.Image:
    """Crop the bottom/right edge of a PIL image so that both sides are multiples of ``scale``."""
    w, h = img.size
    return F.crop(img, 0, 0, h - h % scale, w - w % scale)


@dataclass(frozen=True)
class TransformParams:
    """The random draw of one :class:`PairedTransform` call: crop corner and flip."""

    top: int
    left: int
    flip: bool


class PairedTransform:
    """pix2pix/CycleGAN preprocessing with parameters drawn once and shared by a pair.

    Parameters
    ----------
    load_size:
        Size images are resized to before cropping (train only; ``resize_and_crop``:
        a ``load_size`` x ``load_size`` square; ``scale_width*``: the width).
    crop_size:
        Side of the square crop.
    preprocess:
        One of :data:`PREPROCESS_MODES`, as the reference's ``--preprocess``:
        ``resize_and_crop`` (default), ``crop`` (no resize; images must be at least
        ``crop_size``), ``scale_width`` (no crop; heights may differ),
        ``scale_width_and_crop``, ``none`` (sides rounded to multiples of 4).
    flip:
        Random horizontal flip with probability 1/2 (train only).
    train:
        Train: random crop position and flip. Eval (``train=False``): deterministic,
        as the reference's test options (``load_size = crop_size``, no flip) --
        ``resize_and_crop`` resizes straight to ``crop_size`` x ``crop_size``, the
        cropping modes take the *center* crop, nothing is flipped.
    """

    def __init__(self, load_size: int = 286, crop_size: int = 256, preprocess: str = "resize_and_crop",
                 flip: bool = True, train: bool = True) -> None:
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        load_size, crop_size = int(load_size), int(crop_size)
        validate.positive_ints(load_size=load_size, crop_size=crop_size)
        if train and preprocess in ("resize_and_crop", "scale_width_and_crop") and load_size < crop_size:
            raise ValueError(f"load_size ({load_size}) must be >= crop_size ({crop_size}) with preprocess={preprocess!r}")
        self.load_size = load_size if train else crop_size
        self.crop_size = crop_size
        self.preprocess = preprocess
        self.flip = bool(flip) and train
        self.train = train

    def __repr__(self) -> str:
        return (f"PairedTransform(load_size={self.load_size}, crop_size={self.crop_size}, "
                f"preprocess={self.preprocess!r}, flip={self.flip}, train={self.train})")

    @property
    def crops(self) -> bool:
        return "crop" in self.preprocess

    def min_input_size(self) -> int:
        """Smallest side an input may have (only ``crop`` needs images at least ``crop_size``)."""
        return self.crop_size if self.preprocess == "crop" else 1

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(width, height)`` after the resize step, for an input of ``size = (width, height)``."""
        w, h = size
        if self.preprocess == "resize_and_crop":
            return self.load_size, self.load_size
        if self.preprocess.startswith("scale_width"):
            if w == self.load_size and h >= self.crop_size:
                return w, h
            return self.load_size, int(max(self.load_size * h / w, self.crop_size))
        if self.preprocess == "none":
            return max(4, int(round(w / 4) * 4)), max(4, int(round(h / 4) * 4))
        return w, h  # crop

    def get_params(self, size: tuple[int, int]) -> TransformParams:
        """Draw the crop corner and flip for an input of ``size = (width, height)`` (torch RNG)."""
        w, h = self.resized_size(size)
        top = left = 0
        if self.crops:
            max_top, max_left = max(0, h - self.crop_size), max(0, w - self.crop_size)
            if self.train:
                top = int(torch.randint(0, max_top + 1, ()).item())
                left = int(torch.randint(0, max_left + 1, ()).item())
            else:
                top, left = max_top // 2, max_left // 2
        flip = bool(torch.rand(()).item() < 0.5) if self.flip else False
        return TransformParams(top=top, left=left, flip=flip)

    def __call__(self, img: Image.Image, params: TransformParams | None = None) -> Tensor:
        """Transform a PIL image with ``params`` (drawn now when None) into a (3, H, W) tensor in [-1, 1]."""
        if params is None:
            params = self.get_params(img.size)
        new_w, new_h = self.resized_size(img.size)
        if (new_w, new_h) != img.size:
            img = resize_bicubic(img, (new_h, new_w))
        if self.crops:
            c = self.crop_size
            img = F.crop(img, params.top, params.left, min(c, new_h), min(c, new_w))
        if params.flip:
            img = F.horizontal_flip(img)
        return to_tensor(img)
