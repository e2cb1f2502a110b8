"""pix2pix's aligned dataset: each file holds an input|target pair side by side.

Layout (as the reference's ``AlignedDataset`` and the pix2pix archives)::

    ROOT/train/*.jpg|jpeg|png   required
    ROOT/val/...                optional (None when absent)
    ROOT/test/...               optional (None when absent)

Each image is ``A|B``: the left half is domain A, the right half domain B, so
its width is twice its height (facades: 512x256). ``direction="BtoA"`` swaps the
halves, so the batch's ``"A"`` is always the model's input and ``"B"`` its target
(the facades benchmark is label map -> photo, i.e. ``BtoA``).

Get the data with ``python -m mtbench.data.download pix2pix facades --root data``,
or train offline on ``data=pix2pix_embedded``.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from mtbench.data.base import DataError, DataSplits
from mtbench.data.download import download_command
from mtbench.data.transforms import PairedTransform, describe, list_images, load_rgb, read_sizes

DIRECTIONS = ("AtoB", "BtoA")


def _check_pair_size(path: Path, size: tuple[int, int], min_side: int, strict_aspect: bool = True) -> None:
    w, h = size
    if strict_aspect and w != 2 * h:
        raise DataError(f"aligned image {path} is {w}x{h} (width x height); a pix2pix A|B image must be "
                        f"twice as wide as it is high (e.g. 512x256); fix or remove it, or pass "
                        f"data.strict_aspect=false to split every image at half its width (as the reference code)")
    if not strict_aspect and (w % 2 or w < 4):
        raise DataError(f"aligned image {path} is {w}x{h}: an A|B image needs an even width to split in halves")
    if h < min_side:
        raise DataError(f"aligned image {path} is {w}x{h}: each half ({h}x{h}) is smaller than "
                        f"crop_size {min_side} with preprocess='crop'; use a smaller crop_size or 'resize_and_crop'")


class AlignedDataset(Dataset):
    """Paired ``A|B`` images of one folder; items are ``{"A": input, "B": target}`` in [-1, 1].

    Parameters
    ----------
    folder:
        The split's folder of ``A|B`` images (searched recursively, sorted by path).
    direction:
        ``"AtoB"`` (left half is the input) or ``"BtoA"`` (right half is the input).
    transform:
        The :class:`~mtbench.data.transforms.PairedTransform`; its random crop and
        flip are drawn once per item and applied to both halves.
    max_items:
        Use only the first ``max_items`` files (None: all).
    strict_aspect:
        Require every file to be exactly twice as wide as high (True), or only
        split it at half its width, each half then resized (False; the
        reference code's behaviour, needed for datasets with cropped pairs).

    Every file's header is read at construction (cheap), so a corrupt file or a
    width that is not twice the height raises :class:`DataError` before training;
    a file that fails to decode later raises it from ``__getitem__``.
    """

    def __init__(self, folder: str | os.PathLike, direction: str = "AtoB",
                 transform: PairedTransform | None = None, max_items: int | None = None,
                 what: str = "pix2pix folder", hint: str = "", strict_aspect: bool = True) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.folder = Path(folder)
        self.direction = direction
        self.strict_aspect = strict_aspect
        self.transform = transform or PairedTransform()
        self.paths = list_images(self.folder, what, hint, max_items)
        min_side = self.transform.min_input_size()
        for path, size in zip(self.paths, read_sizes(self.paths)):
            _check_pair_size(path, size, min_side, strict_aspect)

    def image_files(self) -> list[Path]:
        """Every image file this dataset reads (the runner decodes them all before training)."""
        return list(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        path = self.paths[index]
        ab = load_rgb(path)
        _check_pair_size(path, ab.size, self.transform.min_input_size(), self.strict_aspect)
        w, h = ab.size
        a, b = ab.crop((0, 0, w // 2, h)), ab.crop((w // 2, 0, w, h))
        if self.direction == "BtoA":
            a, b = b, a
        params = self.transform.get_params(a.size)  # one draw, shared by both halves
        return {"A": self.transform(a, params), "B": self.transform(b, params)}

    def __repr__(self) -> str:
        return f"AlignedDataset({str(self.folder)!r}, n={len(self)}, direction={self.direction!r}, {self.transform})"


def aligned_splits(root: str | os.PathLike, direction: str = "AtoB", load_size: int = 286,
                   crop_size: int = 256, flip: bool = True, preprocess: str = "resize_and_crop",
                   max_items: int | None = None, name: str | None = None,
                   strict_aspect: bool = True) -> DataSplits:
    """The pix2pix splits of an aligned dataset folder.

    Parameters
    ----------
    root:
        Dataset folder holding ``train/`` (required) and optionally ``val/`` and ``test/``.
    direction:
        ``"AtoB"`` or ``"BtoA"``; the batch's ``"A"`` is always the input (see module doc).
    load_size, crop_size:
        Train images are resized to ``load_size`` then randomly cropped to ``crop_size``
        (pix2pix: 286 -> 256). Eval images (val/test) are resized straight to
        ``crop_size`` (the cropping modes other than ``resize_and_crop`` take the
        center crop) and never flipped, as the reference's test options.
    flip:
        Random horizontal flip of train pairs (the same flip for A and B).
    preprocess:
        See :class:`~mtbench.data.transforms.PairedTransform` (default ``resize_and_crop``).
    max_items:
        Use only the first ``max_items`` images of each split (None: all).
    name:
        The splits' name (default ``pix2pix/<root folder name>``).

    Returns
    -------
    DataSplits
        ``train``; ``val``/``test`` are None when their folder is absent.

    Raises
    ------
    DataError
        ``root`` or ``root/train`` missing (names the expected layout and how to get
        the data), an empty split folder, a corrupt image or one whose width is not
        twice its height (names the file).
    """
    root = Path(root)
    hint = (f"expected the pix2pix aligned layout ROOT/{{train,val,test}}/*.jpg with A|B side by side; "
            f"download it with {download_command('pix2pix', root)}, "
            f"or train offline with data=pix2pix_embedded")
    if not root.is_dir():
        raise DataError(f"pix2pix dataset folder not found: {describe(root)}; {hint}")
    train_tf = PairedTransform(load_size, crop_size, preprocess, flip, train=True)
    eval_tf = PairedTransform(load_size, crop_size, preprocess, flip=False, train=False)
    train = AlignedDataset(root / "train", direction, train_tf, max_items, "pix2pix train folder", hint,
                           strict_aspect)
    evals = {}
    for split in ("val", "test"):
        folder = root / split
        evals[split] = (AlignedDataset(folder, direction, eval_tf, max_items, f"pix2pix {split} folder",
                                       strict_aspect=strict_aspect)
                        if folder.is_dir() else None)
    return DataSplits(train=train, val=evals["val"], test=evals["test"], name=name or f"pix2pix/{root.name}")
