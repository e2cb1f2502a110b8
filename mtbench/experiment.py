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
import os
from dataclasses import dataclass
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from mtbench.errors import ConfigError
from mtbench.objective import Objective, build_objective
from mtbench.settings import DeviceSettings, TrainerSettings
from mtbench.utils import resolve_device, seed_everything

__all__ = ["Experiment", "build_experiment", "build_method", "configure_device"]


@dataclass
class Experiment:
    cfg: DictConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    data: Any
    model: Any
    method: Any
    objective: Objective
    trainer: TrainerSettings
    steps_per_epoch: int
    total_steps: int
    schedulers: list


def configure_device(d: DictConfig) -> tuple[torch.device, torch.dtype | None]:
    """(device, autocast dtype) of the ``device`` node; sets torch's thread count when given and
    deterministic algorithms on or off (``device.deterministic``)."""
    settings = DeviceSettings.from_config(d)
    device = resolve_device(settings.type)
    if settings.threads is not None:
        torch.set_num_threads(settings.threads)
    if settings.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for reproducible matmuls
    torch.use_deterministic_algorithms(settings.deterministic)
    torch.backends.cudnn.benchmark = False if settings.deterministic else torch.backends.cudnn.benchmark
    return device, (torch.bfloat16 if settings.amp else None)


def check_seed(seed: Any) -> int:
    """``seed`` must be an integer >= 0 (Python, NumPy and torch are all seeded with it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return seed


def build_method(method_cfg: DictConfig, model) -> Any:
    """The balancing method over ``model``'s multi-term parameters (the only place a method is built)."""
    return instantiate(method_cfg, params=model.multi_term_parameters(), term_names=model.term_names,
                       default_weights=model.default_weights, _convert_="object")


def build_experiment(cfg: DictConfig, with_method: bool = True) -> Experiment:
    """Everything a run needs, validated; ``with_method=False`` (evaluation) builds no method or optimiser."""
    trainer = TrainerSettings.from_config(cfg.trainer)  # one line naming a bad key, before anything is built
    check_seed(cfg.get("seed"))
    device, amp_dtype = configure_device(cfg.device)
    seed_everything(cfg.seed)
    data = instantiate(cfg.data, _convert_="object")
    model = instantiate(cfg.model, _convert_="object")
    model.configure_runtime(device, amp_dtype, bool(cfg.device.get("channels_last", False)))
    method = None
    if with_method:
        method = build_method(cfg.method, model)
    objective = build_objective(model, cfg.get("eval"))
    if trainer.eval_limit_batches is not None and objective.fid_on:
        raise ConfigError(f"trainer.eval_limit_batches={trainer.eval_limit_batches} evaluates part of each split, "
                          f"but FID is on: set eval.fid=false (FID caches its statistics of whole splits)")
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split of data {data.name!r} is empty")
    if trainer.overfit_batches:  # every epoch is the same first batches
        steps_per_epoch = min(steps_per_epoch, trainer.overfit_batches)
    total = cfg.trainer.max_steps or cfg.trainer.epochs * steps_per_epoch
    if trainer.profile_steps and total < trainer.profile_steps + 2:
        raise ConfigError(f"trainer.profile_steps={trainer.profile_steps} records steps 3 to "
                          f"{trainer.profile_steps + 2} (after 1 wait and 1 warmup step), but the run has {total} "
                          f"steps: raise trainer.max_steps or lower trainer.profile_steps")
    schedulers = model.lr_schedulers(method, total) if with_method else []
    return Experiment(cfg=cfg, device=device, amp_dtype=amp_dtype, data=data, model=model, method=method,
                      objective=objective, trainer=trainer, steps_per_epoch=steps_per_epoch, total_steps=total, schedulers=schedulers)
