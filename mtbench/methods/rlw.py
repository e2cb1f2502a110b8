"""Random Loss Weighting (RLW): fresh random weights at every step.

Paper: B. Lin, F. Ye, Y. Zhang, I. W. Tsang, "Reasonable Effectiveness of
Random Weighting: A Litmus Test for Multi-Task Learning", TMLR 2022,
arXiv:2111.10603. Compared with: LibMTL (median-research-group/LibMTL,
``LibMTL/weighting/RLW.py``; the paper's authors maintain LibMTL).

What it operates on here: one network (the MNIST classifier, or a GAN's
generator) and its K loss terms; a GAN's discriminators are never given to a
method. At every step ``w = softmax(g)`` with ``g ~ N(0, I_K)`` drawn afresh
(the paper's RLW with a standard normal, LibMTL's only variant), and the total
is ``sum_i w_i L_i`` (one backward pass, then the ``optimizer``). The weights
sum to 1, as in the paper and LibMTL (not to K). :meth:`weight_tensor`
returns the weights of the last step (1/K before the first).

Randomness: the draws come from a generator of this method's own (on the CPU;
the K weights are moved to the device with ``non_blocking=True``, no host
sync), seeded once at construction from ``seed``, or, when ``seed`` is null,
with one ``torch.randint`` on torch's default generator (so it follows the
run's seed). Its state is in :meth:`state_dict`, so a resumed run draws the
same weights as an uninterrupted one, and the draws never move the stream that
dropout or the data order use.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`). The model's
    default weights are not used (as in the paper and LibMTL).
seed:
    null (default: drawn from torch's default generator, i.e. from the run's
    seed) or an integer >= 0 seeding the method's generator.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

Differences from LibMTL: the draws use a dedicated generator instead of
torch's global one (reproducible resume, no coupling with dropout); the
arithmetic (softmax of K standard normals, computed on the CPU in float32) is
the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import WeightedSumMethod


class RLW(WeightedSumMethod):
    """Random Loss Weighting; see the module docstring."""

    def __init__(self, params: Iterable[Tensor], term_names: Sequence[str],
                 default_weights: Mapping[str, float] | None = None, seed: int | None = None,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None) -> None:
        validate.non_negative_int("method.seed", seed, allow_none=True)
        super().__init__(params, term_names, default_weights, optimizer)
        self.seed = seed
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ()).item()))
        k = len(self.term_names)
        self._weights = torch.full((k,), 1.0 / k, device=self.params[0].device)

    def draw(self) -> Tensor:
        """The next K weights, softmax of K standard normals, on the CPU."""
        return torch.softmax(torch.randn(len(self.term_names), generator=self.generator), dim=0)

    def current_weights(self, like: Tensor) -> Tensor:
        self._weights = self.draw().to(device=like.device, non_blocking=True)
        return self._weights.to(like.dtype)

    def weight_tensor(self) -> Tensor:
        return self._weights

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["rlw"] = {"term_names": list(self.term_names), "generator": self.generator.get_state().clone(),
                        "weights": self._weights.detach().to("cpu").clone()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = self._saved_state(state, "rlw", "RLW")
        super().load_state_dict(state)
        self.generator.set_state(saved["generator"].clone())
        self._weights = saved["weights"].to(self._weights.device).clone()

    def hparams(self) -> dict[str, Any]:
        return {"seed": -1 if self.seed is None else int(self.seed)}
