"""IMTL (Liu et al., ICLR 2021): IMTL-G's coefficients and IMTL-L's loss scales, against LibMTL's formula."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mtbench.methods.imtl import IMTL


def _libmtl_imtl(grads: np.ndarray, log_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LibMTL's IMTL.backward on flattened gradients (float64): (alpha, update direction)."""
    g = np.exp(log_scales)[:, None] * grads          # gradients of exp(s_i) L_i - s_i
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d_mat = g[0:1] - g[1:]
    u_mat = u[0:1] - u[1:]
    alpha = g[0] @ u_mat.T @ np.linalg.inv(d_mat @ u_mat.T)
    alpha = np.concatenate([[1.0 - alpha.sum()], alpha])
    return alpha, alpha @ g


class _Linear(torch.nn.Module):
    """theta in R^dim; term i = <a_i, theta> + b_i, so g_i = a_i exactly."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(a.shape[1]))
        self.a = torch.tensor(a, dtype=torch.float32)
        self.b = torch.tensor(b, dtype=torch.float32)

    def terms(self) -> dict[str, torch.Tensor]:
        vals = self.a @ self.theta + self.b
        return {f"t{i}": vals[i] for i in range(len(vals))}


def _vectors(k: int, dim: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # float32-representable, so the float64 reference sees exactly the model's gradients
    return rng.normal(size=(k, dim)).astype(np.float32).astype(np.float64)


def _method(model, k, **kw):
    return IMTL(model.parameters(), [f"t{i}" for i in range(k)], **kw)


def _coefficients(m, model) -> torch.Tensor:
    m.grads.compute(list(model.terms().values()))
    return m.coefficients(torch.zeros(len(m.term_names)))


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("learn_scales", [True, False])
def test_coefficients_are_libmtl_imtl(k, learn_scales):
    a = _vectors(k)
    model = _Linear(a, np.ones(k))
    m = _method(model, k, learn_scales=learn_scales)
    s = np.linspace(-0.7, 0.9, k) if learn_scales else np.zeros(k)
    with torch.no_grad():
        m.log_scales.copy_(torch.tensor(s, dtype=torch.float32))
    s = m.log_scales.detach().double().numpy()     # the float32 values the method uses
    c = _coefficients(m, model).numpy()
    alpha, d = _libmtl_imtl(a, s)
    np.testing.assert_allclose(c, alpha * np.exp(s), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c @ a, d, rtol=1e-6, atol=1e-6)
    # IMTL-G's defining property: equal projections onto the unit vectors, alphas summing to 1
    proj = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ d
    np.testing.assert_allclose(proj, np.full(k, proj[0]), rtol=1e-6, atol=1e-6)
    assert (c / np.exp(s)).sum() == pytest.approx(1.0, abs=1e-9)


def test_two_terms_bisect_the_unit_vectors():
    a = np.array([[3.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    model = _Linear(a, np.ones(2))
    m = _method(model, 2, learn_scales=False)
    d = _coefficients(m, model).numpy() @ a
    u = a / np.linalg.norm(a, axis=1, keepdims=True)
    bis = u[0] + u[1]
    assert abs(np.cross(d, bis)).max() < 1e-9 and d @ bis > 0


def test_a_term_with_zero_gradient_is_left_out():
    a = _vectors(4)
    a[2] = 0.0  # e.g. an MNIST class absent from the batch: LibMTL would give NaN everywhere
    model = _Linear(a, np.ones(4))
    m = _method(model, 4)
    with torch.no_grad():
        m.log_scales.copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    s = m.log_scales.detach().double().numpy()
    c = _coefficients(m, model).numpy()
    keep = [0, 1, 3]
    alpha, _ = _libmtl_imtl(a[keep], s[keep])
    assert c[2] == 0.0
    np.testing.assert_allclose(c[keep], alpha * np.exp(s[keep]), rtol=1e-6, atol=1e-6)
    model0 = _Linear(np.zeros((3, 4)), np.ones(3))  # no term reaches the parameters: a zero update
    assert torch.equal(_coefficients(_method(model0, 3), model0), torch.zeros(3, dtype=torch.float64))


def test_identical_gradients_fall_back_to_equal_weights():
    a = _vectors(3)
    a[1] = a[0]  # an exactly singular system (LibMTL's inverse raises)
    model = _Linear(a, np.ones(3))
    c = _coefficients(_method(model, 3, learn_scales=False), model)
    assert torch.allclose(c, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_one_term():
    model = _Linear(_vectors(1), np.ones(1))
    assert _coefficients(_method(model, 1), model).tolist() == [1.0]


def test_update_is_the_combination_and_the_scales_descend_their_loss():
    k = 3
    a, b = _vectors(k), np.array([0.5, 2.0, 1.5])
    model = _Linear(a, b)
    m = _method(model, k, optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    with torch.no_grad():
        m.log_scales.copy_(torch.tensor([0.2, -0.4, 0.1]))
    theta0, s0 = model.theta.detach().clone(), m.log_scales.detach().clone()
    terms = model.terms()
    # d/ds of sum_i exp(s_i) L_i - s_i by autograd, against the closed form the method uses
    s_var = s0.clone().requires_grad_(True)
    vals = torch.stack([t.detach() for t in terms.values()])
    (want_s_grad,) = torch.autograd.grad((s_var.exp() * vals - s_var).sum(), s_var)
    m.step(terms)
    c = m.weight_tensor()
    got = theta0 - model.theta.detach()
    assert torch.allclose(got, c @ torch.tensor(a, dtype=torch.float32), atol=1e-6)
    assert torch.allclose(s0 - m.log_scales.detach(), want_s_grad, atol=1e-6)
    assert set(m.weights()) == {"t0", "t1", "t2"}


def test_state_round_trip_continues_identically():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x = torch.randn(8, 4)

    def terms(n):
        out = n(x)
        return {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - 1).abs().mean(), "c": out[:, 2].exp().mean()}

    m = IMTL(net.parameters(), ["a", "b", "c"])
    for _ in range(3):
        m.step(terms(net))
    net2 = copy.deepcopy(net)
    snap = m.state_dict()
    m2 = IMTL(net2.parameters(), ["a", "b", "c"])
    m2.load_state_dict(copy.deepcopy(snap))  # as through torch.save/load
    before = snap["imtl"]["log_scales"].clone()
    for _ in range(2):
        m.step(terms(net))
        m2.step(terms(net2))
    assert torch.equal(snap["imtl"]["log_scales"], before)  # a snapshot is a clone
    assert not torch.equal(m.log_scales, before)            # ... and the scales did move
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.log_scales, m2.log_scales) and torch.equal(m.weight_tensor(), m2.weight_tensor())
    with pytest.raises(ValueError, match="method.learn_scales=true"):
        IMTL(net2.parameters(), ["a", "b", "c"], learn_scales=False).load_state_dict(snap)


def test_validation_names_the_key():
    with pytest.raises(ValueError, match=r"method.learn_scales must be true or false, got 'yes'"):
        IMTL(torch.nn.Linear(2, 1).parameters(), ["a", "b"], learn_scales="yes")
