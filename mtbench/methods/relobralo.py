"""ReLoBRaLo: Relative Loss Balancing with Random Lookback.

Paper: R. Bischof, M. Kraus, "Multi-Objective Loss Balancing for
Physics-Informed Deep Learning", arXiv:2110.09813 (2021), section 3.4.
Compared with: the authors' code, rbischof/relative_balancing
(``src/update_rules.py``, function ``relobralo``, and its schedule of
``alpha``, ``rho`` and the initial losses in ``src/train.py``; TensorFlow).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. The total is ``sum_i lam_i(t) L_i(t)`` with the weights detached (one
backward pass, then the ``optimizer``). At step t (0-based), with
``bal(L; R) = K * softmax_i(L_i / (R_i T + 1e-12))``:

    lam(t) = rho(t) a(t) lam(t-1) + (1 - rho(t)) a(t) bal(L(t); L(0'))
             + (1 - a(t)) bal(L(t); L(t-1))

* ``a(0) = 1``, ``a(1) = 0``, ``a(t) = alpha`` from t = 2 on, as the authors'
  code schedules it: step 1 sets the weights from the relative change of the
  first two steps, and the exponential average starts at step 2;
* ``rho(t)`` is a Bernoulli draw with ``P(rho = 1) = expected_rho``: 1 keeps
  the running weights, 0 looks back to the reference losses ``L(0')``;
* ``lam(-1)``, ``L(-1)`` and ``L(0')`` are 1 until set; ``L(0')`` becomes the
  losses of step 1 (the authors' code stores the losses of its second step
  as the initial ones), ``L(t-1)`` is the previous step's.

:meth:`weight_tensor` returns ``lam`` of the last step (1 before the first);
the weights sum to K.

The Bernoulli draws come from a generator of this method's own (CPU, moved to
the device with ``non_blocking=True``: no host sync), seeded from ``seed`` or,
when null, with one ``torch.randint`` on torch's default generator (the run's
seed). Its state, ``lam``, the previous and the reference losses are in
:meth:`state_dict`, so a resumed run continues identically.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used (as in the paper: all weights start at 1).
alpha:
    Exponential decay of the running weights, in [0, 1] (default 0.999, the
    authors' default).
expected_rho:
    ``P(rho = 1)``, in [0, 1] (default 0.999: on average one lookback to the
    reference losses every 1000 steps; the authors' script defaults to 1,
    which never looks back). 0 and 1 make the draw deterministic.
temperature:
    T of the softmax, a finite number > 0 (default 1, the authors' default).
seed:
    null (default: drawn from torch's default generator) or an integer >= 0
    seeding the Bernoulli draws.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from the authors' code: the arithmetic is the same (float32);
one optimisation step here is one of their epochs (they train full-batch);
the draws of rho come from a dedicated generator, one per step, instead of a
NumPy array drawn before training (same distribution; resumable).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import WeightedSumMethod


class ReLoBRaLo(WeightedSumMethod):
    """Relative Loss Balancing with Random Lookback; see the module docstring."""

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, alpha: float = 0.999,
                 expected_rho: float = 0.999, temperature: float = 1.0, seed: int | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        validate.number_in("method.alpha", alpha, 0, 1)
        validate.number_in("method.expected_rho", expected_rho, 0, 1)
        validate.positive_number("method.temperature", temperature)
        validate.non_negative_int("method.seed", seed, allow_none=True)
        super().__init__(params, term_names, default_weights, optimizer)
        self.alpha, self.expected_rho, self.temperature = float(alpha), float(expected_rho), float(temperature)
        self.seed = seed
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ()).item()))
        k = len(self.term_names)
        device = self.params[0].device
        self._lam = torch.ones(k, device=device)        # lam(t-1)
        self._prev = torch.ones(k, device=device)       # L(t-1)
        self._ref = torch.ones(k, device=device)        # L(0'): the losses of step 1
        self._pending: Tensor | None = None
        self.steps = 0                                  # Python int: the schedule needs no sync

    def _balance(self, losses: Tensor, reference: Tensor) -> Tensor:
        return len(self.term_names) * torch.softmax(losses / (reference * self.temperature + 1e-12), dim=0)

    def draw_rho(self) -> Tensor:
        """The next Bernoulli draw (1.0 with probability ``expected_rho``), on the CPU."""
        return (torch.rand((), generator=self.generator) < self.expected_rho).float()

    def current_weights(self, like: Tensor) -> Tensor:
        losses = like.detach().float()
        a = 1.0 if self.steps == 0 else 0.0 if self.steps == 1 else self.alpha
        rho = self.draw_rho().to(device=losses.device, non_blocking=True)
        lam = (rho * a * self._lam + (1 - rho) * a * self._balance(losses, self._ref)
               + (1 - a) * self._balance(losses, self._prev))
        self._pending = lam
        return lam.to(like.dtype)

    def after_step(self, detached_terms: Tensor) -> None:
        self._lam = self._pending
        self._pending = None
        self._prev = detached_terms.float().clone()
        if self.steps == 1:
            self._ref = self._prev
        self.steps += 1

    def weight_tensor(self) -> Tensor:
        return self._lam

    # -- checkpointing --------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["relobralo"] = {"term_names": list(self.term_names), "steps": self.steps,
                              "generator": self.generator.get_state().clone(),
                              **{k: getattr(self, f"_{k}").detach().to("cpu").clone()
                                 for k in ("lam", "prev", "ref")}}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = self._saved_state(state, "relobralo", "ReLoBRaLo")
        super().load_state_dict(state)
        device = self._lam.device
        self._lam, self._prev, self._ref = (saved[k].to(device).clone() for k in ("lam", "prev", "ref"))
        self.steps = int(saved["steps"])
        self.generator.set_state(saved["generator"].clone())
        self._pending = None

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "expected_rho": self.expected_rho, "temperature": self.temperature,
                "seed": -1 if self.seed is None else int(self.seed)}
