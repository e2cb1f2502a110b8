"""Tests of mtbench.methods.softadapt against hand-computed values (SPEC.md section 2).

Every expected number is written out here from SPEC's formulas (stencil
coefficients as literals, softmax with math.exp); none comes from the
implementation under test.
"""

from __future__ import annotations

import copy
import functools
import io
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from mtbench.cli import config_dir
from mtbench.methods.base import WeightedSumMethod, make_adam
from mtbench.methods.softadapt import (
    LossWeightedSoftAdapt,
    NormalizedSoftAdapt,
    SoftAdapt,
    SoftAdaptMethod,
    forward_difference_coefficients,
)

EPS = 1e-8
CONF = config_dir() / "method"


def hand_softmax(exps, a=None):
    """a_i * e_i / (sum_j a_j e_j + 1e-8), with the exponentials already max-shifted by hand."""
    a = a or [1.0] * len(exps)
    num = [ai * ei for ai, ei in zip(a, exps)]
    den = sum(num) + EPS
    return [v / den for v in num]


def assert_close(actual, expected, tol=1e-12):
    assert isinstance(actual, torch.Tensor)
    assert actual.dtype == torch.float64
    assert not actual.requires_grad
    assert actual.shape == (len(expected),)
    np.testing.assert_allclose(actual.numpy(), np.array(expected, dtype=np.float64), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------
# stencil coefficients
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("order, expected", [
    (1, [-1, 1]),
    (2, [Fraction(-3, 2), 2, Fraction(-1, 2)]),
    (3, [Fraction(-11, 6), 3, Fraction(-3, 2), Fraction(1, 3)]),
    (4, [Fraction(-25, 12), 4, -3, Fraction(4, 3), Fraction(-1, 4)]),
])
def test_stencil_low_orders_exact(order, expected):
    assert list(forward_difference_coefficients(order)) == [Fraction(e) for e in expected]


@pytest.mark.parametrize("order", [5, 7, 10])
def test_stencil_high_order_exact_on_polynomials(order):
    c = forward_difference_coefficients(order)
    assert len(c) == order + 1
    # exact on every monomial j^k, k = 0..p: sum_j c_j j^k = d/dx x^k at 0 = [k == 1]
    for k in range(order + 1):
        assert sum(cj * Fraction(j) ** k for j, cj in enumerate(c)) == (1 if k == 1 else 0)
    # and on a shifted polynomial q(x) = (x + 3)^p: q'(0) = p * 3^(p-1)
    q = [Fraction(j + 3) ** order for j in range(order + 1)]
    assert sum(cj * qj for cj, qj in zip(c, q)) == order * 3 ** (order - 1)
    # independent closed form: c_0 = -H_p, c_j = (-1)^(j+1) C(p, j) / j
    assert c[0] == -sum(Fraction(1, j) for j in range(1, order + 1))
    for j in range(1, order + 1):
        assert c[j] == Fraction((-1) ** (j + 1) * math.comb(order, j), j)
    # not exact for degree p + 1 (it is a p-th order stencil)
    assert sum(cj * Fraction(j) ** (order + 1) for j, cj in enumerate(c)) != 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, None, True])
def test_stencil_bad_order(bad):
    with pytest.raises(ValueError, match="accuracy_order"):
        forward_difference_coefficients(bad)


# ---------------------------------------------------------------------------
# original variant
# ---------------------------------------------------------------------------
def test_original_two_terms_length_2():
    # p = n - 1 = 1: s = (-0.5, 0.5); beta = 1, max = 0.5
    w = SoftAdapt(beta=1.0).get_component_weights([1.0, 0.5], [2.0, 2.5])
    assert_close(w, hand_softmax([math.exp(-1.0), 1.0]))


def test_original_three_terms_length_3_order_2():
    # c = (-3/2, 2, -1/2): s0 = -4.5 + 4 - 0.75 = -1.25; s1 = 0; s2 = -0.75 + 2 - 1 = 0.25
    w = SoftAdapt(beta=2.0, accuracy_order=2).get_component_weights([3, 2, 1.5], [1, 1, 1], [0.5, 1, 2])
    assert_close(w, hand_softmax([math.exp(2 * -1.5), math.exp(2 * -0.25), 1.0]))


def test_original_length_4_order_3():
    # c = (-11/6, 3, -3/2, 1/3): s0 = -11 + 15 - 4.5 + 0 = -0.5; s1 (linear, slope 1) = 1
    w = SoftAdapt(beta=1.0, accuracy_order=3).get_component_weights([6, 5, 3, 0], [0, 1, 2, 3])
    assert_close(w, hand_softmax([math.exp(-1.5), 1.0]))


def test_original_length_5_default_order_4():
    # c = (-25/12, 4, -3, 4/3, -1/4); h0 = j^2 -> 0; h1 = 10 - 2j -> -2;
    # h2 = (1,1,1,1,5) -> (-25/12 + 4 - 3 + 4/3) - 5/4 = 1/4 - 5/4 = -1
    w = SoftAdapt(beta=1.0).get_component_weights([0, 1, 4, 9, 16], [10, 8, 6, 4, 2], [1, 1, 1, 1, 5])
    assert_close(w, hand_softmax([1.0, math.exp(-2.0), math.exp(-1.0)]))


def test_original_length_5_order_1_uses_last_two_points():
    # only the last 2 points matter: s0 = 2 - 1 = 1; s1 = 1 - 3 = -2; beta = 0.5
    w = SoftAdapt(beta=0.5, accuracy_order=1).get_component_weights([9, 1, 1, 1, 2], [0, 0, 0, 3, 1])
    assert_close(w, hand_softmax([1.0, math.exp(0.5 * -3.0)]))


def test_default_beta_is_0_1():
    # s = (-1, 1) -> exp(0.1 * -2), 1
    w = SoftAdapt().get_component_weights([2.0, 1.0], [0.0, 1.0])
    assert_close(w, hand_softmax([math.exp(-0.2), 1.0]))


@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt,
                                 functools.partial(NormalizedSoftAdapt, normalization="signed")])
def test_beta_zero_gives_uniform(cls):
    w = cls(beta=0).get_component_weights([5, 1, 0.1], [0, 3, 9], [1, 1, 2])
    assert_close(w, [1 / (3 + EPS)] * 3)


@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
def test_constant_histories_have_zero_slope(cls):
    # all slopes 0 -> exp(0) = 1 for every term (loss-weighted: proportional to the means)
    w = cls(beta=3.0).get_component_weights([2.0] * 4, [2.0] * 4, [2.0] * 4)
    assert_close(w, [2.0 / (6.0 + EPS)] * 3 if cls is LossWeightedSoftAdapt else [1 / (3 + EPS)] * 3)


def test_large_slopes_do_not_overflow():
    # s = (1e6, -1e6), beta = 1: without the max shift exp(1e6) overflows
    w = SoftAdapt(beta=1.0).get_component_weights([0.0, 1e6], [0.0, -1e6])
    assert_close(w, [1.0 / (1.0 + EPS), 0.0])
    w = SoftAdapt(beta=10.0).get_component_weights([0.0, 1e300], [1e300, 0.0])
    assert torch.isfinite(w).all()
    assert_close(w, [1.0 / (1.0 + EPS), 0.0])


# ---------------------------------------------------------------------------
# normalized variant
# ---------------------------------------------------------------------------
def test_normalized_l1_and_signed_values():
    # s = (0.5, -1.5); l1: sum|s| = 2 -> (0.25, -0.75); signed: sum = -1 -> (-0.5, 1.5); beta = 4
    hs = ([1.0, 1.5], [3.0, 1.5])
    assert_close(NormalizedSoftAdapt(beta=4.0).get_component_weights(*hs), hand_softmax([1.0, math.exp(-4.0)]))
    assert_close(NormalizedSoftAdapt(beta=4.0, normalization="signed").get_component_weights(*hs),
                 hand_softmax([math.exp(-8.0), 1.0]))


def test_normalized_three_terms_order_2():
    # slopes as in test_original_three_terms_length_3_order_2: (-1.25, 0, 0.25), sum|s| = 1.5
    # -> (-5/6, 0, 1/6); beta = 3, max = 1/6: (3 * -1, 3 * -1/6, 0)
    w = NormalizedSoftAdapt(beta=3.0, accuracy_order=2).get_component_weights([3, 2, 1.5], [1, 1, 1], [0.5, 1, 2])
    assert_close(w, hand_softmax([math.exp(-3.0), math.exp(-0.5), 1.0]))


def test_l1_vs_signed_opposite_rankings_when_all_slopes_negative():
    # s = (-1, -3): l1 -> (-0.25, -0.75); signed (sum -4) -> (0.25, 0.75); beta = 2
    hs = ([2.0, 1.0], [4.0, 1.0])
    l1 = NormalizedSoftAdapt(beta=2.0).get_component_weights(*hs)
    signed = NormalizedSoftAdapt(beta=2.0, normalization="signed").get_component_weights(*hs)
    assert_close(l1, hand_softmax([1.0, math.exp(-1.0)]))
    assert_close(signed, hand_softmax([math.exp(-1.0), 1.0]))
    assert l1[0] > l1[1]          # the slower-falling term gets more weight (paper)
    assert signed[0] < signed[1]  # 0.0.5's signed sum reverses it


def test_normalized_zero_denominator_gives_uniform():
    # all slopes 0 -> sum|s| = 0 -> normalized slopes 0
    w = NormalizedSoftAdapt(beta=5.0).get_component_weights([1, 1, 1], [2, 2, 2])
    assert_close(w, [1 / (2 + EPS)] * 2)
    # signed sum 0 with nonzero slopes (s = (1, -1)): documented choice, uniform instead of NaN
    w = NormalizedSoftAdapt(beta=5.0, normalization="signed").get_component_weights([0, 1], [1, 0])
    assert_close(w, [1 / (2 + EPS)] * 2)


def test_normalized_bad_normalization():
    with pytest.raises(ValueError, match="normalization"):
        NormalizedSoftAdapt(normalization="l2")


# ---------------------------------------------------------------------------
# loss-weighted variant
# ---------------------------------------------------------------------------
def test_loss_weighted_two_terms():
    # h0 = (4, 2): mean 3, s = -2; h1 = (1, 2): mean 1.5, s = 1; beta = 1, max = 1
    w = LossWeightedSoftAdapt(beta=1.0).get_component_weights([4.0, 2.0], [1.0, 2.0])
    assert_close(w, hand_softmax([math.exp(-3.0), 1.0], a=[3.0, 1.5]))


def test_loss_weighted_mean_of_whole_history():
    # p = 2 uses the last 3 points for the slope but the mean is over all 5 points:
    # h0 = 1..5: mean 3, s = -1.5*3 + 2*4 - 0.5*5 = 1; h1 = 5s: mean 5, s = 0;
    # h2 = 10,8,..,2: mean 6, s = -1.5*6 + 2*4 - 0.5*2 = -2; beta = 0.5, max = 1
    w = LossWeightedSoftAdapt(beta=0.5, accuracy_order=2).get_component_weights(
        [1, 2, 3, 4, 5], [5, 5, 5, 5, 5], [10, 8, 6, 4, 2])
    assert_close(w, hand_softmax([1.0, math.exp(-0.5), math.exp(-1.5)], a=[3.0, 5.0, 6.0]))


def test_loss_weighted_beta_zero_is_proportional_to_means():
    w = LossWeightedSoftAdapt(beta=0.0).get_component_weights([1.0, 3.0], [6.0, 2.0])
    assert_close(w, [2.0 / (6.0 + EPS), 4.0 / (6.0 + EPS)])


# ---------------------------------------------------------------------------
# inputs, output and errors
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
def test_input_types_give_same_result(cls):
    a, b = [1.0, 0.5, 0.25, 0.125], [2.0, 2.5, 2.75, 3.5]
    calc = cls(beta=1.0)
    ref = calc.get_component_weights(a, b)
    variants = [
        (tuple(a), tuple(b)),
        (np.array(a), np.array(b)),
        (np.array(a, dtype=np.float32), np.array(b, dtype=np.float32)),
        (torch.tensor(a), torch.tensor(b, dtype=torch.float64)),
        (torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)),
        ([torch.tensor(v) for v in a], [torch.tensor(v) for v in b]),
    ]
    for x, y in variants:
        w = calc.get_component_weights(x, y)
        assert w.dtype == torch.float64 and not w.requires_grad
        assert torch.equal(w, ref)


def test_output_sums_to_one():
    w = SoftAdapt(beta=0.7).get_component_weights([3, 1, 2], [0, 1, 5], [2, 2, 2])
    assert abs(float(w.sum()) - 1.0) < 1e-7


@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
def test_short_history_raises(cls):
    with pytest.raises(ValueError, match=r"term index 1 .*1 point"):
        cls().get_component_weights([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="term index 0"):
        cls().get_component_weights([], [])


@pytest.mark.parametrize("bad, text", [(float("nan"), "nan"), (float("inf"), "inf"), (-math.inf, "-inf")])
def test_nonfinite_history_raises_naming_position_and_value(bad, text):
    with pytest.raises(ValueError, match=rf"term index 2 .*{text}"):
        SoftAdapt().get_component_weights([1, 2, 3], [1, 2, 3], [1, bad, 3])
    with pytest.raises(ValueError, match="term index 0"):
        LossWeightedSoftAdapt().get_component_weights(torch.tensor([bad, 1.0]), torch.tensor([1.0, 2.0]))


def test_unequal_lengths_raise():
    with pytest.raises(ValueError, match="same length"):
        SoftAdapt().get_component_weights([1, 2, 3], [1, 2])


def test_no_histories_and_2d_history_raise():
    with pytest.raises(ValueError):
        SoftAdapt().get_component_weights()
    with pytest.raises(ValueError, match="1-D"):
        SoftAdapt().get_component_weights([[1, 2], [3, 4]])


@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
@pytest.mark.parametrize("beta", [-0.1, float("nan"), float("inf"), "1", None, True])
def test_bad_beta(cls, beta):
    with pytest.raises(ValueError, match="beta"):
        cls(beta=beta)


@pytest.mark.parametrize("cls", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
@pytest.mark.parametrize("order", [0, -2, 1.5, "2"])
def test_bad_accuracy_order(cls, order):
    with pytest.raises(ValueError, match="accuracy_order"):
        cls(accuracy_order=order)


def test_accuracy_order_too_large_for_history():
    calc = SoftAdapt(accuracy_order=3)
    with pytest.raises(ValueError, match="accuracy_order"):
        calc.get_component_weights([1, 2, 3], [3, 2, 1])   # n - 1 = 2 < 3
    calc.get_component_weights([1, 2, 3, 4], [4, 3, 2, 1])  # n - 1 = 3 is fine


# ---------------------------------------------------------------------------
# SoftAdaptMethod (the training-time balancer)
# ---------------------------------------------------------------------------
def make_method(k=2, **kw):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    names = [f"t{i}" for i in range(k)]
    return SoftAdaptMethod(model.parameters(), names, **kw), model


def feed(method, rows):
    for r in rows:
        method.after_step(torch.tensor(r, dtype=torch.float32))


def test_method_is_weighted_sum():
    m, _ = make_method()
    assert isinstance(m, WeightedSumMethod)
    assert isinstance(m.calculator, SoftAdapt)


def test_method_weights_follow_interval_means_and_window():
    m, _ = make_method(beta=1.0, window=3, update_every=2)
    like = torch.zeros(2)
    assert torch.equal(m.current_weights(like), torch.ones(2))
    feed(m, [(1.0, 2.0), (3.0, 2.0)])                  # point 1 = (2, 2)
    assert torch.equal(m.weight_tensor(), torch.ones(2, dtype=torch.float64))  # 1 point: still all 1
    feed(m, [(1.0, 3.0)])
    assert torch.equal(m.weight_tensor(), torch.ones(2, dtype=torch.float64))
    feed(m, [(1.0, 1.0)])                              # point 2 = (1, 2): p = 1, s = (-1, 0)
    expected = [2 * v for v in hand_softmax([math.exp(-1.0), 1.0])]
    assert_close(m.weight_tensor().cpu(), expected)
    w = m.current_weights(like)
    assert w.dtype == torch.float32 and w.device == like.device
    np.testing.assert_allclose(w.numpy(), np.array(expected), rtol=1e-6)
    assert abs(float(m.weight_tensor().sum()) - 2.0) < 1e-7

    feed(m, [(0.5, 2.5), (0.5, 3.5)])                  # point 3 = (0.5, 3): p = 2
    # s0 = -1.5*2 + 2*1 - 0.5*0.5 = -1.25; s1 = -1.5*2 + 2*2 - 0.5*3 = -0.5; max = -0.5
    expected = [2 * v for v in hand_softmax([math.exp(-0.75), 1.0])]
    assert_close(m.weight_tensor().cpu(), expected)
    feed(m, [(0.5, 0.5)])                              # mid-interval: unchanged
    assert_close(m.weight_tensor().cpu(), expected)
    feed(m, [(0.5, 1.5)])                              # point 4 = (0.5, 1): window keeps points 2..4
    # h0 = (1, 0.5, 0.5): s0 = -1.5 + 1 - 0.25 = -0.75; h1 = (2, 3, 1): s1 = -3 + 6 - 0.5 = 2.5
    expected = [2 * v for v in hand_softmax([math.exp(-3.25), 1.0])]
    assert_close(m.weight_tensor().cpu(), expected)
    assert m.weights() == pytest.approx({"t0": expected[0], "t1": expected[1]}, rel=1e-6)
    assert m.updates == 4


def test_method_accuracy_order_capped_while_window_fills():
    m, _ = make_method(beta=1.0, window=4, update_every=1, accuracy_order=2)
    feed(m, [(1.0, 1.0), (2.0, 1.0)])       # n = 2: p = min(2, 1) = 1, s = (1, 0)
    assert_close(m.weight_tensor().cpu(), [2 * v for v in hand_softmax([1.0, math.exp(-1.0)])])
    feed(m, [(4.0, 1.0)])                   # n = 3, p = 2: s0 = -1.5 + 4 - 2 = 0.5
    assert_close(m.weight_tensor().cpu(), [2 * v for v in hand_softmax([1.0, math.exp(-0.5)])])
    feed(m, [(5.0, 1.0)])                   # n = 4, p = 2 over (2, 4, 5): s0 = -3 + 8 - 2.5 = 2.5
    assert_close(m.weight_tensor().cpu(), [2 * v for v in hand_softmax([1.0, math.exp(-2.5)])])


def test_method_three_terms_loss_weighted():
    m, _ = make_method(k=3, calculator=LossWeightedSoftAdapt, beta=0.5, window=2, update_every=1)
    feed(m, [(4.0, 1.0, 2.0), (2.0, 2.0, 2.0)])
    # s = (-2, 1, 0), means (3, 1.5, 2); beta = 0.5, max = 1
    expected = [3 * v for v in hand_softmax([math.exp(-1.5), 1.0, math.exp(-0.5)], a=[3.0, 1.5, 2.0])]
    assert_close(m.weight_tensor().cpu(), expected)
    assert m.hparams() == {"beta": 0.5, "window": 2, "update_every": 1, "accuracy_order": -1,
                           "variant": "loss_weighted", "on_default_weights": False}


def test_method_normalized_partial_calculator():
    calc = functools.partial(NormalizedSoftAdapt, normalization="signed")
    m, _ = make_method(calculator=calc, beta=2.0, window=2, update_every=1, accuracy_order=1)
    assert m.calculator.normalization == "signed" and m.calculator.beta == 2.0
    feed(m, [(2.0, 4.0), (1.0, 1.0)])      # s = (-1, -3); signed -> (0.25, 0.75)
    assert_close(m.weight_tensor().cpu(), [2 * v for v in hand_softmax([math.exp(-1.0), 1.0])])
    hp = m.hparams()
    assert hp["variant"] == "normalized" and hp["normalization"] == "signed" and hp["accuracy_order"] == 1


def test_method_nonfinite_point_keeps_previous_weights():
    m, _ = make_method(beta=1.0, window=3, update_every=1)
    feed(m, [(1.0, 1.0), (2.0, 1.0)])
    before = m.weight_tensor().clone()
    feed(m, [(float("nan"), 1.0)])
    assert torch.equal(m.weight_tensor(), before)
    assert m.nonfinite_updates == 1


@pytest.mark.parametrize("kw, key", [
    ({"window": 1}, "window must be >= 2"),
    ({"window": 5, "accuracy_order": 5}, "accuracy_order"),
    ({"window": 3, "accuracy_order": 0}, "accuracy_order"),
    ({"update_every": 0}, "update_every"),
    ({"beta": -1.0}, "beta"),
    ({"beta": float("inf")}, "beta"),
])
def test_method_validation(kw, key):
    with pytest.raises(ValueError, match=key):
        make_method(**kw)


def test_method_after_step_shape_checked():
    m, _ = make_method()
    with pytest.raises(ValueError, match="term values"):
        m.after_step(torch.ones(3))


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, generator=g), torch.randn(4, 1, generator=g)) for _ in range(n)]


def _train(method, model, batches):
    for x, y in batches:
        out = model(x)
        method.step({"mse": ((out - y) ** 2).mean(), "l1": (out - 2 * y).abs().mean()})


@pytest.mark.parametrize("on_defaults", [False, True])
def test_method_state_dict_round_trip(on_defaults):
    opt = functools.partial(make_adam, lr=0.05)
    kw = dict(beta=1.0, window=3, update_every=2, optimizer=opt,
              default_weights={"mse": 1.0, "l1": 100.0}, on_default_weights=on_defaults)
    torch.manual_seed(1)
    model_a = nn.Linear(3, 1)
    model_b = copy.deepcopy(model_a)
    a = SoftAdaptMethod(model_a.parameters(), ["mse", "l1"], **kw)
    batches = _batches(15, seed=2)
    _train(a, model_a, batches[:9])        # mid-interval: running sum holds one step
    assert a._count == 1 and a.updates == 4

    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "method": a.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)

    b = SoftAdaptMethod(model_b.parameters(), ["mse", "l1"], **kw)
    model_b.load_state_dict(ckpt["model"])
    b.load_state_dict(ckpt["method"])
    assert torch.equal(a.weight_tensor(), b.weight_tensor())

    _train(a, model_a, batches[9:])
    _train(b, model_b, batches[9:])
    assert a.updates == b.updates == 7
    assert torch.equal(a.weight_tensor(), b.weight_tensor())
    assert not torch.equal(a.weight_tensor(), torch.ones(2, dtype=torch.float64))
    assert b.on_default_weights is on_defaults
    # the l1 term's weight carries its default 100 only with the flag (K * softmax <= 2 otherwise)
    assert (float(b.weight_tensor()[1]) > 2.0) is on_defaults
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    sa, sb = a.state_dict()["softadapt"], b.state_dict()["softadapt"]
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
        else:
            assert sa[key] == sb[key], key


def test_method_load_state_dict_rejects_other_window():
    a, _ = make_method(window=3)
    b, _ = make_method(window=4)
    with pytest.raises(ValueError, match="window"):
        b.load_state_dict(a.state_dict())


def test_method_step_decreases_loss():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    m = SoftAdaptMethod(model.parameters(), ["a", "b"], beta=1.0, window=3, update_every=2,
                        optimizer=functools.partial(make_adam, lr=0.05))
    x = torch.randn(32, 2)
    y = x @ torch.tensor([[1.5], [-2.0]]) + 0.5

    def losses():
        out = model(x)
        return {"a": ((out - y) ** 2).mean(), "b": (out - y).abs().mean()}

    with torch.no_grad():
        start = sum(v.item() for v in losses().values())
    for _ in range(150):
        m.step(losses())
    with torch.no_grad():
        end = sum(v.item() for v in losses().values())
    assert end < 0.1 * start
    assert m.updates == 75 and not torch.equal(m.weight_tensor(), torch.ones(2, dtype=torch.float64))


def _composed(name: str, *overrides: str):
    """conf/train.yaml with method=<name> (Hydra resolves the variant's defaults) and the Adam of the tests."""
    from conftest import compose_cfg

    return compose_cfg([f"method={name}", "model.optim.lr=0.002", "model.optim.betas=[0.5,0.999]", *overrides])


@pytest.mark.parametrize("name, cls", [("softadapt", SoftAdapt), ("softadapt_normalized", NormalizedSoftAdapt),
                                       ("softadapt_loss_weighted", LossWeightedSoftAdapt)])
def test_hydra_configs_instantiate(name, cls):
    from hydra.utils import instantiate

    cfg = _composed(name)  # the variants inherit conf/method/softadapt.yaml: compose, as the runner does
    model = nn.Linear(3, 1)
    m = instantiate(cfg.method, params=model.parameters(), term_names=["x", "y"],
                    default_weights={"x": 1.0, "y": 1.0})
    assert isinstance(m, SoftAdaptMethod) and type(m.calculator) is cls
    assert (m.beta, m.window, m.update_every, m.accuracy_order) == (0.1, 5, 10, None)
    assert m.optimizer.param_groups[0]["lr"] == 2e-3
    assert tuple(m.optimizer.param_groups[0]["betas"]) == (0.5, 0.999)
    if cls is NormalizedSoftAdapt:
        assert m.calculator.normalization == "l1"


# ---------------------------------------------------------------------------
# method.on_default_weights: effective weight = w_default * K * softmax
# ---------------------------------------------------------------------------
def make_on_defaults(defaults, **kw):
    """A SoftAdaptMethod over one scalar parameter; terms t0..t{K-1} with the given default weights."""
    param = nn.Parameter(torch.zeros(()))
    names = [f"t{i}" for i in range(len(defaults))]
    m = SoftAdaptMethod([param], names, default_weights=dict(zip(names, defaults)), **kw)
    return m, param


def step_values(method, param, rows):
    """Real optimisation steps whose (unweighted) loss terms have exactly the given values."""
    for r in rows:
        method.step({f"t{i}": torch.tensor(v, dtype=torch.float32) + 0.0 * param for i, v in enumerate(r)})


def test_on_default_weights_original_two_terms():
    # defaults (1, 100); beta = 1, window 3, one history point per step
    m, p = make_on_defaults([1.0, 100.0], beta=1.0, window=3, update_every=1, on_default_weights=True)
    assert_close(m.weight_tensor().cpu(), [1.0, 100.0])          # before any update: the defaults
    assert m.weights() == {"t0": 1.0, "t1": 100.0}
    step_values(m, p, [(2.0, 0.5), (1.0, 0.75)])
    # unweighted histories (2, 1), (0.5, 0.75): s = (-1, 0.25), max 0.25 -> exp(-1.25), exp(0)
    # (on the weighted terms (50, 75) the slope of t1 would be 25 instead)
    e0, e1 = math.exp(-1.25), 1.0
    den = e0 + e1 + EPS
    expected = [1.0 * 2 * e0 / den, 100.0 * 2 * e1 / den]
    assert_close(m.weight_tensor().cpu(), expected, tol=1e-6)
    got = m.weights()
    assert got["t0"] == pytest.approx(expected[0], rel=1e-6, abs=1e-6)
    assert got["t1"] == pytest.approx(expected[1], rel=1e-6, abs=1e-6)
    # next point (0.5, 1.0): p = 2, c = (-3/2, 2, -1/2)
    # s0 = -3 + 2 - 0.25 = -1.25; s1 = -0.75 + 1.5 - 0.5 = 0.25; max 0.25 -> exp(-1.5), exp(0)
    step_values(m, p, [(0.5, 1.0)])
    e0, e1 = math.exp(-1.5), 1.0
    den = e0 + e1 + EPS
    assert_close(m.weight_tensor().cpu(), [2 * e0 / den, 100.0 * 2 * e1 / den], tol=1e-6)


def test_on_default_weights_normalized_two_terms():
    calc = functools.partial(NormalizedSoftAdapt, normalization="l1")
    m, p = make_on_defaults([1.0, 100.0], calculator=calc, beta=3.0, window=2, update_every=1,
                            on_default_weights=True)
    step_values(m, p, [(2.0, 1.0), (1.0, 0.5)])
    # unweighted s = (-1, -0.5), sum|s| = 1.5 -> (-2/3, -1/3); beta 3, max -1/3 -> exp(-1), exp(0)
    # (weighted: s = (-1, -50), sum 51 -> (-1/51, -50/51): the ranking flips)
    e0, e1 = math.exp(-1.0), 1.0
    den = e0 + e1 + EPS
    assert_close(m.weight_tensor().cpu(), [1.0 * 2 * e0 / den, 100.0 * 2 * e1 / den], tol=1e-6)


def test_on_default_weights_loss_weighted_three_terms_srgan_defaults():
    # SRGAN's defaults (1, 0.006, 0.001); K = 3; beta = 0.5; update_every 2 -> points are interval means
    m, p = make_on_defaults([1.0, 0.006, 0.001], calculator=LossWeightedSoftAdapt, beta=0.5, window=2,
                            update_every=2, on_default_weights=True)
    assert_close(m.weight_tensor().cpu(), [1.0, 0.006, 0.001])
    step_values(m, p, [(3.0, 0.5, 2.0), (5.0, 1.5, 2.0),      # point 1 = (4, 1, 2)
                       (2.0, 2.5, 1.0), (2.0, 1.5, 3.0)])     # point 2 = (2, 2, 2)
    # unweighted: s = (-2, 1, 0), means of the unweighted points (3, 1.5, 2); max 1
    # -> a_i exp(0.5 (s_i - 1)) = 3 exp(-1.5), 1.5 exp(0), 2 exp(-0.5)
    # (means of the weighted terms would be (3, 0.009, 0.002))
    num = [3.0 * math.exp(-1.5), 1.5 * 1.0, 2.0 * math.exp(-0.5)]
    den = sum(num) + EPS
    expected = [d * 3 * n / den for d, n in zip([1.0, 0.006, 0.001], num)]
    assert_close(m.weight_tensor().cpu(), expected, tol=1e-6)
    np.testing.assert_allclose(m.weight_tensor().cpu().numpy(), expected, rtol=1e-6, atol=0)
    got = m.weights()
    assert [got[n] for n in ("t0", "t1", "t2")] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("calc", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
def test_on_default_weights_false_ignores_defaults(calc):
    # default false: the defaults (1, 100) are replaced by K * softmax, exactly as before
    m, p = make_on_defaults([1.0, 100.0], calculator=calc, beta=1.0, window=2, update_every=1)
    assert m.on_default_weights is False
    assert_close(m.weight_tensor().cpu(), [1.0, 1.0])
    step_values(m, p, [(2.0, 0.5), (1.0, 0.75)])
    if calc is SoftAdapt:          # s = (-1, 0.25)
        exps, a = [math.exp(-1.25), 1.0], [1.0, 1.0]
    elif calc is NormalizedSoftAdapt:  # s / 1.25 = (-0.8, 0.2)
        exps, a = [math.exp(-1.0), 1.0], [1.0, 1.0]
    else:                          # means (1.5, 0.625)
        exps, a = [math.exp(-1.25), 1.0], [1.5, 0.625]
    num = [ai * ei for ai, ei in zip(a, exps)]
    den = sum(num) + EPS
    assert_close(m.weight_tensor().cpu(), [2 * v / den for v in num], tol=1e-6)


@pytest.mark.parametrize("calc", [SoftAdapt, NormalizedSoftAdapt, LossWeightedSoftAdapt])
def test_on_default_weights_first_steps_equal_fixed(calc):
    """Before the first update the update is the fixed-weights run's (same total, same gradient)."""
    from mtbench.methods.fixed import Fixed

    defaults = {"G_GAN": 1.0, "G_L1": 100.0}
    sgd = functools.partial(torch.optim.SGD, lr=1e-3)   # not Adam: it would hide a gradient scale
    torch.manual_seed(3)
    base = nn.Linear(3, 1)
    models = {key: copy.deepcopy(base) for key in ("fixed", "on", "off")}
    methods = {
        "fixed": Fixed(models["fixed"].parameters(), list(defaults), default_weights=defaults, optimizer=sgd),
        "on": SoftAdaptMethod(models["on"].parameters(), list(defaults), default_weights=defaults,
                              calculator=calc, window=3, update_every=4, optimizer=sgd, on_default_weights=True),
        "off": SoftAdaptMethod(models["off"].parameters(), list(defaults), default_weights=defaults,
                               calculator=calc, window=3, update_every=4, optimizer=sgd),
    }
    assert methods["on"].weights() == methods["fixed"].weights() == {"G_GAN": 1.0, "G_L1": 100.0}
    for x, y in _batches(3, seed=4):                 # 3 < update_every: no SoftAdapt update yet
        for key, m in methods.items():
            out = models[key](x)
            m.step({"G_GAN": ((out - y) ** 2).mean(), "G_L1": (out - y).abs().mean()})
    for pf, pn, po in zip(models["fixed"].parameters(), models["on"].parameters(), models["off"].parameters()):
        assert torch.equal(pf.grad, pn.grad) and torch.equal(pf, pn)
        assert not torch.allclose(pf.grad, po.grad)  # the default (false) is not the fixed run
    x, y = _batches(1, seed=5)[0]
    totals = {}
    for key in ("fixed", "on"):
        with torch.no_grad():
            out = models[key](x)
            stacked = torch.stack([((out - y) ** 2).mean(), (out - y).abs().mean()])
            totals[key] = float((methods[key].current_weights(stacked) * stacked).sum())
    assert totals["fixed"] == totals["on"]


def test_on_default_weights_missing_default_counts_one_and_hparams():
    param = nn.Parameter(torch.zeros(()))
    m = SoftAdaptMethod([param], ["a", "b"], default_weights={"b": 10.0}, on_default_weights=True)
    assert m.weights() == {"a": 1.0, "b": 10.0}
    assert m.hparams()["on_default_weights"] is True


@pytest.mark.parametrize("bad", ["yes", "true", 1, 0, None, 1.0])
def test_on_default_weights_bad_value(bad):
    with pytest.raises(ValueError, match=r"^method\.on_default_weights must be true or false"):
        make_method(on_default_weights=bad)


def test_on_default_weights_bad_value_is_one_cli_line():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from mtbench.cli import explain

    cfg = OmegaConf.create({"model": {"optim": {"lr": 2e-3, "betas": [0.5, 0.999]}},
                            "method": OmegaConf.load(CONF / "softadapt.yaml")})
    cfg.method.on_default_weights = "maybe"
    with pytest.raises(Exception) as info:
        instantiate(cfg.method, params=nn.Linear(3, 1).parameters(), term_names=["x", "y"],
                    default_weights={"x": 1.0, "y": 1.0})
    assert explain(info.value) == "method.on_default_weights must be true or false, got 'maybe' (str)"


def test_on_default_weights_checkpoint_flag_must_match():
    a, _ = make_on_defaults([1.0, 100.0], on_default_weights=True)
    b, _ = make_on_defaults([1.0, 100.0])
    with pytest.raises(ValueError, match="on_default_weights"):
        b.load_state_dict(a.state_dict())
    state = b.state_dict()
    del state["softadapt"]["on_default_weights"]     # a checkpoint from before the flag: false
    c, _ = make_on_defaults([1.0, 100.0])
    c.load_state_dict(state)


@pytest.mark.parametrize("name", ["softadapt", "softadapt_normalized", "softadapt_loss_weighted"])
def test_hydra_configs_on_default_weights(name):
    from hydra.utils import instantiate

    assert _composed(name).method.on_default_weights is False
    cfg = _composed(name, "method.on_default_weights=true")
    m = instantiate(cfg.method, params=nn.Linear(3, 1).parameters(), term_names=["x", "y"],
                    default_weights={"x": 1.0, "y": 100.0})
    assert m.on_default_weights is True and m.weights() == {"x": 1.0, "y": 100.0}
