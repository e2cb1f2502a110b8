"""FAMO: Fast Adaptive Multitask Optimization.

Paper: B. Liu, Y. Feng, P. Stone, Q. Liu, "FAMO: Fast Adaptive Multitask
Optimization", NeurIPS 2023, arXiv:2306.03792, Algorithm 1. Compared with:
the authors' code, Cranial-XIX/FAMO (``famo.py`` and the ``FAMO`` class of
``methods/weight_methods.py``, as the ``experiments/*/trainer.py`` use it).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. FAMO decreases every term's log-loss at a balanced rate. It keeps K
logits ``xi`` (0 at the start) and ``z = softmax(xi)``. At every step, with
``D_i = L_i - m_i + 1e-8`` (``m`` the ``min_losses``):

1. ``c = sum_i z_i / D_i`` (detached) and ``total = sum_i z_i log(D_i) / c``;
   one backward pass of ``total``, then the ``optimizer``. The network's
   gradient is ``sum_i w_i dL_i`` with ``w_i = z_i / (c D_i)`` (the weights
   sum to 1): what :meth:`weight_tensor` returns and the runner logs (1/K
   before the first step).
2. After the update the model recomputes the same batch's terms ``L'`` at the
   new parameters (one more forward pass, no graph: ``Method.step``'s
   ``recompute``); ``delta_i = log(D_i) - log(L'_i - m_i + 1e-8)`` is each
   term's log-loss decrease and the logits take one step of their own Adam
   (``lr = w_lr``, L2 ``weight_decay = gamma``) along the gradient
   ``J_softmax(xi)^T delta = z * (delta - sum_j z_j delta_j)``, so that the
   terms that decreased least get more weight next time.

Each step therefore costs one backward and one extra forward pass. The
recomputation runs the network as it is (in training mode: dropout draws new
masks and batch-norm statistics update, as in the authors' trainers), with the
discriminators frozen and nothing else changed (no image-pool query, no
optimiser step).

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used (as in the paper: z starts uniform).
w_lr:
    Learning rate of the logits' Adam, a finite number > 0 (default 0.025,
    the authors' ``--method-params-lr``).
gamma:
    Weight decay of the logits (their ``gamma``), a finite number >= 0
    (default 0.01, the authors' ``--gamma`` and ``famo.py`` default).
min_losses:
    null (default: all 0, as the authors' code unless ``set_min_losses`` is
    called), a list of K numbers or a mapping ``term -> value`` (missing
    terms 0): lower bounds ``m_i`` of the terms (every term must stay above
    ``m_i - 1e-8``, or its log is NaN).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``) of the network;
    Adam with the model's lr and betas by default.

Differences from the authors' code (deliberate):

* No gradient clipping. ``famo.py`` clips the shared parameters' gradient to
  norm 1 only when it is given them; the trainers' ``WeightMethod.backward``
  calls ``clip_grad_norm_`` *before* ``loss.backward()``, so the paper's
  experiments effectively train unclipped. Clipping is not part of the
  weighting.
* The logits' gradient is the closed form of the softmax's vector-Jacobian
  product instead of ``torch.autograd.grad`` (the same value up to rounding),
  and the logits never get the gradient of ``total`` (the authors' backward
  fills it and their update overwrites it: the same result).
* The logits, their Adam state and ``min_losses`` are kept in
  :meth:`state_dict`, so a run resumes exactly.

Kept as in the authors' code, with a visible effect here: a term exactly at
its bound (``L_i = m_i``, e.g. an MNIST class absent from the batch, whose
term is 0) has ``D_i = 1e-8`` and takes almost all of that step's weight
(``w_i ~ 1``) while its own gradient is 0, so such a step barely moves the
network.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import Method, make_adam

#: added to every shifted loss before its log (the authors' value)
EPS = 1e-8


class FAMO(Method):
    """Fast Adaptive Multitask Optimization; see the module docstring."""

    needs_recompute = True

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, w_lr: float = 0.025, gamma: float = 0.01,
                 min_losses: Sequence[float] | Mapping[str, float] | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        validate.positive_number("method.w_lr", w_lr)
        if not validate.is_real(gamma) or not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"method.gamma must be a finite number >= 0, got {gamma!r}")
        super().__init__(params, term_names, default_weights)
        mins = self._resolve_min_losses(min_losses)
        self.w_lr, self.gamma, self._min_loss_values = float(w_lr), float(gamma), mins
        self._optimizer = (optimizer or make_adam)(self.params)
        k = len(self.term_names)
        device = self.params[0].device
        self.logits = torch.zeros(k, device=device, requires_grad=True)
        self.logit_optimizer = torch.optim.Adam([self.logits], lr=self.w_lr, weight_decay=self.gamma)
        self.min_losses = torch.tensor(mins, dtype=torch.float32, device=device)
        self._weights = torch.full((k,), 1.0 / k, device=device)
        self._step_losses: Tensor | None = None  # the terms of the current step, for after_update

    def _resolve_min_losses(self, min_losses) -> list[float]:
        if min_losses is None:
            values = [0.0] * len(self.term_names)
        elif isinstance(min_losses, Mapping):
            unknown = sorted(set(min_losses) - set(self.term_names))
            if unknown:
                raise ValueError(f"method.min_losses names unknown terms {unknown}; the terms are {self.term_names}")
            values = [min_losses.get(n, 0.0) for n in self.term_names]
        elif isinstance(min_losses, Sequence) and not isinstance(min_losses, str):
            if len(min_losses) != len(self.term_names):
                raise ValueError(f"method.min_losses has {len(min_losses)} values but the model has "
                                 f"{len(self.term_names)} terms {self.term_names}")
            values = list(min_losses)
        else:
            raise ValueError(f"method.min_losses must be null, a list or a mapping term -> value, got {min_losses!r}")
        for n, v in zip(self.term_names, values):
            if not validate.is_real(v) or not math.isfinite(v):
                raise ValueError(f"method.min_losses.{n} must be a finite number, got {v!r}")
        return [float(v) for v in values]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._optimizer

    def _shifted(self, losses: Tensor) -> Tensor:
        return losses - self.min_losses + EPS

    def _step(self, terms: list[Tensor]) -> None:
        stacked = torch.stack([t.float() for t in terms])
        z = torch.softmax(self.logits.detach(), dim=0)
        d = self._shifted(stacked)
        c = (z / d).sum().detach()
        total = (d.log() * z / c).sum()
        self._optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._optimizer.step()
        self._step_losses = stacked.detach()
        self._weights = z / (c * d.detach())

    def after_update(self, new_terms: Tensor) -> None:
        """One Adam step of the logits from the log-loss decrease of the same batch."""
        if self._step_losses is None:
            raise RuntimeError("FAMO.after_update needs a step first")
        delta = self._shifted(self._step_losses).log() - self._shifted(new_terms.float()).log()
        z = torch.softmax(self.logits.detach(), dim=0)
        self.logit_optimizer.zero_grad(set_to_none=True)
        self.logits.grad = z * (delta - (z * delta).sum())
        self.logit_optimizer.step()
        self._step_losses = None

    def weight_tensor(self) -> Tensor:
        return self._weights

    # -- checkpointing --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["famo"] = {"term_names": list(self.term_names),
                         "logits": self.logits.detach().to("cpu").clone(),
                         "min_losses": self.min_losses.detach().to("cpu").clone(),
                         "weights": self._weights.detach().to("cpu").clone(),
                         "logit_optimizer": copy.deepcopy(self.logit_optimizer.state_dict())}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = self._saved_state(state, "famo", "FAMO")
        super().load_state_dict(state)
        device = self.logits.device
        with torch.no_grad():
            self.logits.copy_(saved["logits"].to(device))
        self.min_losses = saved["min_losses"].to(device).clone()
        self._weights = saved["weights"].to(device).clone()
        # a copy: torch's load_state_dict may keep the given tensors, which the next step updates in place
        self.logit_optimizer.load_state_dict(copy.deepcopy(saved["logit_optimizer"]))
        self._step_losses = None

    def hparams(self) -> dict[str, Any]:
        return {"w_lr": self.w_lr, "gamma": self.gamma,
                **{f"min_loss_{n}": v for n, v in zip(self.term_names, self._min_loss_values)}}
