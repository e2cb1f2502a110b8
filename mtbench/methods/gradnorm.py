"""GradNorm: learnable term weights that balance the terms' gradient norms on one layer.

Paper: Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee, Andrew Rabinovich,
"GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
Multitask Networks", ICML 2018, arXiv:1711.02257. The authors released no
code; compared with LibMTL (median-research-group/LibMTL,
``LibMTL/weighting/GradNorm.py``) and SamsungLabs/MTL
(``code/optim/gradnorm/balancer.py``).

The method
----------
A weighted sum ``sum_i w_i L_i`` (one backward pass, the method's optimiser)
whose weights ``w`` (initially 1, sum K) are learnt. At step t, with ``W`` a
layer's weight tensor:

* ``G_i = ||grad_W (w_i L_i)|| = w_i n_i``, ``n_i = ||grad_W L_i||`` (K
  gradients of the one layer);
* ``Lt_i = L_i(t) / L_i(0)`` (the loss ratio; ``L_i(0)`` recorded at the first
  step), ``r_i = Lt_i / mean_j Lt_j`` (the relative inverse training rate);
* the target ``T_i = mean_j(G_j) * r_i^alpha``, a constant (no gradient flows
  into it, as in the paper and both implementations);
* ``L_grad = sum_i |G_i - T_i|`` is differentiated with respect to ``w`` only,
  ``w`` takes an optimiser step, then ``w <- K w / sum_j w_j`` (the paper's
  renormalisation after each update).

Since ``T`` is constant, ``dL_grad/dw_i = sign(G_i - T_i) * sign(w_i) * n_i``
in closed form (the derivative of ``|w_i| n_i``): no second-order graph
(``create_graph``) is built; the test checks it against autograd with
``create_graph=True``.

Order within a step: the network's gradient of ``sum_i w_i(t) L_i`` (the
weights before the update, detached) is taken first with ``retain_graph``, then
the engine :class:`~mtbench.methods.term_grads.TermGradients` takes the K
per-term gradients of the layer only (``TermGradients([W], K)``; it releases
the graph after the last term), the closed-form gradient of ``w`` is set, and
one ``optimizer.step()`` updates the network and ``w``. Cost: one backward
pass plus K backward passes from the terms to the layer (for an output layer,
short ones). No host-device sync except one at the first step (the check below).

What it operates on here
------------------------
One network is trained with K loss terms; the method gets the parameters of
the multi-term part (the MNIST classifier, or a GAN's generator(s); never a
discriminator). The paper's "last shared layer" is the last layer of a trunk
shared by task heads; here every parameter is shared by all terms, so the
default layer is the last parameter tensor with at least 2 dimensions among
the method's parameters, in the model's order (a weight, not a bias):

* MNIST: ``net.fc2.weight`` (10 x 128), the output layer.
* pix2pix: ``G.model.up.1.weight``, the U-Net's outermost transposed
  convolution that produces the image.
* SRGAN: ``generator.tail.0.weight``, the final 9x9 convolution that produces
  the image.
* CycleGAN: ``G_B.model.19.weight``, G_B's output 7x7 convolution (the
  parameters are G_A's then G_B's). The terms ``G_A`` and ``idt_A`` do not
  pass through G_B: their ``n_i`` is 0, so their weights change only by the
  renormalisation (a warning says so at the first step). No single layer is
  reached by all six terms; ``layer`` may list the output convolutions of
  both generators, ``method.layer=[<G_A's>, -2]``: ``[34, -2]`` with
  ``n_blocks=6``, ``[46, -2]`` with 9 (instance norm; in general the index of
  G_A's output weight is half the number of generator parameter tensors
  minus 2). ``G_i`` is then the norm over both tensors together.

Parameters
----------
params, term_names, default_weights:
    Given by the runner (:class:`mtbench.methods.base.Method`).
alpha:
    The restoring force towards a common training rate (finite, >= 0; 0
    equalises the gradient norms). Default 1.5, the paper's NYUv2 setting and
    LibMTL's default (SamsungLabs/MTL's default is 2).
layer:
    The layer ``W``: ``null`` (default) the last parameter tensor with
    ``dim >= 2`` (the last tensor if none has); an integer index into the
    method's parameter tensors (in the model's order, after dropping those
    that do not require grad; negative from the end); or a list of such
    indices, whose tensors are taken together. An index rather than a name:
    the method receives the parameters, not their names.
weight_lr:
    Learning rate of ``w`` (``null``: the optimiser's, as in LibMTL, where the
    weights are model parameters in the model's optimiser, and as the paper,
    which updates them with the network's optimiser). ``w`` is a second
    parameter group of the method's optimiser (Adam with the model's betas),
    so an LR schedule on ``method.optimizer`` scales it too.
init:
    ``ones`` (default, the paper): ``w_i(0) = 1``; ``default``: the model's
    default weights rescaled to sum K.
optimizer:
    ``params -> torch.optim.Optimizer`` (Hydra ``_partial_``); Adam with the
    model's lr and betas by default.

The logged ``weight/<term>`` is ``w_i(t)``, the weight of term i in this
step's weighted sum. State (``state_dict``, clones): the optimiser (both
groups), ``w``, the weights of the last step and ``L(0)``.

Deliberate differences
----------------------
* LibMTL parameterises ``w = K softmax(v)``, takes ``L(0)`` as the first
  epoch's mean loss (equal weights and no update during that epoch) and the
  norms of all shared parameters' gradients; SamsungLabs/MTL renormalises
  before use instead of after the update. Here: the paper (``w`` itself,
  ``L(0)`` from the first step, one layer, renormalised after each update).
* ``L_i(0)`` of a term that is 0 at the first step (an MNIST class absent
  from the batch) is recorded at its first non-zero step; until then its ratio
  is 1 (on track). If every ratio is 0, ``r = 1``.
* After each update ``w`` is floored at 1e-6 before the renormalisation: a
  weight that crossed 0 would have ``sign(w_i) = -1`` and keep falling (its
  ``|w_i|`` grows towards the target by moving away from 0).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from mtbench import validate
from mtbench.methods.base import WeightedSumMethod
from mtbench.methods.term_grads import TermGradients

__all__ = ["MIN_WEIGHT", "GradNorm", "gradnorm_weight_grad"]

log = logging.getLogger(__name__)

#: w is floored here after each update (before the renormalisation)
MIN_WEIGHT = 1e-6


def gradnorm_weight_grad(weights: Tensor, layer_norms: Tensor, ratios: Tensor, alpha: float) -> Tensor:
    """``dL_grad/dw`` (K,) in closed form.

    ``layer_norms`` are ``n_i = ||grad_W L_i||``, ``ratios`` the loss ratios
    ``L_i(t) / L_i(0)``; ``G_i = |w_i| n_i``, the target
    ``T_i = mean(G) (r_i)^alpha`` with ``r = ratios / mean(ratios)`` is a
    constant, ``L_grad = sum_i |G_i - T_i|``."""
    g = weights.abs() * layer_norms
    mean_ratio = ratios.mean()
    r = torch.where(mean_ratio > 0, ratios / mean_ratio.clamp_min(torch.finfo(ratios.dtype).tiny),
                    torch.ones_like(ratios))
    target = g.mean() * r.pow(alpha)
    return torch.sign(g - target) * torch.sign(weights) * layer_norms


def _layer_indices(layer: Any, params: Sequence[Tensor]) -> list[int]:
    n = len(params)
    if layer is None:
        two_d = [j for j, p in enumerate(params) if p.dim() >= 2]
        return [two_d[-1] if two_d else n - 1]
    items = list(layer) if isinstance(layer, Sequence) and not isinstance(layer, str) else [layer]
    if not items or not all(validate.is_int(i) and -n <= i < n for i in items):
        raise ValueError(f"method.layer must be null, an index or a list of indices into the method's {n} "
                         f"parameter tensors ({-n}..{n - 1}), got {layer!r}")
    idx = [int(i) % n for i in items]
    if len(set(idx)) != len(idx):
        raise ValueError(f"method.layer names a parameter tensor twice: {layer!r}")
    return idx


class GradNorm(WeightedSumMethod):
    """sum_i w_i L_i with w learnt from the gradient norms of one layer (1 backward + K grads of the layer)."""

    def __init__(self, params, term_names, default_weights=None, alpha: float = 1.5, layer: Any = None,
                 weight_lr: float | None = None, init: str = "ones", optimizer=None) -> None:
        if not validate.is_real(alpha) or not alpha >= 0 or alpha == float("inf"):
            raise ValueError(f"method.alpha must be a finite number >= 0, got {alpha!r}")
        if weight_lr is not None:
            validate.positive_number("method.weight_lr", weight_lr)
        validate.choice("method.init", init, ["ones", "default"])
        super().__init__(params, term_names, default_weights, optimizer)
        k = len(self.term_names)
        self.alpha = float(alpha)
        self.weight_lr = weight_lr
        self.init = init
        self.layer = _layer_indices(layer, self.params)
        self.layer_grads = TermGradients([self.params[j] for j in self.layer], k)
        device = self.params[0].device
        if init == "default":
            w0 = [float(self.default_weights.get(n, 1.0)) for n in self.term_names]
            if any(not (w >= 0) or w == float("inf") for w in w0) or sum(w0) <= 0:
                raise ValueError(f"method.init=default needs finite default weights >= 0 with a positive sum, "
                                 f"got {dict(zip(self.term_names, w0))}")
            w0 = [w * k / sum(w0) for w in w0]
        else:
            w0 = [1.0] * k
        self.w = torch.tensor(w0, dtype=torch.float32, device=device, requires_grad=True)
        group: dict[str, Any] = {"params": [self.w]}
        if weight_lr is not None:
            group["lr"] = float(weight_lr)
        self._optimizer.add_param_group(group)
        self._used = self.w.detach().clone()
        self.initial_losses = torch.zeros(k, dtype=torch.float32, device=device)  # 0: not recorded yet
        self._checked = False

    def current_weights(self, like: Tensor) -> Tensor:
        return self.w.detach().to(device=like.device, dtype=like.dtype)

    def weight_tensor(self) -> Tensor:
        return self._used

    def _step(self, terms: list[Tensor]) -> None:
        stacked = torch.stack([t.float().reshape(()) for t in terms])
        used = self.w.detach().clone()
        total = (used * stacked).sum()
        self._optimizer.zero_grad(set_to_none=True)
        total.backward(retain_graph=True)                # the layer's per-term gradients still need the graph
        norms = self.layer_grads.compute(terms)          # ... which the engine releases after the last term
        n = torch.stack([torch.stack([x.float() for x in row]).square().sum().sqrt() for row in norms])
        losses = stacked.detach()
        with torch.no_grad():
            self.initial_losses = torch.where(self.initial_losses == 0, losses, self.initial_losses)
            recorded = self.initial_losses != 0
            ratios = torch.where(recorded, losses / torch.where(recorded, self.initial_losses, 1.0), 1.0)
            self.w.grad = gradnorm_weight_grad(used, n, ratios, self.alpha)
        if not self._checked:
            self._check_reached(n)
        self._optimizer.step()
        with torch.no_grad():
            self.w.clamp_(min=MIN_WEIGHT)
            self.w.mul_(len(self.term_names) / self.w.sum())
        self._used = used

    def _check_reached(self, norms: Tensor) -> None:
        """Once, at the first step (one host sync): name the terms with no gradient on the layer."""
        self._checked = True
        zero = [name for name, v in zip(self.term_names, norms.tolist()) if v == 0]
        if zero:
            log.warning("GradNorm: the terms %s have a zero gradient on the layer (parameter tensors %s) at the "
                        "first step; a term that never reaches it keeps its weight except for the "
                        "renormalisation (see method.layer)", zero, self.layer)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["gradnorm"] = {"weights": self.w.detach().clone(), "used": self._used.clone(),
                             "initial_losses": self.initial_losses.clone(), "layer": list(self.layer),
                             "checked": self._checked}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["gradnorm"]
        if saved["weights"].shape != self.w.shape or list(saved["layer"]) != self.layer:
            raise ValueError(f"GradNorm state does not match this run: checkpoint has "
                             f"{saved['weights'].numel()} terms and layer {list(saved['layer'])}, this run has "
                             f"{self.w.numel()} and {self.layer}")
        super().load_state_dict(state)
        device = self.w.device
        with torch.no_grad():  # in place: the optimiser holds this tensor
            self.w.copy_(saved["weights"])
        self._used = saved["used"].to(device=device, dtype=torch.float32).clone()
        self.initial_losses = saved["initial_losses"].to(device=device, dtype=torch.float32).clone()
        self._checked = bool(saved.get("checked", True))

    def hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "layer": str(self.layer),
                "weight_lr": -1.0 if self.weight_lr is None else float(self.weight_lr), "init": self.init}
