#!/usr/bin/env python
"""Training throughput of every benchmark model under fixed weights and MTAdam, in one run.

For each model (pix2pix, CycleGAN, SRGAN, MNIST) at the size of its
``<model>_quick`` preset (``--preset paper`` for the papers' sizes, meant for
a GPU), it times the full training step (the model's ``training_step``: the
discriminator update and the balanced generator update) under ``fixed`` and
``mtadam`` and prints iterations/s, the MTAdam/fixed step-time ratio and the
peak memory (CUDA: max allocated; CPU: the peak resident set size of a fresh
subprocess per configuration, so that configurations do not share a peak).

    python scripts/bench_models.py [--device cpu] [--preset quick] [--steps 20] [--amp] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["mnist", "pix2pix", "cyclegan", "srgan"]
METHODS = ["fixed", "mtadam"]


def measure(model: str, method: str, preset: str, device: str, steps: int, warmup: int, amp: bool,
            channels_last: bool) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from mtbench.cli import config_dir
    from mtbench.experiment import build_method
    from mtbench.utils import resolve_device, seed_everything, to_device

    experiment = "mnist_unbalanced" if model == "mnist" else f"{model}_{preset}"
    overrides = [f"experiment={experiment}", f"model={model}", f"method={method}"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    dev = resolve_device(device)
    seed_everything(0)
    data = instantiate(cfg.data, _convert_="object")
    net = instantiate(cfg.model, _convert_="object")
    net.configure_runtime(dev, torch.bfloat16 if amp else None, channels_last)
    net.train()
    m = build_method(cfg.method, net)
    loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.trainer.batch_size, shuffle=True,
                                         drop_last=True)
    batches = []
    for b in loader:
        batches.append(to_device(b, dev))
        if len(batches) == 4:
            break

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for i in range(warmup):
        net.training_step(batches[i % len(batches)], m)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        net.training_step(batches[i % len(batches)], m)
    sync()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"model": model, "method": method, "step_s": dt, "it_per_s": 1.0 / dt, "peak_mib": peak / 2**20,
            "batch_size": int(cfg.trainer.batch_size), "experiment": experiment, "device": str(dev),
            "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="quick", choices=["quick", "paper"])
    ap.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # child process: one configuration, JSON on stdout
        print(json.dumps(measure(*args.one, args.preset, args.device, args.steps, args.warmup, args.amp,
                                 args.channels_last)))
        return 0
    rows = []
    for model in args.models:
        for method in METHODS:
            cmd = [sys.executable, __file__, "--one", model, method, "--preset", args.preset, "--device",
                   args.device, "--steps", str(args.steps), "--warmup", str(args.warmup)]
            cmd += ["--amp"] * args.amp + ["--channels-last"] * args.channels_last
            r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if r.returncode != 0:
                print(f"{model}/{method} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"  {model}/{method}: {rows[-1]['it_per_s']:.2f} it/s", file=sys.stderr)
    import torch

    lines = [f"Training iterations/s per model, preset `{args.preset}`, device {args.device}"
             f"{', bf16 autocast' if args.amp else ''}{', channels_last' if args.channels_last else ''}, "
             f"torch {torch.__version__}, {rows[0]['threads']} threads; {args.steps} timed steps after "
             f"{args.warmup} warm-up steps, one subprocess per configuration.", "",
             "| model | batch | fixed it/s | mtadam it/s | mtadam / fixed step time | peak MiB fixed | peak MiB mtadam |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for model in args.models:
        f = next(r for r in rows if r["model"] == model and r["method"] == "fixed")
        m = next(r for r in rows if r["model"] == model and r["method"] == "mtadam")
        lines.append(f"| {model} ({f['experiment']}) | {f['batch_size']} | {f['it_per_s']:.2f} | {m['it_per_s']:.2f} "
                     f"| {m['step_s'] / f['step_s']:.2f} | {f['peak_mib']:.0f} | {m['peak_mib']:.0f} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"Command: `python scripts/bench_models.py {' '.join(sys.argv[1:])}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
