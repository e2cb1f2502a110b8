"""Evaluation metrics: image quality (PSNR/SSIM via torchmetrics), FID/KID (pytorch-fid)."""
