"""Checkpoints: everything needed to continue a run, written atomically, read with ``weights_only=True``.

``checkpoints/last.pt`` holds the model, the method (with its optimiser), the
model's own optimisers (GAN discriminators), the LR schedulers, every RNG
state, the data position and the run's bookkeeping (best score, init_from).
``resume=true`` continues from it and, on the CPU with ``num_workers=0``, ends
with exactly the parameters of an uninterrupted run. ``checkpoints/best.pt``
is the same state at the best evaluation on the selection split. A
checkpoint is refused (one line listing the differing keys) when the run's
model, data, method, seed or any trainer setting that changes what is trained
differ from those it was written with (:data:`NOT_TRAJECTORY` lists the
trainer settings that may change). A checkpoint is never written with a
parameter or optimiser state that is NaN, infinite or beyond float32's range:
the last good checkpoint stays.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mtbench.errors import ConfigError, NonFiniteLossError
from mtbench.rundir import BEST, CHECKPOINT
from mtbench.settings import TrainerSettings
from mtbench.training.data_order import Position
from mtbench.utils import atomic_torch_save, rng_state, set_rng_state

__all__ = ["CHECKPOINT", "BEST", "RESUME_KEYS", "NOT_TRAJECTORY", "TrainState", "resume_snapshot",
           "checkpoint_state", "config_differences", "first_bad_value", "save_checkpoint", "read_checkpoint",
           "load_checkpoint", "load_model_weights"]

RESUME_KEYS = ("model", "data", "method", "seed", "trainer")  # config sections that must match to resume a run
#: trainer settings a resumed run may change: they decide what is shown, saved or checked, not what is trained
#: (evaluations and sample images may draw random numbers, so eval_* (eval_limit_batches too) and image_every
#: must match; overfit_batches changes the batches)
NOT_TRAJECTORY = ("trainer.progress", "trainer.log_every", "trainer.checkpoint_every", "trainer.keep_best",
                  "trainer.save_checkpoints", "trainer.detect_anomaly", "trainer.profile_steps")
#: may grow when a finished run is trained further (raise trainer.max_steps/epochs)
EXTENSIBLE = ("trainer.max_steps", "trainer.epochs")
_FLOAT32_MAX = torch.finfo(torch.float32).max


@dataclass
class TrainState:
    """What a run has done so far, beyond the objects' own state."""

    pos: Position = field(default_factory=Position)
    elapsed_before: float = 0.0
    best: float | None = None
    best_step: int | None = None
    init_from: dict[str, Any] | None = None
    #: steps undone for a non-finite term or loss (trainer.nan_policy=skip)
    skipped: int = 0


def resume_snapshot(cfg: DictConfig, keys=RESUME_KEYS) -> str:
    """The resolved config sections that identify a run, as canonical JSON (trainer: every setting, with the
    defaults filled in, so that a key left out and its default read the same)."""
    def section(k: str) -> Any:
        if k == "trainer":
            return dataclasses.asdict(TrainerSettings.from_config(cfg.trainer))
        return OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]

    sub = {k: section(k) for k in keys}
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
        "skipped": ts.skipped,
    }


def _floats(node: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(node, torch.Tensor):
        if node.is_floating_point() and node.numel():
            yield name, node.detach()
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _floats(v, f"{name}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _floats(v, f"{name}[{i}]")


def first_bad_value(state: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of the first tensor entry of ``state`` that is NaN, infinite or beyond float32's range
    (a float64 1e39 cannot be stored as float32), or None; one host sync per device."""
    found = list(_floats(state, ""))
    if not found:
        return None
    names, tensors = zip(*found)
    worst = torch._foreach_norm(list(tensors), ord=math.inf)  # max |x| per tensor; NaN propagates
    on: dict[torch.device, list[int]] = {}
    for i, w in enumerate(worst):
        on.setdefault(w.device, []).append(i)
    values = [0.0] * len(worst)
    for idx in on.values():  # one transfer per device
        for i, v in zip(idx, torch.stack([worst[i].to(torch.float64) for i in idx]).tolist()):
            values[i] = v
    for name, v in zip(names, values):
        if not math.isfinite(v) or v > _FLOAT32_MAX:
            return name.lstrip("."), v
    return None


def save_checkpoint(exp, ts: TrainState, path: Path, finished: bool, elapsed: float) -> Path:
    """Write the run's state to ``path`` atomically; refuse (NonFiniteLossError) a state with a bad value."""
    state = checkpoint_state(exp, ts, finished, elapsed)
    bad = first_bad_value({k: state[k] for k in ("model", "method", "aux_optimizers")})
    if bad is not None:
        raise NonFiniteLossError(f"{bad[0]} holds {bad[1]} at step {ts.pos.step} (NaN, infinite or beyond "
                                 f"float32's range): not writing {path}; the last good checkpoint stays")
    atomic_torch_save(state, path)
    return path


def _flat(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def config_differences(old: dict[str, Any], new: dict[str, Any], keys=RESUME_KEYS,
                       finished: bool = False) -> list[str]:
    """``key: old -> new`` for every setting of ``keys`` that differs (sections the old snapshot lacks, from
    checkpoints of earlier versions, are not compared)."""
    ignore = set(NOT_TRAJECTORY) | (set(EXTENSIBLE) if finished else set())
    diffs = []
    for section in keys:
        if section not in old:
            continue
        a, b = _flat(old.get(section), section), _flat(new.get(section), section)
        target = f"{section}._target_"
        if a.get(target) != b.get(target):  # another method/model/data altogether: its keys differ anyway
            diffs.append(f"{target}: {a.get(target, '<unset>')} -> {b.get(target, '<unset>')}")
            continue
        for k in sorted(set(a) | set(b)):
            if k not in ignore and a.get(k, "<unset>") != b.get(k, "<unset>"):
                diffs.append(f"{k}: {a.get(k, '<unset>')} -> {b.get(k, '<unset>')}")
    return diffs


def read_checkpoint(path: Path, device: torch.device, cfg: DictConfig, keys=RESUME_KEYS) -> dict[str, Any]:
    """The checkpoint's contents, after checking that ``cfg`` is the config it was written with."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ConfigError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt:
        raise ConfigError(f"cannot read checkpoint {path}: not an mtbench checkpoint")
    try:
        old = json.loads(ckpt.get("config") or "{}")
    except (TypeError, ValueError):
        raise ConfigError(f"cannot read checkpoint {path}: its config record is not JSON") from None
    if not isinstance(old, dict):
        raise ConfigError(f"cannot read checkpoint {path}: its config record is not a mapping")
    if isinstance(old.get("trainer"), dict):  # a setting added since the checkpoint was written: its default
        old["trainer"] = {**dataclasses.asdict(TrainerSettings()), **old["trainer"]}
    diff = config_differences(old, json.loads(resume_snapshot(cfg, keys)), keys, bool(ckpt.get("finished")))
    if diff:
        more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
        raise ConfigError(f"cannot resume {path}: the settings differ from the checkpoint's: "
                          f"{'; '.join(diff[:4])}{more}; resume with the run's own settings or start a new run")
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
    ts.skipped = int(ckpt.get("skipped", 0))
    return ckpt


def load_model_weights(exp, path: Path) -> dict[str, Any]:
    """Only the model's weights (evaluation: no method, optimiser or RNG is restored)."""
    ckpt = read_checkpoint(path, exp.device, exp.cfg, keys=("model", "data", "seed"))
    exp.model.load_state_dict(ckpt["model"])
    return ckpt
