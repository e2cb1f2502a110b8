"""Aligned-MTL: aligning the principal components of the gradient system.

Paper: Dmitry Senushkin, Nikolay Patakin, Arseny Kuznetsov, Anton Konushin,
"Independent Component Alignment for Multi-Task Learning", CVPR 2023,
arXiv:2305.19000. Official code: SamsungLabs/MTL
(``code/optim/aligned/solver.py``: ``ProcrustesSolver``;
``code/optim/aligned/balancer.py``: ``AlignedMTLBalancer``, registered as
``amtl``); LibMTL's ``LibMTL/weighting/Aligned_MTL.py`` is the same
arithmetic with the ``min`` scale only.

The arithmetic (official code)
------------------------------
With ``G`` the (d, K) matrix of the per-term gradients, ``M = G^T G`` (K x K)
and its eigendecomposition ``M = V diag(lambda) V^T``: the eigenvalues with
``lambda <= tol = max(lambda) * K * eps`` are dropped (rank truncation;
``eps`` is that of the parameters' dtype, float32's as the official
``torch.finfo().eps``: the precision of the gradients), leaving ``r``
eigenpairs. The aligned gradients are ``G W`` with

    W = sigma * V_r diag(lambda_r)^(-1/2) V_r^T

(the orthogonal Procrustes solution: ``G W = sigma U_r V_r^T`` from the SVD
``G = U S V^T``, a gradient system with all singular values equal to
``sigma``, i.e. condition number 1), and the update is their sum,
``d = G W 1``. ``sigma`` is set by ``scale_mode``: ``min`` the smallest kept
singular value ``sqrt(lambda_min)`` (paper and default), ``median``
``sqrt(median(lambda_r))`` (``torch.median``: the lower of the two middle
values for an even ``r``), ``rmse`` ``sqrt(mean(lambda_r))``.

Here the update is ``sum_i c_i g_i`` with ``c = W 1``, computed from the
Gram matrix of :class:`~mtbench.methods.term_grads.TermGradients` (float64)
with ``torch.linalg.eigh`` on the device; ``c`` is the logged
``weight/<term>``. The dropped eigenpairs are masked rather than cut
(``torch.where``: no data-dependent shapes); ``eigh`` itself may synchronise
with the host on a GPU (its error check), nothing else does.

What it operates on here
------------------------
One network trained with K loss terms; the method gets the parameters of the
multi-term part (the MNIST classifier, or a GAN's generator(s); never a
discriminator) and ``G`` holds the gradients with respect to ALL of them (K
backward passes): the official ``amtl`` balancer's gradients with respect to
the shared encoder parameters, with every parameter shared. The official
``scale_decoder_grad`` option (multiplying task-specific decoders' gradients
by ``c``) has nothing to act on (there are no task-specific parameters), nor
has Aligned-MTL-UB (``amtlub``: the shared representation), which is not
provided.

Deliberate differences from the official code
---------------------------------------------
* When every gradient is zero (rank 0) the official code fails (an empty
  eigenvalue list); here the coefficients are 0 (a zero update).
* A term whose gradient is exactly zero lies in the dropped null space and
  gets ``c_i = 0``, as in the official code.
* The Gram matrix and the eigendecomposition are float64 (the official code
  works in the gradients' float32).

Parameters
----------
params, term_names, default_weights:
    Given by the runner (:class:`mtbench.methods.base.Method`); the model's
    default weights are not used (the method balances the raw terms).
scale_mode:
    ``min`` (default) | ``median`` | ``rmse``: ``sigma`` above.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import GradientMethod

__all__ = ["SCALE_MODES", "AlignedMTL", "aligned_coefficients"]

SCALE_MODES = ("min", "median", "rmse")


def aligned_coefficients(gram: Tensor, scale_mode: str = "min", eps: float | None = None) -> Tensor:
    """Aligned-MTL's ``c = W 1`` (K,) for per-term gradients with Gram matrix ``gram`` (K, K), in its dtype.

    ``eps`` is the relative tolerance unit of the rank truncation (default float32's, as the official code)."""
    k = gram.shape[0]
    if eps is None:
        eps = torch.finfo(torch.float32).eps
    lam, vec = torch.linalg.eigh(gram)                   # ascending eigenvalues
    tol = lam.max() * k * eps
    keep = lam > tol                                     # a suffix of the ascending order: the top r
    r = keep.sum()
    safe = torch.where(keep, lam, torch.ones_like(lam))  # no sqrt/division of dropped (maybe <= 0) values
    if scale_mode == "min":
        sigma2 = torch.where(keep, lam, torch.full_like(lam, torch.inf)).min()
    elif scale_mode == "median":                         # torch.median of the kept values: the lower middle one
        sigma2 = lam.gather(0, (k - r + torch.div(r - 1, 2, rounding_mode="floor")).clamp(0, k - 1).reshape(1))[0]
    else:  # rmse
        sigma2 = (lam * keep).sum() / r.clamp_min(1)
    sigma2 = torch.where(r > 0, sigma2, torch.zeros_like(sigma2))
    factor = torch.where(keep, sigma2.sqrt() / safe.sqrt(), torch.zeros_like(lam))
    return vec @ (factor * vec.sum(0))                   # V diag(factor) V^T 1


class AlignedMTL(GradientMethod):
    """Aligned-MTL coefficients from the Gram matrix's eigendecomposition; K backward passes per step."""

    def __init__(self, params, term_names, default_weights=None, scale_mode: str = "min",
                 optimizer=None) -> None:
        validate.choice("method.scale_mode", scale_mode, SCALE_MODES)
        super().__init__(params, term_names, default_weights, optimizer)
        self.scale_mode = scale_mode
        self._eps = torch.finfo(self.params[0].dtype).eps if self.params[0].is_floating_point() else None

    def coefficients(self, losses: Tensor) -> Tensor:
        return aligned_coefficients(self.grads.gram(), self.scale_mode, self._eps)

    def hparams(self) -> dict[str, Any]:
        return {"scale_mode": self.scale_mode}
