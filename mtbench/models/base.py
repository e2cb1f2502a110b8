"""The Model contract: a multi-term model, its training step and its evaluation.

A model declares its networks (as ``nn.Module`` attributes), the names of its
multi-term loss (the classifier's, or a GAN generator's) and one training
step. The runner builds it with ``instantiate(cfg.model)``, moves it to the
device, builds the balancing method on :meth:`Model.multi_term_parameters`,
then calls :meth:`Model.training_step` once per batch.

A GAN model updates its discriminator(s) with its own plain optimiser(s),
returned by :meth:`Model.aux_optimizers` so that they are checkpointed, and
its generator through ``method.step``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader


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

    def __init__(self, optim: Mapping[str, Any] | None = None,
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
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
