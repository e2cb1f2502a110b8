"""Image-quality metrics of the GAN benchmarks, computed with torchmetrics.

All functions take image batches (N, C, H, W) in [-1, 1] (the generators'
range) and return one value per image, so callers can average over a whole
split. PSNR and SSIM come from ``torchmetrics.functional``; nothing here
re-implements them.

Super-resolution convention (as in SRGAN and most SR papers): PSNR/SSIM on the
luminance (Y of ITU-R BT.601 YCbCr, in [16, 235] / 255) with ``scale`` pixels
cropped from every border.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((x.float() + 1.0) / 2.0).clamp_(0.0, 1.0)


def rgb_to_y(x01: Tensor) -> Tensor:
    """Y channel (BT.601, as MATLAB's rgb2ycbcr) of RGB images in [0, 1]; returns (N, 1, H, W) in [0, 1]."""
    w = torch.tensor([65.481, 128.553, 24.966], device=x01.device, dtype=x01.dtype).view(1, 3, 1, 1)
    return ((x01 * w).sum(1, keepdim=True) + 16.0) / 255.0


def psnr_per_image(pred01: Tensor, target01: Tensor) -> Tensor:
    return peak_signal_noise_ratio(pred01, target01, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim_per_image(pred01: Tensor, target01: Tensor) -> Tensor:
    return structural_similarity_index_measure(pred01, target01, data_range=1.0, reduction="none")


def paired_metrics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Per-image L1 (in the [-1, 1] range, as the pix2pix loss), PSNR and SSIM (RGB in [0, 1])."""
    p, t = to_unit(pred), to_unit(target)
    return {"l1": (pred.float() - target.float()).abs().flatten(1).mean(1),
            "psnr": psnr_per_image(p, t), "ssim": ssim_per_image(p, t)}


def sr_metrics(sr: Tensor, hr: Tensor, scale: int) -> dict[str, Tensor]:
    """Per-image PSNR and SSIM on the Y channel with a border of ``scale`` pixels removed."""
    y_sr, y_hr = rgb_to_y(to_unit(sr)), rgb_to_y(to_unit(hr))
    if scale > 0:
        y_sr, y_hr = y_sr[..., scale:-scale, scale:-scale], y_hr[..., scale:-scale, scale:-scale]
    return {"psnr": psnr_per_image(y_sr, y_hr), "ssim": ssim_per_image(y_sr, y_hr)}


class MeanMeter:
    """Averages per-image metric tensors over a split without a host sync per batch."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.n = 0

    def update(self, values: dict[str, Tensor]) -> None:
        for k, v in values.items():
            v = v.detach().double().sum()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += next(iter(values.values())).shape[0] if values else 0

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no images were evaluated (empty split)")
        return {k: (v / self.n).item() for k, v in self.sums.items()}
