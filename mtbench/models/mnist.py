"""MNIST multi-term classification: the first benchmark of the MTAdam paper.

Malkiel & Wolf, "MTAdam: Automatic Balancing of Multiple Training Loss
Terms", arXiv:2006.14683, section 4.1 and the reference code
(ItzikMalkiel/MTAdam, main.py): the classifier's NLL is split into one term
per class, and the terms are scaled by very different factors, so that a
method that does not balance them trains mostly on the heavily weighted
classes.

Network (as in the reference, the PyTorch MNIST example): conv(1->32, 3)
ReLU conv(32->64, 3) ReLU maxpool(2) dropout(0.25) fc(9216->128) ReLU
dropout(0.5) fc(128->10) log-softmax. As in the reference, the first dropout
is channel-wise (Dropout2d on the pooled feature maps); the second, on the
(N, 128) features, is element-wise (what the reference's Dropout2d does on
2-D input).

Terms ``term_0 .. term_9``: for a batch of size B,
``term_c = s_c * sum_{n: y_n = c} NLL_n / B`` (0 when class c is absent, never
0/0), so that ``sum_c term_c / s_c`` is the mean NLL of the batch.

Parameters
----------
scales:
    How the scales s_c are drawn: ``kind`` = ``uniform`` (s_0 = 1, s_1..s_9
    uniform in [low, high), default [0, 1000) as in the reference code),
    ``loguniform`` (s_0 = 1, s_1..s_9 log-uniform in [low, high], e.g.
    [1e-3, 1e3]) or ``ones`` (balanced); ``seed`` draws them (independent of
    the training seed, so runs with different seeds share the scales).
optim:
    Adam settings of the paper (lr 1e-3, betas 0.9/0.999).
weights:
    Default fixed weights per term (1 each).
one_pass_term_grads:
    The terms partition the batch (each digit belongs to one class's term) and
    the network treats digits independently, so the methods that need each
    term's gradient (MTAdam, MGDA, PCGrad, CAGrad, IMTL, Aligned-MTL) get all
    ten from one backward pass (:mod:`mtbench.methods.sample_partition`)
    instead of ten: the same gradients up to float32 summation order, in about
    a third of the step time. ``false`` runs the ten passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtbench.methods.sample_partition import LayerTaps
from mtbench.models.base import Model

NUM_CLASSES = 10


def draw_scales(kind: str = "uniform", seed: int = 0, low: float | None = None,
                high: float | None = None) -> list[float]:
    """The 10 per-class scales s_c (s_0 = 1); see the module docstring."""
    rng = np.random.default_rng(seed)
    if kind == "ones":
        rest = np.ones(NUM_CLASSES - 1)
    elif kind == "uniform":
        low, high = (0.0 if low is None else low), (1000.0 if high is None else high)
        if not 0 <= low < high:
            raise ValueError(f"model.scales: uniform needs 0 <= low < high, got low={low}, high={high}")
        rest = rng.uniform(low, high, NUM_CLASSES - 1)
    elif kind == "loguniform":
        low, high = (1e-3 if low is None else low), (1e3 if high is None else high)
        if not 0 < low < high:
            raise ValueError(f"model.scales: loguniform needs 0 < low < high, got low={low}, high={high}")
        rest = np.exp(rng.uniform(np.log(low), np.log(high), NUM_CLASSES - 1))
    else:
        raise ValueError(f"model.scales.kind must be uniform, loguniform or ones, got {kind!r}")
    return [1.0, *map(float, rest)]


class MNISTNet(nn.Module):
    """The CNN of the PyTorch MNIST example used by the MTAdam reference code."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def class_terms(log_probs: Tensor, target: Tensor, scales: Tensor) -> Tensor:
    """(10,) tensor: term_c = s_c * sum of the NLL of the batch's class-c samples / B."""
    nll = -log_probs.gather(1, target[:, None]).squeeze(1).float()
    sums = torch.zeros(NUM_CLASSES, device=nll.device, dtype=nll.dtype).index_add(0, target, nll)
    return scales.to(nll.dtype) * sums / target.shape[0]


class MNISTModel(Model):
    """Ten-term MNIST classifier (see the module docstring)."""

    term_names = [f"term_{c}" for c in range(NUM_CLASSES)]
    primary_metric = "acc"
    higher_is_better = True

    def __init__(self, scales: Mapping[str, Any] | None = None, optim: Mapping[str, Any] | None = None,
                 weights: Mapping[str, float] | None = None, init_from: str | None = None,
                 one_pass_term_grads: bool = True) -> None:
        super().__init__(optim=optim, weights=weights, init_from=init_from)
        self.scales_cfg = dict(scales or {"kind": "uniform", "seed": 0})
        self.net = MNISTNet()
        self.taps = LayerTaps(self.net) if one_pass_term_grads else None
        self.register_buffer("scales", torch.tensor(draw_scales(**self.scales_cfg), dtype=torch.float32))

    def terms(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        with self.autocast():
            log_probs = self.net(self.prepare_input(x))
        t = class_terms(log_probs, y, self.scales)
        return {name: t[c] for c, name in enumerate(self.term_names)}

    def training_step(self, batch, method) -> dict[str, Tensor]:
        x, y = batch
        if self.taps is None:
            losses = self.terms(x, y)
            partition = None
        else:  # term c is the class-c digits' NLL: the terms partition the batch by label
            with self.taps.recording():
                losses = self.terms(x, y)
            partition = self.taps.partition(y)
        # recompute: the same batch at the updated weights (FAMO)
        method.step(losses, recompute=lambda: self.terms(x, y), partition=partition)
        return {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        nll = torch.zeros((), dtype=torch.float64, device=self.device)
        n = 0
        for x, y in loader:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            with self.autocast():
                log_probs = self.net(self.prepare_input(x)).float()
            correct += (log_probs.argmax(1) == y).sum()
            nll += F.nll_loss(log_probs, y, reduction="sum").double()
            n += y.shape[0]
        if n == 0:
            raise ValueError("evaluation split is empty")
        return {"acc": correct.item() / n, "nll": nll.item() / n}

    def hparams(self) -> dict[str, Any]:
        return {"scales": self.scales_cfg.get("kind", "uniform"), "scales_seed": self.scales_cfg.get("seed", 0)}
