"""Random Loss Weighting (Lin et al., arXiv:2111.10603; LibMTL RLW.py) against hand-computed values.

The normal draws are replayed here from a generator seeded like the method's;
the softmax and the updates are computed with math and Python floats.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from mtbench.methods.rlw import RLW

NAMES = ["x", "y", "z"]
A, B = [1.0, 4.0, 0.25], [0.5, 0.0, 2.0]  # L_i = a_i p^2 + b_i on one parameter p


def _terms(p):
    return {n: a * p.pow(2).sum() + b for n, a, b in zip(NAMES, A, B)}


def _hand_weights(seed: int, steps: int) -> list[list[float]]:
    g = torch.Generator()
    g.manual_seed(seed)
    out = []
    for _ in range(steps):
        z = torch.randn(3, generator=g).tolist()
        e = [math.exp(v - max(z)) for v in z]
        out.append([v / sum(e) for v in e])
    return out


def test_three_steps_match_the_formula_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = RLW([p], NAMES, seed=7, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05))
    assert m.weight_tensor().tolist() == pytest.approx([1 / 3] * 3)
    pv = 1.5
    for w in _hand_weights(7, 3):
        pv -= 0.05 * sum(wi * 2 * a * pv for wi, a in zip(w, A))
        m.step(_terms(p))
        assert m.weight_tensor().tolist() == pytest.approx(w, abs=1e-6)
        assert sum(m.weights().values()) == pytest.approx(1.0, abs=1e-6)
        assert p.item() == pytest.approx(pv, abs=1e-6)


def test_seed_null_is_drawn_from_the_default_generator():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    torch.manual_seed(3)
    seed = int(torch.randint(2**62, ()).item())
    torch.manual_seed(3)
    m = RLW([p], NAMES)
    m.step(_terms(p))
    assert m.weight_tensor().tolist() == pytest.approx(_hand_weights(seed, 1)[0], abs=1e-6)
    assert m.hparams() == {"seed": -1} and RLW([p], NAMES, seed=4).hparams() == {"seed": 4}


def test_gradient_is_that_of_the_weighted_sum():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    m = RLW(lin.parameters(), ["a", "b"], seed=1, optimizer=lambda ps: torch.optim.SGD(ps, lr=1.0))
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    m.step({"a": la, "b": lb})
    w = m.weight_tensor()
    assert torch.allclose(lin.weight.detach(), w0 - (w[0] * ga + w[1] * gb), atol=1e-7)


def test_state_round_trip_draws_the_same_weights():
    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    x = torch.randn(7, 3)
    terms = lambda net: {"a": net(x).pow(2).mean(), "b": net(x).abs().mean() + 1.0}
    m = RLW(lin.parameters(), ["a", "b"])
    for _ in range(3):
        m.step(terms(lin))
    state = m.state_dict()
    snapshot = copy.deepcopy(state)
    lin2 = copy.deepcopy(lin)
    m2 = RLW(lin2.parameters(), ["a", "b"])  # another seed drawn: the loaded state replaces it
    m2.load_state_dict(copy.deepcopy(state))
    assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for _ in range(4):
        m.step(terms(lin))
        m2.step(terms(lin2))
        assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for p, q in zip(lin.parameters(), lin2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(state["rlw"]["generator"], snapshot["rlw"]["generator"])
    assert torch.equal(state["rlw"]["weights"], snapshot["rlw"]["weights"])
    assert not torch.equal(state["rlw"]["generator"], m.generator.get_state())


def test_draws_leave_the_global_generator_alone():
    p = torch.nn.Parameter(torch.tensor([1.5]))
    m = RLW([p], NAMES, seed=0)
    before = torch.get_rng_state()
    m.step(_terms(p))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True])
def test_bad_seed_names_the_key(bad):
    p = torch.nn.Parameter(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"^method\.seed must be null or an integer >= 0, got"):
        RLW([p], ["a"], seed=bad)
