"""CAGrad: conflict-averse gradient descent, the best worst-case direction near the average gradient.

Paper: Bo Liu, Xingchao Liu, Xiaojie Jin, Peter Stone and Qiang Liu,
"Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021,
arXiv:2110.14048. Official code: Cranial-XIX/CAGrad (the ``cagrad`` function
of ``nyuv2/utils.py``, with ``alpha``, ``rescale`` and scipy's ``minimize``;
``overwrite_grad`` there for the final scale). This file is an independent
implementation of the same arithmetic.

Idea
----
With ``g0 = (1/K) sum_i g_i`` the average gradient, CAGrad looks for the
update ``d`` that maximises the worst-case decrease ``min_i <g_i, d>`` within
a ball around ``g0``: ``||d - g0|| <= c ||g0||`` (``c`` = ``alpha``). Its dual is
a problem over the simplex::

    w* = argmin_{w >= 0, sum w = 1}  <g_w, g0> + c ||g0|| ||g_w||,   g_w = sum_i w_i g_i,

and the update is ``d = g0 + lambda g_w*`` with
``lambda = c ||g0|| / ||g_w*||``. ``alpha = 0`` gives plain gradient descent
on the average; a large ``alpha`` approaches MGDA.

Arithmetic, as the official code (float64 here)::

    G      = Gram matrix of the per-term gradients            (K, K)
    n0     = sqrt(mean(G) + 1e-8)                               # ||g0||
    c      = alpha * n0 + 1e-8
    w*     = scipy.optimize.minimize(w -> w^T G u + c sqrt(w^T G w + 1e-8),
                                     u = 1/K, start u, bounds [0, 1] per weight,
                                     equality sum(w) = 1)       # SLSQP, its default tolerances
    lambda = c / (||g_w*|| + 1e-8)
    d      = K * (g0 + lambda g_w*) / s,   s = 1 (rescale 0), 1 + alpha^2 (1), 1 + alpha (2)

so the coefficient of term ``i`` (logged as ``weight/<term>``) is
``(1 + K lambda w*_i) / s``. The factor K is the official ``overwrite_grad``'s
("to match the sum loss"): with no conflict to avert the update is then the
gradient of the plain sum of the terms, the scale of the ``fixed`` baseline
with unit weights.

Only inner products are needed (``||g_w||^2 = w^T G w``), so everything is
computed from the Gram matrix; the solver runs on the host: one (K, K)
device-to-host transfer (one sync) per step.

What it operates on here
------------------------
One network trained with K loss terms: the method gets the parameters of the
multi-term part (the classifier, or a GAN's generator, never the
discriminators), and the per-term gradients are taken with respect to ALL of
them (the official code takes the gradients of the shared encoder's
parameters, the task heads getting their own loss's gradient; here every
parameter is shared by every term).

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`); the
    model's default weights are not used.
alpha:
    The radius ``c`` of the ball around ``g0``, relative to ``||g0||`` (a finite
    number >= 0; default 0.5, the official scripts' argument default; their
    ``run.sh`` files use 0.4, and 0.6 too on CityScapes).
rescale:
    ``0``: no rescaling, ``1`` (default, what the official NYU-v2 and CityScapes
    training calls use): divide by ``1 + alpha^2``, ``2``: divide by
    ``1 + alpha``.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from the official code (intended)
---------------------------------------------
* The Gram matrix and the norms are float64 (the official code forms the
  Gram matrix in float32) and ``||g_w*||`` comes from the Gram matrix rather
  than from the combined vector (equal up to rounding).
* The official two-task CityScapes script solves the same dual with a bounded
  scalar search (``minimize_scalar``); the general K-task solver (SLSQP) is
  used here for every K.
* A non-finite Gram matrix (a NaN gradient) gives ``w* = 1/K`` and
  ``lambda = 0`` (coefficients ``1/s``) instead of whatever SLSQP returns; the
  runner's NaN policy then acts on the loss.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import GradientMethod

__all__ = ["CAGrad", "cagrad_dual"]

RESCALES = (0, 1, 2)


def cagrad_dual(gram: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """``(w*, lambda)`` of CAGrad's dual for the (K, K) Gram matrix ``gram`` (float64, host)."""
    a = np.asarray(gram, dtype=np.float64)
    k = a.shape[0]
    u = np.full(k, 1.0 / k)
    if not np.isfinite(a).all():
        return u, 0.0
    c = alpha * math.sqrt(max(a.mean() + 1e-8, 0.0)) + 1e-8

    def dual(w: np.ndarray) -> float:
        wa = w @ a
        return float(wa @ u + c * math.sqrt(max(wa @ w + 1e-8, 0.0)))

    res = minimize(dual, u, method="SLSQP", bounds=[(0.0, 1.0)] * k,
                   constraints=[{"type": "eq", "fun": lambda w: 1.0 - w.sum()}])
    w = np.asarray(res.x, dtype=np.float64)
    gw_norm = math.sqrt(max(float(w @ a @ w), 0.0))
    return w, c / (gw_norm + 1e-8)


class CAGrad(GradientMethod):
    """Conflict-averse gradient descent; K backward passes per step, one small host solve."""

    def __init__(self, params, term_names, default_weights=None, alpha: float = 0.5, rescale: int = 1,
                 optimizer=None) -> None:
        if not validate.is_real(alpha) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"method.alpha must be a finite number >= 0, got {alpha!r}")
        if not validate.is_int(rescale):
            raise ValueError(f"method.rescale must be one of {list(RESCALES)}, got {rescale!r}")
        validate.choice("method.rescale", rescale, RESCALES)
        super().__init__(params, term_names, default_weights, optimizer)
        self.alpha = float(alpha)
        self.rescale = int(rescale)

    def coefficients(self, losses: Tensor) -> Tensor:
        gram = self.grads.gram()
        k = gram.shape[0]
        w, lam = cagrad_dual(gram.cpu().numpy(), self.alpha)
        scale = {0: 1.0, 1: 1.0 + self.alpha ** 2, 2: 1.0 + self.alpha}[self.rescale]
        coeffs = (1.0 + k * lam * w) / scale
        return torch.from_numpy(coeffs).to(gram.device)

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "rescale": self.rescale}
