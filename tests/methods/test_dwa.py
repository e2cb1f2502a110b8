"""Dynamic Weight Average (Liu et al., arXiv:1803.10704; LibMTL DWA.py) against hand-computed values.

The reference is a plain-float simulation written here from the paper's eq. 7
(period means, ratios of the last two, K * softmax(r / T), weights 1 for the
first two periods), never the class under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.dwa import DWA

NAMES = ["x", "y", "z"]
A, B = [1.0, 4.0, 0.25], [0.5, 0.0, 2.0]  # L_i = a_i p^2 + b_i on one parameter p


def _terms(p):
    return {n: a * p.pow(2).sum() + b for n, a, b in zip(NAMES, A, B)}


def _hand(steps: int, update_every: int, temperature: float, lr: float = 0.05, p0: float = 1.5):
    """Per step: (weights used, p after the step, weights after the step)."""
    p, w, acc, n, means, out = p0, [1.0] * 3, [0.0] * 3, 0, [], []
    for _ in range(steps):
        losses = [a * p * p + b for a, b in zip(A, B)]
        used = list(w)
        p -= lr * sum(wi * 2 * a * p for wi, a in zip(w, A))
        acc = [s + li for s, li in zip(acc, losses)]
        n += 1
        if n == update_every:
            means.append([s / n for s in acc])
            acc, n = [0.0] * 3, 0
            if len(means) >= 2:
                r = [m1 / m0 for m1, m0 in zip(means[-1], means[-2])]
                e = [math.exp(ri / temperature) for ri in r]
                w = [3 * ei / sum(e) for ei in e]
        out.append((used, p, list(w)))
    return out


@pytest.mark.parametrize(("update_every", "temperature"), [(1, 2.0), (2, 0.5), (3, 1.0)])
def test_steps_match_the_formula_by_hand(update_every, temperature):
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = DWA([p], NAMES, temperature=temperature, update_every=update_every,
            optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05))
    expected = _hand(4 * update_every + 1, update_every, temperature)
    for step, (used, p_after, w_after) in enumerate(expected, start=1):
        assert m.weight_tensor().tolist() == pytest.approx(used, abs=1e-6), step
        m.step(_terms(p))
        assert p.item() == pytest.approx(p_after, abs=1e-6), step
        assert m.weight_tensor().tolist() == pytest.approx(w_after, abs=1e-6), step
        if step <= 2 * update_every:  # the first two periods train with weights 1
            assert used == [1.0] * 3
        if step < 2 * update_every:
            assert m.weights() == dict.fromkeys(NAMES, 1.0)
    assert m.periods == (4 * update_every + 1) // update_every and sum(m.weights().values()) == pytest.approx(3.0)


def test_gradient_is_that_of_the_weighted_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    m = DWA(lin.parameters(), ["a", "b"], update_every=1, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    for _ in range(3):  # past the first two periods: weights != 1
        out = lin(x).squeeze(1)
        m.step({"a": out.pow(2).mean(), "b": out.abs().mean()})
    m.optimizer.param_groups[0]["lr"] = 1.0
    w = m.weight_tensor().clone()
    assert not torch.allclose(w, torch.ones(2))
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    m.step({"a": la, "b": lb})
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-7)


def test_nonfinite_ratio_keeps_the_previous_weights():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    m = DWA([p], ["a", "b"], update_every=1, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.0))
    seq = [(1.0, 2.0), (2.0, 2.0), (0.0, 2.0), (3.0, 2.0)]
    weights = []
    for a, b in seq:
        m.step({"a": p.sum() * 0 + a, "b": p.sum() * 0 + b})
        weights.append(m.weight_tensor().tolist())
    assert weights[0] == [1.0, 1.0]
    # after step 2 (T = 2): r = (2/1, 2/2) = (2, 1)
    e = [math.exp(2.0 / 2), math.exp(1.0 / 2)]
    assert weights[1] == pytest.approx([2 * v / sum(e) for v in e], abs=1e-6)
    # after step 3: r = (0/2, 2/2) = (0, 1)
    e = [math.exp(0.0 / 2), math.exp(1.0 / 2)]
    assert weights[2] == pytest.approx([2 * v / sum(e) for v in e], abs=1e-6)
    # after step 4: r = (3/0, 1): not finite -> the weights of step 3 stay
    assert weights[3] == weights[2]


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    m = DWA(lin.parameters(), ["a", "b"], update_every=2)
    for _ in range(5):  # mid-period
        m.step(terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = DWA(lin2.parameters(), ["a", "b"], update_every=2)
    m2.load_state_dict(copy.deepcopy(state))
    for _ in range(5):
        m.step(terms(lin))
        m2.step(terms(lin2))
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.weight_tensor(), m2.weight_tensor()) and m.periods == m2.periods == 5
    for key in ("weights", "sum", "means"):
        assert torch.equal(state["dwa"][key], snapshot["dwa"][key]), key
    assert not torch.equal(state["dwa"]["weights"], m.weight_tensor())
    assert m.hparams() == {"temperature": 2.0, "update_every": 2}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("temperature", 0.0, "a finite number > 0"), ("temperature", float("nan"), "a finite number > 0"),
    ("update_every", 0, "an integer >= 1"), ("update_every", 1.5, "an integer >= 1"),
])
def test_bad_values_name_the_key(key, value, message):
    p = torch.nn.Parameter(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=rf"^method\.{key} must be {message}, got"):
        DWA([p], ["a"], **{key: value})
