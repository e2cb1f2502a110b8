"""``trainer.nan_policy=skip``: a step with a NaN or infinite term or loss is undone, as if it never ran.

A GAN step changes more than the generator: the discriminators step too (in
pix2pix and SRGAN before the generator's terms exist), batch norm updates its
running statistics and CycleGAN's image pools take the fakes. Skipping only the
balancing method's update would leave all of that behind. So :class:`StepUndo`
copies, before every step, everything a step may change: the model's
parameters, buffers and extra state (the pools), every optimiser's state (the
method's and the discriminators') and the method's own state (SoftAdapt's loss
history, MTAdam's weights); :meth:`StepUndo.restore` puts it all back.

Cost (only under ``nan_policy=skip``): one copy of the model and optimiser
state per step, into buffers allocated once, plus the host sync that decides
whether the step was finite. The data position and the random streams do move
on: a skipped step consumed its batch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["StepUndo", "all_finite"]


def all_finite(logs: Mapping[str, Tensor]) -> bool:
    """Whether every logged term and loss of a step is finite (one host sync)."""
    return bool(torch.isfinite(torch.stack([v.detach().float().reshape(()) for v in logs.values()])).all())


def _optimizer_snapshot(sd: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state_dict whose per-parameter dicts are copies: a step that replaces a state tensor
    (rather than updating it in place) leaves the snapshot's tensor as it was."""
    return {**sd, "state": {k: dict(v) for k, v in sd["state"].items()}}


class StepUndo:
    """Take a snapshot of a run's mutable state before a step; restore it when the step is skipped."""

    def __init__(self, model: torch.nn.Module, method: Any, aux_optimizers: Mapping[str, Any]) -> None:
        self.model, self.method, self.aux = model, method, dict(aux_optimizers)
        self._live: list[Tensor] = []  # the tensors a step may change in place ...
        self._copies: list[Tensor] = []  # ... and their values before the step (buffers reused across steps)
        self._extra: dict[str, Any] = {}
        self._method_state: dict[str, Any] = {}
        self._aux_state: dict[str, Any] = {}

    def take(self) -> None:
        sd = self.model.state_dict(keep_vars=True)
        self._extra = {k: copy.deepcopy(v) for k, v in sd.items() if not isinstance(v, Tensor)}
        method_state = self.method.state_dict()
        method_state["optimizer"] = _optimizer_snapshot(method_state["optimizer"])
        self._method_state = method_state
        self._aux_state = {k: _optimizer_snapshot(o.state_dict()) for k, o in self.aux.items()}
        live = [v.detach() for v in sd.values() if isinstance(v, Tensor)]
        for opt_sd in [method_state["optimizer"], *self._aux_state.values()]:
            live += [t for st in opt_sd["state"].values() for t in st.values() if isinstance(t, Tensor)]
        if len(live) == len(self._live) and all(a is b for a, b in zip(live, self._live)):
            torch._foreach_copy_(self._copies, live)
        else:  # the first step, or an optimiser created its state: new buffers
            self._live, self._copies = live, [t.clone() for t in live]

    def restore(self) -> None:
        torch._foreach_copy_(self._live, self._copies)
        if self._extra:
            self.model.load_state_dict(self._extra, strict=False)
        self.method.load_state_dict(self._method_state)
        for k, o in self.aux.items():
            o.load_state_dict(self._aux_state[k])
