"""MTAdam (SPEC section 3) against a deliberately plain implementation written here."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtbench.cli import config_dir
from mtbench.methods.mtadam import MTAdam, MTAdamMethod

CONF = config_dir()


# ---------------------------------------------------------------------------
# plain reference: loops over parameters and terms, explicit formulas
# ---------------------------------------------------------------------------
class PlainMTAdam:
    """SPEC section 3, written out literally (no vectorisation, float64 math)."""

    def __init__(self, groups: list[dict]):
        defaults = dict(lr=1e-3, betas=(0.9, 0.999, 0.9), eps=1e-8, weight_decay=0.0, amsgrad=False)
        self.groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[int, dict] = {}
        self.effective_weights: list[float] | None = None

    def step(self, losses, ranks=None):
        k = len(losses)
        ranks = [1.0] * k if ranks is None else list(ranks)
        params = [p for g in self.groups for p in g["params"]]
        # 1. per-term gradients, zeros where a term has no path
        grads = []
        for loss in losses:
            if loss.requires_grad:
                gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            else:
                gs = [None] * len(params)
            grads.append([torch.zeros_like(p) if g is None else g.detach().clone() for p, g in zip(params, gs)])
        ew_sum = [0.0] * k
        ew_cnt = [0] * k
        j = -1
        for group in self.groups:
            b1, b2, b3 = group["betas"]
            for p in group["params"]:
                j += 1
                st = self.state.setdefault(id(p), {"t": 0, "n": [0.0] * k,
                                                   "m": [torch.zeros_like(p, dtype=torch.float64) for _ in range(k)],
                                                   "v": [torch.zeros_like(p, dtype=torch.float64) for _ in range(k)],
                                                   "vmax": [torch.zeros_like(p, dtype=torch.float64) for _ in range(k)]})
                st["t"] += 1
                t = st["t"]
                g = [grads[i][j].double() for i in range(k)]
                # 2. all norms first
                for i in range(k):
                    gn = math.sqrt(float((g[i] ** 2).sum()))
                    st["n"][i] = gn if t == 1 else b3 * st["n"][i] + (1 - b3) * gn
                n = st["n"]
                # 3. anchor
                anchor = None
                for i in range(k):
                    if n[i] > 1e-10:
                        anchor = i
                        break
                # 4. rescale
                if anchor is not None:
                    for i in range(k):
                        if n[i] > 1e-10:
                            g[i] = ranks[i] * n[anchor] * g[i] / n[i]
                            ew_sum[i] += ranks[i] * n[anchor] / n[i]
                            ew_cnt[i] += 1
                # 5. weight decay
                if group["weight_decay"] != 0:
                    g = [gi + group["weight_decay"] * p.detach().double() for gi in g]
                # 6. moments
                d = []
                for i in range(k):
                    st["m"][i] = b1 * st["m"][i] + (1 - b1) * g[i]
                    st["v"][i] = b2 * st["v"][i] + (1 - b2) * g[i] * g[i]
                    v = st["v"][i]
                    if group["amsgrad"]:
                        st["vmax"][i] = torch.maximum(st["vmax"][i], st["v"][i])
                        v = st["vmax"][i]
                    # 7.
                    d.append(v.sqrt() / math.sqrt(1 - b2 ** t) + group["eps"])
                big_d = d[0]
                for i in range(1, k):
                    big_d = torch.maximum(big_d, d[i])
                # 8.
                update = sum(st["m"][i] / big_d for i in range(k))
                with torch.no_grad():
                    p.sub_((group["lr"] / (1 - b1 ** t) * update).to(p.dtype))
        self.effective_weights = [ew_sum[i] / ew_cnt[i] if ew_cnt[i] else 0.0 for i in range(k)]


# ---------------------------------------------------------------------------
# a small network with terms of very different scales
# ---------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(4, 6)
        self.l2 = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.tanh(self.l1(x))
        return h, self.l2(h)


def make_net(dtype=torch.float64, seed=0) -> Net:
    torch.manual_seed(seed)
    return Net().to(dtype)


def batches(n=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(123)
    return [(torch.randn(8, 4, generator=g).to(dtype), torch.randn(8, 3, generator=g).to(dtype)) for _ in range(n)]


def terms(net: Net, x, y, factors=(1.0, 1.0, 1.0, 1.0, 1.0)):
    """5 terms: first-layer only (tiny), MSE, huge, exact-zero gradient, constant (no grad at all)."""
    h, out = net(x)
    return [
        factors[0] * 1e-3 * (h ** 2).mean(),               # no path to l2: anchor of l2 is term 1
        factors[1] * F.mse_loss(out, y),
        factors[2] * 1e3 * (out.sum(1) ** 2).mean(),
        factors[3] * (net.l1.weight * 0.0).sum(),           # reaches l1.weight with gradient 0
        factors[4] * torch.full((), 2.5, dtype=x.dtype, device=x.device),  # does not require grad
    ]


K = 5


def param_groups(net: Net, multi: bool, **hp):
    if not multi:
        return [{"params": list(net.parameters()), **hp}]
    return [{"params": list(net.l1.parameters()), **hp},
            {"params": list(net.l2.parameters()), "lr": 3e-3, "betas": (0.8, 0.99, 0.5),
             "amsgrad": not hp.get("amsgrad", False), "weight_decay": 0.1}]


CASES = {
    "default": dict(hp={}, ranks=None, multi=False),
    "amsgrad": dict(hp={"amsgrad": True}, ranks=None, multi=False),
    "weight_decay": dict(hp={"weight_decay": 0.05}, ranks=None, multi=False),
    "ranks": dict(hp={}, ranks=[1.0, 2.0, 0.5, 3.0, 1.5], multi=False),
    "beta3_eps": dict(hp={"betas": (0.5, 0.9, 0.3), "eps": 1e-6}, ranks=None, multi=False),
    "groups": dict(hp={"lr": 1e-2}, ranks=[0.7, 1.0, 1.3, 1.0, 1.0], multi=True),
    # term 1's gradient norms fall below 1e-10: it is left unscaled and term 2 becomes l2's anchor
    "below_threshold": dict(hp={}, ranks=None, multi=False, factors=(1.0, 1e-13, 1.0, 1.0, 1.0)),
}


def run_pair(case, dtype, steps=5):
    hp = {"lr": 1e-2, **case["hp"]}
    net = make_net(dtype)
    ref = copy.deepcopy(net).double()
    opt = MTAdam(param_groups(net, case["multi"], **hp))
    plain = PlainMTAdam(param_groups(ref, case["multi"], **hp))
    f = case.get("factors", (1.0,) * K)
    for x, y in batches(steps):
        opt.step(terms(net, x.to(dtype), y.to(dtype), f), case["ranks"])
        plain.step(terms(ref, x.double(), y.double(), f), case["ranks"])
        yield net, ref, opt, plain


@pytest.mark.parametrize("name", list(CASES))
def test_matches_plain_float64(name):
    for net, ref, opt, plain in run_pair(CASES[name], torch.float64):
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(opt.effective_weights, torch.tensor(plain.effective_weights, dtype=torch.float64),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["default", "amsgrad", "groups"])
def test_matches_plain_float32(name):
    for net, ref, opt, plain in run_pair(CASES[name], torch.float32):
        for p, q in zip(net.parameters(), ref.parameters()):
            torch.testing.assert_close(p.double(), q, rtol=1e-5, atol=1e-5)
        assert opt.effective_weights.dtype == torch.float32
        torch.testing.assert_close(opt.effective_weights.double(), torch.tensor(plain.effective_weights, dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)


def test_params_move_and_special_terms():
    """The first-layer-only term leaves l2's anchor to term 1; zero/constant terms get weight 0."""
    net = make_net()
    before = [p.detach().clone() for p in net.parameters()]
    opt = MTAdam(net.parameters(), lr=1e-2)
    x, y = batches(1)[0]
    opt.step(terms(net, x, y))
    for p, b in zip(net.parameters(), before):
        assert not torch.equal(p, b)
    st = opt.state[net.l2.weight]
    assert st["norms"][0] == 0 and st["norms"][1] > 0
    ew = opt.effective_weights
    assert ew.shape == (K,)
    assert ew[3] == 0 and ew[4] == 0
    assert st["step"] == 1 and st["exp_avg"].shape == (K, *net.l2.weight.shape)


def test_no_grad_side_effects_and_graph_freed():
    net = make_net(torch.float32)
    other = nn.Linear(3, 3)  # in the graph, requires grad, not optimised
    opt = MTAdam(net.parameters(), lr=1e-2)
    for x, y in batches(3, torch.float32):
        h, out = net(x)
        ls = [F.mse_loss(other(out), y), (h ** 2).mean(), out.abs().mean()]
        opt.step(ls)
    assert other.weight.grad is None and other.bias.grad is None
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(RuntimeError, match="second time"):
        ls[-1].backward()


@pytest.mark.parametrize("which", [0, 1, 2])
def test_invariant_to_term_scale(which):
    """Multiplying a term by a positive constant does not change the trajectory.

    Term 0 is the anchor of l1's parameters, term 1 that of l2's (term 0 does not
    reach l2); term 2 is never an anchor."""
    runs = []
    for factor in (1.0, 1000.0):
        net = make_net(torch.float32)
        opt = MTAdam(net.parameters(), lr=1e-2, eps=1e-12)
        f = [1.0] * K
        f[which] = factor
        for x, y in batches(5, torch.float32):
            opt.step(terms(net, x, y, f)[:3])
        runs.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _ckpt_roundtrip(sd):
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("multi", [False, True])
def test_state_dict_roundtrip(multi):
    data = batches(5, torch.float32)
    net = make_net(torch.float32)
    hp = {"lr": 1e-2, "amsgrad": True, "weight_decay": 0.01}
    opt = MTAdam(param_groups(net, multi, **hp))
    ranks = [1.0, 2.0, 1.0, 1.0, 1.0]
    for x, y in data[:3]:
        opt.step(terms(net, x, y), ranks)
    sd = _ckpt_roundtrip(opt.state_dict())
    net2 = copy.deepcopy(net)
    opt2 = MTAdam(param_groups(net2, multi, lr=0.5, betas=(0.1, 0.2, 0.3)))  # overwritten by the state
    opt2.load_state_dict(sd)
    assert torch.equal(opt2.effective_weights, opt.effective_weights)
    for x, y in data[3:]:
        opt.step(terms(net, x, y), ranks)
        opt2.step(terms(net2, x, y), ranks)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(opt.effective_weights, opt2.effective_weights)
    assert opt2.state[net2.l1.weight]["step"] == 5


def test_validation_errors():
    params = list(make_net().parameters())
    for kwargs, word in [({"lr": 0.0}, "lr"), ({"lr": -1.0}, "lr"), ({"betas": (1.0, 0.999, 0.9)}, r"betas\[0\]"),
                         ({"betas": (0.9, -0.1, 0.9)}, r"betas\[1\]"), ({"betas": (0.9, 0.999, 1.5)}, r"betas\[2\]"),
                         ({"betas": (0.9, 0.999)}, "betas"), ({"eps": 0.0}, "eps"),
                         ({"weight_decay": -1e-3}, "weight_decay")]:
        with pytest.raises(ValueError, match=word):
            MTAdam(params, **kwargs)
    with pytest.raises(ValueError, match="lr"):
        MTAdam([{"params": params[:2]}, {"params": params[2:], "lr": -1.0}])
    net = make_net()
    opt = MTAdam(net.parameters())
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="ranks"):
        opt.step(terms(net, x, y), [1.0, 1.0])
    with pytest.raises(ValueError, match=r"ranks\[2\]"):
        opt.step(terms(net, x, y), [1.0, 1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"ranks\[0\]"):
        opt.step(terms(net, x, y), [-2.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="losses"):
        opt.step([])
    with pytest.raises(ValueError, match=r"losses\[0\]"):
        opt.step([torch.ones(3, requires_grad=True)])
    opt.step(terms(net, x, y))
    with pytest.raises(ValueError, match="number of loss terms"):
        opt.step(terms(net, x, y)[:3])


# ---------------------------------------------------------------------------
# the Method wrapper and its config
# ---------------------------------------------------------------------------
NAMES = ["tiny", "mse", "huge", "zero", "const"]


def as_dict(ls):
    return dict(zip(NAMES, ls))


def test_method_wrapper_matches_optimizer():
    data = batches(3)
    net_a, net_b = make_net(), make_net()
    method = MTAdamMethod(net_a.parameters(), NAMES, lr=1e-2, ranks={"huge": 2.0})
    assert method.ranks == (1.0, 1.0, 2.0, 1.0, 1.0)
    assert torch.equal(method.weight_tensor(), torch.ones(K))
    opt = MTAdam(net_b.parameters(), lr=1e-2)
    for x, y in data:
        method.step(as_dict(terms(net_a, x, y)))
        opt.step(terms(net_b, x, y), [1.0, 1.0, 2.0, 1.0, 1.0])
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        assert torch.equal(p, q)
    assert method.optimizer is method._optimizer and isinstance(method.optimizer, MTAdam)
    assert torch.equal(method.weight_tensor(), opt.effective_weights)
    assert set(method.weights()) == set(NAMES)
    assert method.hparams() == {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "beta3": 0.9,
                                "amsgrad": False, "weight_decay": 0.0}


def test_method_state_dict_roundtrip():
    data = batches(5)
    net = make_net()
    method = MTAdamMethod(net.parameters(), NAMES, lr=1e-2, amsgrad=True, ranks=[1, 1, 3, 1, 1])
    for x, y in data[:3]:
        method.step(as_dict(terms(net, x, y)))
    sd = _ckpt_roundtrip(method.state_dict())
    net2 = copy.deepcopy(net)
    method2 = MTAdamMethod(net2.parameters(), NAMES, lr=1e-2, amsgrad=True, ranks=[1, 1, 3, 1, 1])
    method2.load_state_dict(sd)
    assert torch.equal(method2.weight_tensor(), method.weight_tensor())
    for x, y in data[3:]:
        method.step(as_dict(terms(net, x, y)))
        method2.step(as_dict(terms(net2, x, y)))
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)


def test_method_rank_errors():
    params = list(make_net().parameters())
    with pytest.raises(ValueError, match="nope"):
        MTAdamMethod(params, NAMES, ranks={"nope": 2.0, "mse": 1.0})
    with pytest.raises(ValueError, match="ranks"):
        MTAdamMethod(params, NAMES, ranks=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"ranks\[1\]"):
        MTAdamMethod(params, NAMES, ranks={"mse": -1.0})
    with pytest.raises(ValueError, match="betas"):
        MTAdamMethod(params, NAMES, betas=[0.9, 0.999])


def test_yaml_resolves_and_instantiates():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"model": {"optim": {"lr": 1e-3, "betas": [0.9, 0.999]}},
                            "method": OmegaConf.load(CONF / "method" / "mtadam.yaml")})
    resolved = OmegaConf.to_container(cfg.method, resolve=True)
    assert resolved["betas"] == [0.9, 0.999, 0.9]
    assert all(type(b) is float for b in resolved["betas"])
    assert type(resolved["lr"]) is float and resolved["ranks"] is None
    net = make_net()
    method = instantiate(cfg.method, params=net.parameters(), term_names=NAMES)
    assert isinstance(method, MTAdamMethod)
    assert method.optimizer.defaults["betas"] == (0.9, 0.999, 0.9)
    assert method.hparams()["lr"] == 1e-3
    x, y = batches(1)[0]
    method.step(as_dict(terms(net, x, y)))
    assert method.weight_tensor().shape == (K,)

    cfg.method.ranks = {"huge": 4.0}  # a dict of ranks arrives as a DictConfig
    method = instantiate(cfg.method, params=make_net().parameters(), term_names=NAMES)
    assert method.ranks == (1.0, 1.0, 4.0, 1.0, 1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_does_not_sync():
    net = make_net(torch.float32).cuda()
    opt = MTAdam(net.parameters(), lr=1e-2, amsgrad=True)
    data = [(x.cuda(), y.cuda()) for x, y in batches(3, torch.float32)]
    ranks = [1.0, 2.0, 1.0, 1.0, 1.0]
    opt.step(terms(net, *data[0]), ranks)  # warm-up (state creation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in data[1:]:
            opt.step(terms(net, x, y), ranks)
        ew = opt.effective_weights
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert ew.device.type == "cuda"
