"""Dynamic Weight Average (DWA): weights from each term's recent rate of decrease.

Paper: S. Liu, E. Johns, A. J. Davison, "End-to-End Multi-Task Learning with
Attention", CVPR 2019, arXiv:1803.10704, eq. 7. Compared with: LibMTL
(median-research-group/LibMTL, ``LibMTL/weighting/DWA.py``, which follows the
authors' code lorenmt/mtan).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. The total is ``sum_i w_i L_i`` (one backward pass, then the
``optimizer``). With ``Lbar_i(p)`` the mean of term i over period p (the paper's
epoch, here ``update_every`` optimisation steps; the terms unweighted, as the
paper's average training loss):

* periods 0 and 1: ``w_i = 1``;
* period p >= 2: ``r_i = Lbar_i(p-1) / Lbar_i(p-2)`` and
  ``w_i = K * exp(r_i / T) / sum_j exp(r_j / T)`` (a term that falls slowly
  gets more weight; the weights sum to K).

The weights change when a period ends: :meth:`weight_tensor` returns the
weights in effect for the next step (the ones logged at a step are those the
following steps use until the next period ends, as SoftAdapt's here).

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used (as in the paper and LibMTL: all weights start at 1).
temperature:
    T, the softmax temperature, a finite number > 0 (default 2, the paper's).
update_every:
    Optimisation steps per period (the paper averages over one epoch), an
    integer >= 1 (default 10, SoftAdapt's default here, so that the two compare).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from LibMTL / the paper (deliberate):

* A period is ``update_every`` steps, not an epoch (a method does not see the
  epochs; set ``update_every`` to the steps per epoch to reproduce the paper).
* If a ratio is not finite (a period mean of 0, e.g. an MNIST class absent from
  every batch of the period with ``update_every=1``), the previous weights are
  kept instead of training on NaN weights; decided on the device, no host sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import WeightedSumMethod


class DWA(WeightedSumMethod):
    """Dynamic Weight Average; see the module docstring."""

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, temperature: float = 2.0,
                 update_every: int = 10, optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        validate.positive_number("method.temperature", temperature)
        validate.positive_int("method.update_every", update_every)
        super().__init__(params, term_names, default_weights, optimizer)
        self.temperature = float(temperature)
        self.update_every = int(update_every)
        k = len(self.term_names)
        device = self.params[0].device
        self._weights = torch.ones(k, device=device)
        self._sum = torch.zeros(k, device=device)            # the current period's running sum
        self._count = 0                                      # steps in the current period (Python: no sync)
        self._means = torch.zeros(2, k, device=device)       # [Lbar(p-2), Lbar(p-1)]
        self.periods = 0                                     # periods completed

    def current_weights(self, like: Tensor) -> Tensor:
        return self._weights.to(device=like.device, dtype=like.dtype)

    def weight_tensor(self) -> Tensor:
        return self._weights

    def after_step(self, detached_terms: Tensor) -> None:
        self._sum += detached_terms.to(self._sum.dtype)
        self._count += 1
        if self._count < self.update_every:
            return
        mean = self._sum / self._count
        self._means = torch.stack([self._means[1], mean])
        self._sum = torch.zeros_like(self._sum)
        self._count = 0
        self.periods += 1
        if self.periods >= 2:
            ratio = self._means[1] / self._means[0]
            new = len(self.term_names) * torch.softmax(ratio / self.temperature, dim=0)
            self._weights = torch.where(torch.isfinite(new).all(), new, self._weights)

    # -- checkpointing --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["dwa"] = {"term_names": list(self.term_names), "update_every": self.update_every,
                        "weights": self._weights.detach().to("cpu").clone(),
                        "sum": self._sum.detach().to("cpu").clone(), "count": self._count,
                        "means": self._means.detach().to("cpu").clone(), "periods": self.periods}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = self._saved_state(state, "dwa", "DWA")
        super().load_state_dict(state)
        device = self._weights.device
        self._weights = saved["weights"].to(device).clone()
        self._sum = saved["sum"].to(device).clone()
        self._means = saved["means"].to(device).clone()
        self._count = int(saved["count"])
        self.periods = int(saved["periods"])

    def hparams(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "update_every": self.update_every}
