"""PCGrad (Yu et al., arXiv:2001.06782): the update against a plain vector-space Algorithm 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gradient_checks import (
    SGD1,
    assert_round_trip,
    assert_update_is_the_combination,
    tiny_net,
)

from mtbench.methods.pcgrad import PCGrad


def ref_pcgrad(vecs, orders, reduction="sum"):
    """Algorithm 1 on flattened float64 vectors: term i visits orders[i] (the j != i), projects on conflicts."""
    projected = []
    for i, g_i in enumerate(vecs):
        pc = g_i.copy()
        for j in orders[i]:
            g_j = vecs[j]
            dot = pc @ g_j
            if dot < 0:
                pc = pc - dot / (g_j @ g_j) * g_j
        projected.append(pc)
    d = np.sum(projected, axis=0)
    return d / len(vecs) if reduction == "mean" else d


def _ascending(k):
    return [[j for j in range(k) if j != i] for i in range(k)]


def _linear(vecs):
    """Two parameters; term i = <vecs[i], theta> + 1, so g_i = vecs[i] exactly."""
    n1 = 2
    p1 = torch.nn.Parameter(torch.linspace(-0.3, 0.4, n1, dtype=torch.float64))
    p2 = torch.nn.Parameter(torch.linspace(0.2, -0.1, len(vecs[0]) - n1, dtype=torch.float64))
    a = torch.tensor(np.stack(vecs))

    def terms():
        return {f"t{i}": a[i, :n1] @ p1 + a[i, n1:] @ p2 + 1.0 for i in range(len(vecs))}

    return [p1, p2], terms


def _run(vecs, orders=None, **kw):
    """One SGD(lr=1) step; returns (method, update direction, the orders used)."""
    params, terms = _linear(vecs)
    before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    m = PCGrad(params, [f"t{i}" for i in range(len(vecs))], optimizer=SGD1, **kw)
    used = []
    draw = m.draw_orders
    if orders is not None:
        m.draw_orders = lambda: torch.tensor(orders, dtype=torch.long).reshape(len(vecs), len(vecs) - 1)
    else:
        m.draw_orders = lambda: used.append(draw()) or used[-1]
    m.step(terms())
    after = torch.cat([p.detach().reshape(-1) for p in params])
    return m, (before - after).numpy(), (orders if orders is not None else used[0].tolist())


def test_two_terms_conflicting_and_not():
    g1, g2 = np.array([1.0, 0.5, -2.0]), np.array([-1.0, 1.0, 1.0])
    assert g1 @ g2 < 0
    m, d, _ = _run([g1, g2])
    g12 = g1 @ g2
    want = (g1 - g12 / (g2 @ g2) * g2) + (g2 - g12 / (g1 @ g1) * g1)
    np.testing.assert_allclose(d, want, atol=1e-12)
    np.testing.assert_allclose(d, ref_pcgrad([g1, g2], _ascending(2)), atol=1e-12)
    np.testing.assert_allclose(m.weight_tensor().numpy(), [1 - g12 / (g1 @ g1), 1 - g12 / (g2 @ g2)], atol=1e-6)
    # each projected gradient is orthogonal to the other term's gradient
    pc1 = g1 - g12 / (g2 @ g2) * g2
    assert abs(pc1 @ g2) < 1e-12
    # not conflicting (positive and zero inner product): the plain sum, coefficients 1
    for h in (np.array([1.0, 0.2, 0.1]), np.array([2.0, 0.0, 1.0])):
        m, d, _ = _run([g1, h])
        assert g1 @ h >= 0
        np.testing.assert_allclose(d, g1 + h, atol=1e-12)
        assert m.weights() == {"t0": 1.0, "t1": 1.0}


def test_order_matters_and_is_followed():
    g = [np.array([1.0, 0.0, 0.0]), np.array([-0.6, 1.0, 0.0]), np.array([-0.6, -1.0, 0.3])]
    asc, rev = _ascending(3), [list(reversed(o)) for o in _ascending(3)]
    _, d_asc, _ = _run(g, shuffle=False)
    _, d_rev, _ = _run(g, orders=rev)
    np.testing.assert_allclose(d_asc, ref_pcgrad(g, asc), atol=1e-12)
    np.testing.assert_allclose(d_rev, ref_pcgrad(g, rev), atol=1e-12)
    assert np.abs(d_asc - d_rev).max() > 1e-3  # the two orders give different updates here


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("k", [3, 4, 6])
def test_random_orders_match_algorithm_1(k, reduction):
    rng = np.random.default_rng(k)
    vecs = [rng.normal(size=8) * s for s in rng.uniform(0.1, 10.0, size=k)]
    vecs[1] = -0.7 * vecs[0] / np.linalg.norm(vecs[0]) * np.linalg.norm(vecs[1]) + 0.2 * vecs[1]
    torch.manual_seed(k)
    m, d, orders = _run(vecs, reduction=reduction)
    assert all(sorted(o) == [j for j in range(k) if j != i] for i, o in enumerate(orders))
    want = ref_pcgrad(vecs, orders, reduction)
    plain = np.sum(vecs, axis=0) / (k if reduction == "mean" else 1)
    assert np.abs(want - plain).max() > 1e-2  # some pairs conflict
    np.testing.assert_allclose(d, want, rtol=1e-9, atol=1e-9)
    # the logged coefficients give the same direction
    c = m.weight_tensor().double().numpy()
    np.testing.assert_allclose(c @ np.stack(vecs), want, rtol=1e-5, atol=1e-5)


def test_a_zero_gradient_is_never_projected_on():
    g1, g2 = np.array([1.0, 2.0, -1.0]), np.zeros(3)
    m, d, _ = _run([g1, g2])
    np.testing.assert_allclose(d, g1, atol=1e-12)
    assert np.isfinite(m.weight_tensor().numpy()).all()


def test_orders_are_seeded_by_torch_and_change_between_steps():
    def orders_of(seed):
        torch.manual_seed(seed)
        m = PCGrad([torch.nn.Parameter(torch.zeros(2))], list("abcde"))
        return [m.draw_orders().tolist() for _ in range(4)]

    a, b = orders_of(0), orders_of(0)
    assert a == b and a != orders_of(1)
    assert len({str(o) for o in a}) > 1
    m = PCGrad([torch.nn.Parameter(torch.zeros(2))], list("abc"), shuffle=False)
    assert m.draw_orders().tolist() == _ascending(3)


def _terms(net, x):
    out = net(x)
    return {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - out[:, 0]).abs().mean(), "c": -(out.sum() * 0.5).sin()}


@pytest.mark.parametrize("k", [2, 3])
def test_applied_update_is_the_combination_of_the_term_gradients(k):
    assert_update_is_the_combination(lambda params, names: PCGrad(params, names, optimizer=SGD1), _terms, k)


def test_state_round_trip_continues_identically():
    # a fresh PCGrad has a different generator seed until loaded: the same orders show it was restored
    m, snapshot, frozen = assert_round_trip(lambda params, names: PCGrad(params, names), _terms, after=4)
    assert torch.equal(snapshot["generator"], frozen["generator"])  # the snapshot did not move on
    assert not torch.equal(m.state_dict()["generator"], frozen["generator"])


@pytest.mark.parametrize(("kw", "msg"), [
    ({"reduction": "max"}, r"method.reduction must be one of \['sum', 'mean'\], got 'max'"),
    ({"shuffle": "yes"}, r"method.shuffle must be true or false, got 'yes'"),
])
def test_bad_values_name_the_key(kw, msg):
    net, _ = tiny_net()
    with pytest.raises(ValueError, match=msg):
        PCGrad(net.parameters(), ["a", "b"], **kw)


def test_hparams_and_one_term():
    net, x = tiny_net()
    m = PCGrad(net.parameters(), ["a"], reduction="mean", optimizer=SGD1)
    assert m.hparams() == {"reduction": "mean", "shuffle": True}
    m.step({"a": _terms(net, x)["a"]})
    assert m.weights() == {"a": 1.0}
