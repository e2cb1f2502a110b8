"""SoftAdapt: adaptive loss weighting from the rates of change of the loss terms.

Paper: A. A. Heydari, C. A. Thompson, A. Mehmood, "SoftAdapt: Techniques for
Adaptive Loss Weighting of Neural Networks with Multi-Part Loss Functions",
arXiv:1912.12355. Reference library: dr-aheydari/SoftAdapt, version 0.0.5.

The numerical contract is ``SPEC.md`` section 2:

* slope of a history h (n >= 2 points, oldest first) with accuracy order p
  (default n - 1, allowed 1 <= p <= n - 1): the forward first-derivative stencil
  of accuracy O(step^p) over the last p + 1 points,
  ``s = sum_j c_j h[n-p-1+j]`` with ``sum_j c_j j^k = [k == 1]`` for k = 0..p
  (see :func:`forward_difference_coefficients`);
* ``softmax_beta(x; a)_i = a_i exp(beta (x_i - max x)) / (sum_j a_j exp(beta (x_j - max x)) + 1e-8)``;
* variants: original ``softmax_beta(s)`` (:class:`SoftAdapt`), normalized
  ``softmax_beta(s / sum|s|)`` (:class:`NormalizedSoftAdapt`), loss-weighted
  ``softmax_beta(s; a)`` with ``a_i`` the mean of the whole history i
  (:class:`LossWeightedSoftAdapt`);
* in training (:class:`SoftAdaptMethod`) the weights are ``K * softadapt_weights``
  computed from a fixed window of per-interval mean losses; with
  ``on_default_weights=True`` they are ``w_default * K * softadapt_weights``
  (SPEC section 4, see :class:`SoftAdaptMethod`).

Intended differences from the reference library 0.0.5 (SPEC section 4 and
the stricter contract of this project):

* Normalized variant: 0.0.5 divides the slopes by their *signed* sum, which
  reverses the ranking when all slopes are negative (its own README example
  gives the fastest-falling loss the largest weight). The default here is the
  L1 normalisation ``s / sum|s|`` of the paper and of the library's earlier
  versions; ``normalization="signed"`` reproduces 0.0.5. When the denominator
  is exactly 0 the normalized slopes are all 0 (uniform weights) in both modes,
  where 0.0.5 would return NaN weights for the signed sum.
* In training the reference leaves the history to the user (its README passes
  every batch since the last update and lets the order grow to n - 1). Here
  the history is a fixed window of ``window`` per-interval means, one point per
  ``update_every`` steps, and the weights used in the loss are K times the
  SoftAdapt weights (they sum to K, like the all-ones weights used before the
  first update).
* A model's default weights: the reference README (and the default here,
  ``on_default_weights=False``) replaces them with the SoftAdapt weights.
  ``on_default_weights=True`` multiplies them instead, as PhysicsNeMo-Sym does
  by applying SoftAdapt to the already weighted terms (SPEC section 4).
* Stencil coefficients are solved exactly for every order p (0.0.5 tabulates
  p = 1, 3, 5 and rejects odd p > 5); p must be <= n - 1 (0.0.5 accepts p = n).
* Inputs are validated (histories shorter than 2, NaN/inf, unequal lengths,
  bad beta or accuracy_order raise ``ValueError``) instead of printing
  warnings; nothing is printed. Everything is computed in float64 (0.0.5 takes
  the loss-weighted means in float32).
* ``beta`` must be a finite number >= 0 (0.0.5 also accepts beta < 0, which
  favours the better-performing terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import WeightedSumMethod

__all__ = [
    "forward_difference_coefficients",
    "SoftAdapt",
    "NormalizedSoftAdapt",
    "LossWeightedSoftAdapt",
    "SoftAdaptMethod",
]

#: added to the softmax denominator (SPEC 2.2; the reference's ``_EPSILON``).
EPSILON = 1e-8


# ---------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------
@lru_cache(maxsize=None)
def forward_difference_coefficients(order: int) -> tuple[Fraction, ...]:
    """Exact forward first-derivative stencil of accuracy order ``order`` (step 1).

    Returns the p + 1 coefficients ``c_0..c_p`` (``p = order``) that solve the
    Vandermonde system ``sum_j c_j j^k = [k == 1]`` for k = 0..p, so that
    ``sum_j c_j f(x + j) = f'(x) + O(h^p)``; the system is solved by Gaussian
    elimination over :class:`fractions.Fraction`, hence exactly.
    ``order=1`` gives (-1, 1); ``order=4`` gives (-25/12, 4, -3, 4/3, -1/4).

    Raises ``ValueError`` when ``order`` is not an integer >= 1.
    """
    validate.positive_int("accuracy_order", order)
    p = int(order)
    size = p + 1
    # augmented matrix rows k = 0..p: [j^k for j = 0..p | [k == 1]]
    rows = [[Fraction(j) ** k for j in range(size)] + [Fraction(int(k == 1))] for k in range(size)]
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] != 0)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        lead = rows[col][col]
        rows[col] = [v / lead for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
    return tuple(rows[j][size] for j in range(size))


@lru_cache(maxsize=None)
def _coefficient_tensor(order: int) -> Tensor:
    return torch.tensor([float(c) for c in forward_difference_coefficients(order)], dtype=torch.float64)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _check_softadapt_beta(value: Any) -> float:
    if not validate.is_real(value) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_accuracy_order(value: Any) -> int | None:
    validate.positive_int("accuracy_order", value, allow_none=True)
    return None if value is None else int(value)


def _as_history(index: int, history: Any) -> Tensor:
    """One history as a 1-D float64 CPU tensor, validated (ValueError names the term index)."""
    try:
        if isinstance(history, Tensor):
            h = history.detach().to(device="cpu", dtype=torch.float64)
        elif isinstance(history, (list, tuple)) and history and all(isinstance(v, Tensor) for v in history):
            # e.g. a list of 0-d loss tensors, possibly on a GPU
            h = torch.stack([v.detach().to(device="cpu", dtype=torch.float64).reshape(()) for v in history])
        else:
            h = torch.from_numpy(np.asarray(history, dtype=np.float64).copy())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"history of term index {index} is not a sequence of numbers: {exc}") from exc
    if h.dim() != 1:
        raise ValueError(f"history of term index {index} must be 1-D, got shape {tuple(h.shape)}")
    if h.numel() < 2:
        raise ValueError(f"history of term index {index} has {h.numel()} point(s); SoftAdapt needs at least 2")
    bad = (~torch.isfinite(h)).nonzero()
    if bad.numel():
        pos = int(bad[0, 0])
        raise ValueError(f"history of term index {index} holds the non-finite value {float(h[pos])!r} "
                         f"at position {pos}; histories must be finite")
    return h


def _softmax_beta(x: Tensor, beta: float, numerator_weights: Tensor | None = None) -> Tensor:
    """SPEC 2.2: max-shifted softmax with temperature beta and +1e-8 in the denominator."""
    e = torch.exp(beta * (x - x.max()))
    if numerator_weights is not None:
        e = numerator_weights * e
    return e / (e.sum() + EPSILON)


# ---------------------------------------------------------------------------
# the three variants
# ---------------------------------------------------------------------------
class _SoftAdaptBase:
    """Shared part of the three SoftAdapt variants (see the subclasses)."""

    #: name of the variant (reported in ``hparams``)
    variant: str = "original"

    def __init__(self, beta: float = 0.1, accuracy_order: int | None = None) -> None:
        self.beta = _check_softadapt_beta(beta)
        self.accuracy_order = _check_accuracy_order(accuracy_order)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta={self.beta!r}, accuracy_order={self.accuracy_order!r})"

    # -- public ------------------------------------------------------------
    def get_component_weights(self, *histories: Any) -> Tensor:
        """SoftAdapt weights of the K terms from their loss histories.

        Each positional argument is one term's history (oldest first): a list,
        NumPy array or tensor on any device, at least 2 finite values, all of
        equal length n. Returns a float64 CPU tensor of K weights that sum to 1
        (up to the 1e-8 in the softmax denominator) and never requires grad.
        """
        if not histories:
            raise ValueError("get_component_weights needs at least one history")
        hs = [_as_history(i, h) for i, h in enumerate(histories)]
        lengths = [int(h.numel()) for h in hs]
        if len(set(lengths)) != 1:
            raise ValueError(f"all histories must have the same length, got lengths {lengths}")
        n = lengths[0]
        if self.accuracy_order is not None and self.accuracy_order > n - 1:
            raise ValueError(f"accuracy_order={self.accuracy_order} needs at least {self.accuracy_order + 1} "
                             f"points per history, got {n} (allowed: 1 <= accuracy_order <= n - 1 = {n - 1})")
        w = self._weights_from_matrix(torch.stack(hs), self.accuracy_order)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("SoftAdapt weights are not finite: the loss values are too large for float64 slopes")
        return w

    # -- internals (also used by SoftAdaptMethod) ---------------------------
    @staticmethod
    def _slopes(h: Tensor, order: int | None) -> Tensor:
        """Forward-difference slopes of the rows of the (K, n) float64 matrix ``h``."""
        n = h.shape[1]
        p = n - 1 if order is None else order
        return h[:, n - p - 1:] @ _coefficient_tensor(p)

    def _weights_from_matrix(self, h: Tensor, order: int | None) -> Tensor:
        """Weights from a validated (K, n) float64 CPU matrix, with 1 <= order <= n - 1 or None."""
        with torch.no_grad():
            return _softmax_beta(self._transform(self._slopes(h, order)), self.beta,
                                 self._numerator_weights(h))

    def _transform(self, slopes: Tensor) -> Tensor:
        return slopes

    def _numerator_weights(self, h: Tensor) -> Tensor | None:
        return None


class SoftAdapt(_SoftAdaptBase):
    """Original SoftAdapt: ``w = softmax_beta(s)`` (SPEC 2.3, paper section 3.1).

    Parameters
    ----------
    beta:
        Temperature of the softmax, a finite number >= 0 (default 0.1). Larger
        values concentrate the weight on the term whose loss rises fastest
        (falls slowest); 0 gives uniform weights.
    accuracy_order:
        Accuracy order p of the forward-difference slope, an integer >= 1, or
        None (default) for p = n - 1, i.e. all n points of the history. The
        slope uses the last p + 1 points; p > n - 1 raises ``ValueError`` when
        weights are requested.
    """

    variant = "original"


class NormalizedSoftAdapt(_SoftAdaptBase):
    """Slope-normalized SoftAdapt: ``w = softmax_beta(s / sum_j |s_j|)`` (SPEC 2.3).

    Parameters
    ----------
    beta:
        Temperature of the softmax, a finite number >= 0 (default 0.1); 0 gives
        uniform weights.
    accuracy_order:
        Accuracy order p of the slope (integer >= 1), or None (default) for
        p = n - 1. See :class:`SoftAdapt`.
    normalization:
        ``"l1"`` (default, the paper): divide the slopes by ``sum_j |s_j|``.
        ``"signed"``: divide by the signed sum ``sum_j s_j``, which is what the
        reference library 0.0.5 does; it reverses the ranking when all slopes
        are negative. In both modes a denominator of exactly 0 gives normalized
        slopes of 0 (uniform weights).
    """

    variant = "normalized"

    def __init__(self, beta: float = 0.1, accuracy_order: int | None = None,
                 normalization: str = "l1") -> None:
        super().__init__(beta=beta, accuracy_order=accuracy_order)
        if normalization not in ("l1", "signed"):
            raise ValueError(f"normalization must be 'l1' or 'signed', got {normalization!r}")
        self.normalization = normalization

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(beta={self.beta!r}, accuracy_order={self.accuracy_order!r}, "
                f"normalization={self.normalization!r})")

    def _transform(self, slopes: Tensor) -> Tensor:
        denom = slopes.abs().sum() if self.normalization == "l1" else slopes.sum()
        if float(denom) == 0.0:
            return torch.zeros_like(slopes)
        return slopes / denom


class LossWeightedSoftAdapt(_SoftAdaptBase):
    """Loss-weighted SoftAdapt: ``w = softmax_beta(s; a)``, ``a_i`` = mean of history i (SPEC 2.3).

    Each exponential in the softmax is multiplied by the mean of the whole
    history of its term (all n points, not only the last p + 1), so larger
    losses get larger weights. With negative loss values the means, and so the
    weights, can be negative; they sum to 1 only up to the 1e-8 as usual.

    Parameters
    ----------
    beta:
        Temperature of the softmax, a finite number >= 0 (default 0.1); 0 gives
        weights proportional to the mean losses.
    accuracy_order:
        Accuracy order p of the slope (integer >= 1), or None (default) for
        p = n - 1. See :class:`SoftAdapt`.
    """

    variant = "loss_weighted"

    def _numerator_weights(self, h: Tensor) -> Tensor:
        return h.mean(dim=1)


# ---------------------------------------------------------------------------
# the training-time balancer
# ---------------------------------------------------------------------------
class SoftAdaptMethod(WeightedSumMethod):
    """SoftAdapt in training (SPEC 2.4): total = sum_i w_i L_i with w = K * SoftAdapt weights.

    After every optimisation step the detached value of each term is added to a
    (K,) running sum on the device (no host sync). Every ``update_every`` steps
    the mean since the last update becomes one history point; the last
    ``window`` points are kept (oldest first). Once the history holds n >= 2
    points, the variant's weights are computed (one host sync per update) and
    ``K * weights`` is used until the next update; before that all weights are 1.
    If a history point in the window is not finite, the previous weights are
    kept (counted in ``nonfinite_updates``); the runner owns the NaN policy.

    A model's default weights (pix2pix's L1 weight 100, SRGAN's adversarial
    weight 0.001, ...) are *replaced* by these weights by default, as the
    README of the SoftAdapt reference library does (paper: Heydari et al.,
    arXiv:1912.12355), so a GAN trains an almost unweighted sum. With ``on_default_weights=True`` the
    effective weight of term i is ``w_default_i * K * softadapt_weight_i``
    (``w_default_i`` before the first update), the way PhysicsNeMo-Sym applies
    SoftAdapt to already weighted terms (SPEC section 4): the slopes, and the
    loss-weighted variant's means, are still computed on the *unweighted*
    terms, so SoftAdapt only rebalances around the defaults and the steps
    before the first update equal the ``fixed`` run with the default weights.
    The effective weights are what :meth:`weights` reports and the runner logs.

    Parameters
    ----------
    params, term_names, default_weights:
        See :class:`~mtbench.methods.base.Method`. ``default_weights`` (term ->
        weight; a missing term counts 1) is used only with ``on_default_weights``.
    calculator:
        Callable building the variant, called as
        ``calculator(beta=beta, accuracy_order=accuracy_order)``: one of
        :class:`SoftAdapt` (default), :class:`NormalizedSoftAdapt`,
        :class:`LossWeightedSoftAdapt`, or a ``functools.partial`` of one
        (Hydra ``_partial_: true``, e.g. with ``normalization`` bound).
    beta:
        Softmax temperature, a finite number >= 0 (default 0.1).
    accuracy_order:
        Accuracy order p of the slopes, an integer with 1 <= p < window, or None
        (default) for n - 1 (all points in the window). While the window is
        filling, min(p, n - 1) is used.
    window:
        Number of history points kept, >= 2 (default 5).
    update_every:
        Optimisation steps per history point (and per weight update), >= 1
        (default 10).
    optimizer:
        Callable ``params -> torch.optim.Optimizer`` (Hydra ``_partial_: true``);
        Adam via :func:`~mtbench.methods.base.make_adam` by default.
    on_default_weights:
        ``False`` (default): weights ``K * softadapt_weights``, replacing the
        model's defaults. ``True``: ``w_default * K * softadapt_weights``.
    """

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None,
                 calculator: Callable[..., _SoftAdaptBase] | None = None,
                 beta: float = 0.1, accuracy_order: int | None = None,
                 window: int = 5, update_every: int = 10,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 on_default_weights: bool = False) -> None:
        beta = _check_softadapt_beta(beta)
        if not isinstance(on_default_weights, (bool, np.bool_)):
            raise ValueError(f"method.on_default_weights must be true or false, got {on_default_weights!r} "
                             f"({type(on_default_weights).__name__})")
        if not validate.is_int(window) or window < 2:
            raise ValueError(f"window must be >= 2, got {window!r}")
        if not validate.is_int(update_every) or update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {update_every!r}")
        if accuracy_order is not None and (not validate.is_int(accuracy_order) or not 1 <= accuracy_order < window):
            raise ValueError(f"accuracy_order must be null or an integer with 1 <= accuracy_order < window "
                             f"(= {window}), got {accuracy_order!r}")
        super().__init__(params, term_names, default_weights, optimizer=optimizer)
        self.beta = beta
        self.accuracy_order = None if accuracy_order is None else int(accuracy_order)
        self.window = int(window)
        self.update_every = int(update_every)
        self.calculator = (calculator or SoftAdapt)(beta=beta, accuracy_order=self.accuracy_order)
        if not isinstance(self.calculator, _SoftAdaptBase):
            raise ValueError("calculator must build SoftAdapt, NormalizedSoftAdapt or LossWeightedSoftAdapt, "
                             f"got {type(self.calculator).__name__}")

        k = len(self.term_names)
        device = self.params[0].device
        dtype = self._acc_dtype(device)
        self._history = torch.zeros(self.window, k, dtype=dtype, device=device)  # oldest first
        self._fill = 0                     # points in _history (Python int: no sync)
        self._running_sum = torch.zeros(k, dtype=dtype, device=device)
        self._count = 0                    # steps accumulated in _running_sum
        self._steps = 0                    # after_step calls in total
        self.updates = 0                   # history points recorded
        self.nonfinite_updates = 0         # updates that kept the previous weights
        self.on_default_weights = bool(on_default_weights)
        # per-term factor of the effective weights (CPU float64): the defaults, or all 1
        self._scale = torch.tensor([float(self.default_weights.get(n, 1.0)) if self.on_default_weights else 1.0
                                    for n in self.term_names], dtype=torch.float64)
        if not bool(torch.isfinite(self._scale).all()) or bool((self._scale < 0).any()):
            raise ValueError(f"method.on_default_weights needs finite default weights >= 0, got "
                             f"{dict(zip(self.term_names, self._scale.tolist()))}")
        self._weights = self._scale.to(device)  # effective weights: _scale * K * SoftAdapt weights
        self._cast: Tensor | None = None   # _weights converted to the loss's device/dtype

    @staticmethod
    def _acc_dtype(device: torch.device) -> torch.dtype:
        return torch.float32 if device.type == "mps" else torch.float64

    # -- WeightedSumMethod --------------------------------------------------
    def current_weights(self, like: Tensor) -> Tensor:
        """The (K,) weights for this step on ``like``'s device and dtype."""
        cast = self._cast
        if cast is None or cast.device != like.device or cast.dtype != like.dtype:
            cast = self._cast = self._weights.to(device=like.device, dtype=like.dtype)
        return cast

    def weight_tensor(self) -> Tensor:
        """Current effective weights: K * SoftAdapt weights (all 1 before the first update),
        times the default weights with ``on_default_weights``."""
        return self._weights

    def after_step(self, detached_terms: Tensor) -> None:
        """Accumulate the (K,) detached terms; every ``update_every`` steps record a point and update."""
        k = len(self.term_names)
        if detached_terms.shape != (k,):
            raise ValueError(f"after_step expects the {k} term values, got shape {tuple(detached_terms.shape)}")
        if detached_terms.device != self._running_sum.device:
            self._move_to(detached_terms.device)
        self._running_sum += detached_terms.detach().to(self._running_sum.dtype)
        self._count += 1
        self._steps += 1
        if self._count >= self.update_every:
            point = self._running_sum / self._count
            if self._fill < self.window:
                self._history[self._fill] = point
                self._fill += 1
            else:
                self._history = torch.cat([self._history[1:], point.unsqueeze(0)])
            self._running_sum.zero_()
            self._count = 0
            self.updates += 1
            if self._fill >= 2:
                self._update_weights()

    def _update_weights(self) -> None:
        h = self._history[: self._fill].to(device="cpu", dtype=torch.float64)  # the one sync per update
        if not bool(torch.isfinite(h).all()):
            self.nonfinite_updates += 1
            return
        n = self._fill
        order = None if self.accuracy_order is None else min(self.accuracy_order, n - 1)
        w = self.calculator._weights_from_matrix(h.T.contiguous(), order)
        if not bool(torch.isfinite(w).all()):
            self.nonfinite_updates += 1
            return
        self._weights = (self._scale * (len(self.term_names) * w)).to(self._running_sum.device)
        self._cast = None

    def _move_to(self, device: torch.device) -> None:
        dtype = self._acc_dtype(device)
        self._history = self._history.to(device=device, dtype=dtype)
        self._running_sum = self._running_sum.to(device=device, dtype=dtype)
        self._weights = self._weights.to(device=device)
        self._cast = None

    # -- checkpointing --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["softadapt"] = {
            "term_names": list(self.term_names),
            "window": self.window,
            "history": self._history.detach().to("cpu").clone(),
            "fill": self._fill,
            "running_sum": self._running_sum.detach().to("cpu").clone(),
            "count": self._count,
            "steps": self._steps,
            "updates": self.updates,
            "nonfinite_updates": self.nonfinite_updates,
            "weights": self._weights.detach().to("cpu").clone(),
            "on_default_weights": self.on_default_weights,
        }
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        sa = state["softadapt"]
        k = len(self.term_names)
        history = sa["history"]
        if list(sa.get("term_names", self.term_names)) != self.term_names or tuple(history.shape) != (self.window, k):
            raise ValueError(f"SoftAdapt state does not match this run: checkpoint has terms "
                             f"{sa.get('term_names')} and window={sa.get('window')}, this run has "
                             f"{self.term_names} and window={self.window}")
        saved_flag = bool(sa.get("on_default_weights", False))
        if saved_flag != self.on_default_weights:
            raise ValueError(f"SoftAdapt state does not match this run: checkpoint has "
                             f"method.on_default_weights={str(saved_flag).lower()}, this run has "
                             f"{str(self.on_default_weights).lower()}")
        super().load_state_dict(state)
        device = self._running_sum.device
        dtype = self._acc_dtype(device)
        self._history = history.to(device=device, dtype=dtype).clone()
        self._fill = int(sa["fill"])
        self._running_sum = sa["running_sum"].to(device=device, dtype=dtype).clone()
        self._count = int(sa["count"])
        self._steps = int(sa["steps"])
        self.updates = int(sa.get("updates", 0))
        self.nonfinite_updates = int(sa.get("nonfinite_updates", 0))
        self._weights = sa["weights"].to(device=device, dtype=torch.float64).clone()
        self._cast = None

    def hparams(self) -> dict[str, Any]:
        hp: dict[str, Any] = {
            "beta": self.beta,
            "window": self.window,
            "update_every": self.update_every,
            "accuracy_order": -1 if self.accuracy_order is None else self.accuracy_order,
            "variant": self.calculator.variant,
            "on_default_weights": self.on_default_weights,
        }
        if isinstance(self.calculator, NormalizedSoftAdapt):
            hp["normalization"] = self.calculator.normalization
        return hp
