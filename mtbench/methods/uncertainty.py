"""Homoscedastic uncertainty weighting: one learnable log-variance per loss term.

Paper: A. Kendall, Y. Gal, R. Cipolla, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics", CVPR 2018, arXiv:1705.07115.
Compared with: LibMTL (median-research-group/LibMTL, ``LibMTL/weighting/UW.py``).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. Every term i gets a learnable ``s_i = log sigma_i^2`` and the objective is

    total = sum_i ( exp(-s_i) / 2 * L_i + s_i / 2 )

(the paper's eq. 7 for a Gaussian likelihood, written with ``s = log sigma^2``
so that it is defined for every s; LibMTL uses this form for every term). One
backward pass of ``total`` gives the network the gradient of
``sum_i w_i L_i`` with ``w_i = exp(-s_i) / 2`` and gives each ``s_i`` the
gradient ``(1 - exp(-s_i) L_i) / 2``: a term whose loss is large is weighted
down, and ``s_i`` tends to ``log L_i``. The effective weights ``w_i`` are what
:meth:`weight_tensor` returns and the runner logs.

The log-variances are a second parameter group of the method's optimiser (the
``optimizer`` partial is called with two groups): as in LibMTL, where they are
parameters of the model and are trained by the same optimiser with the same
settings (learning rate, betas, LR schedule). One optimiser also keeps a single
state to checkpoint and a single LR schedule to apply.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used: the weights are learnt (as in the paper and LibMTL).
init_log_var:
    Initial ``s_i`` for every term, a finite number (default -0.5, as LibMTL:
    initial weights ``exp(0.5) / 2 = 0.82``).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``), called with two
    parameter groups (the network's parameters, then the K log-variances);
    Adam with the model's lr and betas by default.

Differences from LibMTL: none in the arithmetic. The log-variances are kept
in this method's ``state_dict`` (LibMTL saves them with the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import Method, make_adam


class UncertaintyWeighting(Method):
    """total = sum_i exp(-s_i) / 2 * L_i + s_i / 2 with learnable s (see the module docstring)."""

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, init_log_var: float = -0.5,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        if not validate.is_real(init_log_var) or not math.isfinite(init_log_var):
            raise ValueError(f"method.init_log_var must be a finite number, got {init_log_var!r}")
        super().__init__(params, term_names, default_weights)
        self.init_log_var = float(init_log_var)
        k = len(self.term_names)
        self.log_vars = torch.full((k,), self.init_log_var, dtype=torch.float32, device=self.params[0].device,
                                   requires_grad=True)
        self._optimizer = (optimizer or make_adam)([{"params": self.params}, {"params": [self.log_vars]}])

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def _step(self, terms: list[Tensor]) -> None:
        stacked = torch.stack([t.float() for t in terms])
        s = self.log_vars
        total = (0.5 * torch.exp(-s) * stacked + 0.5 * s).sum()
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()

    def weight_tensor(self) -> Tensor:
        """exp(-s_i) / 2: the weight of term i in the network's gradient (of the current s)."""
        return 0.5 * torch.exp(-self.log_vars.detach())

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["uncertainty"] = {"term_names": list(self.term_names),
                                "log_vars": self.log_vars.detach().to("cpu").clone()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = self._saved_state(state, "uncertainty", "uncertainty")
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_vars.copy_(saved["log_vars"].to(self.log_vars.device, self.log_vars.dtype))

    def hparams(self) -> dict[str, Any]:
        return {"init_log_var": self.init_log_var}
