"""What a ``data`` config builds: the splits of one dataset.

Every ``conf/data/<name>.yaml`` has a ``_target_`` that returns a
:class:`DataSplits`. The runner wraps the splits in DataLoaders (batch size,
workers and pinned memory come from the trainer and device configs).

Batch formats (what a model's ``training_step`` receives):

* classification (MNIST): a tuple ``(images, labels)``;
* image-to-image (pix2pix, CycleGAN): a dict with ``"A"`` (input domain) and
  ``"B"`` (target domain), images in [-1, 1], shape (C, H, W) per sample;
* super-resolution (SRGAN): a dict with ``"lr"`` and ``"hr"`` images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from mtbench.errors import DataError  # noqa: F401 - re-exported: the data modules import it from here


@dataclass
class DataSplits:
    """The splits of a dataset; ``val`` and ``test`` may be None when absent.

    ``extra_eval`` names further evaluation sets (SR: Set5, Set14); the runner
    reports their metrics prefixed with the name. ``eval_batch_size`` forces the
    evaluation batch size (1 where images differ in size). A dataset read from
    image files has ``image_files()``: the runner decodes every file of the eval
    splits before the first training step.
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    name: str = ""
    extra_eval: dict[str, Dataset] = field(default_factory=dict)
    eval_batch_size: int | None = None

    def eval_split(self) -> Dataset:
        """The split final metrics are reported on: test if present, else val."""
        split = self.test if self.test is not None else self.val
        if split is None:
            raise DataError(f"dataset {self.name!r} has neither a test nor a val split to evaluate on")
        return split
