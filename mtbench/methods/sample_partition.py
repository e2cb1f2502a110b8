"""Per-term gradients in one backward pass when every sample belongs to exactly one loss term.

The per-term gradient engine (:mod:`mtbench.methods.term_grads`) runs one
backward pass per term: K passes through the whole network. When the K terms
*partition the batch* (term ``k`` depends only on the samples with
``rows == k``) and the network treats samples independently (no batch norm in
training mode, no attention across the batch), one pass is enough. For a
``Linear`` or convolution layer with input ``x_n`` and output gradient
``delta_n`` of sample ``n``, the weight gradient of term ``k`` is
``sum_{n: rows_n = k} delta_n (x) x_n`` (outer product, or its convolution
analogue), and ``delta_n`` of the *sum* of the terms equals ``delta_n`` of
sample ``n``'s own term, since no other term reaches sample ``n``. So one
backward pass of ``sum_k L_k`` down to the layers' outputs (no weight
gradients), then each layer's weight gradient once per term over that term's
samples, gives exactly the K per-term gradients: about the cost of one full
backward pass instead of K (the per-sample-gradient technique of Opacus and
BackPACK, applied per term instead of per sample).

This is the MNIST multi-term benchmark of MTAdam (arXiv:2006.14683, sec. 4.1):
term ``c`` is the NLL of the batch's class-``c`` digits. The model opts in
(:class:`LayerTaps` records the layers of its forward pass and it passes the
rows to ``method.step(..., partition=...)``); the model vouches for the two
conditions above, and the engine checks everything else it relies on (every
parameter a weight or bias of a tapped ``Linear``/convolution layer, each layer
run once, its output not modified in place, matching batch sizes and dtypes)
and falls back to K backward passes otherwise. The results equal the K-pass
gradients up to float32 summation order (tests/methods/test_sample_partition.py).

Cost: the gradients' layout needs the number of samples of each term on the
host, one device-to-host copy of K integers per step (free on CPU; on a GPU
it replaces K - 1 backward passes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["LayerTaps", "SamplePartition"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class LayerTaps:
    """Records the input and output of every ``Linear`` and convolution layer of ``root`` in one forward pass.

    Usage, in a model's ``training_step``::

        with self.taps.recording():
            losses = self.terms(x, y)
        method.step(losses, partition=self.taps.partition(y))

    The hooks exist only inside :meth:`recording` (and record only when
    autograd is on), so evaluation and the model's state are untouched.
    """

    def __init__(self, root: nn.Module) -> None:
        self.layers = [m for m in root.modules() if isinstance(m, (nn.Linear, *_CONV))]
        self.records: dict[nn.Module, list[tuple[Tensor, Tensor, int]]] = {}

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if torch.is_grad_enabled() and inputs and isinstance(inputs[0], Tensor) and isinstance(output, Tensor):
            self.records.setdefault(module, []).append((inputs[0], output, output._version))

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the layers' inputs and outputs of the forward passes inside the block (earlier records go)."""
        self.records = {}
        handles = [m.register_forward_hook(self._hook) for m in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def partition(self, rows: Tensor) -> SamplePartition:
        """The recorded forward pass with ``rows[n]``, the term of sample ``n``; hands the records over."""
        records, self.records = self.records, {}
        return SamplePartition(rows, records)


class SamplePartition:
    """One recorded forward pass whose K terms partition the batch: ``rows[n]`` is the term of sample ``n``."""

    def __init__(self, rows: Tensor, records: dict[nn.Module, list[tuple[Tensor, Tensor, int]]]) -> None:
        if rows.dim() != 1 or rows.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"partition rows must be a 1-D integer tensor, got {rows.dtype} {tuple(rows.shape)}")
        self.rows = rows
        self.records = records

    def _plan(self, params: Sequence[Tensor]) -> list[tuple[nn.Module, Tensor, Tensor, int | None, int | None]] | None:
        """(layer, input, output, index of its weight in params, index of its bias) or None if unsupported."""
        where = {id(p): j for j, p in enumerate(params)}
        plan, covered = [], set()
        for module, recs in self.records.items():
            w, b = module.weight, module.bias
            jw = where.get(id(w))
            jb = where.get(id(b)) if b is not None else None
            if jw is None and jb is None:
                continue
            if len(recs) != 1:  # a layer run twice in one forward (weight sharing): not a per-sample outer product
                return None
            x, out, version = recs[0]
            if out._version != version or x.shape[0] != self.rows.shape[0] or x.dtype != w.dtype:
                return None
            if isinstance(module, _CONV) and (module.padding_mode != "zeros" or isinstance(module.padding, str)
                                              and module.padding != "valid"):
                return None
            plan.append((module, x, out, jw, jb))
            covered.update(j for j in (jw, jb) if j is not None)
        if len(covered) != len(params):  # a parameter outside the tapped layers (or a layer not recorded)
            return None
        return plan

    def fill(self, losses: Sequence[Tensor], params: Sequence[Tensor], bufs: Sequence[Tensor]) -> bool:
        """Write ``dL_k/dp_j`` into ``bufs[j][k]`` for every term and parameter; False (nothing written) if the
        recorded pass does not support it (the caller then runs K backward passes)."""
        plan = self._plan(params)
        if plan is None:
            return False
        k = len(losses)
        need = [loss.reshape(()) for loss in losses if loss.requires_grad]
        if not need:
            torch._foreach_zero_(list(bufs))
            return True
        outs = [out for _, _, out, _, _ in plan]
        deltas = torch.autograd.grad(torch.stack(need).sum(), outs, allow_unused=True)
        counts = torch.bincount(self.rows, minlength=k).tolist()  # the one host sync
        if len(counts) != k:
            raise ValueError(f"partition rows name term {len(counts) - 1}, but there are {k} terms")
        order = torch.argsort(self.rows, stable=True)
        for (module, x, out, jw, jb), delta in zip(plan, deltas):
            if delta is None:
                delta = torch.zeros_like(out)
            xs = x.detach().index_select(0, order).split(counts)
            ds = delta.index_select(0, order).split(counts)
            for i in range(k):
                w_row = bufs[jw][i] if jw is not None else None
                b_row = bufs[jb][i] if jb is not None else None
                if counts[i] == 0:
                    for r in (w_row, b_row):
                        if r is not None:
                            r.zero_()
                elif isinstance(module, nn.Linear):
                    d2 = ds[i].reshape(-1, ds[i].shape[-1])
                    if w_row is not None:
                        torch.mm(d2.T, xs[i].reshape(-1, xs[i].shape[-1]), out=w_row)
                    if b_row is not None:
                        torch.sum(d2, 0, out=b_row)
                else:
                    self._conv_grads(module, xs[i], ds[i], w_row, b_row)
        return True

    @staticmethod
    def _conv_grads(module: nn.Module, x: Tensor, delta: Tensor, w_row: Tensor | None, b_row: Tensor | None) -> None:
        nd = x.dim() - 2
        padding = (0,) * nd if module.padding == "valid" else module.padding
        _, gw, gb = torch.ops.aten.convolution_backward(
            delta, x, module.weight.detach(), [module.out_channels] if module.bias is not None else None,
            list(module.stride), list(padding), list(module.dilation), False, [0] * nd, module.groups,
            [False, w_row is not None, b_row is not None])
        if w_row is not None:
            w_row.copy_(gw)
        if b_row is not None:
            b_row.copy_(gb)
