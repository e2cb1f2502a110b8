"""Checkpoints: everything needed to continue a run, written atomically, read with ``weights_only=True``.

``checkpoints/last.pt`` holds the model, the method (with its optimiser), the
model's own optimisers (GAN discriminators), the LR schedulers, every RNG
state, the data position and the run's bookkeeping (best score, init_from).
``resume=true`` continues from it and, on the CPU with ``num_workers=0``, ends
with exactly the parameters of an uninterrupted run. ``checkpoints/best.pt``
is the same state at the best evaluation on the selection split. A
checkpoint is refused (one line) when the run's model, data, method or seed
differ from those it was written with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mtbench.errors import ConfigError
from mtbench.rundir import BEST, CHECKPOINT
from mtbench.training.data_order import Position
from mtbench.utils import atomic_torch_save, rng_state, set_rng_state

__all__ = ["CHECKPOINT", "BEST", "RESUME_KEYS", "TrainState", "resume_snapshot", "checkpoint_state",
           "save_checkpoint", "read_checkpoint", "load_checkpoint", "load_model_weights"]

RESUME_KEYS = ("model", "data", "method", "seed")  # config sections that must match when a run is resumed


@dataclass
class TrainState:
    """What a run has done so far, beyond the objects' own state."""

    pos: Position = field(default_factory=Position)
    elapsed_before: float = 0.0
    best: float | None = None
    best_step: int | None = None
    init_from: dict[str, Any] | None = None


def resume_snapshot(cfg: DictConfig, keys=RESUME_KEYS) -> str:
    """The resolved config sections that identify a run, as canonical JSON."""
    sub = {k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
           for k in keys}
    return json.dumps(sub, sort_keys=True)


def checkpoint_state(exp, ts: TrainState, finished: bool, elapsed: float) -> dict[str, Any]:
    return {
        "format": 1,
        "step": ts.pos.step, "epoch": ts.pos.epoch, "batch_in_epoch": ts.pos.batch_in_epoch,
        "finished": finished, "elapsed_s": elapsed,
        "model": exp.model.state_dict(),
        "method": exp.method.state_dict(),
        "aux_optimizers": {k: o.state_dict() for k, o in exp.model.aux_optimizers().items()},
        "schedulers": [s.state_dict() for s in exp.schedulers],
        "rng": rng_state(),
        "config": resume_snapshot(exp.cfg),
        "best": ts.best, "best_step": ts.best_step,
        "init_from": ts.init_from,
    }


def save_checkpoint(exp, ts: TrainState, path: Path, finished: bool, elapsed: float) -> Path:
    atomic_torch_save(checkpoint_state(exp, ts, finished, elapsed), path)
    return path


def read_checkpoint(path: Path, device: torch.device, cfg: DictConfig, keys=RESUME_KEYS) -> dict[str, Any]:
    """The checkpoint's contents, after checking that ``cfg`` is the config it was written with."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ConfigError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise ConfigError(f"cannot read checkpoint {path}: not an mtbench checkpoint")
    old = json.loads(ckpt.get("config") or "{}")
    new = json.loads(resume_snapshot(cfg, keys))
    diff = [k for k in keys if old.get(k) != new.get(k)]
    if diff:
        raise ConfigError(f"cannot resume {path}: the config differs from the checkpoint's in {diff}; "
                          f"resume with the same model/data/method/seed or start a new run")
    return ckpt


def load_checkpoint(exp, ts: TrainState, path: Path) -> dict[str, Any]:
    """Restore every state of a run (model, method, optimisers, schedulers, RNG, position) from ``path``."""
    ckpt = read_checkpoint(path, exp.device, exp.cfg)
    exp.model.load_state_dict(ckpt["model"])
    exp.method.load_state_dict(ckpt["method"])
    for k, o in exp.model.aux_optimizers().items():
        o.load_state_dict(ckpt["aux_optimizers"][k])
    for s, st in zip(exp.schedulers, ckpt["schedulers"]):
        s.load_state_dict(st)
    rng = ckpt["rng"]  # RNG states are CPU tensors; map_location may have moved them
    rng["torch"] = rng["torch"].cpu()
    rng["numpy"]["keys"] = rng["numpy"]["keys"].cpu()
    if "cuda" in rng:
        rng["cuda"] = [s.cpu() for s in rng["cuda"]]
    set_rng_state(rng)
    ts.pos = Position(ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"])
    ts.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
    ts.best, ts.best_step = ckpt.get("best"), ckpt.get("best_step")
    ts.init_from = ckpt.get("init_from")
    return ckpt


def load_model_weights(exp, path: Path) -> dict[str, Any]:
    """Only the model's weights (evaluation: no method, optimiser or RNG is restored)."""
    ckpt = read_checkpoint(path, exp.device, exp.cfg, keys=("model", "data", "seed"))
    exp.model.load_state_dict(ckpt["model"])
    return ckpt
