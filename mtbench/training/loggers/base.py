"""The interface of a logging backend (TensorBoard, CSV, MLflow): what the loop hands it, and when.

Calls arrive only at the ``trainer.log_every`` flush, evaluations, sample images and the end of the run,
never once per step: a backend never makes the training loop sync with the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["Logger"]


class Logger:
    """One backend of a run's logs. The constructor (from ``conf/logger/*.yaml``) writes nothing."""

    def open(self, out: Path, initial_step: int, name: str, params: dict[str, Any]) -> None:
        """Start logging the run in ``out`` from ``initial_step`` (> 0: a resumed run); ``params``: the run's
        settings (model, data, method, seed, the model's, method's and trainer's settings, flattened)."""

    def log_metrics(self, step: int, record: dict[str, float]) -> None:
        """Scalars at ``step``: ``loss/<term>``, ``weight/<term>``, ``time/step_ms``, ``eval/<metric>``, ..."""

    def log_images(self, step: int, images: dict[str, torch.Tensor]) -> None:
        """Sample images (GANs; ``trainer.image_every``): name -> (N, C, H, W) in [0, 1]."""

    def log_final(self, step: int, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings (as TensorBoard's HPARAMS shows them) and its final metrics."""

    def close(self, status: str) -> None:
        """End the run: ``FINISHED``, ``FAILED`` (an error) or ``KILLED`` (SIGINT/SIGTERM)."""
