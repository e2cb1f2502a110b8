"""CycleGAN's unaligned dataset: two folders of unpaired images.

Layout (as the reference's ``UnalignedDataset`` and the CycleGAN archives)::

    ROOT/trainA, ROOT/trainB   required
    ROOT/valA,   ROOT/valB     optional (rare; the val split is None without them)
    ROOT/testA,  ROOT/testB    optional (the test split is None without them)

Item ``i`` of a train split is ``A[i % len(A)]`` with a ``B`` drawn uniformly at
random with ``torch.randint`` (so ``torch.manual_seed`` reproduces it, also in
DataLoader workers), or ``B[i % len(B)]`` with ``serial_batches``. The length is
``max(len(A), len(B))``. Each domain gets its own random crop and flip (the images
are unrelated). Eval splits are serial (``B[i % len(B)]``; for datasets with
matching test pairs, such as CycleGAN's facades/maps/cityscapes, this pairs them),
with no random crop or flip.

Get the data with ``python -m mtbench.data.download cyclegan horse2zebra --root data``,
or train offline on ``data=cyclegan_embedded``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtbench.data.base import DataError, DataSplits
from mtbench.data.download import download_command
from mtbench.data.transforms import PairedTransform, describe, list_images, load_rgb, read_sizes


def _check_size(path: Path, size: tuple[int, int], min_side: int) -> None:
    if min(size) < min_side:
        raise DataError(f"image {path} is {size[0]}x{size[1]}, smaller than crop_size {min_side} "
                        f"with preprocess='crop'; use a smaller crop_size or 'resize_and_crop'")


class UnalignedDataset(Dataset):
    """Unpaired images of two folders; items are ``{"A": ..., "B": ...}`` in [-1, 1].

    Parameters
    ----------
    folder_a, folder_b:
        The domain folders (searched recursively, sorted by path).
    transform:
        The :class:`~mtbench.data.transforms.PairedTransform`; A and B get
        independent draws of its random crop and flip.
    serial_batches:
        False: ``B`` is drawn at random (torch RNG) for each item; True: ``B[i % len(B)]``.
    max_items:
        Use only the first ``max_items`` files of each domain (None: all).
    """

    def __init__(self, folder_a: str | os.PathLike, folder_b: str | os.PathLike,
                 transform: PairedTransform | None = None, serial_batches: bool = False,
                 max_items: int | None = None, what: str = "CycleGAN", hint: str = "") -> None:
        self.transform = transform or PairedTransform()
        self.serial_batches = bool(serial_batches)
        self.folder_a, self.folder_b = Path(folder_a), Path(folder_b)
        self.paths_a = list_images(self.folder_a, f"{what} folder {self.folder_a.name}", hint, max_items)
        self.paths_b = list_images(self.folder_b, f"{what} folder {self.folder_b.name}", hint, max_items)
        min_side = self.transform.min_input_size()
        for paths in (self.paths_a, self.paths_b):
            for path, size in zip(paths, read_sizes(paths)):
                _check_size(path, size, min_side)

    def image_files(self) -> list[Path]:
        """Every image file this dataset reads (the runner decodes them all before training)."""
        return list(self.paths_a) + list(self.paths_b)

    def __len__(self) -> int:
        return max(len(self.paths_a), len(self.paths_b))

    def _load(self, path: Path) -> Tensor:
        img = load_rgb(path)
        _check_size(path, img.size, self.transform.min_input_size())
        return self.transform(img, self.transform.get_params(img.size))  # own draw per domain

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path_a = self.paths_a[index % len(self.paths_a)]
        if self.serial_batches:
            index_b = index % len(self.paths_b)
        else:
            index_b = int(torch.randint(0, len(self.paths_b), ()).item())
        return {"A": self._load(path_a), "B": self._load(self.paths_b[index_b])}

    def __repr__(self) -> str:
        return (f"UnalignedDataset({str(self.folder_a)!r} ({len(self.paths_a)}), {str(self.folder_b)!r} "
                f"({len(self.paths_b)}), serial_batches={self.serial_batches}, {self.transform})")


def unaligned_splits(root: str | os.PathLike, load_size: int = 286, crop_size: int = 256,
                     flip: bool = True, serial_batches: bool = False, preprocess: str = "resize_and_crop",
                     max_items: int | None = None, name: str | None = None) -> DataSplits:
    """The CycleGAN splits of an unaligned dataset folder.

    Parameters
    ----------
    root:
        Dataset folder with ``trainA/`` and ``trainB/`` (required), ``testA/`` and
        ``testB/`` (optional; the test split), ``valA/`` and ``valB/`` (optional).
    load_size, crop_size:
        Train images are resized to ``load_size`` then randomly cropped to
        ``crop_size`` (CycleGAN: 286 -> 256); eval images are resized straight to
        ``crop_size`` (center crop for the other cropping modes), never flipped.
    flip:
        Random horizontal flip of train images (independent per domain).
    serial_batches:
        Train split only: pair ``A[i]`` with ``B[i % len(B)]`` instead of a random B.
        Eval splits are always serial.
    preprocess:
        See :class:`~mtbench.data.transforms.PairedTransform`.
    max_items:
        Use only the first ``max_items`` images of each folder (None: all).
    name:
        The splits' name (default ``cyclegan/<root folder name>``).

    Returns
    -------
    DataSplits
        ``train``; ``test`` from ``testA/testB`` and ``val`` from ``valA/valB``
        (None when absent; a split with only one of its two folders is an error).
    """
    root = Path(root)
    hint = (f"expected the CycleGAN layout ROOT/{{trainA,trainB,testA,testB}}/*.jpg; "
            f"download it with {download_command('cyclegan', root)}, "
            f"or train offline with data=cyclegan_embedded")
    if not root.is_dir():
        raise DataError(f"CycleGAN dataset folder not found: {describe(root)}; {hint}")
    train_tf = PairedTransform(load_size, crop_size, preprocess, flip, train=True)
    eval_tf = PairedTransform(load_size, crop_size, preprocess, flip=False, train=False)
    train = UnalignedDataset(root / "trainA", root / "trainB", train_tf, serial_batches, max_items,
                             "CycleGAN train", hint)
    evals = {}
    for split in ("val", "test"):
        folder_a, folder_b = root / f"{split}A", root / f"{split}B"
        if not folder_a.exists() and not folder_b.exists():
            evals[split] = None
            continue
        evals[split] = UnalignedDataset(folder_a, folder_b, eval_tf, True, max_items, f"CycleGAN {split}",
                                        f"{split}A and {split}B must both exist (or neither)")
    return DataSplits(train=train, val=evals["val"], test=evals["test"], name=name or f"cyclegan/{root.name}")
