#!/usr/bin/env python
"""FID feature throughput: mtbench's in-memory path vs pytorch-fid's PNG-file path, measured in one run.

Both paths run the FID Inception network (pool3, 2048-d, 299x299 resize) with
the same weights on the same images:

* in memory: ``mtbench.metrics.fid.inception_features`` on the (N, 3, H, W)
  tensor in [-1, 1] (as a generator outputs it), already on the device, with
  mtbench's ``FIDInception`` (channels-last, inference mode);
* pytorch-fid: the images written as PNG files to a temp folder (writing is
  timed separately), then ``pytorch_fid.fid_score.get_activations`` on the
  file list (PIL decoding, DataLoader with ``--num-workers`` workers,
  pytorch-fid's default 1) with pytorch-fid's own ``InceptionV3``, as
  ``python -m pytorch_fid`` runs it.

The two paths are timed round-robin (``--reps`` times each, alternating order)
and the median is reported. Without ``--weights`` the model has seeded random
weights (``random_fid_inception_for_tests``): throughput does not depend on the
weights, only the feature values (which are then not FID) do.

    python scripts/bench_fid.py [--n 200] [--size 64] [--device cpu] [--weights PATH | --real-weights] [--threads 1] [--out results/bench_fid.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import fid_score

from mtbench.metrics.fid import _read_weights_file, inception_features, load_inception
from mtbench.metrics.fid_testing import random_fid_inception_for_tests, random_fid_inception_state_dict
from mtbench.utils import resolve_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pytorch_fid_model(state: dict, device: torch.device) -> torch.nn.Module:
    """pytorch-fid's own InceptionV3 (as `python -m pytorch_fid` builds it), its download replaced by ``state``."""
    from pytorch_fid import inception as pfi

    state = dict(state)
    state.setdefault("fc.weight", torch.zeros(1008, 2048))  # the converted file has no classifier; pool3 never uses it
    state.setdefault("fc.bias", torch.zeros(1008))
    download = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: state
    try:
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    finally:
        pfi.load_state_dict_from_url = download


def make_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Structured uint8 images (smooth colour fields), exactly representable as PNG."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).round().clamp(0, 255).to(torch.uint8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of images")
    ap.add_argument("--size", type=int, default=64, help="image side (resized to 299 by the model)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", type=Path, help="an FID Inception weights file (default: random test weights)")
    ap.add_argument("--real-weights", action="store_true",
                    help="the FID weights eval.fid=auto finds (pytorch-fid's file or `mtbench weights fid`'s)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--num-workers", type=int, default=1, help="pytorch-fid DataLoader workers (its default: 1)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per path (median reported)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--out", type=Path, help="also write the markdown table (and the command) to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    fid_score.tqdm = lambda x: x  # no progress bar in the timed loop

    if args.weights or args.real_weights:
        model = load_inception(args.weights, device=device)
        state = _read_weights_file(Path(model.weights_source))[0]
        weights = f"FID Inception weights {Path(model.weights_source).name}"
    else:
        model = random_fid_inception_for_tests(seed=0, device=device)
        state = random_fid_inception_state_dict(seed=0)
        weights = ("random test weights (throughput does not depend on the weights; "
                   "pass --weights PATH or --real-weights for the real ones)")
    reference = pytorch_fid_model(state, device)

    u8 = make_images(args.n, args.size)
    x = (u8.float() / 127.5 - 1.0).to(device)  # generator-style tensor in [-1, 1], on the device
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        files = []
        for i, img in enumerate(u8):
            p = Path(tmp) / f"{i:05d}.png"
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(p)
            files.append(p)
        write_s = time.perf_counter() - t0

        def in_memory():
            return inception_features(model, x, batch_size=args.batch_size).numpy()

        def pytorch_fid():
            with contextlib.redirect_stdout(io.StringIO()):  # its "batch size is bigger" notice
                return fid_score.get_activations(files, reference, batch_size=args.batch_size, dims=2048,
                                                 device=device, num_workers=args.num_workers)

        paths = {"in memory (mtbench)": in_memory, "PNG files (pytorch-fid get_activations)": pytorch_fid}
        # warm-up on one batch of each shape the timed runs use
        inception_features(model, x[: args.batch_size], batch_size=args.batch_size)
        if args.n % args.batch_size:
            inception_features(model, x[: args.n % args.batch_size], batch_size=args.batch_size)
        times: dict[str, list[float]] = {k: [] for k in paths}
        feats: dict[str, np.ndarray] = {}
        names = list(paths)
        for r in range(args.reps):
            for name in names[r % 2:] + names[: r % 2]:
                sync(device)
                t0 = time.perf_counter()
                feats[name] = paths[name]()
                sync(device)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem, png = names
    max_diff = float(np.abs(feats[mem] - feats[png]).max())

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor()
                                                                                   or platform.machine())
    lines = [
        f"FID Inception feature throughput, {args.n} images {args.size}x{args.size} (resized to 299x299), "
        f"batch {args.batch_size}, {device} ({dev_name}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {args.reps} runs per path, round-robin.",
        f"Weights: {weights}.",
        "",
        "| path | time (s), median | images/s | runs (s) |",
        "|---|---:|---:|---|",
    ]
    for name in names:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        lines.append(f"| {name} | {med[name]:.2f} | {args.n / med[name]:.1f} | {runs} |")
    lines += [
        f"| **ratio in-memory / pytorch-fid (images/s)** | | **{med[png] / med[mem]:.2f}x** | |",
        "",
        f"Writing the {args.n} PNG files (the other half of the file round trip, not in the table): "
        f"{write_s:.2f} s. pytorch-fid DataLoader workers: {args.num_workers}. "
        f"Max |feature difference| between the paths: {max_diff:.2e}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python scripts/bench_fid.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"Command: `{cmd}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
