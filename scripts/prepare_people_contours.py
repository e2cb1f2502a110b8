"""Lay out the people_contours pairs for the GAN reproductions (scripts/reproduce_gans.sh).

The source (``../shared/data/people_contours``) holds ``train/`` (100) and ``val/``
(155) JPEGs in the pix2pix aligned A|B layout: left half a photo of people (A),
right half its contour drawing (B); some pairs are cropped (512 x H, H < 256).
It has no test split, and tuning on the split we report would leak, so:

* ``OUT/aligned/{train,val,test}`` (pix2pix, ``data=facades`` layout, links to
  the source files): train = all 100 train pairs; val = the first ``--n-val``
  val pairs by number (the tuning objective); test = the remaining ones
  (the reported metrics).
* ``OUT/unpaired/{trainA,trainB,valA,valB,testA,testB}`` (CycleGAN,
  ``data=cyclegan_unaligned`` layout): each pair cut at half its width into PNG
  halves, A = the contour drawing, B = the photo, so that ``G_A`` (A -> B) is
  pix2pix's B -> A task. Training draws B at random (unpaired), as CycleGAN does
  on its datasets derived from pix2pix pairs (facades, maps); the val/test
  halves keep their pairs' names, so ``model.paired_eval=true`` can score
  ``G_A(A)`` against the true photo.

Run again with the same arguments it does nothing; it never overwrites an
``OUT`` made from other arguments. It builds ``OUT.partial`` and renames it to
``OUT`` when complete; an ``OUT.partial`` it did not make (an interrupted
prepare, or one running now) is refused, never deleted.

    python scripts/prepare_people_contours.py ../shared/data/people_contours runs/reproduce/data/people_contours
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from PIL import Image

from mtbench.data.transforms import to_rgb8
from mtbench.errors import DataError

MARKER = "prepared.json"


def numbered(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return sorted(files, key=lambda p: (int(p.stem) if p.stem.isdigit() else 10**9, p.name))


def split_pair(src: Path, out_a: Path, out_b: Path) -> None:
    """Write the contour half (right, B of the source) to out_a and the photo half (left) to out_b."""
    with Image.open(src) as im:
        im = to_rgb8(im, src)  # 16-bit sources scaled, not clipped
        w, h = im.size
        if w % 2:
            raise ValueError(f"{src} is {w}x{h}: an A|B pair needs an even width")
        im.crop((w // 2, 0, w, h)).save(out_a)
        im.crop((0, 0, w // 2, h)).save(out_b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="people_contours folder holding train/ and val/")
    ap.add_argument("out", type=Path, help="output folder (aligned/ and unpaired/ go inside)")
    ap.add_argument("--n-val", type=int, default=55, help="val pairs kept for tuning; the rest are the test split")
    args = ap.parse_args(argv)

    src = args.src.resolve()
    splits = {"train": numbered(src / "train") if (src / "train").is_dir() else []}
    val_all = numbered(src / "val") if (src / "val").is_dir() else []
    if not splits["train"] or not val_all:
        print(f"error: expected JPEG pairs in {src}/train and {src}/val (see ../shared/data/README.md)",
              file=sys.stderr)
        return 2
    if not 0 < args.n_val < len(val_all):
        print(f"error: --n-val must be between 1 and {len(val_all) - 1}, got {args.n_val}", file=sys.stderr)
        return 2
    splits["val"], splits["test"] = val_all[:args.n_val], val_all[args.n_val:]
    manifest = {"src": str(src), "n_val": args.n_val, "counts": {k: len(v) for k, v in splits.items()}}

    out = args.out
    marker = out / MARKER
    if marker.exists():
        if json.loads(marker.read_text()) == manifest:
            print(f"{out}: already prepared ({manifest['counts']})")
            return 0
        print(f"error: {out} was prepared from other arguments ({marker}); choose another OUT or delete it",
              file=sys.stderr)
        return 2
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not a prepared folder; choose another OUT", file=sys.stderr)
        return 2

    tmp = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()  # exclusive: a .partial folder this run did not make is never touched
    except FileExistsError:
        print(f"error: {tmp} already exists (an interrupted prepare, or one running now): check whether another "
              f"prepare is running, else remove {tmp} and run again", file=sys.stderr)
        return 2
    try:
        build(tmp, splits, manifest)
        if out.exists():
            out.rmdir()  # empty (checked above)
        tmp.rename(out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)  # made by this run (mkdir above), nothing else in it
        if isinstance(err, (OSError, ValueError, DataError)):  # a bad source image, a full disk: one line
            print(f"error: {err}; nothing was written to {out}", file=sys.stderr)
            return 2
        raise
    print(f"{out}: aligned/ and unpaired/ with {manifest['counts']}")
    return 0


def build(tmp: Path, splits: dict[str, list[Path]], manifest: dict) -> None:
    """The aligned/ links, the unpaired/ halves and the marker, in ``tmp``."""
    for name, files in splits.items():
        aligned = tmp / "aligned" / name
        fa, fb = tmp / "unpaired" / f"{name}A", tmp / "unpaired" / f"{name}B"
        for d in (aligned, fa, fb):
            d.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.symlink(f, aligned / f.name)
            split_pair(f, fa / f"{f.stem}.png", fb / f"{f.stem}.png")
    (tmp / MARKER).write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    sys.exit(main())
