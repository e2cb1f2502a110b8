"""The per-term gradient engine (mtbench/methods/term_grads.py) and the GradientMethod base class."""

from __future__ import annotations

import pytest
import torch

from mtbench.methods.base import GradientMethod
from mtbench.methods.term_grads import TermGradients


def _net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(6, 3)
    return net, x


def _terms(net, x):
    out = net(x)
    return [out[:, 0].pow(2).mean(), out[:, 1].abs().mean(), (out.sum() * 0.5).sin()]


def test_buffers_hold_each_terms_gradient_and_norms():
    net, x = _net()
    params = list(net.parameters())
    eng = TermGradients(params, 3)
    terms = _terms(net, x)
    want = [torch.autograd.grad(t, params, retain_graph=True) for t in terms]
    norms = eng.compute(_terms(net, x))
    for i in range(3):
        for j, p in enumerate(params):
            assert torch.allclose(eng.grads[j][i], want[i][j], atol=1e-7)
            assert norms[i][j].item() == pytest.approx(want[i][j].norm().item(), rel=1e-6)
    assert all(p.grad is None for p in params)  # autograd.grad: no .grad written
    first = [b.data_ptr() for b in eng.grads]
    eng.compute(_terms(net, x))
    assert [b.data_ptr() for b in eng.grads] == first  # buffers allocated once


def test_a_term_that_does_not_reach_a_parameter_gives_zeros_there():
    net, x = _net()
    extra = torch.nn.Parameter(torch.ones(2))
    params = [*net.parameters(), extra]
    eng = TermGradients(params, 2)
    eng.grads = [torch.full((2, *p.shape), 9.0) for p in params]  # stale values must be overwritten
    t0 = net(x).sum()
    t1 = (extra * 2).sum() + net(x).mean()
    norms = eng.compute([t0, t1])
    assert torch.equal(eng.grads[-1][0], torch.zeros(2)) and norms[0][-1].item() == 0.0
    assert torch.equal(eng.grads[-1][1], torch.full((2,), 2.0))
    const = torch.tensor(3.0)  # a term without a graph: zero gradient everywhere
    eng.compute([t0.detach() * 0 + net(x).sum(), const])
    assert all(torch.equal(b[1], torch.zeros_like(b[1])) for b in eng.grads)


def test_gram_and_combination_are_those_of_the_flattened_gradients():
    net, x = _net()
    params = list(net.parameters())
    eng = TermGradients(params, 3)
    eng.compute(_terms(net, x))
    flat = torch.stack([torch.cat([b[i].reshape(-1) for b in eng.grads]) for i in range(3)]).double()
    gram = eng.gram()
    assert gram.dtype == torch.float64
    assert torch.allclose(gram, flat @ flat.T, rtol=1e-12, atol=1e-12)
    c = torch.tensor([0.5, -2.0, 3.0])
    eng.combine_into_grad(c)
    got = torch.cat([p.grad.reshape(-1) for p in params]).double()
    assert torch.allclose(got, (c.double() @ flat), atol=1e-6)
    ptrs = [p.grad.data_ptr() for p in params]
    eng.combine_into_grad(c * 2)
    assert [p.grad.data_ptr() for p in params] == ptrs  # .grad written in place


class _Const(GradientMethod):
    def __init__(self, *a, c=(1.0, 1.0, 1.0), **kw):
        super().__init__(*a, **kw)
        self.c = torch.tensor(c)

    def coefficients(self, losses):
        self.seen = losses.clone()
        return self.c


def test_gradient_method_applies_the_combination_and_logs_the_coefficients():
    net, x = _net()
    params = list(net.parameters())
    w0 = [p.detach().clone() for p in params]
    m = _Const(params, ["a", "b", "c"], c=(1.0, 0.0, 2.0), optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    terms = _terms(net, x)
    want = [torch.autograd.grad(t, params, retain_graph=True) for t in terms]
    m.step(dict(zip("abc", terms)))
    for j, p in enumerate(params):
        assert torch.allclose(p.detach(), w0[j] - (want[0][j] + 2.0 * want[2][j]), atol=1e-6)
    assert torch.allclose(m.seen, torch.stack([t.detach() for t in terms]))
    assert m.weights() == {"a": 1.0, "b": 0.0, "c": 2.0}
    restored = _Const(params, ["a", "b", "c"], optimizer=lambda p: torch.optim.SGD(p, lr=1.0))
    restored.load_state_dict(m.state_dict())
    assert restored.weights() == m.weights()


def test_gram_in_blocks_equals_the_whole_float64_product(monkeypatch):
    import mtbench.methods.term_grads as tg

    monkeypatch.setattr(tg, "GRAM_BLOCK", 7)  # several blocks per parameter, a partial last block
    net, x = _net()
    eng = TermGradients(list(net.parameters()), 3)
    eng.compute(_terms(net, x))
    flat = torch.stack([torch.cat([b[i].reshape(-1) for b in eng.grads]) for i in range(3)]).double()
    assert torch.allclose(eng.gram(), flat @ flat.T, rtol=1e-12, atol=1e-15)
    assert eng._scratch.shape == (3, 7)
