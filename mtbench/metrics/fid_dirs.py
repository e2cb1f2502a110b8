"""``mtbench fid DIR_A DIR_B``: FID and KID between two image folders, offline.

Like ``python -m pytorch_fid DIR_A DIR_B`` (the images of each folder, not its
subfolders, with the extensions pytorch-fid reads), with the network and
preprocessing of mtbench's runs (:mod:`mtbench.metrics.fid`): pytorch-fid's
FID InceptionV3, 8-bit RGB images scaled to [0, 1], bilinear resize to 299x299,
2048-d pool3 features. FID is pytorch-fid's Fréchet distance of the two
Gaussians (computed exactly from the features, see
:func:`~mtbench.metrics.fid.fid_from_features`), KID the unbiased MMD^2 with
the cubic kernel. Weights: ``--weights``, else pytorch-fid's file in the torch
hub cache, else the one ``mtbench weights fid`` converts. Every image is read
and checked before any feature is computed; a folder with fewer than two
images, or a file that does not decode, is one error line naming it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mtbench.errors import ArgParser

IMAGE_EXTENSIONS = {"bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp"}  # pytorch-fid's

__all__ = ["IMAGE_EXTENSIONS", "list_images", "load_images", "fid_between_dirs", "main"]


class FolderError(ValueError):
    """A folder or image that cannot be used (one line naming it)."""


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (sorted by name), as pytorch-fid lists them."""
    if not folder.is_dir():
        raise FolderError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise FolderError(f"{folder} holds {len(files)} image(s); FID needs at least 2 "
                          f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def load_images(files: list[Path]) -> list[torch.Tensor]:
    """Each file as a (3, H, W) uint8 tensor (RGB, as pytorch-fid's ``convert('RGB')``)."""
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise FolderError(f"cannot read image {p}: {type(err).__name__}: {err}") from None
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
    return out


def _features(model, images: list[torch.Tensor], batch_size: int, desc: str) -> torch.Tensor:
    """Inception features (n, d), float64: consecutive images of equal size are batched together."""
    from tqdm.auto import tqdm

    from mtbench.metrics.fid import inception_features

    feats, i = [], 0
    with tqdm(total=len(images), desc=desc, unit="img", file=sys.stderr, leave=False) as bar:
        while i < len(images):
            j = i + 1
            while j < len(images) and j - i < batch_size and images[j].shape == images[i].shape:
                j += 1
            feats.append(inception_features(model, torch.stack(images[i:j]), batch_size=batch_size))
            bar.update(j - i)
            i = j
    return torch.cat(feats)


def fid_between_dirs(dir_a: Path, dir_b: Path, weights: Path | None = None, device: str = "cpu",
                     batch_size: int = 50, model=None) -> dict[str, float | int]:
    """{fid, kid, kid_std, n_a, n_b} between the images of two folders.

    ``model``: an already loaded FID Inception (tests); else :func:`load_inception`
    with ``weights`` (no download).
    """
    from mtbench.metrics.fid import fid_from_features, kid_from_features, load_inception

    images = {}
    for d in (dir_a, dir_b):
        images[d] = load_images(list_images(Path(d)))  # read and check everything before the slow part
    if model is None:
        model = load_inception(weights, device=device, download=False)
    fa = _features(model, images[dir_a], batch_size, f"Inception {Path(dir_a).name}")
    fb = _features(model, images[dir_b], batch_size, f"Inception {Path(dir_b).name}")
    kid, kid_std = kid_from_features(fa, fb)
    return {"fid": fid_from_features(fa, fb), "kid": kid, "kid_std": kid_std, "n_a": len(fa), "n_b": len(fb)}


def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog="mtbench fid", description="FID and KID between two image folders (pytorch-fid's network "
                 "and preprocessing, offline). Prints: fid=<value> kid=<value>")
    ap.add_argument("dir_a", type=Path)
    ap.add_argument("dir_b", type=Path)
    ap.add_argument("--weights", type=Path, help="FID Inception weights file (default: pytorch-fid's in the torch "
                    "hub cache, else the one `mtbench weights fid` made)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args(argv)
    if args.batch_size < 1:
        ap.error(f"--batch-size must be >= 1, got {args.batch_size}")
    from mtbench.nets.vgg import MissingWeightsError
    from mtbench.utils import ConfigError, resolve_device

    try:
        device = resolve_device(args.device)
        r = fid_between_dirs(args.dir_a, args.dir_b, args.weights, device, args.batch_size)
    except (FolderError, ConfigError, MissingWeightsError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"fid={r['fid']:.6g} kid={r['kid']:.6g}")
    print(f"({r['n_a']} vs {r['n_b']} images; kid_std={r['kid_std']:.3g})", file=sys.stderr)
    return 0
