"""Uncertainty weighting (Kendall et al., arXiv:1705.07115; LibMTL UW.py) against hand-computed values.

The reference values are computed here with Python floats from the formula
total = sum_i exp(-s_i)/2 * L_i + s_i/2, never by the class under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.uncertainty import UncertaintyWeighting

SGD1 = lambda groups: torch.optim.SGD(groups, lr=0.1)  # plain steps, easy to follow by hand


def _scalar_problem():
    """One parameter p; terms L_i = a_i * p^2 + b_i (so dL_i/dp = 2 a_i p)."""
    p = torch.nn.Parameter(torch.tensor([1.5]))
    a, b = [1.0, 4.0, 0.25], [0.5, 0.0, 2.0]
    return p, a, b


def _terms(p, a, b):
    return {n: ai * p.pow(2).sum() + bi for n, ai, bi in zip("xyz", a, b)}


def test_three_steps_match_the_formula_by_hand():
    p, a, b = _scalar_problem()
    m = UncertaintyWeighting([p], list("xyz"), init_log_var=-0.5, optimizer=SGD1)
    lr, pv, s = 0.1, 1.5, [-0.5] * 3
    assert m.weight_tensor().tolist() == pytest.approx([math.exp(0.5) / 2] * 3, abs=1e-6)
    for _ in range(3):
        losses = [ai * pv * pv + bi for ai, bi in zip(a, b)]
        w = [math.exp(-si) / 2 for si in s]
        grad_p = sum(wi * 2 * ai * pv for wi, ai in zip(w, a))
        grad_s = [0.5 - 0.5 * math.exp(-si) * li for si, li in zip(s, losses)]
        pv -= lr * grad_p
        s = [si - lr * gi for si, gi in zip(s, grad_s)]
        m.step(_terms(p, a, b))
        assert p.item() == pytest.approx(pv, abs=1e-6)
        assert m.log_vars.tolist() == pytest.approx(s, abs=1e-6)
        assert m.weight_tensor().tolist() == pytest.approx([math.exp(-si) / 2 for si in s], abs=1e-6)
        assert list(m.weights()) == list("xyz")


def test_gradient_is_that_of_the_weighted_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    m = UncertaintyWeighting(lin.parameters(), ["a", "b"], init_log_var=0.3,
                             optimizer=lambda g: torch.optim.SGD(g, lr=1.0))
    w = m.weight_tensor().clone()
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    m.step({"a": la, "b": lb})
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-7)
    assert w.tolist() == pytest.approx([math.exp(-0.3) / 2] * 2, abs=1e-7)


def test_log_vars_are_a_group_of_the_method_optimizer():
    p, _, _ = _scalar_problem()
    m = UncertaintyWeighting([p], list("xyz"))
    groups = m.optimizer.param_groups
    assert len(groups) == 2 and groups[0]["params"] == [p] and groups[1]["params"][0] is m.log_vars
    assert isinstance(m.optimizer, torch.optim.Adam)
    assert m.hparams() == {"init_log_var": -0.5}


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    m = UncertaintyWeighting(lin.parameters(), ["a", "b"])
    for _ in range(3):
        m.step(terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = UncertaintyWeighting(lin2.parameters(), ["a", "b"])
    m2.load_state_dict(copy.deepcopy(state))  # as through torch.save/load
    for _ in range(4):
        m.step(terms(lin))
        m2.step(terms(lin2))
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.log_vars, m2.log_vars) and torch.equal(m.weight_tensor(), m2.weight_tensor())
    # the snapshot did not move with training (nan_policy=skip restores one)
    assert torch.equal(state["uncertainty"]["log_vars"], snapshot["uncertainty"]["log_vars"])
    assert not torch.equal(state["uncertainty"]["log_vars"], m.log_vars.detach())


def test_state_of_other_terms_is_refused():
    p, _, _ = _scalar_problem()
    state = UncertaintyWeighting([p], ["a", "b"]).state_dict()
    with pytest.raises(ValueError, match="checkpoint has terms"):
        UncertaintyWeighting([p], ["a", "c"]).load_state_dict(state)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "x", None, True])
def test_bad_init_log_var_names_the_key(bad):
    p, _, _ = _scalar_problem()
    with pytest.raises(ValueError, match=r"^method\.init_log_var must be a finite number, got"):
        UncertaintyWeighting([p], ["a"], init_log_var=bad)
