#!/usr/bin/env python
"""mtbench's MTAdam step against the official implementation's, measured side by side in one run.

The official code (Malkiel & Wolf, arXiv:2006.14683; repository
ItzikMalkiel/MTAdam, file ``mtadam.py``) is not part of mtbench: pass the path
of your copy. It is loaded in memory with its two machine-specific lines
neutralised (the unused ``import tensorflow`` and the ``.cuda()`` calls that pin
its norms to a GPU); the file itself is neither copied nor changed.

On the MNIST multi-term model (K = 10 terms, batch 64, real digits of the
embedded MNIST subset), with the same initial weights and the same batches, it
times round-robin (each repetition runs every variant once, in a rotating
order; the median per variant is reported):

* ``official``: forward + ``zero_grad`` + the official ``MTAdam.step`` (K
  ``backward(retain_graph=True)`` into ``.grad``, then its per-parameter
  arithmetic), as its ``main.py`` trains;
* ``mtbench``: the runner's step, ``MNISTModel.training_step`` with
  ``MTAdamMethod`` (forward, the per-term gradients from one backward pass,
  since the terms partition the batch by class, mtbench/methods/sample_partition.py,
  and the ``_foreach`` update);
* ``mtbench, K passes``: the same with ``one_pass_term_grads=false``, the
  generic engine's K backward passes (what any model whose terms share samples
  gets, e.g. the GANs);
* for reference, the gradient passes alone: forward + K ``backward()`` into
  existing ``.grad`` buffers, and forward + K ``torch.autograd.grad``.

Before timing, both optimisers take the same 5 steps from the same weights
(dropout off, so the steps are deterministic) and the largest parameter
difference is printed: the two agree to float32 rounding.

    python scripts/bench_mtadam_official.py /path/to/MTAdam/mtadam.py [--threads 1] [--reps 7] [--steps 10] [--clock cpu]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from mtbench.data.mnist import mnist5k
from mtbench.methods.mtadam import MTAdamMethod
from mtbench.models.mnist import MNISTModel


def load_official(path: Path) -> types.ModuleType:
    """The official mtadam.py as a module, without its tensorflow import and .cuda() calls."""
    src = path.read_text()
    if "class MTAdam" not in src:
        raise SystemExit(f"error: {path} does not define class MTAdam (expected the official mtadam.py)")
    src = src.replace("import tensorflow as tf", "").replace(".cuda()", "")
    mod = types.ModuleType("official_mtadam")
    exec(compile(src, str(path), "exec"), mod.__dict__)  # noqa: S102 - the user's own copy of the official file
    return mod


def batches(batch_size: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = mnist5k().train
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(data), generator=g)[: batch_size * n].view(n, batch_size)
    out = []
    for row in idx:
        xs, ys = zip(*(data[i] for i in row.tolist()))
        out.append((torch.stack(xs), torch.stack(ys)))
    return out


def agreement(official: types.ModuleType, data, one_pass: bool, steps: int = 5) -> float:
    """Max |difference| of the parameters after the same steps from the same weights (dropout off)."""
    torch.manual_seed(0)
    a = MNISTModel()
    b = MNISTModel(one_pass_term_grads=one_pass)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    oa = official.MTAdam(a.parameters(), lr=1e-3, betas=(0.9, 0.999, 0.9))
    mb = MTAdamMethod(b.parameters(), b.term_names, lr=1e-3, betas=(0.9, 0.999, 0.9))
    for i in range(steps):
        x, y = data[i % len(data)]
        oa.zero_grad()
        oa.step(list(a.terms(x, y).values()), [1] * 10, None)
        b.training_step((x, y), mb)
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("official", type=Path, help="path of the official mtadam.py (ItzikMalkiel/MTAdam)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--reps", type=int, default=7, help="round-robin repetitions (median reported)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: process CPU time (default; on a shared VM it does not count time the process waited "
                         "for a core), wall: elapsed time")
    ap.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = ap.parse_args()
    if not args.official.is_file():
        print(f"error: {args.official} is not a file", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    official = load_official(args.official)
    data = batches(args.batch_size, 8)
    diff_one = agreement(official, data, one_pass=True)
    diff_ten = agreement(official, data, one_pass=False)

    def fresh(one_pass: bool = True) -> MNISTModel:
        torch.manual_seed(0)
        m = MNISTModel(one_pass_term_grads=one_pass)
        m.train()
        return m

    m_off, m_one, m_ten, m_bwd, m_grad = fresh(), fresh(), fresh(False), fresh(), fresh()
    opt_off = official.MTAdam(m_off.parameters(), lr=1e-3, betas=(0.9, 0.999, 0.9))
    ours_one = MTAdamMethod(m_one.parameters(), m_one.term_names, lr=1e-3, betas=(0.9, 0.999, 0.9))
    ours_ten = MTAdamMethod(m_ten.parameters(), m_ten.term_names, lr=1e-3, betas=(0.9, 0.999, 0.9))
    ranks = [1] * 10
    p_grad = list(m_grad.parameters())

    def step_official(b):
        terms = list(m_off.terms(*b).values())
        opt_off.zero_grad()
        opt_off.step(terms, ranks, None)

    def step_mtbench(b):  # the runner's step: the model's training_step, per-term gradients in one pass
        m_one.training_step(b, ours_one)

    def step_mtbench_ten(b):  # model.one_pass_term_grads=false: the engine's K backward passes
        m_ten.training_step(b, ours_ten)

    def k_backward(b):
        terms = list(m_bwd.terms(*b).values())
        for i, t in enumerate(terms):
            t.backward(retain_graph=i < len(terms) - 1)

    def k_autograd_grad(b):
        terms = list(m_grad.terms(*b).values())
        for i, t in enumerate(terms):
            torch.autograd.grad(t, p_grad, retain_graph=i < len(terms) - 1)

    fns = {"official MTAdam step": step_official, "mtbench MTAdam step": step_mtbench,
           "mtbench MTAdam step, K passes (one_pass_term_grads=false)": step_mtbench_ten,
           "forward + K backward() into .grad": k_backward, "forward + K autograd.grad": k_autograd_grad}
    for fn in fns.values():  # warm-up
        for i in range(3):
            fn(data[i])
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for r in range(args.reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = clock()
            for i in range(args.steps):
                fns[name](data[i % len(data)])
            times[name].append((clock() - t0) / args.steps)
            print(f"rep {r + 1}/{args.reps} {name}: {1000 * times[name][-1]:.1f} ms", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["official MTAdam step"]
    # the same repetition's blocks ran next to each other: their ratio is less exposed to the machine's drift
    ten = "mtbench MTAdam step, K passes (one_pass_term_grads=false)"

    def quartiles(name: str) -> tuple[float, float, float]:
        paired = sorted(a / b for a, b in zip(times[name], times["official MTAdam step"]))
        return tuple(statistics.quantiles(paired, n=4)) if len(paired) > 1 else (paired[0],) * 3

    q1, q2, q3 = quartiles("mtbench MTAdam step")
    t1, t2, t3 = quartiles(ten)
    lines = [
        f"MNIST multi-term model (K=10, batch {args.batch_size}), CPU, {args.threads} thread(s), "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}; {args.clock} time, median of "
        f"{args.reps} round-robin blocks of {args.steps} steps.",
        "",
        "| step | ms (median) | ratio to official | ms, every block |",
        "|---|---:|---:|---|",
        *(f"| {k} | {1000 * v:.1f} | {v / ref:.3f} | {', '.join(f'{1000 * t:.0f}' for t in times[k])} |"
          for k, v in med.items()),
        "",
        f"**mtbench / official = {med['mtbench MTAdam step'] / ref:.3f}** (ratio of the medians; target <= 0.9): "
        "the runner's step, `model.training_step`, whose per-term gradients come from one backward pass "
        "(the terms partition the batch by class; mtbench/methods/sample_partition.py). "
        f"Per repetition (the two blocks of one round): median ratio {q2:.3f}, quartiles {q1:.3f} - {q3:.3f}. "
        f"With the K backward passes of the generic engine (`model.one_pass_term_grads=false`): "
        f"{med[ten] / ref:.3f} (per repetition: median {t2:.3f}, quartiles {t1:.3f} - {t3:.3f}).",
        "",
        f"Parameters after 5 identical steps (dropout off) differ from the official code's by at most "
        f"{diff_one:.2e} (one pass) and {diff_ten:.2e} (K passes).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        cmd = (f"python scripts/bench_mtadam_official.py <path of the official mtadam.py> --threads {args.threads} "
               f"--steps {args.steps} --reps {args.reps} --batch-size {args.batch_size} --clock {args.clock}")
        args.out.write_text(f"Command: `{cmd}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
