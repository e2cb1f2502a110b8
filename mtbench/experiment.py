"""Build once: an experiment (data, model, method, schedulers, objective, budget) from a composed config.

:func:`build_experiment` is the one place where the config becomes objects
(``hydra.utils.instantiate`` of the ``data``, ``model`` and ``method`` nodes)
and where the method is given the model's multi-term parameters
(:func:`build_method`); ``mtbench train``, ``eval``, ``tune``, ``trivial``, the
benchmark scripts and the tests all go through it. It checks the trainer and
device settings before anything is built, so a bad value fails in seconds, not
after training. The order of construction (seed, data, model, method) is part
of the contract: it fixes the random initialisation of a seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mtbench.errors import ConfigError
from mtbench.objective import Objective, build_objective
from mtbench.utils import resolve_device, seed_everything

__all__ = ["Experiment", "build_experiment", "build_method", "validate_trainer", "configure_device"]


@dataclass
class Experiment:
    cfg: DictConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    data: Any
    model: Any
    method: Any
    objective: Objective
    steps_per_epoch: int
    total_steps: int
    schedulers: list


def validate_trainer(t: DictConfig) -> None:
    """One line naming the key for a bad trainer value (before anything is built)."""
    def positive_int(key: str, allow_none: bool = False) -> None:
        v = t.get(key)
        if v is None and allow_none:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"trainer.{key} must be an integer >= 1{' or null' if allow_none else ''}, got {v!r}")

    positive_int("batch_size")
    positive_int("eval_batch_size")
    positive_int("log_every")
    positive_int("checkpoint_every", allow_none=True)
    positive_int("eval_every", allow_none=True)
    positive_int("max_steps", allow_none=True)
    positive_int("epochs", allow_none=t.get("max_steps") is not None)
    if t.nan_policy not in ("raise", "skip"):
        raise ConfigError(f"trainer.nan_policy must be 'raise' or 'skip', got {t.nan_policy!r}")
    if t.get("eval_split", "auto") not in ("auto", "val", "test"):
        raise ConfigError(f"trainer.eval_split must be auto, val or test, got {t.get('eval_split')!r}")


def configure_device(d: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype) of the ``device`` node; sets torch's thread count when given."""
    device = resolve_device(str(d.type))
    amp = d.get("amp", False)
    if amp not in (False, None, "bf16", "bfloat16", True):
        raise ConfigError(f"device.amp must be false or bf16, got {amp!r}")
    threads = d.get("threads")
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"device.threads must be an integer >= 1 or null, got {threads!r}")
        torch.set_num_threads(threads)
    return device, (torch.bfloat16 if amp else None)


def build_method(method_cfg: DictConfig, model) -> Any:
    """The balancing method over ``model``'s multi-term parameters (the only place a method is built)."""
    return instantiate(method_cfg, params=model.multi_term_parameters(), term_names=model.term_names,
                       default_weights=model.default_weights, _convert_="object")


def build_experiment(cfg: DictConfig, with_method: bool = True) -> Experiment:
    """Everything a run needs, validated; ``with_method=False`` (evaluation) builds no method or optimiser."""
    validate_trainer(cfg.trainer)
    device, amp_dtype = configure_device(cfg.device)
    seed_everything(cfg.seed)
    data = instantiate(cfg.data, _convert_="object")
    model = instantiate(cfg.model, _convert_="object")
    model.configure_runtime(device, amp_dtype, bool(cfg.device.get("channels_last", False)))
    method = None
    if with_method:
        method = build_method(cfg.method, model)
        method.skip_nonfinite = cfg.trainer.nan_policy == "skip"
    objective = build_objective(model, cfg.get("eval"))
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split of data {data.name!r} is empty")
    total = cfg.trainer.max_steps or cfg.trainer.epochs * steps_per_epoch
    schedulers = model.lr_schedulers(method, total) if with_method else []
    return Experiment(cfg=cfg, device=device, amp_dtype=amp_dtype, data=data, model=model, method=method,
                      objective=objective, steps_per_epoch=steps_per_epoch, total_steps=total, schedulers=schedulers)
