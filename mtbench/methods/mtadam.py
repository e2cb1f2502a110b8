"""MTAdam: Adam that balances the gradient magnitude of K loss terms per layer.

Paper: Itzik Malkiel and Lior Wolf, "MTAdam: Automatic Balancing of Multiple
Training Loss Terms", arXiv:2006.14683, EMNLP 2021. Reference code:
ItzikMalkiel/MTAdam (``mtadam.py``). The numerical contract implemented here is
``SPEC.md`` section 3; this file is an independent implementation of it.

Idea
----
Instead of minimising ``sum_i w_i L_i`` with hand-tuned weights, MTAdam takes
the gradient of every term separately. In every parameter tensor (a "layer";
a weight and its bias are separate layers) it keeps a running average ``n_i``
of the L2 norm of each term's gradient and rescales term ``i``'s gradient to
``rank_i`` times the norm of the *anchor* term (the first term whose norm is
not ~0). Each term then gets its own Adam moments ``m_i, v_i``; the update uses
one denominator shared by all terms, the elementwise maximum of their Adam
denominators, so that no term can take a larger step than Adam would take for
it alone.

Per parameter tensor ``p``, step ``t = 1, 2, ...``:

1. ``g_i = dL_i/dp`` (the shared per-term gradient engine,
   :mod:`mtbench.methods.term_grads`, on this optimiser's parameters only;
   0 if term ``i`` has no path to ``p``)
2. ``n_i = ||g_i||`` if ``t == 1`` else ``beta3 * n_i + (1 - beta3) * ||g_i||``
   (all K norms are updated before any rescaling)
3. anchor ``a`` = the smallest ``i`` with ``n_i > 1e-10`` (none: no rescaling)
4. ``g_i <- rank_i * n_a * g_i / n_i`` where ``n_i > 1e-10``
5. ``g_i <- g_i + weight_decay * p``
6. ``m_i <- beta1 m_i + (1-beta1) g_i``; ``v_i <- beta2 v_i + (1-beta2) g_i^2``;
   with amsgrad ``vmax_i <- max(vmax_i, v_i)`` replaces ``v_i`` below
7. ``D = max_i (sqrt(v_i) / sqrt(1 - beta2^t) + eps)`` (elementwise)
8. ``p <- p - lr / (1 - beta1^t) * sum_i m_i / D``

Parameters
----------
lr:
    Learning rate (> 0).
betas:
    ``(beta1, beta2, beta3)``, each in [0, 1): Adam's first and second moment
    decay, and the decay of the running gradient norms ``n_i``.
eps:
    Added to the Adam denominator (> 0).
weight_decay:
    L2 penalty added to every term's (rescaled) gradient (>= 0).
amsgrad:
    Use the running maximum of ``v_i`` (AMSGrad) in the denominator.
ranks (argument of :meth:`MTAdam.step`):
    K positive floats; term ``i``'s gradient norm is balanced to ``rank_i``
    times the anchor's (default all 1).

Differences from the reference code (intended, see SPEC section 4)
-------------------------------------------------------------------
* The reference stops processing a parameter group at the first parameter
  without a gradient (``break``), which silently mixes one term's gradient into
  another term's moments. Here a term that does not reach a parameter simply
  has a zero gradient there (its norm decays, its moments decay).
* The reference calls ``loss.backward(retain_graph=True)`` for every term, so it
  fills the ``.grad`` of every other tensor in the graph (e.g. a GAN
  discriminator) and keeps the whole graph alive. Here each term's backward
  pass runs with ``inputs=`` this optimiser's parameters, into buffers of its
  own: no other ``.grad`` is touched, the parameters' ``.grad`` are left as
  they were, and the graph is retained only until the last term that requires
  grad has been differentiated.
* The reference keeps the running norms as attributes of the parameter
  objects, outside ``state_dict``. Here they are ``state[p]["norms"]`` and
  round-trip with ``state_dict()`` / ``load_state_dict()``.
* The reference chooses the anchor while later terms' norms are still those of
  the previous step. Here all K norms are updated first, then the anchor is
  chosen and the gradients rescaled.

With every parameter reached by every term and ``n_0 > 1e-10`` the two agree
to float32 rounding. Implementation details that do not change the contract
beyond rounding: ``D`` is computed as ``sqrt(max_i v_i) / sqrt(1-beta2^t) +
eps`` (identical, since sqrt is monotone), the update as ``(sum_i m_i) / D``,
and the first moment with ``lerp``.

The step never synchronises host and device: thresholds and the anchor choice
are tensor ops (``torch.where``, ``argmax`` on the mask), the step counter is a
Python int, and the per-term work uses ``torch._foreach_*`` ops.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import Method, check_beta, check_positive
from mtbench.methods.sample_partition import SamplePartition
from mtbench.methods.term_grads import TermGradients

__all__ = ["MTAdam", "MTAdamMethod"]

#: norms at or below this are treated as "term does not reach this layer"
NORM_THRESHOLD = 1e-10


def _check_ranks(ranks: Sequence[float] | None, k: int) -> tuple[float, ...]:
    if ranks is None:
        return (1.0,) * k
    ranks = tuple(ranks)
    if len(ranks) != k:
        raise ValueError(f"ranks must have one value per loss term ({k}), got {len(ranks)}: {list(ranks)!r}")
    for i, r in enumerate(ranks):
        validate.positive_number(f"ranks[{i}]", r)
    return tuple(float(r) for r in ranks)


class MTAdam(torch.optim.Optimizer):
    """MTAdam optimiser (see the module docstring for the algorithm).

    ``step(losses, ranks=None)`` takes the K loss terms (scalar tensors that
    may share one graph) and computes the per-term gradients itself; do not
    call ``backward()``. Parameter groups may override every hyper-parameter.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999, 0.9), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
        self._validate(defaults)
        defaults["betas"] = tuple(float(b) for b in betas)
        self._effective_weights: Tensor | None = None
        self._rank_cache: dict[tuple, Tensor] = {}
        self._scratch: dict[Tensor, tuple[Tensor, Tensor]] = {}
        self._engine: TermGradients | None = None
        super().__init__(params, defaults)

    # -- configuration ------------------------------------------------------
    @staticmethod
    def _validate(group: Mapping[str, Any]) -> None:
        check_positive("lr", group["lr"])
        betas = group["betas"]
        try:
            n = len(betas)
        except TypeError:
            raise ValueError(f"betas must be a sequence of 3 values (beta1, beta2, beta3), got {betas!r}") from None
        if n != 3:
            raise ValueError(f"betas must have 3 values (beta1, beta2, beta3), got {list(betas)!r}")
        for i, b in enumerate(betas):
            check_beta(f"betas[{i}]", b)
        check_positive("eps", group["eps"])
        wd = group["weight_decay"]
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {wd!r}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **param_group}
        self._validate(merged)
        if "betas" in param_group:
            param_group = {**param_group, "betas": tuple(float(b) for b in param_group["betas"])}
        super().add_param_group(param_group)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_effective_weights", None)
        self.__dict__.setdefault("_rank_cache", {})
        self.__dict__.setdefault("_scratch", {})
        self.__dict__.setdefault("_engine", None)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)

    # -- logging --------------------------------------------------------------
    @property
    def effective_weights(self) -> Tensor | None:
        """(K,) tensor on the device: for term i, the mean over parameter
        tensors with ``n_i > 1e-10`` of ``rank_i * n_a / n_i`` at the last step
        (0 where no such tensor). ``None`` before the first step."""
        return self._effective_weights

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        ew = self._effective_weights
        sd["effective_weights"] = None if ew is None else ew.detach().clone()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state_dict = dict(state_dict)
        ew = state_dict.pop("effective_weights", None)
        super().load_state_dict(state_dict)
        if ew is not None:
            device = self.param_groups[0]["params"][0].device
            ew = ew.to(device)
        self._effective_weights = ew

    # -- the step -------------------------------------------------------------
    def _ranks_tensor(self, ranks: tuple[float, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (ranks, device, dtype)
        r = self._rank_cache.get(key)
        if r is None:  # built once per ranks/device/dtype: no per-step host-to-device copy
            if len(self._rank_cache) > 16:
                self._rank_cache.clear()
            if all(x == 1.0 for x in ranks):
                r = torch.ones(len(ranks), 1, dtype=dtype, device=device)
            else:
                host = torch.tensor(ranks, dtype=dtype).unsqueeze(1)
                if device.type == "cuda":  # a pinned, non-blocking copy does not wait for the device
                    host = host.pin_memory()
                r = host.to(device, non_blocking=True)
            self._rank_cache[key] = r
        return r

    def step(self, losses: Sequence[Tensor], ranks: Sequence[float] | None = None,  # type: ignore[override]
             partition: SamplePartition | None = None) -> None:
        """One MTAdam update from the K scalar loss terms ``losses`` (``partition``: see
        :meth:`TermGradients.compute <mtbench.methods.term_grads.TermGradients.compute>`)."""
        losses = list(losses)
        k = len(losses)
        if k == 0:
            raise ValueError("losses must hold at least one loss term")
        for i, loss in enumerate(losses):
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise ValueError(f"losses[{i}] must be a scalar tensor, got "
                                 f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")
        ranks = _check_ranks(ranks, k)

        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        if not params:
            return
        self._prepare(params, k)
        norms = self._engine.compute(losses, partition)
        with torch.no_grad():
            self._update(norms, ranks)

    def _prepare(self, params: list[Tensor], k: int) -> None:
        """Check K against the state; create state and scratch buffers."""
        for p in params:
            st = self.state.get(p)
            if st:
                if st["norms"].shape[0] != k:
                    raise ValueError(f"the number of loss terms changed: this optimizer was stepped with "
                                     f"{st['norms'].shape[0]} terms, now got {k}")
                break
        for group in self.param_groups:
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["norms"] = torch.zeros(k, dtype=p.dtype, device=p.device)
                    st["exp_avg"] = torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device)
                    st["exp_avg_sq"] = torch.zeros((k, *p.shape), dtype=p.dtype, device=p.device)
                if group["amsgrad"] and "max_exp_avg_sq" not in st:
                    st["max_exp_avg_sq"] = torch.zeros_like(st["exp_avg_sq"])
                sc = self._scratch.get(p)
                if sc is None or sc[0].dtype != p.dtype or sc[0].device != p.device:
                    # persistent work buffers (not state): D and sum_i m_i. Re-using them avoids
                    # allocating fresh memory every step (page faults on CPU).
                    self._scratch[p] = (torch.empty_like(p, memory_format=torch.contiguous_format),
                                        torch.empty_like(p, memory_format=torch.contiguous_format))
        engine = self._engine
        if engine is None or engine.k != k or len(engine.params) != len(params) or any(
                a is not b for a, b in zip(engine.params, params)):
            # the K per-term gradients of every parameter, in buffers allocated once (term_grads.py)
            self._engine = TermGradients(params, k)

    def _update(self, norms: list[list[Tensor]], ranks: tuple[float, ...]) -> None:
        k = len(norms)
        ew_sum: Tensor | None = None
        ew_cnt: Tensor | None = None
        col = 0  # column of the current parameter in norms (params that require grad, group order)

        for group in self.param_groups:
            lr, eps, wd, amsgrad = group["lr"], group["eps"], group["weight_decay"], group["amsgrad"]
            beta1, beta2, beta3 = group["betas"]
            # buckets of parameters processed together: same step count, device and dtype
            buckets: dict[tuple, list[tuple[Tensor, int]]] = {}
            for p in group["params"]:
                if not p.requires_grad:
                    continue
                buckets.setdefault((int(self.state[p]["step"]), p.device, p.dtype), []).append((p, col))
                col += 1

            for (prev_t, device, dtype), members in buckets.items():
                t = prev_t + 1
                ps = [p for p, _ in members]
                cols = [c for _, c in members]
                npar = len(ps)
                states = [self.state[p] for p in ps]
                scratch = [self._scratch[p] for p in ps]
                gbufs = [self._engine.grads[c] for c in cols]

                # 2. running norms n (K, P); all K updated before any rescaling
                gn = torch.stack([norms[i][c] for i in range(k) for c in cols]).view(k, npar)
                if t == 1:
                    n = gn
                else:
                    n = torch.stack([st["norms"] for st in states], dim=1)
                    n.mul_(beta3).add_(gn, alpha=1 - beta3)
                torch._foreach_copy_([st["norms"] for st in states], list(n.unbind(1)))

                # 3-4. anchor and scale factors (no host sync: masks and where)
                mask = n > NORM_THRESHOLD
                anchor = mask.to(torch.uint8).argmax(0, keepdim=True)  # first True; 0 if none (then unused)
                n_a = n.gather(0, anchor)
                r = self._ranks_tensor(ranks, device, dtype)
                scale = torch.where(mask, r * n_a / torch.where(mask, n, 1.0), 1.0)  # (K, P)

                s_sum = torch.where(mask, scale, 0.0).sum(1)
                s_cnt = mask.sum(1)
                if ew_sum is None:
                    ew_sum, ew_cnt = s_sum, s_cnt
                else:
                    ew_sum = ew_sum + s_sum.to(ew_sum.device, ew_sum.dtype)
                    ew_cnt = ew_cnt + s_cnt.to(ew_cnt.device)

                torch._foreach_mul_(gbufs, [s.view(k, *([1] * p.dim())) for s, p in zip(scale.unbind(1), ps)])
                # 5. weight decay
                if wd != 0:
                    torch._foreach_add_(gbufs, ps, alpha=wd)

                # 6. moments, stacked (K, *p.shape) per parameter
                ms = [st["exp_avg"] for st in states]
                vs = [st["exp_avg_sq"] for st in states]
                torch._foreach_lerp_(ms, gbufs, 1 - beta1)
                torch._foreach_mul_(vs, beta2)
                torch._foreach_addcmul_(vs, gbufs, gbufs, value=1 - beta2)
                if amsgrad:
                    vmax = [st["max_exp_avg_sq"] for st in states]
                    torch._foreach_maximum_(vmax, vs)
                    vs = vmax

                # 7. shared denominator D = max_i sqrt(v_i) / sqrt(bc2) + eps
                #    (= sqrt(max_i v_i) / sqrt(bc2) + eps exactly, sqrt being monotone)
                bc1 = 1 - beta1 ** t
                bc2 = 1 - beta2 ** t
                denom = [s[0] for s in scratch]
                m_sum = [s[1] for s in scratch]
                for v, m, d, s in zip(vs, ms, denom, m_sum):
                    torch.amax(v, 0, out=d)
                    torch.sum(m, 0, out=s)
                torch._foreach_sqrt_(denom)
                torch._foreach_div_(denom, math.sqrt(bc2))
                torch._foreach_add_(denom, eps)

                # 8. p <- p - lr / bc1 * sum_i m_i / D
                torch._foreach_addcdiv_(ps, m_sum, denom, value=-lr / bc1)
                for st in states:
                    st["step"] = t

        if ew_sum is not None:
            self._effective_weights = torch.where(ew_cnt > 0, ew_sum / ew_cnt.clamp_min(1), 0.0)


def _plain(value: Any) -> Any:
    """OmegaConf containers (Hydra passes them through) -> plain Python."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        return value
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


class MTAdamMethod(Method):
    """The ``method=mtadam`` balancing method: hands the K terms to :class:`MTAdam`.

    Parameters
    ----------
    params, term_names, default_weights:
        See :class:`~mtbench.methods.base.Method` (``default_weights`` is ignored).
    lr, betas, eps, weight_decay, amsgrad:
        See :class:`MTAdam`.
    ranks:
        ``None`` (all 1), a list of K positive floats in term order, or a dict
        ``term_name -> rank`` (terms not named get rank 1).
    """

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, lr: float = 1e-3,
                 betas: Sequence[float] = (0.9, 0.999, 0.9), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False,
                 ranks: Sequence[float] | Mapping[str, float] | None = None) -> None:
        super().__init__(params, term_names, default_weights)
        betas = _plain(betas)
        ranks = _plain(ranks)
        if isinstance(ranks, Mapping):
            unknown = [name for name in ranks if name not in self.term_names]
            if unknown:
                raise ValueError(f"ranks names unknown loss terms {unknown}; the terms are {self.term_names}")
            ranks = [ranks.get(name, 1.0) for name in self.term_names]
        elif ranks is not None and (isinstance(ranks, (str, bytes)) or not isinstance(ranks, Sequence)):
            raise ValueError(f"ranks must be null, a list of {len(self.term_names)} numbers or a dict "
                             f"term -> rank, got {ranks!r}")
        self.ranks = _check_ranks(ranks, len(self.term_names))
        self._optimizer = MTAdam(self.params, lr=lr, betas=betas, eps=eps,
                                 weight_decay=weight_decay, amsgrad=bool(amsgrad))

    @property
    def optimizer(self) -> MTAdam:
        return self._optimizer

    def _step(self, terms: list[Tensor]) -> None:
        self._optimizer.step(terms, self.ranks, self._partition)

    def weight_tensor(self) -> Tensor:
        ew = self._optimizer.effective_weights
        if ew is None:
            return torch.ones(len(self.term_names), device=self.params[0].device)
        return ew

    def hparams(self) -> dict[str, Any]:
        group = self._optimizer.defaults
        beta1, beta2, beta3 = group["betas"]
        return {"lr": group["lr"], "beta1": beta1, "beta2": beta2, "beta3": beta3,
                "amsgrad": bool(group["amsgrad"]), "weight_decay": group["weight_decay"]}
