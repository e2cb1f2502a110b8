"""The per-term gradient engine shared by MTAdam and every method that needs each term's gradient.

MTAdam (arXiv:2006.14683) and the gradient-level balancing methods (MGDA,
PCGrad, CAGrad, IMTL, Aligned-MTL) need ``g_i = dL_i/dtheta`` for each of the
K terms separately, not only the gradient of a weighted sum. They cost K
backward passes; what the engine controls is everything around them:

* **Buffers allocated once.** Row ``i`` of ``grads[j]`` (shape
  ``(K, *p_j.shape)``, contiguous) holds ``dL_i/dp_j``. The buffers live as long
  as the method, so a step allocates nothing of the size of the model beyond
  what autograd's own backward allocates.
* **Only the method's parameters.** Each term's backward pass runs with
  ``inputs=`` the given parameters and accumulates straight into its row of
  the buffers: no ``.grad`` anywhere else (a GAN's discriminator) is written,
  the parameters' own ``.grad`` are left as they were, and the graph is kept
  only until the last term that needs it. (Measured on the MNIST CNN, K
  backward passes into existing buffers cost less than K
  ``torch.autograd.grad`` calls, which allocate fresh gradient tensors that
  then have to be copied; see results/performance.md.)
* **Terms that do not reach a parameter** get zeros there (``allow_unused``).
* **No host sync.** Norms, the Gram matrix and combinations are device tensors.
* **One pass when the terms partition the batch.** A model whose terms each
  depend on their own samples only (MNIST: term ``c`` is the class-``c``
  digits' NLL) passes a :class:`~mtbench.methods.sample_partition.SamplePartition`,
  and the same gradients come from one backward pass plus one weight-gradient
  computation per term over its samples (``mtbench/methods/sample_partition.py``);
  unsupported layers fall back to the K passes.

The gradient-level methods combine the per-term gradients linearly:
``d = sum_i c_i g_i``. Everything they need is in the Gram matrix
``G G^T`` (K x K, the inner products of the per-term gradients over all
parameters), so they compute the coefficients ``c`` from it
(:meth:`TermGradients.gram`) and :meth:`TermGradients.combine_into_grad` writes
``d`` into each parameter's ``.grad`` (buffers again allocated once) for a plain
torch optimiser to apply.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtbench.methods.sample_partition import SamplePartition

__all__ = ["TermGradients", "GRAM_BLOCK"]

#: columns per block when gram() converts the gradients to float64 (K x 65536 doubles: 5 MiB at K = 10)
GRAM_BLOCK = 1 << 16


class TermGradients:
    """Per-term gradients of K scalar losses with respect to ``params``, into buffers allocated once.

    Parameters
    ----------
    params:
        The parameters to differentiate (those that require grad are used).
    k:
        The number of loss terms.
    """

    def __init__(self, params: Sequence[Tensor], k: int) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.k = int(k)
        if self.k < 1:
            raise ValueError(f"the number of loss terms must be >= 1, got {k}")
        self.grads: list[Tensor] = []  # grads[j][i] = dL_i/dp_j
        self._scratch: Tensor | None = None  # gram(): one column block of the gradients in float64
        self.last_path = ""  # "per_term" (K backward passes) or "partitioned" (one pass, see compute)

    def _buffers(self) -> list[Tensor]:
        """The (K, *p.shape) buffers; (re)allocated only when a parameter's device, dtype or shape changed."""
        if len(self.grads) != len(self.params) or any(
                b.device != p.device or b.dtype != p.dtype or b.shape[1:] != p.shape
                for b, p in zip(self.grads, self.params)):
            self.grads = [torch.empty((self.k, *p.shape), dtype=p.dtype, device=p.device) for p in self.params]
        return self.grads

    def compute(self, losses: Sequence[Tensor], partition: SamplePartition | None = None) -> list[list[Tensor]]:
        """Fill the buffers with ``dL_i/dp_j`` for this step's K terms.

        Each term's backward pass accumulates straight into row ``i`` of the
        buffers (set as the parameters' ``.grad`` for that pass, zeroed first),
        so no per-term gradient is copied; the parameters' own ``.grad`` are
        put back as they were. Returns ``norms[i][j] = ||dL_i/dp_j||`` as 0-d
        device tensors (0 where term ``i`` does not reach ``p_j``): MTAdam
        balances them per layer.

        ``partition`` (from a model whose terms partition the batch, see
        :mod:`mtbench.methods.sample_partition`) computes the same gradients in
        one backward pass when the recorded layers support it; otherwise the K
        passes run as usual. ``self.last_path`` says which ran.
        """
        if len(losses) != self.k:
            raise ValueError(f"expected {self.k} loss terms, got {len(losses)}")
        bufs = self._buffers()
        if partition is not None and partition.fill(losses, self.params, bufs):
            self.last_path = "partitioned"
            return [list(torch._foreach_norm([b[i] for b in bufs])) for i in range(self.k)]
        self.last_path = "per_term"
        torch._foreach_zero_(bufs)
        need = [i for i, loss in enumerate(losses) if loss.requires_grad]
        last = need[-1] if need else -1
        saved = [p.grad for p in self.params]
        try:
            for i in need:
                row = [b[i] for b in bufs]
                for p, g in zip(self.params, row):
                    p.grad = g
                torch.autograd.backward(losses[i].reshape(()), inputs=self.params, retain_graph=i < last)
                if any(p.grad is not g for p, g in zip(self.params, row)):  # autograd replaced a buffer
                    raise RuntimeError("per-term gradients must be dense tensors of the parameters' layout")
        finally:
            for p, g in zip(self.params, saved):
                p.grad = g
        rows = [[b[i] for b in bufs] for i in range(self.k)]
        return [list(torch._foreach_norm(row)) for row in rows]

    def gram(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """(K, K) matrix of inner products ``<g_i, g_l>`` over all parameters (on the first parameter's device).

        Accumulated in ``dtype`` (float64 by default: the methods solve small,
        sometimes ill-conditioned systems with it). The float32 gradients are
        converted in column blocks of :data:`GRAM_BLOCK` into a scratch buffer
        allocated once, not as a whole: a float64 copy of K gradients the size
        of the model would be allocated (and page-faulted in) every step."""
        device = self.params[0].device
        out = torch.zeros(self.k, self.k, dtype=dtype, device=device)
        for b in self.grads:
            flat = b.reshape(self.k, -1)
            if flat.dtype == dtype and flat.device == device:
                out.addmm_(flat, flat.T)
                continue
            scratch = self._gram_scratch(dtype, device)
            for start in range(0, flat.shape[1], GRAM_BLOCK):
                part = flat[:, start:start + GRAM_BLOCK]
                block = scratch[:, :part.shape[1]]
                block.copy_(part)
                out.addmm_(block, block.T)
        return out

    def _gram_scratch(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        s = self._scratch
        if s is None or s.dtype != dtype or s.device != device:
            s = self._scratch = torch.empty(self.k, GRAM_BLOCK, dtype=dtype, device=device)
        return s

    def combine_into_grad(self, coeffs: Tensor) -> None:
        """Set each parameter's ``.grad`` to ``sum_i coeffs[i] * g_i`` (in place when ``.grad`` exists)."""
        for p, b in zip(self.params, self.grads):
            c = coeffs.to(device=b.device, dtype=b.dtype).unsqueeze(0)
            flat = b.reshape(self.k, -1)
            if p.grad is None or p.grad.shape != p.shape or not p.grad.is_contiguous():
                p.grad = torch.empty_like(p, memory_format=torch.contiguous_format)
            torch.mm(c, flat, out=p.grad.view(1, -1))
