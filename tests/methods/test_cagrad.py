"""CAGrad (Liu et al., arXiv:2110.14048): the update against a plain vector-space port of the official cagrad."""

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
from scipy.optimize import minimize

from mtbench.methods.cagrad import CAGrad


def ref_dual(GG, alpha):
    """The official dual: minimize x^T GG b + c sqrt(x^T GG x + 1e-8) over the simplex (SLSQP)."""
    k = GG.shape[0]
    x_start = np.ones(k) / k
    b = x_start.copy()
    c = alpha * np.sqrt(GG.mean() + 1e-8) + 1e-8

    def objfn(x):
        return (x.reshape(1, k).dot(GG).dot(b.reshape(k, 1))
                + c * np.sqrt(x.reshape(1, k).dot(GG).dot(x.reshape(k, 1)) + 1e-8)).sum()

    res = minimize(objfn, x_start, bounds=tuple((0, 1) for _ in x_start),
                   constraints=({"type": "eq", "fun": lambda x: 1 - sum(x)}))
    return res.x, c, objfn


def ref_cagrad(vecs, alpha=0.5, rescale=1):
    """The update the official code applies: K * (g0 + lmbda g_w) / rescale, on flattened float64 vectors."""
    grads = np.stack(vecs)                      # (K, dim)
    k = len(vecs)
    w, c, _ = ref_dual(grads @ grads.T, alpha)
    gw = w @ grads
    lmbda = c / (np.linalg.norm(gw) + 1e-8)
    g = grads.mean(0) + lmbda * gw
    g = {0: g, 1: g / (1 + alpha ** 2), 2: g / (1 + alpha)}[rescale]
    return g * k


def _linear(vecs):
    """Two parameters; term i = <vecs[i], theta>, so g_i = vecs[i] exactly."""
    n1 = 3
    p1 = torch.nn.Parameter(torch.linspace(-0.3, 0.4, n1, dtype=torch.float64))
    p2 = torch.nn.Parameter(torch.linspace(0.2, -0.1, len(vecs[0]) - n1, dtype=torch.float64))
    a = torch.tensor(np.stack(vecs))

    def terms():
        return {f"t{i}": a[i, :n1] @ p1 + a[i, n1:] @ p2 for i in range(len(vecs))}

    return [p1, p2], terms


def _run(vecs, **kw):
    params, terms = _linear(vecs)
    before = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    m = CAGrad(params, [f"t{i}" for i in range(len(vecs))], optimizer=SGD1, **kw)
    m.step(terms())
    after = torch.cat([p.detach().reshape(-1) for p in params])
    return m, (before - after).numpy()


def _int_vecs(k, seed, dim=9):
    """Integer gradients: every inner product is exact, so both sides give SLSQP the same Gram matrix."""
    rng = np.random.default_rng(seed)
    vecs = [rng.integers(-6, 7, size=dim).astype(np.float64) for _ in range(k)]
    vecs[1] = -vecs[0] + rng.integers(-2, 3, size=dim)  # a strongly conflicting pair
    return vecs


@pytest.mark.parametrize("rescale", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.5, 0.2, 2.0])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_update_matches_the_official_arithmetic(k, alpha, rescale):
    vecs = _int_vecs(k, seed=k)
    m, d = _run(vecs, alpha=alpha, rescale=rescale)
    want = ref_cagrad(vecs, alpha, rescale)
    scale = np.abs(want).max()
    np.testing.assert_allclose(d, want, atol=1e-6 * scale, rtol=0)
    c = m.weight_tensor().double().numpy()
    np.testing.assert_allclose(c @ np.stack(vecs), want, atol=1e-5 * scale, rtol=0)  # float32 coefficients


def test_rescale_options_only_scale_the_update():
    vecs = _int_vecs(3, seed=7)
    d = {r: _run(vecs, alpha=0.5, rescale=r)[1] for r in (0, 1, 2)}
    np.testing.assert_allclose(d[1] * (1 + 0.25), d[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d[2] * 1.5, d[0], rtol=1e-12, atol=1e-12)


def test_alpha_zero_is_the_plain_sum():
    vecs = _int_vecs(3, seed=2)
    m, d = _run(vecs, alpha=0.0, rescale=0)
    np.testing.assert_allclose(d, np.sum(vecs, axis=0), atol=1e-6)
    np.testing.assert_allclose(m.weight_tensor().numpy(), [1.0, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("k", [2, 4])
def test_real_gradients_solve_the_dual_and_avert_the_conflict(k):
    rng = np.random.default_rng(11 + k)
    vecs = [rng.normal(size=12) * s for s in rng.uniform(0.1, 10.0, size=k)]
    vecs[1] = -0.6 * vecs[0] + 0.1 * vecs[1]
    alpha = 0.5
    m, d = _run(vecs, alpha=alpha, rescale=0)
    want = ref_cagrad(vecs, alpha, 0)
    np.testing.assert_allclose(d, want, rtol=0, atol=1e-3 * np.abs(want).max())  # SLSQP's own tolerance
    # the dual objective reached is the official one's
    grads = np.stack(vecs)
    w_ref, _, objfn = ref_dual(grads @ grads.T, alpha)
    lam_w = (m.weight_tensor().double().numpy() - 1.0) / k          # = lambda * w*
    w = lam_w / lam_w.sum()
    assert objfn(w) == pytest.approx(objfn(w_ref), rel=1e-5, abs=1e-8)
    # the primal: d / K lies on the ball ||d/K - g0|| = alpha ||g0|| and improves the worst term over g0
    g0 = grads.mean(0)
    step = d / k
    assert np.linalg.norm(step - g0) == pytest.approx(alpha * np.linalg.norm(g0), rel=1e-4)
    assert (grads @ step).min() >= (grads @ g0).min() - 1e-6


def _terms(net, x):
    out = net(x)
    return {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - out[:, 0]).abs().mean(), "c": -(out.sum() * 0.5).sin()}


@pytest.mark.parametrize("k", [2, 3])
def test_applied_update_is_the_combination_of_the_term_gradients(k):
    assert_update_is_the_combination(lambda params, names: CAGrad(params, names, optimizer=SGD1), _terms, k)


def test_state_round_trip_continues_identically():
    assert_round_trip(lambda params, names: CAGrad(params, names, alpha=0.4), _terms)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"alpha": -0.1}, r"method.alpha must be a finite number >= 0, got -0.1"),
    ({"alpha": float("nan")}, r"method.alpha must be a finite number >= 0, got nan"),
    ({"rescale": 3}, r"method.rescale must be one of \[0, 1, 2\], got 3"),
    ({"rescale": True}, r"method.rescale must be one of \[0, 1, 2\], got True"),
])
def test_bad_values_name_the_key(kw, msg):
    net, _ = tiny_net()
    with pytest.raises(ValueError, match=msg):
        CAGrad(net.parameters(), ["a", "b"], **kw)


def test_hparams_and_one_term():
    net, x = tiny_net()
    m = CAGrad(net.parameters(), ["a"], optimizer=SGD1)
    assert m.hparams() == {"alpha": 0.5, "rescale": 1}
    m.step({"a": _terms(net, x)["a"]})
    # one term: w = 1, lambda = alpha, d = (1 + alpha) g / (1 + alpha^2)
    assert m.weights()["a"] == pytest.approx(1.5 / 1.25, rel=1e-6)
