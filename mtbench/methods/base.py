"""The Method contract: how a balancing method turns K loss terms into one update.

A method owns the optimiser of the multi-term part of a model (the classifier,
or a GAN's generator). :func:`mtbench.experiment.build_method` (the only place
a method is built) does::

    method = instantiate(cfg.method, params=model.multi_term_parameters(),
                         term_names=model.term_names,
                         default_weights=model.default_weights)

and a model's ``training_step`` calls ``method.step(losses)`` once per
optimisation step. Nothing outside ``mtbench/methods`` knows which method runs.

Three families:

* :class:`WeightedSumMethod` (fixed weights, SoftAdapt): total = sum_i w_i L_i,
  one backward pass, then a plain torch optimiser (Adam by default).
* :class:`GradientMethod` (MGDA, PCGrad, CAGrad, IMTL, Aligned-MTL): the K
  per-term gradients (``term_grads.py``), coefficients c, update sum_i c_i g_i.
* MTAdam: hands the K terms to its optimiser, which balances the per-term
  gradients of ``term_grads.py`` per layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.sample_partition import SamplePartition
from mtbench.methods.term_grads import TermGradients


def check_positive(name: str, value: float) -> None:
    """Raise ``ValueError`` naming the key when ``value`` is not a finite number > 0."""
    validate.positive_number(name, value)


def check_beta(name: str, value: float) -> None:
    """Raise ``ValueError`` naming the key when ``value`` is outside [0, 1)."""
    validate.number_in(name, value, 0, 1, high_open=True)


def make_adam(params: Iterable, lr: float = 1e-3, betas: Sequence[float] = (0.9, 0.999),
              eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> torch.optim.Optimizer:
    """torch.optim.Adam with the values validated (clear errors for bad config)."""
    key = "method.optimizer"  # lr and betas default to model.optim.lr / model.optim.betas
    check_positive(f"{key}.lr", lr)
    if len(betas) != 2:
        raise ValueError(f"{key}.betas must have 2 values for Adam, got {list(betas)!r}")
    for i, b in enumerate(betas):
        check_beta(f"{key}.betas[{i}]", b)
    check_positive(f"{key}.eps", eps)
    if weight_decay < 0:
        raise ValueError(f"{key}.weight_decay must be >= 0, got {weight_decay!r}")
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps,
                            weight_decay=weight_decay, amsgrad=amsgrad)


class Method(ABC):
    """Base class of every balancing method.

    Parameters
    ----------
    params:
        The parameters of the multi-term part of the model.
    term_names:
        The names of the K loss terms, in the order the model declares them.
    default_weights:
        The model's default fixed weight per term (used by ``fixed``; other
        methods may ignore it).
    """

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("the method got no trainable parameters")
        self.term_names = list(term_names)
        if not self.term_names:
            raise ValueError("the model declares no loss terms")
        self.default_weights = dict(default_weights or {})

    # -- the contract -----------------------------------------------------
    def step(self, losses: Mapping[str, Tensor],
             recompute: Callable[[], Mapping[str, Tensor]] | None = None,
             partition: SamplePartition | None = None) -> None:
        """Backward + optimiser step for one batch's per-term losses.

        ``recompute``, when the model gives it, returns the same batch's terms
        at the updated parameters (a forward pass, no graph). Only methods that
        need the losses after their update (FAMO) call it; it costs nothing
        otherwise.

        ``partition``, when the model's terms partition the batch (each sample
        in one term; :mod:`mtbench.methods.sample_partition`), lets the methods
        that need each term's gradient compute them all in one backward pass
        instead of K; the others ignore it.
        """
        self._partition = partition
        try:
            self._step(self._ordered(losses))
        finally:
            self._partition = None
        if self.needs_recompute:
            if recompute is None:
                raise ValueError(f"{type(self).__name__} needs the losses after its update: the model's "
                                 "training_step must pass method.step(terms, recompute=...)")
            with torch.no_grad():
                self.after_update(torch.stack([t.detach().float().reshape(()) for t in self._ordered(recompute())]))

    #: whether :meth:`after_update` needs the terms recomputed after the update (FAMO)
    needs_recompute: bool = False
    #: the current step's sample partition (set by :meth:`step` for the duration of :meth:`_step`)
    _partition: SamplePartition | None = None

    def after_update(self, new_terms: Tensor) -> None:  # noqa: B027 - optional hook
        """With ``needs_recompute``: the (K,) terms of the same batch after the update (on the device)."""

    @abstractmethod
    def _step(self, terms: list[Tensor]) -> None:
        """Update the parameters from the K scalar terms (in term order)."""

    @abstractmethod
    def weight_tensor(self) -> Tensor:
        """Current effective weight of each term, shape (K,), on the device (no sync)."""

    def weights(self) -> dict[str, float]:
        """Current effective weight of each term, as Python floats (syncs once)."""
        return dict(zip(self.term_names, self.weight_tensor().detach().float().cpu().tolist()))

    @property
    @abstractmethod
    def optimizer(self) -> torch.optim.Optimizer:
        """The torch optimiser that updates ``params`` (for LR schedulers)."""

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    # -- helpers ----------------------------------------------------------
    def _saved_state(self, state: Mapping[str, Any], key: str, label: str) -> Mapping[str, Any]:
        """``state[key]``, a method's own part of its state, once checked to be for the same terms."""
        saved = state[key]
        if list(saved["term_names"]) != self.term_names:
            raise ValueError(f"{label} state does not match this run: checkpoint has terms "
                             f"{list(saved['term_names'])}, this run has {self.term_names}")
        return saved

    def _ordered(self, losses: Mapping[str, Tensor]) -> list[Tensor]:
        missing = [n for n in self.term_names if n not in losses]
        extra = [n for n in losses if n not in self.term_names]
        if missing or extra:
            raise KeyError(f"loss terms do not match the model's term_names: missing {missing}, unexpected {extra}")
        return [losses[n] for n in self.term_names]

    def hparams(self) -> dict[str, Any]:
        """Key settings for TensorBoard's HPARAMS tab."""
        return {}


class WeightedSumMethod(Method):
    """total = sum_i w_i * L_i, one backward pass, then a torch optimiser.

    Subclasses provide :meth:`current_weights` (a (K,) tensor on the device) and
    may update their state from the detached terms in :meth:`after_step`.

    ``optimizer`` is a callable ``params -> torch.optim.Optimizer`` (Hydra:
    ``_partial_: true``); Adam with the model's settings by default.
    """

    def __init__(self, params, term_names, default_weights=None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        super().__init__(params, term_names, default_weights)
        self._optimizer = (optimizer or make_adam)(self.params)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    @abstractmethod
    def current_weights(self, like: Tensor) -> Tensor:
        """The (K,) weights to use for this step, same device/dtype as ``like``."""

    def after_step(self, detached_terms: Tensor) -> None:  # noqa: B027 - optional hook
        """Called after each update with the (K,) detached term values (on device)."""

    def _step(self, terms: list[Tensor]) -> None:
        stacked = torch.stack([t.float() for t in terms])
        w = self.current_weights(stacked).to(stacked.dtype)
        total = (w * stacked).sum()
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()
        self.after_step(stacked.detach())


class GradientMethod(Method):
    """d = sum_i c_i g_i from the K per-term gradients g_i, then a torch optimiser.

    For the gradient-level methods (MGDA, PCGrad, CAGrad, IMTL, Aligned-MTL):
    each step takes the K per-term gradients with the shared engine
    (:class:`~mtbench.methods.term_grads.TermGradients`: K ``autograd.grad``
    passes on the method's parameters only, into buffers allocated once),
    asks the subclass for the coefficients ``c`` (:meth:`coefficients`,
    usually from the Gram matrix ``self.grads.gram()``), writes
    ``d = sum_i c_i g_i`` into the parameters' ``.grad`` and steps the
    optimiser (Adam with the model's settings by default). The coefficients
    are the logged ``weight/<term>`` (the weight of each term's gradient in the
    update), so the weight plots and the report treat every method alike.
    """

    def __init__(self, params, term_names, default_weights=None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        super().__init__(params, term_names, default_weights)
        self.grads = TermGradients(self.params, len(self.term_names))
        self._optimizer = (optimizer or make_adam)(self.params)
        self._coeffs = torch.ones(len(self.term_names), device=self.params[0].device)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    @abstractmethod
    def coefficients(self, losses: Tensor) -> Tensor:
        """The (K,) coefficients of this step's per-term gradients (in ``self.grads``).

        ``losses`` are the (K,) detached term values (float32, on the device)."""

    def _step(self, terms: list[Tensor]) -> None:
        losses = torch.stack([t.detach().float().reshape(()) for t in terms])
        self.grads.compute(terms, self._partition)
        c = self.coefficients(losses)
        self._coeffs = c.detach().to(self._coeffs.device, torch.float32)
        self.grads.combine_into_grad(c)
        self._optimizer.step()

    def weight_tensor(self) -> Tensor:
        return self._coeffs

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self._optimizer.state_dict(), "coefficients": self._coeffs.clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._optimizer.load_state_dict(state["optimizer"])
        self._coeffs = state["coefficients"].to(self._coeffs.device, torch.float32).clone()
