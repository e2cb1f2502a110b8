"""The adversarial loss of pix2pix, CycleGAN and SRGAN.

``vanilla`` is the original GAN objective of Goodfellow et al. 2014 written on
the discriminator's logits (binary cross-entropy with logits; used by pix2pix,
Isola et al. 2017, arXiv:1611.07004, and SRGAN, Ledig et al. 2017,
arXiv:1609.04802); ``lsgan`` is the least-squares GAN of Mao et al. 2017, used by
CycleGAN (Zhu et al. 2017, arXiv:1703.10593, Sec. 4 "Training details"). As in
the reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix
``models/networks.py`` ``GANLoss``), the generator is trained with the
non-saturating form: ``loss(D(G(x)), True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GANLoss", "GAN_MODES"]

GAN_MODES = ("vanilla", "lsgan")


class GANLoss(nn.Module):
    """Adversarial loss against a constant "real" or "fake" target.

    Parameters
    ----------
    mode:
        ``"vanilla"`` -- ``BCEWithLogits(prediction, target)`` (the
        discriminator returns raw logits); ``"lsgan"`` -- ``MSE(prediction,
        target)``. Anything else raises ``ValueError`` naming it.
    target_real, target_fake:
        The label values (1 and 0; e.g. 0.9 for one-sided label smoothing).

    Call as ``criterion(prediction, target_is_real)`` (or
    ``criterion.loss(...)``): the target is a ``torch.full_like`` of the
    prediction, so it lives on the prediction's device with its dtype and
    nothing is synchronised with the host. Predictions in float16/bfloat16
    (autocast) are upcast to float32 before the loss. Returns the mean over all
    elements (for a PatchGAN: over every patch of every image).
    """

    def __init__(self, mode: str = "vanilla", target_real: float = 1.0, target_fake: float = 0.0) -> None:
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN loss mode {mode!r}; expected one of {list(GAN_MODES)}")
        self.mode = mode
        self.target_real = float(target_real)
        self.target_fake = float(target_fake)

    def forward(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        if isinstance(target_is_real, Tensor):
            raise TypeError("target_is_real must be a Python bool, not a tensor")
        if prediction.dtype in (torch.float16, torch.bfloat16):
            prediction = prediction.float()
        target = torch.full_like(prediction, self.target_real if target_is_real else self.target_fake)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(prediction, target)
        return F.mse_loss(prediction, target)

    def loss(self, prediction: Tensor, target_is_real: bool) -> Tensor:
        """Same as calling the module."""
        return self(prediction, target_is_real)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, target_real={self.target_real}, target_fake={self.target_fake}"
