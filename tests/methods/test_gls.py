"""Geometric Loss Strategy (Chennupati et al., arXiv:1904.08492; LibMTL GLS.py) against hand-computed values.

The reference is computed here with math from total = (prod_i L_i)^(1/K) and
d total / d L_i = total / (K L_i), never by the class under test.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.gls import GLS

NAMES = ["x", "y", "z"]


def _terms(p, a, b):
    return {n: ai * p.pow(2).sum() + bi for n, ai, bi in zip(NAMES, a, b)}


@pytest.mark.parametrize(("a", "b"), [([1.0, 4.0, 0.25], [0.5, 0.0, 2.0]),   # every term > 0
                                      ([1.0, 4.0, 0.0], [0.5, 0.0, 0.0])])   # z == 0: left out
def test_three_steps_match_the_formula_by_hand(a, b):
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = GLS([p], NAMES, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05))
    assert m.weight_tensor().tolist() == pytest.approx([1 / 3] * 3)
    pv = 1.5
    for _ in range(3):
        losses = [ai * pv * pv + bi for ai, bi in zip(a, b)]
        kept = [li for li in losses if li != 0]
        total = math.prod(kept) ** (1 / len(kept))
        w = [total / (len(kept) * li) if li != 0 else 0.0 for li in losses]
        pv -= 0.05 * sum(wi * 2 * ai * pv for wi, ai in zip(w, a))
        m.step(_terms(p, a, b))
        assert m.weight_tensor().tolist() == pytest.approx(w, abs=1e-6)
        assert p.item() == pytest.approx(pv, abs=1e-6)


def test_gradient_is_that_of_the_weighted_sum_and_of_the_geometric_mean():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    m = GLS(lin.parameters(), ["a", "b"], optimizer=lambda ps: torch.optim.SGD(ps, lr=1.0))
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    g_official = torch.autograd.grad(torch.pow(la * lb, 0.5), lin.weight, retain_graph=True)[0]  # LibMTL's total
    m.step({"a": la, "b": lb})
    w = m.weight_tensor()
    total = math.sqrt(la.item() * lb.item())
    assert w.tolist() == pytest.approx([total / (2 * la.item()), total / (2 * lb.item())], rel=1e-6)
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-6)
    assert torch.allclose(lin.weight.detach(), w0 - g_official, atol=1e-6)


def test_all_zero_terms_do_not_make_nan():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = GLS([p], ["a", "b"], optimizer=lambda ps: torch.optim.SGD(ps, lr=1.0))
    m.step({"a": p.sum() * 0, "b": p.sum() * 0})
    assert m.weight_tensor().tolist() == [0.0, 0.0] and p.item() == 1.5


def test_many_large_terms_do_not_overflow():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    m = GLS([p], [f"t{i}" for i in range(10)], optimizer=lambda ps: torch.optim.SGD(ps, lr=1e-3))
    m.step({f"t{i}": 1e5 * p.sum() for i in range(10)})  # prod = 1e50 > float32 max
    assert m.weight_tensor().tolist() == pytest.approx([0.1] * 10, rel=1e-5)
    assert p.item() == pytest.approx(1.0 - 1e-3 * 1e5, rel=1e-5)


def test_state_round_trip_continues_identically():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    m = GLS(lin.parameters(), ["a", "b"])
    for _ in range(3):
        m.step(terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = GLS(lin2.parameters(), ["a", "b"])
    m2.load_state_dict(copy.deepcopy(state))
    assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for _ in range(4):
        m.step(terms(lin))
        m2.step(terms(lin2))
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    assert torch.equal(state["gls"]["weights"], snapshot["gls"]["weights"])
    assert m.hparams() == {}


def test_bad_optimizer_setting_names_the_key():
    from functools import partial

    from mtbench.methods.base import make_adam

    p = torch.nn.Parameter(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"^method\.optimizer\.lr must be a finite number > 0, got -1"):
        GLS([p], ["a"], optimizer=partial(make_adam, lr=-1))
