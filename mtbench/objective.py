"""What ranks a run: its primary metric, the direction, and whether FID is on (and why not).

Built once per experiment (:func:`build_objective`) and read by everything
that compares scores: the best checkpoint, Hyperband tuning, the summary and
the final line. For the GANs FID (Heusel et al. 2017, arXiv:1706.08500) is the
primary metric, lower is better, whenever the FID Inception weights are found
(``eval.fid``: auto, true or false, see :mod:`mtbench.metrics.fid_runner`);
otherwise the model's own metric ranks the run and :attr:`Objective.fid_note`
says why FID is off. The FID computer is created lazily at the first
evaluation; weights that turn out unreadable are remembered
(:attr:`Objective.fid_error`) and reported once the run is saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from mtbench.metrics.fid_runner import FIDComputer, fid_active, fid_mode

__all__ = ["Objective", "build_objective"]


@dataclass
class Objective:
    primary: str
    higher_is_better: bool
    fid_on: bool
    fid_note: str | None = None
    eval_cfg: Any = None
    fid_error: Exception | None = None
    _fid: FIDComputer | None = field(default=None, repr=False)

    def better(self, value: float | None, than: float | None) -> bool:
        """Whether ``value`` beats ``than`` (None: nothing yet); NaN/inf never wins."""
        if value is None or not math.isfinite(value):
            return False
        return than is None or (value > than if self.higher_is_better else value < than)

    def fid_metrics(self, model, loader, data_cfg, split_name: str, device: torch.device) -> dict[str, float]:
        """FID/KID of ``model`` on ``loader`` (empty when FID is off or its weights failed to load)."""
        from mtbench.nets.vgg import MissingWeightsError

        if not self.fid_on or self.fid_error is not None:
            return {}
        if self._fid is None:
            try:
                self._fid = FIDComputer(self.eval_cfg, device)
            except MissingWeightsError as err:  # keep training; the run reports it once it is saved
                self.fid_error = err
                return {}
        return self._fid.compute(model, loader, data_cfg, split_name)


def build_objective(model, eval_cfg) -> Objective:
    """The objective of ``model`` under the ``eval`` config node."""
    fid_on = fid_active(eval_cfg, model)
    primary = "fid" if fid_on else model.primary_metric
    note = None
    if getattr(model, "supports_fid", False) and not fid_on:  # never silent about FID
        explicit = eval_cfg.get("fid_weights") if eval_cfg is not None else None
        why = ("eval.fid=false" if fid_mode(eval_cfg) == "false" else
               f"weights not found at eval.fid_weights={explicit}" if explicit else
               "weights not found, run `mtbench weights fid`")
        note = f"FID off: {why}; ranked by {primary} instead"
    return Objective(primary=primary, higher_is_better=False if fid_on else model.higher_is_better,
                     fid_on=fid_on, fid_note=note, eval_cfg=eval_cfg)
