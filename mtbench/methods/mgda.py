"""MGDA: the minimum-norm convex combination of the K per-term gradients.

Paper: Ozan Sener and Vladlen Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018, arXiv:1810.04650. Official code:
isl-org/MultiObjectiveOptimization (``multi_task/min_norm_solvers.py``,
``MinNormSolver`` and ``gradient_normalizers``; ``multi_task/train_multi_task.py``
for how they are used). This file is an independent implementation of the same
arithmetic.

Idea
----
The multiple-gradient descent algorithm (MGDA) looks for a direction that
decreases every term at once: the point of minimum norm in the convex hull of
the per-term gradients,

    alpha* = argmin_{alpha >= 0, sum alpha = 1} || sum_i alpha_i g_i ||^2,

which is zero exactly at a Pareto-stationary point. The update is then
``d = sum_i alpha*_i g_i``. The official training loop first divides each
gradient by a normaliser ``n_i`` (``normalization`` below; "optional and not
included in the paper" in the authors' words), solves the min-norm problem for
the normalised gradients ``g_i / n_i``, and applies the solution as the loss
scales: ``d = sum_i alpha*_i g_i`` with the *unnormalised* gradients. The same
is done here, so the coefficient of term ``i`` (logged as ``weight/<term>``)
is ``alpha*_i``, on the simplex.

Only inner products are needed: the solver works on the (K, K) Gram matrix of
the normalised gradients, ``G_il / (n_i n_l)``.

What it operates on here
------------------------
One network trained with K loss terms: the method gets the parameters of the
multi-term part (the classifier, or a GAN's generator, never the
discriminators) and takes each term's gradient with respect to ALL of them.
The paper's MGDA-UB solves the problem for the gradients with respect to a
shared representation ``z`` (an upper bound that needs one backward pass of
the encoder); with no task-specific heads and no single shared representation
here, the problem is solved exactly for the gradients with respect to every
parameter, i.e. this is exact MGDA on the parameters (the official code's
``use_approximation: false`` branch, there restricted to the shared encoder's
parameters).

The solver (as in ``MinNormSolver``)
------------------------------------
* Two-point problem ``min_g ||g v_1 + (1-g) v_2||^2`` in closed form from
  ``<v1,v1>, <v1,v2>, <v2,v2>``: ``g = 0.999`` when ``<v1,v2> >= <v1,v1>``,
  ``g = 0.001`` when ``<v1,v2> >= <v2,v2>``, else
  ``g = (<v2,v2> - <v1,v2>) / (<v1,v1> + <v2,v2> - 2<v1,v2>)``. The clamps at
  0.999/0.001 (not 1/0) are the official code's.
* K = 2: that closed form is the answer (computed on the device, no host sync).
* K >= 3: start from the best pair (the pair ``i < j`` whose two-point problem
  has the smallest norm; first such pair on ties), then iterate until the L1
  change of ``alpha`` is below ``tol`` (returning the iterate before that last
  change, as the official code does) or ``max_iter`` iterations:

  - ``projected_gradient`` (``find_min_norm_element``, the one the official
    training script calls): step along ``-G alpha`` projected on the simplex's
    tangent space, as far as the first face it hits (step 1 if none),
    Euclidean projection onto the simplex, then an exact line search between
    the old and the new point with the two-point closed form;
  - ``frank_wolfe`` (``find_min_norm_element_FW``): the vertex
    ``t = argmin_t (G alpha)_t`` and the exact line search between ``alpha``
    and ``e_t``.

  This runs in float64 on the host: one (K, K) device-to-host transfer (one
  sync) per step for K >= 3.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`); the
    model's default weights are not used.
normalization:
    The gradient normaliser ``n_i`` applied before solving: ``l2`` (``||g_i||``),
    ``loss`` (``L_i``), ``loss+`` (``L_i ||g_i||``) or ``none`` (1). Default
    ``loss+``, the value of the official repository's experiment file
    (``sample.json``). A normaliser that is not a finite number > 0 (a zero
    gradient, a zero or negative loss) is replaced by 1 for that term.
solver:
    ``projected_gradient`` (default, as the official training script) or
    ``frank_wolfe``; only used for K >= 3.
tol:
    Stop when the L1 norm of the change of ``alpha`` is below this (> 0;
    default 1e-5, the official ``STOP_CRIT``).
max_iter:
    At most this many iterations (>= 1; default 250, the official
    ``MAX_ITER``).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from the official code (intended)
---------------------------------------------
* The official loop never increments its iteration counter, so ``MAX_ITER``
  is not enforced there (it loops until converged); here ``max_iter`` is a
  real cap (the last iterate is used when it is reached).
* The official best-pair search starts from a cost of 1e8 and fails when every
  pair's cost is larger (large unnormalised gradients, e.g. ``none``); here it
  starts from infinity. With a non-finite Gram matrix (a NaN gradient) the
  coefficients are uniform 1/K (the runner's NaN policy then acts on the loss).
* K = 1 gives the coefficient 1 (the official code needs two gradients).
* Inner products in float64 (the official code sums float32 products); the
  normaliser guard above (the official code divides by zero or a negative loss).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import GradientMethod

__all__ = ["MGDA", "min_norm_coefficients"]

NORMALIZATIONS = ("l2", "loss", "loss+", "none")
SOLVERS = ("projected_gradient", "frank_wolfe")


def _two_point(v11: float, v12: float, v22: float) -> tuple[float, float]:
    """(gamma, squared norm) of min_gamma ||gamma v1 + (1-gamma) v2||^2 with the official clamps."""
    if v12 >= v11:
        return 0.999, v11
    if v12 >= v22:
        return 0.001, v22
    gamma = (v22 - v12) / (v11 + v22 - 2.0 * v12)
    return gamma, v22 + gamma * (v12 - v22)


def _project_to_simplex(y: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``y`` onto {x >= 0, sum x = 1} (sort-based, as MinNormSolver)."""
    m = y.shape[0]
    desc = np.sort(y)[::-1]
    shift = (y.sum() - 1.0) / m
    running = 0.0
    for i in range(m - 1):
        running += desc[i]
        candidate = (running - 1.0) / (i + 1.0)
        if candidate > desc[i + 1]:
            shift = candidate
            break
    return np.maximum(y - shift, 0.0)


def _projected_step(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Move ``x`` along ``direction`` (made to sum to 0) up to the first face of the simplex, then project."""
    n = x.shape[0]
    d = direction - direction.sum() / n
    neg, pos = d < 0, d > 0
    to_zero = -x[neg] / d[neg]           # step at which a decreasing coordinate reaches 0
    to_one = (1.0 - x[pos]) / d[pos]     # ... an increasing one reaches 1
    step = 1.0
    ahead = to_zero[to_zero > 1e-7]
    if ahead.size:
        step = float(ahead.min())
    ahead = to_one[to_one > 1e-7]
    if ahead.size:
        step = min(step, float(ahead.min()))
    return _project_to_simplex(x + step * d)


def min_norm_coefficients(gram: np.ndarray, solver: str = "projected_gradient", tol: float = 1e-5,
                          max_iter: int = 250) -> np.ndarray:
    """The simplex weights alpha minimising alpha^T gram alpha (MinNormSolver's arithmetic, float64)."""
    g = np.asarray(gram, dtype=np.float64)
    k = g.shape[0]
    if k == 1:
        return np.ones(1)
    best, best_cost = None, math.inf
    for i in range(k):
        for j in range(i + 1, k):
            gamma, cost = _two_point(g[i, i], g[i, j], g[j, j])
            if cost < best_cost:
                best, best_cost = (i, j, gamma), cost
    if best is None:  # NaN somewhere
        return np.full(k, 1.0 / k)
    alpha = np.zeros(k)
    alpha[best[0]], alpha[best[1]] = best[2], 1.0 - best[2]
    if k == 2:
        return alpha
    for _ in range(max_iter):
        g_alpha = g @ alpha
        if solver == "projected_gradient":
            target = _projected_step(alpha, -g_alpha)
            gamma, _ = _two_point(alpha @ g_alpha, alpha @ (g @ target), target @ g @ target)
            new = gamma * alpha + (1.0 - gamma) * target
        else:
            t = int(np.argmin(g_alpha))
            gamma, _ = _two_point(alpha @ g_alpha, g_alpha[t], g[t, t])
            new = gamma * alpha
            new[t] += 1.0 - gamma
        if np.abs(new - alpha).sum() < tol:
            return alpha
        alpha = new
    return alpha


class MGDA(GradientMethod):
    """Min-norm convex combination of the (normalised) per-term gradients; K backward passes per step."""

    def __init__(self, params, term_names, default_weights=None, normalization: str = "loss+",
                 solver: str = "projected_gradient", tol: float = 1e-5, max_iter: int = 250,
                 optimizer=None) -> None:
        validate.choice("method.normalization", normalization, NORMALIZATIONS)
        validate.choice("method.solver", solver, SOLVERS)
        validate.positive_number("method.tol", tol)
        validate.positive_int("method.max_iter", max_iter)
        super().__init__(params, term_names, default_weights, optimizer)
        self.normalization = normalization
        self.solver = solver
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    def normalizers(self, gram: Tensor, losses: Tensor) -> Tensor:
        """(K,) float64 ``n_i`` on the Gram matrix's device; 1 where not a finite number > 0."""
        norms = gram.diagonal().clamp_min(0).sqrt()
        if self.normalization == "l2":
            n = norms
        elif self.normalization == "loss":
            n = losses.to(gram)
        elif self.normalization == "loss+":
            n = losses.to(gram) * norms
        else:
            return torch.ones_like(norms)
        return torch.where(torch.isfinite(n) & (n > 0), n, torch.ones_like(n))

    def coefficients(self, losses: Tensor) -> Tensor:
        gram = self.grads.gram()
        k = gram.shape[0]
        if k == 1:
            return torch.ones(1, dtype=gram.dtype, device=gram.device)
        n = self.normalizers(gram, losses)
        g = gram / (n[:, None] * n[None, :])
        if k == 2:  # the closed form on the device: no host sync
            v11, v12, v22 = g[0, 0], g[0, 1], g[1, 1]
            denom = v11 + v22 - 2.0 * v12
            inner = (v22 - v12) / torch.where(denom > 0, denom, torch.ones_like(denom))
            gamma = torch.where(v12 >= v11, torch.full_like(v11, 0.999),
                                torch.where(v12 >= v22, torch.full_like(v11, 0.001), inner))
            gamma = torch.where(torch.isfinite(gamma), gamma, torch.full_like(gamma, 0.5))  # NaN: uniform
            return torch.stack([gamma, 1.0 - gamma])
        alpha = min_norm_coefficients(g.cpu().numpy(), self.solver, self.tol, self.max_iter)
        return torch.from_numpy(alpha).to(gram.device)

    def hparams(self) -> dict[str, Any]:
        return {"normalization": self.normalization, "solver": self.solver, "tol": self.tol,
                "max_iter": self.max_iter}
