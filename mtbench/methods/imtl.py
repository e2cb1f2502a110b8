"""IMTL: Impartial Multi-task Learning, gradient part (IMTL-G) and loss part (IMTL-L).

Paper: Liyang Liu, Yi Li, Zhanghui Kuang, Jing-Hao Xue, Yimin Chen, Wenming
Yang, Qingmin Liao, Wayne Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021 (https://openreview.net/forum?id=IMPnRXEWpvr; no arXiv version).
The authors released no code. The arithmetic matched here is LibMTL's
(median-research-group/LibMTL, ``LibMTL/weighting/IMTL.py``), which does both
parts; SamsungLabs/MTL (``code/optim/imtl/balancer.py``) has the same IMTL-G
without IMTL-L.

What it does here
-----------------
One network is trained with K loss terms. The method gets the parameters of
the multi-term part (the MNIST classifier, or a GAN's generator(s); never a
discriminator) and takes each term's gradient with respect to ALL of them
(K backward passes, :class:`~mtbench.methods.term_grads.TermGradients`). The
paper applies IMTL-G to the gradients of a shared encoder (or, as IMTL-G's
cheap variant, of the shared representation) and updates task-specific heads
with their own losses; here every parameter is shared by all terms, so the
IMTL-G combination is the whole update.

* **IMTL-L** (``learn_scales``): each term is replaced by ``exp(s_i) L_i - s_i``
  with a learnable log-scale ``s_i`` (initially 0). Its per-term gradient is
  ``g'_i = exp(s_i) g_i``, and ``s_i`` is trained by gradient descent on the
  same scaled loss: ``d/ds_i = exp(s_i) L_i - 1`` (closed form from the
  detached loss value; no extra backward). As in LibMTL, where ``s`` is a
  parameter of the model and so sits in the model's optimiser, ``s`` is one
  more parameter group of this method's optimiser (Adam with the model's lr
  and betas by default): ``s`` and the network are updated by the same
  ``optimizer.step()``, and an LR schedule on ``method.optimizer`` applies to
  both. ``s`` is taken at its value before the step for both the network's
  update and its own gradient (as LibMTL does).
* **IMTL-G**: the update ``d = sum_i alpha_i g'_i`` with ``sum_i alpha_i = 1``
  whose projections onto the unit vectors ``u_i = g'_i / ||g'_i||`` are all
  equal. LibMTL's closed form (term 0 as the reference)::

      D = [g'_0 - g'_i]_{i>0},  U = [u_0 - u_i]_{i>0}
      alpha_{1:} = g'_0 U^T (D U^T)^{-1},  alpha_0 = 1 - sum alpha_{1:}

  Here the same conditions are solved as one (K+1) x (K+1) linear system in
  coefficient space, from the Gram matrix ``M = G G^T`` of the per-term
  gradients (float64): with ``n_i = sqrt(M'_ii)`` and ``P_ik = <g'_k, u_i> =
  M'_ik / n_i``, unknowns ``alpha`` and the common projection ``t``::

      sum_k P_ik alpha_k - t = 0  (each i),     sum_k alpha_k = 1

  Its solution is LibMTL's whenever LibMTL's is defined (same conditions,
  unique solution). The coefficients of the original gradients are
  ``c_i = alpha_i exp(s_i)`` (the update is ``sum_i c_i g_i``); they are the
  logged ``weight/<term>``.

No host-device sync: the system is solved with ``torch.linalg.solve_ex`` (no
error check), the special cases below are ``torch.where`` on device tensors.

Deliberate differences from LibMTL (each only where LibMTL's result is NaN
or raises)
--------------------------------------------------------------------------
* A term whose gradient is exactly zero (it does not reach the parameters in
  this batch, e.g. an MNIST class absent from the batch, whose term is then 0)
  has no unit vector; LibMTL divides by its zero norm and the whole update
  becomes NaN. Here such a term gets ``alpha_i = 0`` and IMTL-G runs on the
  others (all zero: a zero update).
* When the system is singular (exactly linearly dependent gradients, e.g. two
  identical terms; LibMTL's ``torch.inverse`` raises, SamsungLabs adds
  1e-8 I), ``alpha`` falls back to equal weights over the terms with non-zero
  gradients. For identical gradients this is one of IMTL-G's (then
  non-unique) solutions. Nearly singular systems are solved as they are, like
  LibMTL.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (:class:`mtbench.methods.base.Method`); the model's
    default weights are not used (IMTL balances the raw terms, like LibMTL).
learn_scales:
    ``true`` (default, the paper's hybrid IMTL and LibMTL): IMTL-L's learnable
    loss scales with IMTL-G on the scaled gradients; ``false``: IMTL-G alone
    on the raw gradients (``s`` stays 0 and is not in the optimiser).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default. With ``learn_scales`` the log-scales are
    added to it as a second parameter group (same settings).

State (``state_dict``): the optimiser (both parameter groups), the last
coefficients, and the log-scales ``s`` (clones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import GradientMethod

__all__ = ["IMTL", "imtl_g_alpha"]


def imtl_g_alpha(gram: Tensor) -> Tensor:
    """IMTL-G's ``alpha`` (K,) for per-term gradients with Gram matrix ``gram`` (K, K), in its dtype.

    ``d = sum_i alpha_i g_i`` has equal projections onto every unit vector
    ``g_i / ||g_i||`` and ``sum_i alpha_i = 1`` (see the module docstring for
    zero gradients and singular systems)."""
    k = gram.shape[0]
    dtype, device = gram.dtype, gram.device
    sq = torch.diagonal(gram)
    active = sq > 0
    norms = torch.where(active, sq, torch.ones_like(sq)).sqrt()
    proj = gram / norms.unsqueeze(1)                     # proj[i, k] = <g_k, u_i>
    eye = torch.eye(k, dtype=dtype, device=device)
    a = torch.zeros(k + 1, k + 1, dtype=dtype, device=device)
    a[:k, :k] = torch.where(active.unsqueeze(1), proj, eye)  # an inactive term's row: alpha_i = 0
    a[:k, k] = -active.to(dtype)                         # - t for the active rows
    a[k, :k] = active.to(dtype)                          # sum of the active alphas = 1
    a[k, k] = (~active.any()).to(dtype)                  # no active term: t = 1, alpha = 0
    b = torch.zeros(k + 1, dtype=dtype, device=device)
    b[k] = 1.0
    sol, info = torch.linalg.solve_ex(a, b)
    alpha = sol[:k]
    ok = (info == 0) & torch.isfinite(alpha).all()
    equal = active.to(dtype) / active.sum().clamp_min(1).to(dtype)
    return torch.where(ok, alpha, equal)


class IMTL(GradientMethod):
    """IMTL-G coefficients on the (IMTL-L scaled) per-term gradients; K backward passes per step."""

    def __init__(self, params, term_names, default_weights=None, learn_scales: bool = True,
                 optimizer=None) -> None:
        validate.boolean("method.learn_scales", learn_scales)
        super().__init__(params, term_names, default_weights, optimizer)
        self.learn_scales = learn_scales
        self.log_scales = torch.zeros(len(self.term_names), device=self.params[0].device,
                                      requires_grad=learn_scales)
        if learn_scales:
            self._optimizer.add_param_group({"params": [self.log_scales]})

    def _step(self, terms: list[Tensor]) -> None:
        if self.learn_scales:  # d/ds_i (exp(s_i) L_i - s_i), consumed by the optimiser step in super()._step
            losses = torch.stack([t.detach().float().reshape(()) for t in terms])
            with torch.no_grad():
                self.log_scales.grad = self.log_scales.exp() * losses - 1.0
        super()._step(terms)

    def coefficients(self, losses: Tensor) -> Tensor:
        gram = self.grads.gram()
        scale = self.log_scales.detach().to(gram.dtype).exp()
        alpha = imtl_g_alpha(gram * scale.unsqueeze(0) * scale.unsqueeze(1))
        return alpha * scale

    def scales(self) -> dict[str, float]:
        """The current loss scales ``exp(s_i)`` (syncs once)."""
        return dict(zip(self.term_names, self.log_scales.detach().exp().cpu().tolist()))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["imtl"] = {"log_scales": self.log_scales.detach().clone(), "learn_scales": self.learn_scales}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["imtl"]
        if bool(saved["learn_scales"]) != self.learn_scales or saved["log_scales"].shape != self.log_scales.shape:
            raise ValueError(f"IMTL state does not match this run: checkpoint has "
                             f"method.learn_scales={str(bool(saved['learn_scales'])).lower()} and "
                             f"{saved['log_scales'].numel()} terms, this run has "
                             f"{str(self.learn_scales).lower()} and {self.log_scales.numel()}")
        super().load_state_dict(state)
        with torch.no_grad():  # in place: the optimiser holds this tensor
            self.log_scales.copy_(saved["log_scales"])

    def hparams(self) -> dict[str, Any]:
        return {"learn_scales": self.learn_scales}
