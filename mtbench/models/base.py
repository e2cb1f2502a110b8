"""The Model contract: a multi-term model, its training step and its evaluation.

A model declares its networks (as ``nn.Module`` attributes), the names of its
multi-term loss (the classifier's, or a GAN generator's) and one training
step. The runner builds it with ``instantiate(cfg.model)``, moves it to the
device, builds the balancing method on :meth:`Model.multi_term_parameters`,
then calls :meth:`Model.training_step` once per batch.

A GAN model updates its discriminator(s) with its own plain optimiser(s),
returned by :meth:`Model.aux_optimizers` so that they are checkpointed, and
its generator through ``method.step``.

``model.init_from`` (every model; null by default): a run directory or a
checkpoint file whose **generator** weights start this run's generator
(:meth:`Model.load_generator`, applied by the runner to fresh runs only; a
resumed run loads its own checkpoint instead). Only the submodules named by the
model's ``generator_modules`` are loaded (parameters and buffers), from the
checkpoint's ``model`` state_dict with ``torch.load(weights_only=True)``; the
method, the optimisers, the discriminator(s) and the step counter start fresh.
Nothing of the source run (its config, its code) is read or instantiated.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtbench.rundir import CHECKPOINT
from mtbench.utils import ConfigError

#: the checkpoint a run directory given to model.init_from provides (the runner's checkpoints/last.pt)
INIT_FROM_CHECKPOINT = CHECKPOINT


def _check_init_from(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"model.init_from must be null, a run directory or a checkpoint file, got {value!r}")
    return os.fspath(value)


def resolve_init_from(value: str | os.PathLike) -> Path:
    """The checkpoint file of ``model.init_from``: the file itself, or a run dir's checkpoints/last.pt."""
    path = Path(value)
    if path.is_dir():
        ckpt = path / INIT_FROM_CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(f"model.init_from={value}: the run directory has no {INIT_FROM_CHECKPOINT}")
        return ckpt
    if not path.is_file():
        raise ConfigError(f"model.init_from={value}: no such run directory or checkpoint file")
    return path


def set_requires_grad(nets: nn.Module | Iterable[nn.Module], requires_grad: bool) -> None:
    """Switch ``requires_grad`` for every parameter of ``nets`` (as in pix2pix/CycleGAN).

    Used to freeze a discriminator during the generator step, so that the
    generator's backward pass does not compute or accumulate its gradients.
    """
    if isinstance(nets, nn.Module):
        nets = [nets]
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(requires_grad)


class Model(nn.Module):
    """Base class of the benchmark models.

    Class attributes a subclass sets:

    ``term_names``
        Names of the K loss terms balanced by the method, in order (term 0 is
        MTAdam's anchor).
    ``primary_metric`` / ``higher_is_better``
        The evaluation metric that ranks runs (``acc`` for MNIST, ``fid`` for
        the GANs once FID is computed).
    ``generator_modules``
        Names of the submodules that make up "the generator", whose weights
        ``model.init_from`` loads (SRGAN: ``("generator",)``); empty: the
        model cannot be initialised from another run.

    Every model's constructor takes ``init_from`` (the config key
    ``model.init_from``) and hands it to ``Model.__init__``, which checks and
    stores it (``self.init_from``); the runner loads it
    (:meth:`load_generator`) for a fresh run.

    Parameters
    ----------
    optim:
        The paper's optimiser settings for this model (``lr``, ``betas``); the
        method configs interpolate them, and GAN discriminators use them.
    weights:
        Default fixed weight per term (``fixed`` uses them unless told otherwise).
    """

    term_names: list[str] = []
    primary_metric: str = "loss"
    higher_is_better: bool = False
    #: True for models whose fid_pairs() gives images: FID (lower is better) is then their primary metric
    supports_fid: bool = False
    #: submodules forming the generator, loaded by model.init_from (none: init_from is refused)
    generator_modules: tuple[str, ...] = ()

    def __init__(self, optim: Mapping[str, Any] | None = None,
                 weights: Mapping[str, float] | None = None, init_from: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.init_from: str | None = _check_init_from(init_from)
        self.optim_cfg = dict(optim or {})
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.term_names))
        if unknown:
            raise ValueError(f"model.weights names unknown terms {unknown}; the terms are {self.term_names}")
        self.default_weights = {n: float(weights.get(n, 1.0)) for n in self.term_names}
        self.device = torch.device("cpu")
        self.amp_dtype: torch.dtype | None = None
        self.channels_last = False

    # -- runtime ---------------------------------------------------------------
    def configure_runtime(self, device: torch.device, amp_dtype: torch.dtype | None = None,
                          channels_last: bool = False) -> None:
        """Move the model to ``device``; optional autocast dtype and channels_last layout."""
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.to(self.device)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def autocast(self):
        """Autocast context for forward passes (a no-op unless ``device.amp`` is set)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def prepare_input(self, x: Tensor) -> Tensor:
        """Put an image batch in the model's memory format."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    # -- the contract ---------------------------------------------------------
    def multi_term_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters the balancing method optimises (default: all)."""
        return self.parameters()

    def training_step(self, batch: Any, method) -> dict[str, Tensor]:
        """One optimisation step; returns detached scalars to log.

        The returned dict holds every term of ``term_names`` (detached) and any
        other loss (``D``, ``D_A``...). Values stay on the device: the runner
        syncs only every ``trainer.log_every`` steps.
        """
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        """Task metrics on ``loader`` (the runner calls ``eval()``/``train()`` around it)."""
        raise NotImplementedError

    def fid_pairs(self, batch: Any) -> dict[str, tuple[Tensor, Tensor]]:
        """Generated and real images of an eval batch for FID/KID: {suffix: (fake, real)}, in [-1, 1].

        A GAN returns e.g. ``{"": (G(A), B)}`` (metrics ``fid``, ``kid``) or, for
        two directions, ``{"_A": ..., "_B": ...}``. Models without images: {}.
        """
        return {}

    def sample_images(self, batch: Any) -> dict[str, Tensor]:
        """Images for TensorBoard, each (N, C, H, W) in [0, 1]; none by default."""
        return {}

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers the model owns besides the method (GAN discriminators)."""
        return {}

    def lr_schedulers(self, method, total_steps: int) -> list:
        """LR schedulers stepped once per training step (none by default)."""
        return []

    def hparams(self) -> dict[str, Any]:
        """Key settings for TensorBoard's HPARAMS tab."""
        return {}

    # -- model.init_from --------------------------------------------------------
    def load_generator(self, init_from: str | os.PathLike) -> dict[str, Any]:
        """Copy the generator's weights (``generator_modules``) from a run dir or checkpoint file.

        Reads the file with ``torch.load(weights_only=True)`` (an ``mtbench
        train`` checkpoint's ``model`` state_dict, or a bare state_dict) and
        checks every generator key and shape before copying anything, so a
        mismatch leaves the model untouched. Everything else (discriminators,
        optimisers) is left as it is. Raises :class:`ConfigError` with one line
        naming the file and the mismatch. Returns what was loaded, for the summary.
        """
        if not self.generator_modules:
            raise ConfigError(f"model.init_from={init_from}: {type(self).__name__} declares no generator "
                              f"(generator_modules) to initialise")
        path = resolve_init_from(init_from)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ConfigError(f"model.init_from: cannot read checkpoint {path}: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from None
        state = ckpt.get("model") if isinstance(ckpt, Mapping) and isinstance(ckpt.get("model"), Mapping) else ckpt
        if not isinstance(state, Mapping):
            raise ConfigError(f"model.init_from: {path} holds no model state_dict")
        loads: dict[str, dict[str, Tensor]] = {}
        problems: list[str] = []
        for name in self.generator_modules:
            own = getattr(self, name).state_dict()
            prefix = f"{name}."
            theirs = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
            if not theirs:
                problems.append(f"no {name}.* weights")
                continue
            missing = [k for k in own if k not in theirs]
            unexpected = [k for k in theirs if k not in own]
            shapes = [f"{prefix}{k} {tuple(v.shape)} vs {tuple(own[k].shape)} here" for k, v in theirs.items()
                      if k in own and (not isinstance(v, Tensor) or v.shape != own[k].shape)]
            for what, keys in (("missing", [prefix + k for k in missing]),
                               ("unexpected", [prefix + k for k in unexpected]), ("shape", shapes)):
                if keys:
                    problems.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
            loads[name] = theirs
        if problems:
            raise ConfigError(f"model.init_from: the generator in {path} does not match this model's "
                              f"{'/'.join(self.generator_modules)} (another architecture or size?): "
                              + "; ".join(problems))
        for name, sd in loads.items():
            getattr(self, name).load_state_dict(sd)
        step = ckpt.get("step") if isinstance(ckpt, Mapping) else None
        return {"path": os.fspath(init_from), "checkpoint": str(path), "modules": list(self.generator_modules),
                "step": int(step) if isinstance(step, int) else None}
