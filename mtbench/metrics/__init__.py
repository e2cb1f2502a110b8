"""Evaluation metrics: image quality (PSNR/SSIM via torchmetrics) and, later, FID (pytorch-fid)."""
