"""The loop's debugging aids (conf/debug/*.yaml set them): anomaly detection, the profiler, one batch
repeated, evaluations over a few batches.

- ``trainer.detect_anomaly``: training runs under ``torch.autograd.detect_anomaly()``; a NaN produced in
  backward raises at once, with the traceback of the forward op that made it.
- ``trainer.profile_steps=N``: ``torch.profiler`` over the training steps (schedule: 1 step waited, 1 warmup
  step, N recorded steps, once); the Chrome/TensorBoard trace goes to ``<run dir>/profile/*.pt.trace.json``
  (``chrome://tracing``, Perfetto, or TensorBoard with torch-tb-profiler).
- ``trainer.overfit_batches=N``: the first N batches of the first epoch, loaded once (with the RNG forked
  and seeded from the run's seed, so that a resumed run gets the same tensors and the training RNG is not
  moved) and repeated: every epoch is those N batches, in order.
- ``trainer.eval_limit_batches=N``: each evaluation reads the first N batches of its split.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from mtbench.settings import TrainerSettings

__all__ = ["debug_tools", "FirstBatches", "first_batches", "PROFILE_DIR"]

PROFILE_DIR = "profile"


@contextmanager
def debug_tools(t: TrainerSettings, out: Path, device: torch.device) -> Iterator[Callable[[], None]]:
    """Anomaly detection and the profiler for the block, as ``t`` says; yields the hook to call after each
    training step (the profiler's ``step``; a no-op without it)."""
    with ExitStack() as stack:
        if t.detect_anomaly:
            stack.enter_context(torch.autograd.detect_anomaly(check_nan=True))
        if not t.profile_steps:
            yield lambda: None
            return
        from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        prof = stack.enter_context(profile(
            activities=activities, schedule=schedule(wait=1, warmup=1, active=t.profile_steps, repeat=1),
            on_trace_ready=tensorboard_trace_handler(str(out / PROFILE_DIR))))
        yield prof.step


class FirstBatches:
    """An evaluation loader cut to its first ``n`` batches (its other attributes: the loader's)."""

    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.n)

    def __len__(self) -> int:
        return min(self.n, len(self.loader))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def first_batches(make_loader: Callable[[], Any], n: int, seed: int) -> list[Any]:
    """The first ``n`` batches of ``make_loader()``, drawn under forked RNGs seeded with ``seed``: the same
    tensors for a fresh and a resumed run, and the training RNG is left where it was."""
    from mtbench.utils import rng_state, seed_everything, set_rng_state

    state = rng_state()
    try:
        seed_everything(seed)
        return list(itertools.islice(iter(make_loader()), n))
    finally:
        set_rng_state(state)
