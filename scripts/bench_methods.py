#!/usr/bin/env python
"""Training-step cost of every balancing method, as ratios measured in one run.

On the MNIST multi-term model (K = 10 terms, batch 64, the method configs of
conf/method/), it times:

* each method's full training step (forward, balancing, backward(s), update)
  as a ratio to ``fixed``;
* MTAdam's full step as a ratio to its K gradient passes alone (forward + K
  ``torch.autograd.grad`` calls, no optimiser math): the overhead of MTAdam's
  own arithmetic.

Methods are timed round-robin (each repetition runs every method once, in a
rotating order) and the median per method is reported, so that drifts in
machine load hit all methods alike.

    python scripts/bench_methods.py [--device cpu] [--threads 1] [--steps 20] [--reps 7] [--out results/bench_methods.md]

Every conf/method/*.yaml is timed (the README's methods table gives each
one's cost class: one backward, or K backward passes).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate

from mtbench.cli import config_dir
from mtbench.data.mnist import mnist5k
from mtbench.experiment import build_method
from mtbench.utils import resolve_device

# every method config (conf/method/*.yaml), fixed first: the ratios are relative to it
METHODS = sorted((p.stem for p in (config_dir() / "method").glob("*.yaml")), key=lambda m: (m != "fixed", m))


def build(method: str, device: torch.device):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"method={method}", "model=mnist"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="object")
    model.configure_runtime(device)
    model.train()
    m = build_method(cfg.method, model)
    return model, m


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, batches, steps: int, device: torch.device, clock=time.perf_counter) -> float:
    sync(device)
    t0 = clock()
    for i in range(steps):
        fn(batches[i % len(batches)])
    sync(device)
    return (clock() - t0) / steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=7, help="round-robin repetitions (median reported)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: comparable on a shared machine)")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="wall",
                    help="wall: elapsed time (default; right for CUDA), cpu: process CPU time (CPU runs on a shared VM)")
    ap.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    data = mnist5k().train
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data), generator=g)[: args.batch_size * 8].view(8, args.batch_size)
    batches = []
    for row in idx:
        xs, ys = zip(*(data[i] for i in row.tolist()))
        batches.append((torch.stack(xs).to(device), torch.stack(ys).to(device)))

    setups = {name: build(name, device) for name in METHODS}
    fns = {name: (lambda b, mm=mm, me=me: mm.training_step(b, me)) for name, (mm, me) in setups.items()}

    # MTAdam's gradient passes alone: forward + K autograd.grad calls on the same model
    gmodel, _ = build("mtadam", device)
    params = [p for p in gmodel.multi_term_parameters() if p.requires_grad]

    def grad_passes(b):
        terms = list(gmodel.terms(*b).values())
        for i, t in enumerate(terms):
            torch.autograd.grad(t, params, retain_graph=i < len(terms) - 1, allow_unused=True)

    fns["mtadam_grad_passes"] = grad_passes
    for fn in fns.values():  # warm-up
        time_steps(fn, batches, 3, device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu" and device.type == "cuda":
        ap.error("--clock cpu measures the host only: use --clock wall with --device cuda")
    for r in range(args.reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            times[name].append(time_steps(fns[name], batches, args.steps, device, clock))
            print(f"rep {r + 1}/{args.reps} {name}: {1000 * times[name][-1]:.1f} ms", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}

    lines = [
        f"Step time on the MNIST multi-term model (K=10, batch {args.batch_size}), {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}; "
        f"{args.clock} time, median of {args.reps} blocks of {args.steps} steps.",
        "",
        "| method | step (ms) | ratio to fixed |",
        "|---|---:|---:|",
    ]
    for name in METHODS:
        lines.append(f"| {name} | {1000 * med[name]:.2f} | {med[name] / med['fixed']:.3f} |")
    lines += [
        "",
        "| MTAdam | ms |",
        "|---|---:|",
        f"| forward + K autograd.grad (gradient passes alone) | {1000 * med['mtadam_grad_passes']:.2f} |",
        f"| full MTAdam step | {1000 * med['mtadam']:.2f} |",
        f"| **ratio full step / gradient passes** | **{med['mtadam'] / med['mtadam_grad_passes']:.3f}** |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = "python scripts/bench_methods.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"Command: `{cmd}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
