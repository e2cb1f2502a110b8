"""MGDA (Sener & Koltun, arXiv:1810.04650): coefficients against a plain vector-space MinNormSolver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gradient_checks import (
    SGD1,
    assert_round_trip,
    assert_update_is_the_combination,
    tiny_net,
)

from mtbench.methods.mgda import MGDA


# ----------------------------------------------------------------------------- reference (vectors)
def _ref_pair(v11, v12, v22):
    # min_c ||c x1 + (1-c) x2||^2, with the official clamps 0.999 / 0.001
    if v12 >= v11:
        return 0.999, v11
    if v12 >= v22:
        return 0.001, v22
    c = -1.0 * ((v12 - v22) / (v11 + v22 - 2 * v12))
    return c, v22 + c * (v12 - v22)


def _ref_simplex(y):
    m = len(y)
    s = np.flip(np.sort(y), axis=0)
    tmpsum, tmax_f = 0.0, (np.sum(y) - 1.0) / m
    for i in range(m - 1):
        tmpsum += s[i]
        tmax = (tmpsum - 1) / (i + 1.0)
        if tmax > s[i + 1]:
            tmax_f = tmax
            break
    return np.maximum(y - tmax_f, np.zeros(y.shape))


def _ref_next(cur, grad, n):
    proj = grad - np.sum(grad) / n
    tm1 = -1.0 * cur[proj < 0] / proj[proj < 0]
    tm2 = (1.0 - cur[proj > 0]) / proj[proj > 0]
    t = 1
    if len(tm1[tm1 > 1e-7]) > 0:
        t = np.min(tm1[tm1 > 1e-7])
    if len(tm2[tm2 > 1e-7]) > 0:
        t = min(t, np.min(tm2[tm2 > 1e-7]))
    return _ref_simplex(proj * t + cur)


def ref_min_norm(vecs, frank_wolfe=False, tol=1e-5, max_iter=250):
    """MinNormSolver.find_min_norm_element(_FW) on flattened float64 vectors (inner products from the vectors)."""
    n = len(vecs)
    dmin, sol = math.inf, None
    for i in range(n):
        for j in range(i + 1, n):
            c, d = _ref_pair(vecs[i] @ vecs[i], vecs[i] @ vecs[j], vecs[j] @ vecs[j])
            if d < dmin:
                dmin, sol = d, (i, j, c)
    x = np.zeros(n)
    x[sol[0]], x[sol[1]] = sol[2], 1 - sol[2]
    if n < 3:
        return x
    V = np.stack(vecs)
    for _ in range(max_iter):
        u = x @ V                                   # current min-norm candidate
        if frank_wolfe:
            t = int(np.argmin(V @ u))
            nc, _ = _ref_pair(u @ u, u @ V[t], V[t] @ V[t])
            new = nc * x
            new[t] += 1 - nc
        else:
            y = _ref_next(x, -(V @ u), n)
            w = y @ V
            nc, _ = _ref_pair(u @ u, u @ w, w @ w)
            new = nc * x + (1 - nc) * y
        if np.sum(np.abs(new - x)) < tol:
            return x
        x = new
    return x


def ref_mgda(vecs, losses, normalization, **kw):
    """(alpha, d): solve on the normalised vectors, apply alpha to the raw ones (as train_multi_task.py)."""
    gn = {"l2": [np.linalg.norm(v) for v in vecs], "loss": list(losses),
          "loss+": [l * np.linalg.norm(v) for l, v in zip(losses, vecs)], "none": [1.0] * len(vecs)}[normalization]
    alpha = ref_min_norm([v / n for v, n in zip(vecs, gn)], **kw)
    return alpha, sum(a * v for a, v in zip(alpha, vecs))


# ----------------------------------------------------------------------------- a model with known gradients
def _linear(vecs, offsets):
    """Two parameters; term i = <vecs[i], theta> + offsets[i], so g_i = vecs[i] exactly."""
    n1 = 3
    p1 = torch.nn.Parameter(torch.linspace(-0.3, 0.4, n1, dtype=torch.float64))
    p2 = torch.nn.Parameter(torch.linspace(0.2, -0.1, len(vecs[0]) - n1, dtype=torch.float64))
    a = torch.tensor(np.stack(vecs))

    def terms():
        return {f"t{i}": a[i, :n1] @ p1 + a[i, n1:] @ p2 + offsets[i] for i in range(len(vecs))}

    return [p1, p2], terms


def _run(vecs, offsets=None, **kw):
    offsets = offsets if offsets is not None else [5.0 + i for i in range(len(vecs))]
    params, terms = _linear(vecs, offsets)
    before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    m = MGDA(params, [f"t{i}" for i in range(len(vecs))], optimizer=SGD1, **kw)
    losses = [float(t.detach()) for t in terms().values()]
    m.step(terms())
    after = torch.cat([p.detach().reshape(-1) for p in params])
    return m, losses, (before - after).numpy()


CASES_2 = {
    "conflicting": [np.array([1.0, 0.5, -2.0, 0.3]), np.array([-1.5, 0.2, 1.0, 0.8])],
    "v12>=v11": [np.array([1.0, 0.0, 0.0, 0.0]), np.array([2.0, 1.0, 0.0, 0.0])],   # g1 small, inside g2's side
    "v12>=v22": [np.array([3.0, 1.0, 0.5, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])],
    "aligned": [np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0, 1.0])],
}


@pytest.mark.parametrize("normalization", ["l2", "loss", "loss+", "none"])
@pytest.mark.parametrize("case", sorted(CASES_2))
def test_two_terms_match_the_closed_form(case, normalization):
    vecs = CASES_2[case]
    m, losses, d = _run(vecs, normalization=normalization)
    alpha, want_d = ref_mgda(vecs, losses, normalization)
    got = m.weight_tensor().double().numpy()
    np.testing.assert_allclose(got, alpha, atol=1e-6)
    np.testing.assert_allclose(d, want_d, atol=1e-6)
    if case == "v12>=v11" and normalization == "none":
        np.testing.assert_allclose(got, [0.999, 0.001], atol=1e-7)
    if case == "v12>=v22" and normalization == "none":
        np.testing.assert_allclose(got, [0.001, 0.999], atol=1e-7)
    if case == "conflicting" and normalization == "none":  # plain closed form (v22 - v12) / ||v1 - v2||^2
        g1, g2 = vecs
        np.testing.assert_allclose(got[0], (g2 @ g2 - g1 @ g2) / ((g1 - g2) @ (g1 - g2)), atol=1e-7)


@pytest.mark.parametrize("solver", ["projected_gradient", "frank_wolfe"])
@pytest.mark.parametrize("normalization", ["l2", "loss", "loss+", "none"])
@pytest.mark.parametrize("k", [3, 5])
def test_three_and_more_terms_match_the_official_solver(k, normalization, solver):
    rng = np.random.default_rng(10 * k + len(normalization))
    vecs = [rng.normal(size=7) * s for s in rng.uniform(0.2, 5.0, size=k)]
    vecs[1] = -0.8 * vecs[0] + 0.3 * vecs[1]  # a strongly conflicting pair
    m, losses, d = _run(vecs, offsets=list(rng.uniform(1.0, 4.0, size=k)), normalization=normalization,
                        solver=solver)
    alpha, want_d = ref_mgda(vecs, losses, normalization, frank_wolfe=solver == "frank_wolfe")
    got = m.weight_tensor().double().numpy()
    np.testing.assert_allclose(got, alpha, atol=1e-6)
    np.testing.assert_allclose(d, want_d, atol=1e-6)
    assert got.sum() == pytest.approx(1.0, abs=1e-6) and (got >= 0).all()


def test_projected_gradient_reaches_the_min_norm_point():
    rng = np.random.default_rng(3)
    vecs = [rng.normal(size=6) for _ in range(4)]
    m, _, _ = _run(vecs, normalization="none", tol=1e-12, max_iter=10_000)
    alpha = m.weight_tensor().double().numpy()
    u = alpha @ np.stack(vecs)
    # optimality on the simplex: <g_i, u> >= ||u||^2 for all i, equality where alpha_i > 0
    dots = np.stack(vecs) @ u
    assert (dots >= u @ u - 1e-6).all()
    np.testing.assert_allclose(dots[alpha > 1e-6], u @ u, atol=1e-5)


def test_max_iter_caps_the_solver():
    rng = np.random.default_rng(4)
    vecs = [rng.normal(size=6) for _ in range(4)]
    m, losses, _ = _run(vecs, normalization="none", solver="frank_wolfe", max_iter=1)
    alpha, _ = ref_mgda(vecs, losses, "none", frank_wolfe=True, max_iter=1)
    np.testing.assert_allclose(m.weight_tensor().double().numpy(), alpha, atol=1e-6)


def test_one_term_and_a_zero_gradient():
    m, _, d = _run([np.array([1.0, 2.0, 0.0, 1.0])])
    assert m.weights() == {"t0": 1.0}
    np.testing.assert_allclose(d, [1.0, 2.0, 0.0, 1.0], atol=1e-7)
    # a term with zero gradient: its l2 normaliser falls back to 1, MGDA stops (Pareto-stationary)
    m, _, d = _run([np.array([1.0, 2.0, 0.0, 1.0]), np.zeros(4)], normalization="l2")
    np.testing.assert_allclose(m.weight_tensor().numpy(), [0.001, 0.999], atol=1e-7)
    np.testing.assert_allclose(d, 0.001 * np.array([1.0, 2.0, 0.0, 1.0]), atol=1e-7)


def _terms(net, x):
    out = net(x)
    return {"a": out[:, 0].pow(2).mean() + 0.1, "b": (out[:, 1] - 1).abs().mean(), "c": (out.sum() * 0.5).cos() + 2}


@pytest.mark.parametrize("k", [2, 3])
def test_applied_update_is_the_combination_of_the_term_gradients(k):
    assert_update_is_the_combination(lambda params, names: MGDA(params, names, optimizer=SGD1), _terms, k)


def test_state_round_trip_continues_identically():
    assert_round_trip(lambda params, names: MGDA(params, names, normalization="l2"), _terms)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"normalization": "l1"}, r"method.normalization must be one of .*got 'l1'"),
    ({"solver": "slsqp"}, r"method.solver must be one of .*got 'slsqp'"),
    ({"tol": 0.0}, r"method.tol must be a finite number > 0, got 0.0"),
    ({"max_iter": 0}, r"method.max_iter must be an integer >= 1, got 0"),
])
def test_bad_values_name_the_key(kw, msg):
    net, _ = tiny_net()
    with pytest.raises(ValueError, match=msg):
        MGDA(net.parameters(), ["a", "b"], **kw)


def test_hparams():
    net, _ = tiny_net()
    assert MGDA(net.parameters(), ["a", "b"]).hparams() == {
        "normalization": "loss+", "solver": "projected_gradient", "tol": 1e-5, "max_iter": 250}
