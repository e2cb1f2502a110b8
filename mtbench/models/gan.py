"""What the three GAN benchmarks (pix2pix, CycleGAN, SRGAN) share.

Each GAN model trains its generator through the balancing method and its
discriminator(s) with a plain Adam of its own (:func:`discriminator_adam`,
returned by the model's ``aux_optimizers`` so that it is checkpointed). During
the generator step the discriminator is frozen (:func:`frozen`), so the
method's backward pass leaves the discriminator's ``.grad`` untouched.

Learning-rate schedules, applied per training step to the method's optimiser
and the discriminator's alike (the model's ``lr_schedulers``):

* :func:`linear_decay` (pix2pix, CycleGAN; the reference's ``linear`` policy):
  constant for the first ``start`` fraction of the steps, then linear to 0;
  configured by ``model.lr_decay`` (:func:`check_lr_decay`).
* :func:`step_decay` (SRGAN; the paper's 10^5 steps at 1e-4 then 10^5 at
  1e-5): one multiplication by ``gamma`` after a fraction ``at`` of the steps;
  configured by ``model.lr_decay_at`` and ``model.lr_decay_gamma``
  (:func:`check_step_decay`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from mtbench import validate
from mtbench.models.base import set_requires_grad

#: pix2pix's and CycleGAN's Adam (the papers' lr 2e-4, betas (0.5, 0.999))
DEFAULT_OPTIM = {"lr": 2e-4, "betas": (0.5, 0.999)}
DEFAULT_LR_DECAY = {"enabled": True, "start": 0.5}
#: images per sample_images call
N_SAMPLE_IMAGES = 4
#: the normalisation layers the image-to-image networks accept (model.norm)
NORMS = ("batch", "instance", "none")

__all__ = ["DEFAULT_OPTIM", "DEFAULT_LR_DECAY", "N_SAMPLE_IMAGES", "NORMS", "linear_decay", "check_lr_decay",
           "decay_schedulers", "step_decay", "check_step_decay", "step_decay_schedulers", "discriminator_adam",
           "frozen", "check_choice", "check_positive_int"]


# --------------------------------------------------------------------------- validators (model.<key>)
def check_choice(name: str, value: Any, choices: tuple) -> None:
    """``model.<name>`` must be one of ``choices``."""
    validate.choice(f"model.{name}", value, choices)


def check_positive_int(name: str, value: Any) -> int:
    """``model.<name>`` must be an integer >= 1; returns it."""
    return validate.positive_int(f"model.{name}", value)


# --------------------------------------------------------------------------- the discriminator's optimiser
def discriminator_adam(params: Iterable[nn.Parameter], optim: Mapping[str, Any]) -> torch.optim.Adam:
    """The discriminator's Adam with the model's ``optim`` settings (``lr``, two ``betas``)."""
    betas = tuple(float(b) for b in optim["betas"])
    if len(betas) != 2:
        raise ValueError(f"model.optim.betas must have 2 values, got {list(betas)}")
    return torch.optim.Adam(params, lr=float(optim["lr"]), betas=betas)


@contextlib.contextmanager
def frozen(nets: nn.Module | Iterable[nn.Module]) -> Iterator[None]:
    """Freeze the discriminator(s) ``nets`` (``requires_grad=False``) for the generator step, then unfreeze."""
    nets = [nets] if isinstance(nets, nn.Module) else list(nets)
    set_requires_grad(nets, False)
    try:
        yield
    finally:
        set_requires_grad(nets, True)


# --------------------------------------------------------------------------- linear decay (pix2pix, CycleGAN)
def linear_decay(total_steps: int, start_fraction: float = 0.5) -> Callable[[int], float]:
    """LR factor per step: 1 for the first ``start`` steps, then linear down to 0 at ``total_steps``.

    ``start = round(start_fraction * total_steps)``; the factor used by step
    ``s`` (0-based) is ``1 - max(0, s + 1 - start) / (total_steps - start + 1)``:
    the reference's ``linear`` policy (per epoch there) written per step. The
    last step trains with ``1 / (total_steps - start + 1)``; after it the factor is 0.
    """
    total = int(total_steps)
    start = int(round(float(start_fraction) * total))
    span = total - start + 1

    def factor(step: int) -> float:
        return 1.0 - max(0, step + 1 - start) / span

    return factor


def check_lr_decay(lr_decay: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated ``{"enabled": bool, "start": float in [0, 1]}`` (missing keys take the defaults)."""
    cfg = {**DEFAULT_LR_DECAY, **dict(lr_decay or {})}
    unknown = sorted(set(cfg) - set(DEFAULT_LR_DECAY))
    if unknown:
        raise ValueError(f"model.lr_decay has unknown keys {unknown}; expected {sorted(DEFAULT_LR_DECAY)}")
    validate.boolean("model.lr_decay.enabled", cfg["enabled"])
    start = validate.number_in("model.lr_decay.start", cfg["start"], 0, 1)
    return {"enabled": cfg["enabled"], "start": float(start)}


def decay_schedulers(optimizers: list[torch.optim.Optimizer], total_steps: int,
                     lr_decay: Mapping[str, Any]) -> list[torch.optim.lr_scheduler.LRScheduler]:
    """One ``LambdaLR`` with :func:`linear_decay` per optimiser (none when the decay is disabled)."""
    if not lr_decay["enabled"]:
        return []
    return [torch.optim.lr_scheduler.LambdaLR(opt, linear_decay(total_steps, lr_decay["start"]))
            for opt in optimizers]


# --------------------------------------------------------------------------- step decay (SRGAN)
def step_decay(total_steps: int, at: float, gamma: float) -> Callable[[int], float]:
    """LR factor per step: 1 before step ``max(1, round(at * total_steps))``, ``gamma`` from it on."""
    milestone = max(1, round(at * total_steps))

    def factor(step: int) -> float:
        return gamma if step >= milestone else 1.0

    return factor


def check_step_decay(at: Any, gamma: Any) -> tuple[float | None, float]:
    """Validated ``(model.lr_decay_at, model.lr_decay_gamma)``: null or a fraction in (0, 1], and (0, 1]."""
    validate.number_in("model.lr_decay_at", at, 0, 1, low_open=True, allow_none=True)
    validate.number_in("model.lr_decay_gamma", gamma, 0, 1, low_open=True)
    return (None if at is None else float(at)), float(gamma)


def step_decay_schedulers(optimizers: list[torch.optim.Optimizer], total_steps: int, at: float | None,
                          gamma: float) -> list[torch.optim.lr_scheduler.LRScheduler]:
    """One ``LambdaLR`` with :func:`step_decay` per optimiser (none when ``at`` is null or ``gamma`` is 1)."""
    if at is None or gamma == 1.0:
        return []
    return [torch.optim.lr_scheduler.LambdaLR(opt, step_decay(total_steps, at, gamma)) for opt in optimizers]
