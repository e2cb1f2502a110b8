"""PCGrad: project each term's gradient off the gradients it conflicts with, then add them up.

Paper: Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman
and Chelsea Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
arXiv:2001.06782. Official code: tianheyu927/PCGrad (``PCGrad_tf.py``,
TensorFlow); the PyTorch port WeiChengTseng/Pytorch-PCGrad (``pcgrad.py``) and
LibMTL (``LibMTL/weighting/PCGrad.py``) were compared as well. This file is an
independent implementation of the paper's Algorithm 1.

Idea (Algorithm 1)
------------------
Two gradients conflict when their inner product is negative. For every term
``i``, start from ``g_i^PC = g_i`` and visit the other terms ``j != i`` in a
random order; whenever ``<g_i^PC, g_j> < 0``, remove the conflicting
component::

    g_i^PC <- g_i^PC - <g_i^PC, g_j> / ||g_j||^2 * g_j

(the projection is onto the normal plane of the *original* ``g_j``; the
already projected ``g_i^PC`` is what is tested and projected). The update is
``sum_i g_i^PC`` (``reduction: sum``, the paper and the official code), or
its mean (``reduction: mean``, Pytorch-PCGrad's default).

In coefficient space
--------------------
Every ``g_i^PC`` stays a linear combination of the original gradients, so it
is tracked as a coefficient vector ``C[i]`` (``g_i^PC = sum_l C[i, l] g_l``,
``C = I`` at the start), and everything above needs only the Gram matrix
``G`` (:meth:`TermGradients.gram`, float64):
``<g_i^PC, g_j> = (C G)[i, j]``, ``||g_j||^2 = G[j, j]`` and a projection
subtracts ``<g_i^PC, g_j> / G[j, j]`` from ``C[i, j]``. The rows are
independent, so round ``r`` projects every row ``i`` off its ``r``-th term at
once: K - 1 rounds of (K, K) device operations, no host sync. The coefficient
of term ``l`` in the update, logged as ``weight/<term>``, is
``sum_i C[i, l]`` (``/ K`` with ``mean``); it is 1 for every term when no pair
conflicts.

Randomness: the K orders (a random permutation of the other terms for each
``i``) come from a dedicated CPU ``torch.Generator`` seeded at construction
from torch's default generator (so the run's seed fixes it); its state is in
:meth:`state_dict`, so a resumed run draws the same orders. On CUDA the
orders reach the device by a non-blocking copy from pinned memory.

What it operates on here
------------------------
One network trained with K loss terms: the method gets the parameters of the
multi-term part (the classifier, or a GAN's generator, never the
discriminators), and the per-term gradients are taken with respect to ALL of
them. In the paper's multi-task setting the gradients are those of the shared
parameters (task heads get their own task's gradient only); here every
parameter is shared by every term, so the projection is done on the whole
parameter vector.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`); the
    model's default weights are not used.
reduction:
    ``sum`` (default; the paper, the official TensorFlow code and LibMTL) or
    ``mean`` (the projected gradients' average, Pytorch-PCGrad's default).
shuffle:
    ``true`` (default, the paper): each term visits the others in a fresh
    random order every step. ``false``: in increasing term order (this is what
    the official TensorFlow code does in effect: its ``tf.random.shuffle``
    result is discarded).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from the reference implementations (intended)
---------------------------------------------------------
* The paper visits ``j != i`` only. The TensorFlow, Pytorch-PCGrad and
  LibMTL loops also visit ``j = i``, which changes the result only in the rare
  case where the projected ``g_i^PC`` has turned against the original ``g_i``
  (it would then be projected off ``g_i`` itself). The paper is followed.
* LibMTL adds 1e-8 to ``||g_j||^2``; the official code divides by the exact
  value. Here the exact value is used, and a zero ``g_j`` (a term that does not
  reach the parameters) is never projected on (its inner products are 0, not
  negative).
* Pytorch-PCGrad averages only over the parameters every term reaches and sums
  over the others; here every parameter is treated alike (``mean`` divides the
  whole sum by K).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import GradientMethod

__all__ = ["PCGrad", "pcgrad_coefficients"]

REDUCTIONS = ("sum", "mean")


def pcgrad_coefficients(gram: Tensor, orders: Tensor, reduction: str = "sum") -> Tensor:
    """(K,) coefficients of ``reduction_i g_i^PC`` over the original gradients.

    ``gram`` is the (K, K) Gram matrix; ``orders[i]`` (shape (K, K-1), on the
    same device) is the order in which term ``i`` visits the other terms.
    """
    k = gram.shape[0]
    coeff = torch.eye(k, dtype=gram.dtype, device=gram.device)  # row i: g_i^PC over the g_l
    rows = torch.arange(k, device=gram.device)
    sq_norms = gram.diagonal()
    for r in range(k - 1):
        j = orders[:, r]
        dots = (coeff @ gram)[rows, j]                      # <g_i^PC, g_j>
        norm_j = sq_norms[j]
        step = dots / torch.where(norm_j > 0, norm_j, torch.ones_like(norm_j))
        coeff[rows, j] -= torch.where(dots < 0, step, torch.zeros_like(step))
    total = coeff.sum(dim=0)
    return total / k if reduction == "mean" else total


class PCGrad(GradientMethod):
    """Projecting conflicting gradients (gradient surgery); K backward passes per step."""

    def __init__(self, params, term_names, default_weights=None, reduction: str = "sum", shuffle: bool = True,
                 optimizer=None) -> None:
        validate.choice("method.reduction", reduction, REDUCTIONS)
        validate.boolean("method.shuffle", shuffle)
        super().__init__(params, term_names, default_weights, optimizer)
        self.reduction = reduction
        self.shuffle = shuffle
        k = len(self.term_names)
        # others[i] = the terms j != i in increasing order
        self._others = torch.tensor([[j for j in range(k) if j != i] for i in range(k)],
                                    dtype=torch.long).reshape(k, k - 1)
        self._generator = torch.Generator()
        self._generator.manual_seed(int(torch.randint(2**62, (1,)).item()))

    def draw_orders(self) -> Tensor:
        """(K, K-1) CPU tensor: row ``i`` is the order in which term ``i`` visits the others this step."""
        if not self.shuffle or self._others.shape[1] < 2:
            return self._others
        keys = torch.rand(self._others.shape, generator=self._generator)
        return self._others.gather(1, keys.argsort(dim=1))

    def coefficients(self, losses: Tensor) -> Tensor:
        gram = self.grads.gram()
        orders = self.draw_orders()
        if gram.device.type == "cuda":
            orders = orders.pin_memory().to(gram.device, non_blocking=True)
        else:
            orders = orders.to(gram.device)
        return pcgrad_coefficients(gram, orders, self.reduction)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["generator"] = self._generator.get_state().clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._generator.set_state(state["generator"].detach().cpu().clone())

    def hparams(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "shuffle": self.shuffle}
