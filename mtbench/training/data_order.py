"""The data order: a seeded permutation per epoch, resumable mid-epoch, and the loaders built on it.

The order depends only on (seed, epoch), and each loader has its own
generator, so creating a loader mid-epoch (resume) or evaluating between
steps never consumes the global RNG differently from an uninterrupted run:
a resumed run ends with exactly the parameters of an uninterrupted one (CPU,
``num_workers=0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from mtbench.errors import ConfigError

__all__ = ["Position", "EpochSampler", "make_train_loader", "make_eval_loader"]


@dataclass
class Position:
    """Where training is: optimisation steps done, the epoch, and batches done in that epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start`` (the resume position)."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True) -> None:
        self.n, self.start = n, start
        if shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
            self.order = torch.randperm(n, generator=g)
        else:
            self.order = torch.arange(n)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, self.n - self.start)


def _num_workers(value: Any, device: torch.device) -> int:
    if value is None or value == "auto":
        return 4 if device.type == "cuda" else 0
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"trainer.num_workers must be 'auto' or an integer >= 0, got {value!r}")
    return value


def make_train_loader(ds: Dataset, cfg: DictConfig, seed: int, pos: Position, device: torch.device) -> DataLoader:
    """The training batches of epoch ``pos.epoch`` from batch ``pos.batch_in_epoch`` on."""
    bs = cfg.trainer.batch_size
    workers = _num_workers(cfg.trainer.num_workers, device)
    gen = torch.Generator().manual_seed(_epoch_seed(seed, pos.epoch) + 1)  # seeds the workers
    sampler = EpochSampler(len(ds), seed, pos.epoch, start=pos.batch_in_epoch * bs, shuffle=cfg.trainer.shuffle)
    return DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=workers, generator=gen,
                      pin_memory=device.type == "cuda", drop_last=False, persistent_workers=False)


def make_eval_loader(ds: Dataset, cfg: DictConfig, device: torch.device, batch_size: int | None = None) -> DataLoader:
    """An evaluation loader in dataset order; its own generator (evaluating must not move the training RNG)."""
    workers = _num_workers(cfg.trainer.num_workers, device)
    return DataLoader(ds, batch_size=batch_size or cfg.trainer.eval_batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))
