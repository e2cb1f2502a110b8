"""ReLoBRaLo (Bischof & Kraus, arXiv:2110.09813; rbischof/relative_balancing) against hand-computed values.

The reference is a plain-float simulation written here from the authors'
update rule and schedule (a = 1, 0, alpha, ...; reference losses from step 1),
never the class under test. The Bernoulli draws are forced (expected_rho 0 or
1) or replayed from a generator seeded like the method's.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.relobralo import ReLoBRaLo

NAMES = ["x", "y", "z"]
A, B = [1.0, 4.0, 0.25], [0.5, 0.1, 2.0]  # L_i = a_i p^2 + b_i on one parameter p
LR = 0.05


def _terms(p):
    return {n: a * p.pow(2).sum() + b for n, a, b in zip(NAMES, A, B)}


def _bal(losses, ref, t):
    x = [li / (ri * t + 1e-12) for li, ri in zip(losses, ref)]
    e = [math.exp(v - max(x)) for v in x]
    return [3 * v / sum(e) for v in e]


def _hand(rhos, alpha, temperature, p0=1.5):
    """Per step: (weights of the step, p after it)."""
    p, lam, prev, ref, out = p0, [1.0] * 3, [1.0] * 3, [1.0] * 3, []
    for t, rho in enumerate(rhos):
        losses = [a * p * p + b for a, b in zip(A, B)]
        a = 1.0 if t == 0 else 0.0 if t == 1 else alpha
        b0, b1 = _bal(losses, ref, temperature), _bal(losses, prev, temperature)
        lam = [rho * a * l + (1 - rho) * a * h0 + (1 - a) * h1 for l, h0, h1 in zip(lam, b0, b1)]
        p -= LR * sum(w * 2 * ai * p for w, ai in zip(lam, A))
        prev = losses
        if t == 1:
            ref = losses
        out.append((lam, p))
    return out


def _replayed_rhos(seed, expected_rho, n):
    g = torch.Generator()
    g.manual_seed(seed)
    return [1.0 if torch.rand((), generator=g).item() < expected_rho else 0.0 for _ in range(n)]


@pytest.mark.parametrize(("expected_rho", "seed"), [(1.0, 0), (0.0, 0), (0.5, 1)])
def test_steps_match_the_formula_by_hand(expected_rho, seed):
    rhos = _replayed_rhos(seed, expected_rho, 6)
    if expected_rho == 0.5:
        assert 0 < sum(rhos[2:]) < 4  # both branches are taken once the average runs
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = ReLoBRaLo([p], NAMES, alpha=0.9, expected_rho=expected_rho, temperature=0.5, seed=seed,
                  optimizer=lambda ps: torch.optim.SGD(ps, lr=LR))
    assert m.weight_tensor().tolist() == [1.0] * 3
    for step, (lam, p_after) in enumerate(_hand(rhos, 0.9, 0.5)):
        m.step(_terms(p))
        assert m.weight_tensor().tolist() == pytest.approx(lam, abs=1e-6), step
        assert p.item() == pytest.approx(p_after, abs=1e-6), step
        assert sum(m.weights().values()) == pytest.approx(3.0, abs=1e-5)


def test_forced_lookback_at_step_2_uses_the_losses_of_step_1():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    m = ReLoBRaLo([p], ["a", "b"], alpha=0.5, expected_rho=0.0, temperature=1.0,
                  optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0))
    seq = [(1.0, 1.0), (2.0, 4.0), (4.0, 4.0)]
    for a, b in seq:
        m.step({"a": p.sum() * 0 + a, "b": p.sum() * 0 + b})
    # step 2: a = alpha = 0.5, rho = 0: 0.5 * bal(L2; L1) + 0.5 * bal(L2; L1), L1 = (2, 4), L(t-1) = (2, 4)
    e = [math.exp(4.0 / 2.0), math.exp(4.0 / 4.0)]
    expected = [2 * v / sum(e) for v in e]
    assert m.weight_tensor().tolist() == pytest.approx(expected, abs=1e-6)


def test_gradient_is_that_of_the_weighted_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    m = ReLoBRaLo(lin.parameters(), ["a", "b"], seed=0, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    for _ in range(3):
        out = lin(x).squeeze(1)
        m.step({"a": out.pow(2).mean(), "b": out.abs().mean()})
    m.optimizer.param_groups[0]["lr"] = 1.0
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    m.step({"a": la, "b": lb})
    w = m.weight_tensor()
    assert not torch.allclose(w, torch.ones(2))
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-7)


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    make = lambda net: ReLoBRaLo(net.parameters(), ["a", "b"], alpha=0.8, expected_rho=0.5)
    m = make(lin)
    for _ in range(3):
        m.step(terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = make(lin2)
    m2.load_state_dict(copy.deepcopy(state))
    for _ in range(6):
        m.step(terms(lin))
        m2.step(terms(lin2))
        assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    for key in ("lam", "prev", "ref", "generator"):
        assert torch.equal(state["relobralo"][key], snapshot["relobralo"][key]), key
    assert not torch.equal(state["relobralo"]["lam"], m.weight_tensor())
    assert m.hparams() == {"alpha": 0.8, "expected_rho": 0.5, "temperature": 1.0, "seed": -1}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("alpha", 1.5, r"a number in \[0, 1\]"), ("alpha", -0.1, r"a number in \[0, 1\]"),
    ("expected_rho", float("nan"), r"a number in \[0, 1\]"), ("temperature", 0, "a finite number > 0"),
    ("seed", -2, "null or an integer >= 0"),
])
def test_bad_values_name_the_key(key, value, message):
    p = torch.nn.Parameter(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=rf"^method\.{key} must be {message}, got"):
        ReLoBRaLo([p], ["a"], **{key: value})
