"""The MNIST multi-term benchmark: per-class terms, scales, the embedded data and its loaders."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch

from mtbench.data.base import DataError
from mtbench.data.mnist import MEAN, STD, mnist, mnist5k
from mtbench.models.mnist import MNISTModel, class_terms, draw_scales


def test_class_terms_by_hand():
    # batch of 4: classes 2, 0, 2, 5; log-probabilities chosen so NLLs are 0.5, 1.0, 2.0, 3.0
    lp = torch.full((4, 10), -9.0)
    lp[0, 2], lp[1, 0], lp[2, 2], lp[3, 5] = -0.5, -1.0, -2.0, -3.0
    y = torch.tensor([2, 0, 2, 5])
    s = torch.arange(1.0, 11.0)
    t = class_terms(lp, y, s)
    expected = torch.zeros(10)
    expected[0] = 1 * 1.0 / 4
    expected[2] = 3 * (0.5 + 2.0) / 4
    expected[5] = 6 * 3.0 / 4
    assert torch.allclose(t, expected)
    # absent classes are exactly 0, not NaN
    assert torch.isfinite(t).all() and t[1] == 0 and t[9] == 0


def test_terms_sum_to_the_weighted_nll_and_never_nan_when_classes_are_missing():
    torch.manual_seed(0)
    model = MNISTModel(scales={"kind": "uniform", "seed": 1})
    model.eval()
    x = torch.randn(6, 1, 28, 28)
    y = torch.tensor([3, 3, 7, 7, 7, 1])  # seven classes absent
    terms = model.terms(x, y)
    assert list(terms) == [f"term_{c}" for c in range(10)]
    stacked = torch.stack(list(terms.values()))
    assert torch.isfinite(stacked).all()
    log_probs = model.net(x)
    nll = torch.nn.functional.nll_loss(log_probs, y, weight=model.scales, reduction="none")
    # sum_c term_c = (1/B) sum_n s_{y_n} NLL_n
    assert torch.allclose(stacked.sum(), nll.sum() / 6, rtol=1e-5)
    # and sum_c term_c / s_c = the plain mean NLL
    plain = torch.nn.functional.nll_loss(log_probs, y)
    assert torch.allclose((stacked / model.scales).sum(), plain, rtol=1e-5)
    for c in (0, 2, 4, 5, 6, 8, 9):
        assert terms[f"term_{c}"].item() == 0.0


def test_scales():
    u = draw_scales("uniform", seed=0)
    assert u[0] == 1.0 and len(u) == 10 and all(0 <= s < 1000 for s in u[1:])
    assert u == draw_scales("uniform", seed=0) and u != draw_scales("uniform", seed=1)
    lu = draw_scales("loguniform", seed=0, low=1e-3, high=1e3)
    assert lu[0] == 1.0 and all(1e-3 <= s <= 1e3 for s in lu[1:])
    assert min(lu[1:]) < 1 < max(lu[1:])  # spans orders of magnitude around 1
    assert draw_scales("ones") == [1.0] * 10
    with pytest.raises(ValueError, match="model.scales.kind"):
        draw_scales("gaussian")
    with pytest.raises(ValueError, match="loguniform needs 0 < low"):
        draw_scales("loguniform", low=0.0, high=1.0)


def test_the_network_matches_the_reference_architecture():
    net = MNISTModel().net
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 9216), (128,), (10, 128), (10,)]
    net.eval()
    out = net(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.allclose(out.exp().sum(1), torch.ones(3), atol=1e-5)


def test_mnist5k_split_is_stratified_disjoint_and_fixed():
    d = mnist5k()
    assert (len(d.train), len(d.val), len(d.test)) == (3500, 500, 1000)
    s = mnist5k(val_per_class=0)
    assert (len(s.train), len(s.test), s.val) == (4000, 1000, None)
    assert torch.bincount(s.train.labels).tolist() == [400] * 10
    assert torch.bincount(s.test.labels).tolist() == [100] * 10
    train_rows = {tuple(r.tolist()) for r in s.train.images.flatten(1)[:, ::7]}
    assert not any(tuple(r.tolist()) in train_rows for r in s.test.images.flatten(1)[:, ::7])
    x, y = s.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == pytest.approx(-MEAN / STD, abs=1e-5)  # background pixels are 0
    again = mnist5k(val_per_class=0)
    assert torch.equal(again.train.images, s.train.images)
    v = mnist5k(val_per_class=50, train_per_class=20)
    assert len(v.val) == 500 and len(v.train) == 200 and torch.bincount(v.val.labels).tolist() == [50] * 10
    with pytest.raises(ValueError, match="data.val_per_class"):
        mnist5k(val_per_class=400)


def _write_idx(path, arr: np.ndarray, gz: bool):
    header = struct.pack(">I", 0x0800 | arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_t10k_subset_reads_idx_files_and_splits_8000_2000(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10000, 28, 28))
    labels = np.arange(10000) % 10
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", images, gz=True)
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels, gz=False)
    s = mnist(root=str(tmp_path), subset="t10k", download=False)
    assert (len(s.train), len(s.test)) == (8000, 2000)
    # every digit is kept, with its own label
    pairs = {(int(img[0, 0]), int(img[5, 5]), int(lab)) for img, lab in zip(s.train.images, s.train.labels)}
    pairs |= {(int(img[0, 0]), int(img[5, 5]), int(lab)) for img, lab in zip(s.test.images, s.test.labels)}
    assert pairs == {(int(i[0, 0]), int(i[5, 5]), int(lab)) for i, lab in zip(images, labels)}


def test_missing_mnist_names_the_root_and_suggests_mnist5k(tmp_path):
    with pytest.raises(DataError) as info:
        mnist(root=str(tmp_path / "nowhere"), subset="t10k", download=False)
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg and "data=mnist5k" in msg
    with pytest.raises(DataError, match="data=mnist5k"):
        mnist(root=str(tmp_path / "nowhere"), subset="full", download=False)


def test_evaluate_accuracy():
    model = MNISTModel(scales={"kind": "ones"})
    model.eval()
    x = torch.randn(20, 1, 28, 28)
    with torch.no_grad():
        pred = model.net(x).argmax(1)
    y = pred.clone()
    y[:5] = (y[:5] + 1) % 10  # 5 of 20 wrong
    m = model.evaluate([(x[:8], y[:8]), (x[8:], y[8:])])
    assert m["acc"] == pytest.approx(0.75)
    assert math.isfinite(m["nll"])
