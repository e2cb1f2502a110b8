"""Fixed weights: total = sum_i w_i * L_i (SPEC.md section 1).

The baseline every balancing paper compares against. In the MTAdam paper
(Malkiel & Wolf, arXiv:2006.14683) the fixed weights of the GAN benchmarks
are tuned by Hyperband; the SoftAdapt paper (arXiv:1912.12355) compares
against equal weights.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (see :class:`mtbench.methods.base.Method`).
weights:
    ``None`` uses the model's default weights (``model.weights``); a mapping
    ``term -> weight`` overrides some of them; a list gives all K in order;
    ``"baseline"`` reads the Hyperband-tuned weights of ``baseline_file``
    (written by ``mtbench tune``). Every weight must be a finite number >= 0.
baseline_file:
    Where ``weights="baseline"`` looks (default
    ``results/baselines/<model>-<data>.yaml``).
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtbench.baseline import baseline_weights
from mtbench.methods.base import WeightedSumMethod


class Fixed(WeightedSumMethod):
    """Constant per-term weights; one backward pass of the weighted sum."""

    def __init__(self, params, term_names, default_weights=None, weights=None, optimizer=None,
                 baseline_file: str | None = None) -> None:
        super().__init__(params, term_names, default_weights, optimizer)
        resolved = {n: float(self.default_weights.get(n, 1.0)) for n in self.term_names}
        self.source = "config"
        if weights == "baseline":
            if baseline_file is None:
                raise ValueError("method.weights=baseline needs method.baseline_file")
            weights = baseline_weights(baseline_file)
            self.source = str(baseline_file)
        if weights is None:
            pass
        elif isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(self.term_names))
            if unknown:
                raise ValueError(f"method.weights names unknown terms {unknown}; the terms are {self.term_names}")
            resolved.update({n: float(w) for n, w in weights.items()})
        elif isinstance(weights, Sequence) and not isinstance(weights, str):
            if len(weights) != len(self.term_names):
                raise ValueError(f"method.weights has {len(weights)} values but the model has "
                                 f"{len(self.term_names)} terms {self.term_names}")
            resolved = {n: float(w) for n, w in zip(self.term_names, weights)}
        else:
            raise ValueError(f"method.weights must be null, a list or a mapping term -> weight, got {weights!r}")
        for n, w in resolved.items():
            if not math.isfinite(w) or w < 0:
                raise ValueError(f"method.weights.{n} must be a finite number >= 0, got {w!r}")
        self.fixed = resolved
        self._w = torch.tensor([resolved[n] for n in self.term_names], dtype=torch.float32)

    def current_weights(self, like: Tensor) -> Tensor:
        if self._w.device != like.device or self._w.dtype != like.dtype:
            self._w = self._w.to(device=like.device, dtype=like.dtype)
        return self._w

    def weight_tensor(self) -> Tensor:
        return self._w

    def hparams(self) -> dict:
        return {"weights_from": self.source, **{f"w_{n}": w for n, w in self.fixed.items()}}
