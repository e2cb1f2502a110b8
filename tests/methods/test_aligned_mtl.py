"""Aligned-MTL (Senushkin et al., CVPR 2023): coefficients and update against the official ProcrustesSolver."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mtbench.methods.aligned_mtl import AlignedMTL

EPS32 = float(np.finfo(np.float32).eps)


def _procrustes(grads: np.ndarray, scale_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """SamsungLabs/MTL ProcrustesSolver.apply + AlignedMTLBalancer.step on flattened gradients (K, d), float64:
    (weights.sum(-1), the update = the aligned gradients summed)."""
    g = grads.T                                          # (d, K) as the official code
    cov = g.T @ g
    lam, basis = np.linalg.eigh(cov)
    tol = lam.max() * max(cov.shape) * EPS32
    rank = int((lam > tol).sum())
    order = np.argsort(lam)[::-1]
    lam, basis = lam[order][:rank], basis[:, order][:, :rank]
    if scale_mode == "min":
        w = basis * np.sqrt(lam[-1])
    elif scale_mode == "median":
        w = basis * np.sqrt(np.sort(lam)[(rank - 1) // 2])  # torch.median: the lower middle value
    else:
        w = basis * np.sqrt(lam.mean())
    w = w / np.sqrt(lam)[None, :]
    w = w @ basis.T
    aligned = g @ w
    return w.sum(-1), aligned.sum(-1)


class _Linear(torch.nn.Module):
    """theta in R^dim; term i = <a_i, theta> + 1, so g_i = a_i exactly."""

    def __init__(self, a: np.ndarray) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(a.shape[1]))
        self.a = torch.tensor(a, dtype=torch.float32)

    def terms(self) -> dict[str, torch.Tensor]:
        vals = self.a @ self.theta + 1.0
        return {f"t{i}": vals[i] for i in range(len(vals))}


def _vectors(k: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(k, dim)) * rng.uniform(0.1, 5.0, size=(k, 1))).astype(np.float32).astype(np.float64)


def _coefficients(a: np.ndarray, scale_mode: str) -> np.ndarray:
    model = _Linear(a)
    m = AlignedMTL(model.parameters(), [f"t{i}" for i in range(len(a))], scale_mode=scale_mode)
    m.grads.compute(list(model.terms().values()))
    c = m.coefficients(torch.zeros(len(a)))
    assert c.dtype == torch.float64
    return c.numpy()


def _cases():
    full = {k: _vectors(k, seed=k) for k in (2, 3, 4, 5)}
    dep = _vectors(3, seed=7)
    dep[2] = dep[0] + dep[1]                             # rank 2: one eigenvalue dropped
    zero = _vectors(4, seed=8)
    zero[1] = 0.0                                        # a term that does not reach the parameters
    return {**{f"K={k}": v for k, v in full.items()}, "rank-deficient": dep, "zero-gradient": zero}


@pytest.mark.parametrize("scale_mode", ["min", "median", "rmse"])
@pytest.mark.parametrize("case", list(_cases()))
def test_coefficients_and_update_are_the_official_solvers(case, scale_mode):
    a = _cases()[case]
    c = _coefficients(a, scale_mode)
    want_c, want_d = _procrustes(a, scale_mode)
    np.testing.assert_allclose(c, want_c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c @ a, want_d, rtol=1e-6, atol=1e-6)
    # the aligned system sigma U_r V_r^T (SVD of the flattened gradients): the update is its column sum
    u, s, vt = np.linalg.svd(a.T, full_matrices=False)
    r = int((s**2 > (s**2).max() * len(a) * EPS32).sum())
    sig = {"min": s[r - 1], "median": np.sqrt(np.sort(s[:r] ** 2)[(r - 1) // 2]),
           "rmse": np.sqrt((s[:r] ** 2).mean())}[scale_mode]
    np.testing.assert_allclose(c @ a, sig * u[:, :r] @ vt[:r].sum(1), rtol=1e-6, atol=1e-6)
    if case == "zero-gradient":
        assert abs(c[1]) < 1e-12


def test_two_orthogonal_terms_of_unequal_norm_get_equal_norm_contributions():
    a = np.array([[4.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    c = _coefficients(a, "min")
    np.testing.assert_allclose(c, [0.5 / 4.0, 1.0], rtol=1e-12)  # both scaled to the smaller norm 0.5


def test_all_zero_gradients_give_a_zero_update():
    assert np.array_equal(_coefficients(np.zeros((3, 4)), "min"), np.zeros(3))
    assert np.array_equal(_coefficients(np.zeros((3, 4)), "median"), np.zeros(3))


def test_update_is_the_combination():
    a = _vectors(3)
    model = _Linear(a)
    m = AlignedMTL(model.parameters(), ["t0", "t1", "t2"], optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    theta0 = model.theta.detach().clone()
    m.step(model.terms())
    _, want_d = _procrustes(a, "min")
    assert torch.allclose(theta0 - model.theta.detach(), m.weight_tensor() @ torch.tensor(a, dtype=torch.float32),
                          atol=1e-6)
    np.testing.assert_allclose((theta0 - model.theta.detach()).numpy(), want_d, rtol=1e-5, atol=1e-6)


def test_state_round_trip_continues_identically():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x = torch.randn(8, 4)

    def terms(n):
        out = n(x)
        return {"a": out[:, 0].pow(2).mean(), "b": (out[:, 1] - 1).abs().mean(), "c": out[:, 2].exp().mean()}

    m = AlignedMTL(net.parameters(), ["a", "b", "c"], scale_mode="rmse")
    for _ in range(3):
        m.step(terms(net))
    net2 = copy.deepcopy(net)
    m2 = AlignedMTL(net2.parameters(), ["a", "b", "c"], scale_mode="rmse")
    m2.load_state_dict(copy.deepcopy(m.state_dict()))
    assert torch.equal(m2.weight_tensor(), m.weight_tensor())
    for _ in range(2):
        m.step(terms(net))
        m2.step(terms(net2))
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    assert m.hparams() == {"scale_mode": "rmse"}


def test_validation_names_the_key():
    with pytest.raises(ValueError, match=r"method.scale_mode must be one of \['min', 'median', 'rmse'\], got 'max'"):
        AlignedMTL(torch.nn.Linear(2, 1).parameters(), ["a", "b"], scale_mode="max")
