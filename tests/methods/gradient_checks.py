"""Checks every gradient-level method (GradientMethod) must pass, shared by their test files.

``make(params, names)`` builds the method under test; ``terms(net, x)`` returns the loss terms by name.
"""

from __future__ import annotations

import copy

import torch

SGD1 = lambda p: torch.optim.SGD(p, lr=1.0)


def tiny_net():
    """A two-layer network and a batch (seeded)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return net, torch.randn(6, 3)


def assert_update_is_the_combination(make, terms, k: int) -> None:
    """With SGD lr=1, one step moves the parameters by -sum_i c_i g_i, c the method's logged coefficients."""
    net, x = tiny_net()
    params = list(net.parameters())
    names = ["a", "b", "c"][:k]
    m = make(params, names)
    w0 = [p.detach().clone() for p in params]
    t = terms(net, x)
    g = [torch.autograd.grad(t[n], params, retain_graph=True) for n in names]
    m.step({n: t[n] for n in names})
    c = m.weight_tensor()
    for j, p in enumerate(params):
        assert torch.allclose(p.detach(), w0[j] - sum(c[i] * g[i][j] for i in range(k)), atol=1e-6)


def assert_round_trip(make, terms, before: int = 3, after: int = 2):
    """``before`` steps, state_dict into a fresh method on a copy of the network, ``after`` more steps on both:
    identical coefficients at every step and identical parameters. Returns (method, snapshot, its deep copy)."""
    net, x = tiny_net()
    names = ["a", "b", "c"]
    m = make(net.parameters(), names)
    for _ in range(before):
        m.step(terms(net, x))
    snapshot = m.state_dict()
    frozen = copy.deepcopy(snapshot)
    net2 = copy.deepcopy(net)
    m2 = make(net2.parameters(), names)
    m2.load_state_dict(copy.deepcopy(snapshot))
    assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    for _ in range(after):
        m.step(terms(net, x))
        m2.step(terms(net2, x))
        assert torch.equal(m.weight_tensor(), m2.weight_tensor())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters()))
    return m, snapshot, frozen
