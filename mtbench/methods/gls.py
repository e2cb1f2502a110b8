"""Geometric Loss Strategy (GLS): minimise the geometric mean of the loss terms.

Paper: S. Chennupati, G. Sistu, S. Yogamani, S. A. Rawashdeh, "MultiNet++:
Multi-Stream Feature Aggregation and Geometric Loss Strategy for Multi-Task
Learning", CVPR Workshops 2019, arXiv:1904.08492, eq. 4. Compared with:
LibMTL (median-research-group/LibMTL, ``LibMTL/weighting/GLS.py``).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. The objective is

    total = (prod_i L_i)^(1/K) = exp(mean_i log L_i)

with one backward pass, then the ``optimizer``. Its gradient is
``sum_i w_i dL_i`` with ``w_i = d total / d L_i = total / (K L_i)``: a term is
weighted by the inverse of its own size, so every term's relative decrease
counts the same. Those ``w_i`` (of the last step; 1/K before the first) are
what :meth:`weight_tensor` returns and the runner logs. Every term must be
>= 0 (a negative term makes the total NaN, as in LibMTL).

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used: a constant factor on a term does not change
    the gradient direction of the geometric mean (it scales the total), so
    they would have no effect beyond the step size.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from LibMTL (deliberate):

* The total is computed as ``exp(mean log L_i)``, the same value as LibMTL's
  ``prod(L) ** (1/K)`` without overflow or underflow of the product (ten MNIST
  terms of size 1e2 or 1e-3 leave float32's range).
* A term that is exactly 0 (an MNIST class absent from the batch) is left out:
  the geometric mean is over the n > 0 non-zero terms (``K`` above becomes n)
  and that term's weight is 0. LibMTL's total would be 0 with an infinite or
  NaN gradient; a loss term at 0 is at its minimum, so leaving it out only
  stops it from zeroing the whole objective. Decided on the device (no sync).
* The weights reported are ``total / (K L_i)``, the coefficients of the
  gradient; LibMTL returns ``L_i / (K prod(L))``, which is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench.methods.base import Method, make_adam


def geometric_mean_and_weights(stacked: Tensor) -> tuple[Tensor, Tensor]:
    """``(total, weights)`` for the (K,) terms: the geometric mean of the non-zero terms (with its graph)
    and the detached ``d total / d L_i`` (0 for a zero term)."""
    nonzero = stacked != 0
    safe = torch.where(nonzero, stacked, torch.ones_like(stacked))
    n = nonzero.sum().clamp(min=1).to(stacked.dtype)
    total = torch.exp(safe.log().sum() / n)
    weights = torch.where(nonzero, total.detach() / (n * safe.detach()), torch.zeros_like(stacked))
    return total, weights


class GLS(Method):
    """Geometric Loss Strategy; see the module docstring."""

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        super().__init__(params, term_names, default_weights)
        self._optimizer = (optimizer or make_adam)(self.params)
        k = len(self.term_names)
        self._weights = torch.full((k,), 1.0 / k, device=self.params[0].device)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def _step(self, terms: list[Tensor]) -> None:
        total, self._weights = geometric_mean_and_weights(torch.stack([t.float() for t in terms]))
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()

    def weight_tensor(self) -> Tensor:
        return self._weights

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["gls"] = {"weights": self._weights.detach().to("cpu").clone()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._weights = state["gls"]["weights"].to(self._weights.device).clone()

    def hparams(self) -> dict[str, Any]:
        return {}
