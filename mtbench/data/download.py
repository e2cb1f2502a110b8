"""Download the standard pix2pix / CycleGAN datasets (for users who are online).

Usage::

    python -m mtbench.data.download pix2pix facades --root data      # -> data/facades/{train,val,test}
    python -m mtbench.data.download cyclegan horse2zebra --root data # -> data/horse2zebra/{trainA,trainB,testA,testB}

The archives are the ones the reference scripts fetch
(junyanz/pytorch-CycleGAN-and-pix2pix ``datasets/download_*_dataset.sh``):

* pix2pix: ``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/NAME.tar.gz``
* CycleGAN: ``http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/NAME.zip``

Each archive holds one folder ``NAME/``, extracted into ``ROOT``; the archive is
deleted afterwards. An existing non-empty ``ROOT/NAME`` is never overwritten
(pix2pix and CycleGAN both have ``facades``, ``maps`` and ``cityscapes``, in
different layouts: give them different roots).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive

from mtbench.data.base import DataError

PIX2PIX_DATASETS = ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day")
CYCLEGAN_DATASETS = (
    "horse2zebra", "apple2orange", "summer2winter_yosemite", "monet2photo", "cezanne2photo",
    "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
)
DATASETS = {"pix2pix": PIX2PIX_DATASETS, "cyclegan": CYCLEGAN_DATASETS}
_URLS = {
    "pix2pix": "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz",
    "cyclegan": "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip",
}
#: A folder each layout must have once extracted.
_EXPECTED = {"pix2pix": ("train",), "cyclegan": ("trainA", "trainB")}
_LAYOUT = {"pix2pix": "train/ (and val/, test/)", "cyclegan": "trainA/, trainB/, testA/ and testB/"}


def dataset_url(kind: str, name: str) -> str:
    """The archive URL of dataset ``name`` of ``kind`` (``"pix2pix"`` or ``"cyclegan"``).

    Raises :class:`DataError` listing the choices for an unknown kind or name.
    """
    if kind not in DATASETS:
        raise DataError(f"unknown dataset kind {kind!r}; choose one of {', '.join(DATASETS)}")
    if name not in DATASETS[kind]:
        raise DataError(f"unknown {kind} dataset {name!r}; choose one of {', '.join(DATASETS[kind])}")
    return _URLS[kind].format(name=name)


def download_command(kind: str, root: str | os.PathLike) -> str:
    """How to create the dataset folder ``root``, for error messages (the command in backquotes).

    When ``root``'s last component is a known dataset name, the command downloads
    exactly that folder; otherwise it shows the default dataset as an example.
    """
    root = Path(root)
    if root.name in DATASETS.get(kind, ()):
        return f"`python -m mtbench.data.download {kind} {root.name} --root {root.parent}`"
    example = "facades" if kind == "pix2pix" else "horse2zebra"
    return (f"`python -m mtbench.data.download {kind} {example} --root DIR` "
            f"(creates DIR/{example}; then set root to it)")


def download(kind: str, name: str, root: str | os.PathLike = "data") -> Path:
    """Download and extract dataset ``name`` of ``kind`` into ``root``; returns ``root/name``.

    Parameters
    ----------
    kind:
        ``"pix2pix"`` (aligned A|B layout ``train/val/test``) or ``"cyclegan"``
        (unaligned ``trainA/trainB/testA/testB``).
    name:
        One of :data:`PIX2PIX_DATASETS` / :data:`CYCLEGAN_DATASETS`.
    root:
        Folder the archive's ``name/`` folder is extracted into (created if needed).

    Raises
    ------
    DataError
        Unknown name (lists the choices); ``root/name`` exists and is not empty
        (never overwritten); the download or extraction failed (names the URL and
        says how to install it by hand).
    """
    url = dataset_url(kind, name)
    root = Path(root)
    target = root / name
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target} already exists and is not empty; not overwriting it "
                        f"(delete it, or choose another --root)")
    root.mkdir(parents=True, exist_ok=True)
    filename = url.rsplit("/", 1)[-1]
    try:
        download_and_extract_archive(url, download_root=str(root), extract_root=str(root),
                                     filename=filename, remove_finished=True)
    except Exception as exc:  # network, HTTP, disk or archive errors: one clear message
        partial = root / filename
        if partial.exists():
            partial.unlink()
        raise DataError(f"could not download {url} ({type(exc).__name__}: {exc}); download it by hand "
                        f"and extract it into {root} so that {target} holds "
                        f"{'/'.join(_EXPECTED[kind])}") from exc
    missing = [d for d in _EXPECTED[kind] if not (target / d).is_dir()]
    if missing:
        raise DataError(f"extracted {url} into {root} but {target} lacks {', '.join(missing)}; "
                        f"check the archive's layout")
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 and one ``error:`` line on failure)."""
    parser = argparse.ArgumentParser(
        prog="python -m mtbench.data.download",
        description="Download a standard pix2pix or CycleGAN dataset into ROOT/NAME.",
        epilog="pix2pix: " + ", ".join(PIX2PIX_DATASETS) + ". cyclegan: " + ", ".join(CYCLEGAN_DATASETS) + ".",
    )
    parser.add_argument("kind", choices=sorted(DATASETS), help="dataset family")
    parser.add_argument("name", help="dataset name (see below)")
    parser.add_argument("--root", default="data", help="folder to extract into (default: data)")
    args = parser.parse_args(argv)
    try:
        target = download(args.kind, args.name, args.root)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.kind} dataset {args.name!r} is in {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
