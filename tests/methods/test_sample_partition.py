"""The one-pass per-term gradients (mtbench/methods/sample_partition.py) against K autograd passes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtbench.methods.mtadam import MTAdamMethod
from mtbench.methods.pcgrad import PCGrad
from mtbench.methods.sample_partition import LayerTaps
from mtbench.methods.term_grads import TermGradients
from mtbench.models.mnist import MNISTModel


def per_term_reference(net: nn.Module, x: torch.Tensor, rows: torch.Tensor, k: int, loss_fn):
    """dL_k/dp for each term by autograd, one term at a time, each from its own forward pass."""
    params = [p for p in net.parameters() if p.requires_grad]
    out = []
    for i in range(k):
        torch.manual_seed(7)  # the same dropout masks as the partitioned pass
        terms = loss_fn(net(x), rows, k)
        out.append(torch.autograd.grad(terms[i], params, allow_unused=True, materialize_grads=True))
    return out


def partitioned(net: nn.Module, x: torch.Tensor, rows: torch.Tensor, k: int, loss_fn):
    taps = LayerTaps(net)
    engine = TermGradients(list(net.parameters()), k)
    torch.manual_seed(7)
    with taps.recording():
        terms = loss_fn(net(x), rows, k)
    norms = engine.compute(list(terms), taps.partition(rows))
    return engine, norms


def class_terms(out: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """term_c = sum over the class-c samples of a per-sample loss, scaled very differently per term."""
    per_sample = F.cross_entropy(out.reshape(out.shape[0], -1)[:, :k], rows, reduction="none")
    scales = torch.logspace(-2, 2, k)
    return scales * torch.zeros(k).index_add(0, rows, per_sample) / rows.shape[0]


def assert_matches(engine: TermGradients, ref, k: int) -> None:
    assert engine.last_path == "partitioned"
    for i in range(k):
        for b, g in zip(engine.grads, ref[i]):
            torch.testing.assert_close(b[i], g, rtol=1e-5, atol=1e-6)


def test_mnist_net_with_dropout_and_an_absent_class_matches_ten_backward_passes():
    torch.manual_seed(0)
    model = MNISTModel()
    model.train()
    x = torch.randn(48, 1, 28, 28)
    rows = torch.randint(0, 10, (48,))
    rows[rows == 3] = 5  # class 3 absent: its gradient is 0 everywhere
    engine, norms = partitioned(model.net, x, rows, 10, class_terms)
    ref = per_term_reference(model.net, x, rows, 10, class_terms)
    assert_matches(engine, ref, 10)
    assert all(float(n) == 0 for n in norms[3]) and all(float(n) > 0 for n in norms[5])
    for i in range(10):  # the norms MTAdam balances are the buffers' norms
        for n, g in zip(norms[i], ref[i]):
            torch.testing.assert_close(n, g.norm(), rtol=1e-5, atol=1e-6)


def test_strided_grouped_padded_convolutions_and_linear_layers_on_sequences():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2), nn.Tanh(),
                        nn.Conv1d(6, 5, 2, padding="valid", bias=False), nn.Tanh())
    head = nn.Linear(5, 3)  # applied to every position: an input of shape (N, L, 5)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = net, head

        def forward(self, x):
            return self.head(self.body(x).transpose(1, 2)).mean(1)

    model = Net()
    x = torch.randn(10, 4, 11)
    rows = torch.tensor([2, 0, 1, 1, 2, 0, 0, 2, 1, 1])
    engine, _ = partitioned(model, x, rows, 3, class_terms)
    assert_matches(engine, per_term_reference(model, x, rows, 3, class_terms), 3)


def test_a_2d_convolution_with_dilation_and_padding_matches():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=(2, 1), padding=2, dilation=2), nn.ReLU(), nn.Flatten(),
                          nn.LazyLinear(4))
    x = torch.randn(6, 3, 9, 8)
    model(x)  # materialise the lazy layer
    rows = torch.tensor([0, 3, 3, 1, 2, 0])
    engine, _ = partitioned(model, x, rows, 4, class_terms)
    assert_matches(engine, per_term_reference(model, x, rows, 4, class_terms), 4)


class Shared(nn.Module):
    """One layer applied twice: its weight gradient is not one outer product per sample."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(torch.tanh(self.a(x)))))


class WithNorm(nn.Module):
    """A parameter outside any Linear/convolution (LayerNorm's affine)."""

    def __init__(self):
        super().__init__()
        self.a, self.n, self.b = nn.Linear(5, 5), nn.LayerNorm(5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(self.n(self.a(x)))


class InPlace(nn.Module):
    """The first layer's output is changed in place after the layer: its recorded output is not the one used."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(F.relu(self.a(x), inplace=True))


@pytest.mark.parametrize("net_cls", [Shared, WithNorm, InPlace])
def test_unsupported_networks_fall_back_to_per_term_passes_with_the_same_gradients(net_cls):
    torch.manual_seed(3)
    model = net_cls()
    x, rows = torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 2, 2])
    engine, _ = partitioned(model, x, rows, 3, class_terms)
    assert engine.last_path == "per_term"
    ref = per_term_reference(model, x, rows, 3, class_terms)
    for i in range(3):
        for b, g in zip(engine.grads, ref[i]):
            torch.testing.assert_close(b[i], g, rtol=1e-5, atol=1e-6)


def test_rows_naming_a_term_that_does_not_exist_or_not_1d_are_refused():
    net = nn.Linear(4, 3)
    x = torch.randn(4, 4)
    with pytest.raises(ValueError, match="name term 3, but there are 3 terms"):
        partitioned(net, x, torch.tensor([0, 1, 3, 0]), 3, lambda out, r, k: class_terms(out, r.clamp(max=2), k))
    with pytest.raises(ValueError, match="1-D integer"):
        LayerTaps(net).partition(torch.zeros(2, 2, dtype=torch.long))


def test_no_records_outside_the_block_or_without_autograd():
    net = nn.Sequential(nn.Linear(4, 3))
    taps = LayerTaps(net)
    net(torch.randn(2, 4))
    with taps.recording(), torch.no_grad():
        net(torch.randn(2, 4))
    assert taps.records == {} and not net[0]._forward_hooks


@pytest.mark.parametrize("method_cls", [MTAdamMethod, PCGrad])
def test_training_steps_through_the_model_match_the_per_term_passes(method_cls):
    """Three steps of MTAdam / PCGrad through MNISTModel.training_step: one pass and ten passes agree."""
    torch.manual_seed(4)
    one = MNISTModel()
    ten = MNISTModel(one_pass_term_grads=False)
    ten.load_state_dict(one.state_dict())
    one.eval(), ten.eval()  # no dropout: identical forward passes
    methods = []
    for model in (one, ten):
        torch.manual_seed(9)  # PCGrad seeds its projection-order generator from the global one
        methods.append(method_cls(model.parameters(), model.term_names))
    m1, m10 = methods
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        batch = (torch.randn(32, 1, 28, 28, generator=gen), torch.randint(0, 10, (32,), generator=gen))
        one.training_step(batch, m1)
        ten.training_step(batch, m10)
    engine = m1.grads if method_cls is PCGrad else m1.optimizer._engine
    assert engine.last_path == "partitioned"
    assert (m10.grads if method_cls is PCGrad else m10.optimizer._engine).last_path == "per_term"
    for a, b in zip(one.parameters(), ten.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if method_cls is MTAdamMethod:  # MTAdam's update never touches .grad
        assert all(p.grad is None for p in one.parameters())
