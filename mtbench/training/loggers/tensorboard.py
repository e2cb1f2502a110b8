"""TensorBoard (``logger=tensorboard``, the default): event files in the run directory.

SCALARS: every logged key; CUSTOM SCALARS: one chart of all of a run's term weights and one of its losses;
IMAGES: the GANs' samples; HPARAMS: the run's settings and final metrics as a session of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtbench.training.loggers.base import Logger

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger(Logger):
    def __init__(self) -> None:
        self.writer = None
        self.last_step = 0

    def open(self, out: Path, initial_step: int, name: str, params: dict[str, Any]) -> None:  # noqa: ARG002
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out))
        self.last_step = initial_step
        # TensorBoard's CUSTOM SCALARS tab: all of a run's term weights in one chart, and all its losses in another
        # (the SCALARS tab has one chart per term, across runs)
        self.writer.add_custom_scalars({"all terms of a run": {"weights (weight/*)": ["Multiline", [r"^weight/"]],
                                                               "losses (loss/*)": ["Multiline", [r"^loss/"]]}})

    def log_metrics(self, step: int, record: dict[str, float]) -> None:
        self.last_step = step
        for k, v in record.items():
            self.writer.add_scalar(k, v, step)

    def log_images(self, step: int, images: dict[str, torch.Tensor]) -> None:
        from torchvision.utils import make_grid

        for name, img in images.items():
            self.writer.add_image(f"images/{name}", make_grid(img.float().clamp(0, 1).cpu(), nrow=4), step)

    def log_final(self, step: int, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """This run's settings and final metrics for TensorBoard's HPARAMS tab, as a session of its own.

        ``SummaryWriter.add_hparams`` also writes an experiment layout (the columns) made from this run's keys
        alone; TensorBoard keeps one layout per log dir, so runs with other settings (another method, another
        model) lost their columns. Only the session start/end records are written here: with no layout,
        TensorBoard builds the columns from every run's sessions, the union of all their settings and metrics.
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        final = {f"hparam/{k}": v for k, v in metrics.items()}
        _, session_start, session_end = hparams_summaries(hparams, final)
        writer = self.writer._get_file_writer()
        writer.add_summary(session_start, step)
        writer.add_summary(session_end, step)
        for k, v in final.items():
            self.writer.add_scalar(k, v, step)

    def close(self, status: str) -> None:  # noqa: ARG002
        if self.writer is not None:
            self.writer.close()
