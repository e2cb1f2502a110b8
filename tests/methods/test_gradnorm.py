"""GradNorm (Chen et al., ICML 2018): the weighted sum, the weights' closed-form gradient and their update."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from mtbench.methods.gradnorm import MIN_WEIGHT, GradNorm, gradnorm_weight_grad


def _net(k: int, seed: int = 0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, k))
    x = torch.randn(7, 3)
    return net, x


def _terms(net, x, step: int = 0) -> list[torch.Tensor]:
    out = net(x)
    k = out.shape[1]
    fns = [lambda o: o.pow(2).mean(), lambda o: (o - 1).abs().mean(), lambda o: o.exp().mean(),
           lambda o: (o + 0.5).pow(4).mean()]
    return [fns[i](out[:, i]) * (1.0 + 0.3 * step * i) for i in range(k)]


def _named(terms):
    return {f"t{i}": t for i, t in enumerate(terms)}


def _reference_run(net, x, k: int, steps: int, lr: float, alpha: float) -> tuple[list[torch.Tensor], list]:
    """The paper's algorithm, plainly: G_i = ||grad_W (w_i L_i)|| with create_graph, L_grad by autograd,
    SGD on the network and on w, then w <- K w / sum w. Returns the weights used at each step."""
    params = list(net.parameters())
    layer = params[-2]                      # the last Linear's weight
    w = torch.ones(k)
    l0 = None
    used = []
    for step in range(steps):
        terms = _terms(net, x, step)
        losses = torch.stack([t.detach() for t in terms])
        if l0 is None:
            l0 = losses.clone()
        total = sum(w[i] * terms[i] for i in range(k))
        net_grads = torch.autograd.grad(total, params, retain_graph=True)
        wv = w.clone().requires_grad_(True)
        g = torch.stack([torch.autograd.grad(wv[i] * terms[i], layer, retain_graph=True, create_graph=True)[0].norm()
                         for i in range(k)])
        ratio = losses / l0
        target = (g.mean() * (ratio / ratio.mean()).pow(alpha)).detach()
        (w_grad,) = torch.autograd.grad((g - target).abs().sum(), wv)
        used.append(w.clone())
        with torch.no_grad():
            for p, gp in zip(params, net_grads):
                p -= lr * gp
            w = (w - lr * w_grad).clamp(min=MIN_WEIGHT)
            w = w * k / w.sum()
    return used, w


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_steps_are_the_papers_algorithm(k, alpha):
    net, x = _net(k)
    ref_net = copy.deepcopy(net)
    lr, steps = 0.05, 4
    used_ref, w_ref = _reference_run(ref_net, x, k, steps, lr, alpha)
    m = GradNorm(net.parameters(), [f"t{i}" for i in range(k)], alpha=alpha,
                 optimizer=lambda p: torch.optim.SGD(p, lr=lr))
    assert m.layer == [2]                   # the last tensor with dim >= 2: the output layer's weight
    for step in range(steps):
        m.step(_named(_terms(net, x, step)))
        assert torch.allclose(m.weight_tensor(), used_ref[step], atol=1e-6)
    assert torch.allclose(m.w.detach(), w_ref, atol=1e-6)
    assert m.w.detach().sum().item() == pytest.approx(k, rel=1e-6)
    assert not torch.allclose(w_ref, torch.ones(k))  # the weights did move
    for p, q in zip(net.parameters(), ref_net.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.5, 3.0])
def test_closed_form_weight_gradient_is_autograds(k, alpha):
    torch.manual_seed(k)
    layer = torch.randn(4, 3, requires_grad=True)
    a = torch.randn(k, 4, 3)
    terms = [((a[i] * layer).sum() + 2.0).pow(2) * (i + 1) for i in range(k)]
    w = torch.rand(k) * 2 + 0.1
    w[0] = -0.3                             # sign(w) as autograd's derivative of |w| n
    ratios = torch.rand(k) + 0.2
    wv = w.clone().requires_grad_(True)
    g = torch.stack([torch.autograd.grad(wv[i] * terms[i], layer, retain_graph=True, create_graph=True)[0].norm()
                     for i in range(k)])
    target = (g.mean() * (ratios / ratios.mean()).pow(alpha)).detach()
    (want,) = torch.autograd.grad((g - target).abs().sum(), wv)
    norms = torch.stack([torch.autograd.grad(t, layer, retain_graph=True)[0].norm() for t in terms])
    assert torch.allclose(gradnorm_weight_grad(w, norms, ratios, alpha), want, atol=1e-6)


def test_layer_choice_and_a_term_that_does_not_reach_it(caplog):
    net, x = _net(3)
    params = list(net.parameters())
    assert GradNorm(params, ["a", "b"], layer=0).layer == [0]
    assert GradNorm(params, ["a", "b"], layer=[-2, 0]).layer == [2, 0]
    assert GradNorm([torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))], ["a"]).layer == [1]
    extra = torch.nn.Parameter(torch.ones(2, 2))   # reached by term b only: the default layer
    m = GradNorm([*params, extra], ["a", "b"], optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert m.layer == [4]
    out = net(x)
    with caplog.at_level(logging.WARNING, logger="mtbench.methods.gradnorm"):
        m.step({"a": out.pow(2).mean(), "b": out.mean() + extra.pow(2).sum()})
    assert "['a'] have a zero gradient on the layer (parameter tensors [4])" in caplog.text
    assert m.w.grad[0].item() == 0.0 and m.w.grad[1].item() != 0.0
    caplog.clear()
    m.step({"a": net(x).pow(2).mean(), "b": net(x).mean() + extra.pow(2).sum()})
    assert caplog.text == ""                 # once


def test_a_term_zero_at_the_first_step_records_its_initial_loss_later():
    net, x = _net(2)
    m = GradNorm(net.parameters(), ["a", "b"], optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    out = net(x)
    m.step({"a": out[:, 0].pow(2).mean(), "b": out[:, 1].sum() * 0.0})
    assert m.initial_losses[1].item() == 0.0 and torch.isfinite(m.w).all()
    out = net(x)
    b = out[:, 1].pow(2).mean()
    m.step({"a": out[:, 0].pow(2).mean(), "b": b})
    assert m.initial_losses[1].item() == pytest.approx(b.item())
    assert torch.isfinite(m.w).all()


def test_init_from_default_weights_and_weight_lr():
    net, _ = _net(2)
    m = GradNorm(net.parameters(), ["a", "b"], default_weights={"a": 1.0, "b": 3.0}, init="default",
                 weight_lr=0.5)
    assert m.weights() == {"a": 0.5, "b": 1.5}
    assert m.optimizer.param_groups[1]["params"][0] is m.w and m.optimizer.param_groups[1]["lr"] == 0.5
    assert GradNorm(net.parameters(), ["a", "b"]).optimizer.param_groups[1]["lr"] == 1e-3  # make_adam's default
    assert m.hparams() == {"alpha": 1.5, "layer": "[2]", "weight_lr": 0.5, "init": "default"}


def test_state_round_trip_continues_identically():
    net, x = _net(3)
    m = GradNorm(net.parameters(), ["t0", "t1", "t2"], weight_lr=0.05)
    for step in range(3):
        m.step(_named(_terms(net, x, step)))
    net2 = copy.deepcopy(net)
    snap = m.state_dict()
    kept = copy.deepcopy(snap)
    m2 = GradNorm(net2.parameters(), ["t0", "t1", "t2"], weight_lr=0.05)
    m2.load_state_dict(copy.deepcopy(snap))  # as through torch.save/load
    assert torch.equal(m2.weight_tensor(), m.weight_tensor())
    for step in range(3, 5):
        m.step(_named(_terms(net, x, step)))
        m2.step(_named(_terms(net2, x, step)))
    for key in ("weights", "used", "initial_losses"):
        assert torch.equal(snap["gradnorm"][key], kept["gradnorm"][key])  # the snapshot did not change
    assert not torch.equal(m.w.detach(), kept["gradnorm"]["weights"])
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(m.w, m2.w) and torch.equal(m.weight_tensor(), m2.weight_tensor())
    assert torch.equal(m.initial_losses, m2.initial_losses)
    with pytest.raises(ValueError, match=r"GradNorm state does not match this run"):
        GradNorm(net2.parameters(), ["t0", "t1", "t2"], layer=0).load_state_dict(snap)


@pytest.mark.parametrize(("kw", "msg"), [
    ({"alpha": -1.0}, r"method.alpha must be a finite number >= 0, got -1.0"),
    ({"alpha": float("nan")}, r"method.alpha must be a finite number >= 0, got nan"),
    ({"weight_lr": 0.0}, r"method.weight_lr must be a finite number > 0, got 0.0"),
    ({"init": "uniform"}, r"method.init must be one of \['ones', 'default'\], got 'uniform'"),
    ({"layer": 4}, (r"method.layer must be null, an index or a list of indices into the method's 4 parameter "
                    r"tensors \(-4..3\), got 4")),
    ({"layer": [0, -4]}, r"method.layer names a parameter tensor twice: \[0, -4\]"),
    ({"layer": "fc2"}, r"method.layer must be null, an index or a list of indices .* got 'fc2'"),
    ({"init": "default", "default_weights": {"a": 0.0, "b": 0.0}}, r"method.init=default needs"),
])
def test_validation_names_the_key(kw, msg):
    net, _ = _net(2)
    with pytest.raises(ValueError, match=msg):
        GradNorm(net.parameters(), ["a", "b"], **kw)
