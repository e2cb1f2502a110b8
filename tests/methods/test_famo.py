"""FAMO (Liu et al., arXiv:2306.03792; Cranial-XIX/FAMO famo.py) against hand-computed values.

The reference is a plain-float simulation written here from the authors'
algorithm (z = softmax(logits), total = sum z log(D) / c, the logits' update
from the log-loss decrease of the same batch with Adam and weight decay),
never the class under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.famo import FAMO

NAMES = ["x", "y", "z"]
A, B = [1.0, 4.0, 0.25], [0.5, 0.1, 2.0]  # L_i = a_i p^2 + b_i on one parameter p
LR = 0.05


def _terms(p):
    return {n: a * p.pow(2).sum() + b for n, a, b in zip(NAMES, A, B)}


def _hand(steps, w_lr, gamma, mins, p0=1.5, betas=(0.9, 0.999), eps=1e-8):
    """Per step: (weights of the step, p after it, logits after the update)."""
    p, xi, m1, m2, out = p0, [0.0] * 3, [0.0] * 3, [0.0] * 3, []
    for t in range(1, steps + 1):
        e = [math.exp(v - max(xi)) for v in xi]
        z = [v / sum(e) for v in e]
        d = [a * p * p + b - m + 1e-8 for a, b, m in zip(A, B, mins)]
        c = sum(zi / di for zi, di in zip(z, d))
        w = [zi / (c * di) for zi, di in zip(z, d)]
        p -= LR * sum(wi * 2 * a * p for wi, a in zip(w, A))
        d_new = [a * p * p + b - m + 1e-8 for a, b, m in zip(A, B, mins)]
        delta = [math.log(u) - math.log(v) for u, v in zip(d, d_new)]
        mean = sum(zi * di for zi, di in zip(z, delta))
        g = [zi * (di - mean) + gamma * x for zi, di, x in zip(z, delta, xi)]
        m1 = [betas[0] * m + (1 - betas[0]) * gi for m, gi in zip(m1, g)]
        m2 = [betas[1] * v + (1 - betas[1]) * gi * gi for v, gi in zip(m2, g)]
        xi = [x - w_lr * (m / (1 - betas[0] ** t)) / (math.sqrt(v / (1 - betas[1] ** t)) + eps)
              for x, m, v in zip(xi, m1, m2)]
        out.append((w, p, xi))
    return out


@pytest.mark.parametrize(("w_lr", "gamma", "mins"), [(0.025, 0.01, [0.0] * 3), (0.5, 0.0, [0.4, 0.05, 1.0])])
def test_steps_and_updates_match_the_formula_by_hand(w_lr, gamma, mins):
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = FAMO([p], NAMES, w_lr=w_lr, gamma=gamma, min_losses=mins, optimizer=lambda ps: torch.optim.SGD(ps, lr=LR))
    assert m.weight_tensor().tolist() == pytest.approx([1 / 3] * 3)
    for step, (w, p_after, logits) in enumerate(_hand(4, w_lr, gamma, mins)):
        m.step(_terms(p), recompute=lambda: _terms(p))
        assert m.weight_tensor().tolist() == pytest.approx(w, abs=1e-6), step
        assert sum(m.weights().values()) == pytest.approx(1.0, abs=1e-6)
        assert p.item() == pytest.approx(p_after, abs=1e-6), step
        assert m.logits.tolist() == pytest.approx(logits, abs=1e-6), step
    assert m.logits.grad is not None and p.grad is not None


def test_logit_gradient_is_the_authors_softmax_vjp():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = FAMO([p], NAMES, optimizer=lambda ps: torch.optim.SGD(ps, lr=LR))
    m.logits.data = torch.tensor([0.3, -0.2, 0.1])
    before = [t.item() for t in _terms(p).values()]
    m.step(_terms(p), recompute=lambda: _terms(p))
    after = [t.item() for t in _terms(p).values()]
    # the authors' update: autograd of softmax(w) with grad_outputs = delta
    w = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    delta = torch.tensor([math.log(u + 1e-8) - math.log(v + 1e-8) for u, v in zip(before, after)])
    expected = torch.autograd.grad(torch.softmax(w, -1), w, grad_outputs=delta)[0]
    assert torch.allclose(m.logits.grad, expected, atol=1e-7)


def test_gradient_is_that_of_the_weighted_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    terms = lambda: {"a": lin(x).squeeze(1).pow(2).mean(), "b": lin(x).squeeze(1).abs().mean()}
    m = FAMO(lin.parameters(), ["a", "b"], w_lr=0.5, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    for _ in range(3):  # the logits move away from 0
        m.step(terms(), recompute=terms)
    m.optimizer.param_groups[0]["lr"] = 1.0
    w0 = lin.weight.detach().clone()
    now = terms()
    ga = torch.autograd.grad(now["a"], lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(now["b"], lin.weight, retain_graph=True)[0]
    m.step(now, recompute=terms)
    w = m.weight_tensor()
    assert abs(w[0].item() - 0.5) > 1e-3
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-7)


def test_step_without_recompute_is_refused():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = FAMO([p], NAMES)
    with pytest.raises(ValueError, match="recompute"):
        m.step(_terms(p))


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    m = FAMO(lin.parameters(), ["a", "b"], w_lr=0.1)
    for _ in range(3):
        m.step(terms(lin), recompute=lambda: terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = FAMO(lin2.parameters(), ["a", "b"], w_lr=0.1)
    m2.load_state_dict(copy.deepcopy(state))
    for _ in range(4):
        m.step(terms(lin), recompute=lambda: terms(lin))
        m2.step(terms(lin2), recompute=lambda: terms(lin2))
        assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.logits, m2.logits)
    # the snapshot did not move with training (its logits and the logits' Adam moments)
    famo, snap = state["famo"], snapshot["famo"]
    assert torch.equal(famo["logits"], snap["logits"]) and not torch.equal(famo["logits"], m.logits.detach())
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(famo["logit_optimizer"]["state"][0][key], snap["logit_optimizer"]["state"][0][key]), key
    assert m.hparams() == {"w_lr": 0.1, "gamma": 0.01, "min_loss_a": 0.0, "min_loss_b": 0.0}


def test_min_losses_as_mapping():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = FAMO([p], NAMES, min_losses={"y": 0.5})
    assert m.min_losses.tolist() == [0.0, 0.5, 0.0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"w_lr": 0}, r"^method\.w_lr must be a finite number > 0, got 0"),
    ({"gamma": -1.0}, r"^method\.gamma must be a finite number >= 0, got -1\.0"),
    ({"gamma": float("inf")}, r"^method\.gamma must be a finite number >= 0, got inf"),
    ({"min_losses": [0.0]}, r"^method\.min_losses has 1 values but the model has 3 terms"),
    ({"min_losses": {"w": 1.0}}, r"^method\.min_losses names unknown terms \['w'\]"),
    ({"min_losses": [0.0, float("nan"), 0.0]}, r"^method\.min_losses\.y must be a finite number, got nan"),
    ({"min_losses": "zero"}, r"^method\.min_losses must be null, a list or a mapping"),
])
def test_bad_values_name_the_key(kwargs, message):
    p = torch.nn.Parameter(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=message):
        FAMO([p], NAMES, **kwargs)


# ----------------------------------------------------------------------------- the models' recompute closures
TINY = {
    "mnist": ["trainer.batch_size=32"],
    "pix2pix": ["model=pix2pix", "data.image_size=32", "data.n_train=4", "model.ngf=8", "model.ndf=8"],
    "cyclegan": ["model=cyclegan", "data.image_size=32", "data.n_train=4", "model.ngf=8", "model.ndf=8",
                 "model.n_blocks=1"],
    "srgan": ["model=srgan", "model.n_blocks=1", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16",
              "model.perceptual=false", "data.crop_size=32", "data.n_train=4"],
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("name", list(TINY))
def test_models_recompute_the_same_batch_at_the_updated_parameters(name):
    """Before the update the closure gives the step's own terms; after it, the new ones, with the
    discriminators frozen and nothing else changed (no pool query, no optimiser step)."""
    from conftest import build_from_config

    model, meth, data = build_from_config([*TINY[name], "method=famo"])
    model.eval()  # deterministic forward passes (no dropout), so "the same batch" compares exactly
    batch = next(iter(torch.utils.data.DataLoader(data.train, batch_size=2)))
    discriminators = [m for n, m in model.named_children() if n.startswith(("D", "discriminator"))]
    seen = {}

    class Spy:
        def step(self, losses, recompute=None, partition=None):
            d_params = [p for d in discriminators for p in d.parameters()]
            state = {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
            again = recompute()
            seen["same_before"] = all(torch.equal(again[k], losses[k].detach()) for k in losses)
            seen["d_frozen"] = all(not p.requires_grad for p in d_params)
            meth.step(losses, recompute=recompute)
            after = recompute()
            seen["changed_after"] = any(not torch.equal(after[k], losses[k].detach()) for k in losses)
            seen["only_g_moved"] = all(torch.equal(v, model.state_dict()[k]) for k, v in state.items()
                                       if not k.startswith(("G", "net", "generator")))

    model.training_step(batch, Spy())
    assert seen == {"same_before": True, "d_frozen": True, "changed_after": True, "only_g_moved": True}
    if name == "cyclegan":  # the pools took the step's fakes once (the D step), never the recomputed ones
        assert len(model.fake_A_pool) == len(model.fake_B_pool) == 2
