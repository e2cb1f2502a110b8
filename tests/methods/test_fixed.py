"""Fixed weights: sum_i w_i L_i with one backward pass (SPEC.md section 1)."""

from __future__ import annotations

import copy

import pytest
import torch

from mtbench.methods.fixed import Fixed


def _setup():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1, bias=False)
    x = torch.randn(5, 3)
    return lin, x


def test_gradient_is_that_of_the_weighted_sum():
    lin, x = _setup()
    opt = lambda p: torch.optim.SGD(p, lr=1.0)  # noqa: E731 - one SGD step exposes the gradient
    m = Fixed(lin.parameters(), ["a", "b"], default_weights={"a": 2.0, "b": 1.0}, weights={"b": 0.5},
              optimizer=opt)
    w0 = lin.weight.detach().clone()
    out = lin(x).squeeze(1)
    la, lb = out.pow(2).mean(), out.abs().mean()
    ga = torch.autograd.grad(la, lin.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(lb, lin.weight, retain_graph=True)[0]
    m.step({"a": la, "b": lb})
    assert torch.allclose(lin.weight.detach(), w0 - (2.0 * ga + 0.5 * gb))
    assert m.weights() == {"a": 2.0, "b": 0.5}


def test_weights_as_list_and_defaults_and_errors():
    lin, _ = _setup()
    assert Fixed(lin.parameters(), ["a", "b"]).weights() == {"a": 1.0, "b": 1.0}
    assert Fixed(lin.parameters(), ["a", "b"], weights=[3, 4]).weights() == {"a": 3.0, "b": 4.0}
    with pytest.raises(ValueError, match="2 values but the model has"):
        Fixed(lin.parameters(), ["a"], weights=[1, 2])
    with pytest.raises(ValueError, match=r"unknown terms \['c'\]"):
        Fixed(lin.parameters(), ["a", "b"], weights={"c": 1.0})
    with pytest.raises(ValueError, match="method.weights.a must be a finite number >= 0"):
        Fixed(lin.parameters(), ["a", "b"], weights={"a": -1.0})


def test_missing_or_extra_terms_are_named():
    lin, x = _setup()
    m = Fixed(lin.parameters(), ["a", "b"])
    out = lin(x).sum()
    with pytest.raises(KeyError, match=r"missing \['b'\]"):
        m.step({"a": out})


def test_state_round_trip_continues_identically():
    lin, x = _setup()
    lin2 = torch.nn.Linear(3, 1, bias=False)
    m = Fixed(lin.parameters(), ["a"])
    for _ in range(3):
        m.step({"a": lin(x).pow(2).mean()})
    lin2.load_state_dict(lin.state_dict())
    m2 = Fixed(lin2.parameters(), ["a"])
    m2.load_state_dict(copy.deepcopy(m.state_dict()))  # as through torch.save/load
    for _ in range(2):
        m.step({"a": lin(x).pow(2).mean()})
        m2.step({"a": lin2(x).pow(2).mean()})
    assert torch.equal(lin.weight, lin2.weight)
