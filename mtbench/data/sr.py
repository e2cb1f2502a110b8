"""Super-resolution data (SRGAN): HR image folders, LR made by bicubic downscaling.

* Train: a folder of HR images (e.g. DIV2K_train_HR, or ImageNet images as in
  SRGAN). Each item is a random ``crop_size`` x ``crop_size`` HR crop (random
  position, random horizontal flip; SRGAN: 96x96) and its LR, the crop downscaled
  by ``scale`` with antialiased bicubic resampling (PIL's, close to MATLAB's
  ``imresize``).
* Eval: folders in the Set5/Set14/BSD100 layout (a flat folder of HR images).
  Each item is the whole image, its bottom/right edge cropped so that the sides
  are multiples of ``scale`` ("mod crop"), and its bicubic LR. Eval images differ
  in size, so **eval DataLoaders must use batch_size 1**.

Items are ``{"lr": (3, h, w), "hr": (3, h*scale, w*scale)}`` in [-1, 1].

With several eval folders, :func:`sr_folder_splits` returns ``val`` = the first
and sets ``splits.extra_eval = {folder name: dataset}`` for **all** of them (the
first included), in order, so PSNR/SSIM can be reported per benchmark (Set5 and
Set14 separately). ``test`` is None.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from mtbench import validate
from mtbench.data.base import DataError, DataSplits
from mtbench.data.transforms import bicubic_downscale, describe, list_images, load_rgb, mod_crop, read_sizes, to_tensor

_TRAIN_HINT = ("put high-resolution training images there (e.g. DIV2K_train_HR or ImageNet images), "
               "or train offline with data=sr_embedded")
_EVAL_HINT = ("expected a folder of HR images as Set5/Set14 (e.g. data/Set5/*.png), "
              "or train offline with data=sr_embedded")


def _check_scale(scale: int, crop_size: int | None = None) -> int:
    scale = validate.positive_int("scale", int(scale))
    if crop_size is not None and (crop_size < scale or crop_size % scale):
        raise ValueError(f"crop_size ({crop_size}) must be a positive multiple of scale ({scale})")
    return scale


def _check_hr_size(path: Path, size: tuple[int, int], crop_size: int) -> None:
    w, h = size
    if w < crop_size or h < crop_size:
        raise DataError(f"HR image {path} is {w}x{h}, smaller than the {crop_size}x{crop_size} train crop; "
                        f"remove it or lower crop_size")


class SRTrainDataset(Dataset):
    """Random HR crops of a folder of images and their bicubic LR.

    Parameters
    ----------
    folder:
        Folder of HR images (searched recursively, sorted by path).
    crop_size:
        Side of the square HR crop; a multiple of ``scale``. Every image must be
        at least this large (checked at construction from the headers).
    scale:
        Downscaling factor; the LR crop has side ``crop_size // scale``.
    flip:
        Random horizontal flip of the HR crop (before making the LR).
    repeats:
        Crops per image per epoch (``len = repeats * number of images``): handy
        for small folders of large images.
    max_items:
        Use only the first ``max_items`` images (None: all).

    Randomness uses the torch RNG.
    """

    def __init__(self, folder: str | os.PathLike, crop_size: int = 96, scale: int = 4, flip: bool = True,
                 repeats: int = 1, max_items: int | None = None) -> None:
        self.crop_size = int(crop_size)
        self.scale = _check_scale(scale, self.crop_size)
        validate.positive_int("repeats", int(repeats))
        self.repeats = int(repeats)
        self.flip = bool(flip)
        self.folder = Path(folder)
        self.paths = list_images(self.folder, "SR train folder", _TRAIN_HINT, max_items)
        for path, size in zip(self.paths, read_sizes(self.paths)):
            _check_hr_size(path, size, self.crop_size)

    def image_files(self) -> list[Path]:
        """Every image file this dataset reads (the runner decodes them all before training)."""
        return list(self.paths)

    def __len__(self) -> int:
        return len(self.paths) * self.repeats

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path = self.paths[index % len(self.paths)]
        img = load_rgb(path)
        _check_hr_size(path, img.size, self.crop_size)
        w, h, c = *img.size, self.crop_size
        top = int(torch.randint(0, h - c + 1, ()).item())
        left = int(torch.randint(0, w - c + 1, ()).item())
        hr = F.crop(img, top, left, c, c)
        if self.flip and torch.rand(()).item() < 0.5:
            hr = F.horizontal_flip(hr)
        return {"lr": to_tensor(bicubic_downscale(hr, self.scale)), "hr": to_tensor(hr)}

    def __repr__(self) -> str:
        return (f"SRTrainDataset({str(self.folder)!r}, n={len(self.paths)}, crop_size={self.crop_size}, "
                f"scale={self.scale}, flip={self.flip}, repeats={self.repeats})")


class SREvalDataset(Dataset):
    """Whole HR images of a benchmark folder (Set5 layout), mod-cropped to ``scale``, and their bicubic LR.

    Images differ in size: use DataLoader ``batch_size=1``.
    """

    def __init__(self, folder: str | os.PathLike, scale: int = 4, max_items: int | None = None) -> None:
        self.scale = _check_scale(scale)
        self.folder = Path(folder)
        self.paths = list_images(self.folder, "SR eval folder", _EVAL_HINT, max_items)
        for path, (w, h) in zip(self.paths, read_sizes(self.paths)):
            if w < self.scale or h < self.scale:
                raise DataError(f"eval image {path} is {w}x{h}, smaller than scale {self.scale}; remove it")

    def image_files(self) -> list[Path]:
        """Every image file this dataset reads (the runner decodes them all before training)."""
        return list(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        hr = mod_crop(load_rgb(self.paths[index]), self.scale)
        return {"lr": to_tensor(bicubic_downscale(hr, self.scale)), "hr": to_tensor(hr)}

    def __repr__(self) -> str:
        return f"SREvalDataset({str(self.folder)!r}, n={len(self)}, scale={self.scale})"


def _as_paths(roots: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    if roots is None:
        return []
    if isinstance(roots, (str, os.PathLike)):
        return [Path(roots)]
    return [Path(r) for r in roots]


def sr_folder_splits(train_root: str | os.PathLike,
                     eval_roots: str | os.PathLike | Sequence[str | os.PathLike] = (),
                     scale: int = 4, crop_size: int = 96, flip: bool = True, repeats: int = 1,
                     max_items: int | None = None, name: str = "sr") -> DataSplits:
    """Super-resolution splits from HR image folders.

    Parameters
    ----------
    train_root:
        Folder of HR training images (each at least ``crop_size`` on both sides).
    eval_roots:
        Zero or more benchmark folders (Set5, Set14, BSD100...), each a folder of
        HR images; a single path is accepted too.
    scale:
        Upscaling factor (SRGAN: 4).
    crop_size:
        HR train crop side, a multiple of ``scale`` (SRGAN: 96, so LR is 24x24).
    flip:
        Random horizontal flip of train crops.
    repeats:
        Random crops per train image per epoch.
    max_items:
        Use only the first ``max_items`` images of each folder (None: all).
    name:
        The splits' name.

    Returns
    -------
    DataSplits
        ``train``; ``val`` = the first eval folder (None without any); ``test`` None;
        and the attribute ``extra_eval``: ``{folder name: SREvalDataset}`` for every
        eval folder in order (a repeated folder name gets a ``_2`` suffix).
        Eval loaders must use batch_size 1 (full images of different sizes).

    Raises
    ------
    DataError
        A missing or empty folder, an unreadable image (named), or a train image
        smaller than ``crop_size`` (names the file and both sizes).
    """
    train_root = Path(train_root)
    if not train_root.is_dir():
        raise DataError(f"SR train folder not found: {describe(train_root)}; {_TRAIN_HINT}")
    train = SRTrainDataset(train_root, crop_size, scale, flip, repeats, max_items)
    extra_eval: dict[str, Dataset] = {}
    for root in _as_paths(eval_roots):
        key, k = root.name or str(root), 2
        while key in extra_eval:
            key, k = f"{root.name}_{k}", k + 1
        extra_eval[key] = SREvalDataset(root, scale, max_items)
    splits = DataSplits(train=train, val=next(iter(extra_eval.values()), None), test=None, name=name,
                        eval_batch_size=1)
    splits.extra_eval = extra_eval
    return splits
