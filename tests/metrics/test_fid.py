"""FID/KID (mtbench.metrics.fid) against pytorch-fid's own code paths, offline, on the CPU.

The real FID Inception weights are not needed: a seeded random-weight copy of
the same architecture (``random_fid_inception_for_tests``) stands in for them;
its numbers are not FID, but every code path is the real one. Most tests skip
the 299x299 resize (80x80 inputs, the smallest Inception accepts is 75) to stay
fast on a CPU; one test runs the full resize path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception as pfi

from mtbench.metrics import fid
from mtbench.metrics.fid import (FID_WEIGHTS_FILE, FID_WEIGHTS_URL, FIDEvaluator, FIDStats, InvalidWeightsError,
                                 MissingWeightsError, RealStatsCache, fid_from_features, images_fingerprint,
                                 inception_features, kid_from_features, load_inception, real_stats_key)
from mtbench.metrics.fid_testing import random_fid_inception_for_tests, random_fid_inception_state_dict

SIZE = 80  # > 75, the smallest input of Inception v3 without resizing


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch and one BLAS thread: on a shared, oversubscribed 2-core CPU, 2 threads made Inception
    ~6x and scipy's 2048x2048 sqrtm ~8x slower than 1."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    return random_fid_inception_for_tests(seed=0, resize_input=False)


@pytest.fixture(scope="module")
def model64():
    """Block 0 (64-d, spatially averaged): cheap, and scipy's sqrtm of a 64x64 matrix is fast."""
    return random_fid_inception_for_tests(seed=0, dims=64, resize_input=False)


class TinyFeatures(torch.nn.Module):
    """A stand-in with pytorch-fid's model interface (list of (N, d, 1, 1)) for evaluator bookkeeping tests."""

    dims, weights_id = 16, "tiny-test"

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3)

    def forward(self, x):
        return [F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1)]


@pytest.fixture(scope="module")
def state0():
    return random_fid_inception_state_dict(0)


def uint8_images(n: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Structured uint8 images (N, 3, size, size): smooth colour fields plus a gradient."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 6, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    ramp = torch.linspace(0, 0.3, size).view(1, 1, 1, size)
    return ((x * 0.7 + ramp) * 255).round().clamp(0, 255).to(torch.uint8)


def pm1(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 127.5 - 1.0


def write_pngs(u8: torch.Tensor, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(u8):
        p = folder / f"{i:03d}.png"
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(p)
        paths.append(p)
    return paths


def distort(x: torch.Tensor, amount: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + amount * torch.randn(x.shape, generator=g) + amount).clamp(-1, 1)


# --------------------------------------------------------------------------- network


def test_architecture_equals_pytorch_fid_inception(model, state0, monkeypatch):
    # pytorch-fid's own InceptionV3(use_fid_inception=True), its download replaced by the same weights
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state0)
    ref = pfi.InceptionV3([3], resize_input=False).eval()
    a, b = model.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():  # ours runs channels-last (faster): equal up to float rounding
        torch.testing.assert_close(model(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)
    assert not any(p.requires_grad for p in model.parameters())
    assert torch.get_num_threads() == 1
    model.train()
    assert not model.training


def test_features_equal_pytorch_fid_png_path_with_resize(model, tmp_path, monkeypatch):
    """The production settings (299x299 resize): in-memory features == pytorch-fid's get_activations on PNGs."""
    monkeypatch.setattr(model, "resize_input", True)
    u8 = uint8_images(2, size=32, seed=3)
    files = write_pngs(u8, tmp_path / "imgs")
    ref = fid_score.get_activations(files, model, batch_size=2, dims=2048, device="cpu", num_workers=0)
    ours = inception_features(model, pm1(u8), batch_size=2)
    assert ours.dtype == torch.float64 and ours.shape == (2, 2048)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_features_input_forms(model):
    u8 = uint8_images(2, seed=4)
    x = pm1(u8)
    f = inception_features(model, x, batch_size=1)
    np.testing.assert_allclose(inception_features(model, u8, batch_size=2).numpy(), f.numpy(), rtol=1e-5, atol=1e-6)
    grey = x[:, :1]
    np.testing.assert_array_equal(inception_features(model, grey).numpy(),
                                  inception_features(model, grey.expand(-1, 3, -1, -1).contiguous()).numpy())
    with pytest.raises(ValueError, match="shape"):
        inception_features(model, x[:, :2])


def _pytorch_fid_of_pngs(model, real_u8, fake_u8, tmp_path, batch_size: int, dims: int):
    """pytorch-fid's own path-based FID of the images written as PNGs, and the real folder's mu and sigma."""
    write_pngs(real_u8, tmp_path / "real")
    write_pngs(fake_u8, tmp_path / "fake")
    m_r, s_r = fid_score.compute_statistics_of_path(str(tmp_path / "real"), model, batch_size, dims, "cpu", 0)
    m_f, s_f = fid_score.compute_statistics_of_path(str(tmp_path / "fake"), model, batch_size, dims, "cpu", 0)
    return fid_score.calculate_frechet_distance(m_f, s_f, m_r, s_r), m_r, s_r


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # pytorch-fid's sqrtm of a singular product
def test_fid_equals_pytorch_fid_path_based(model64, tmp_path):
    """Statistics and FID == pytorch-fid's compute_statistics_of_path + calculate_frechet_distance.

    dims=64: scipy's sqrtm of the singular 2048x2048 covariance product takes
    tens of seconds on a CPU; the 2048-d features themselves are compared above.
    """
    real_u8, fake_u8 = uint8_images(10, seed=10), uint8_images(10, seed=11)
    ref, m_r, s_r = _pytorch_fid_of_pngs(model64, real_u8, fake_u8, tmp_path, batch_size=5, dims=64)

    f_r, f_f = inception_features(model64, pm1(real_u8), 5), inception_features(model64, pm1(fake_u8), 5)
    st_r = FIDStats.from_features(f_r)
    np.testing.assert_allclose(st_r.mu, m_r, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(st_r.sigma, s_r, rtol=1e-4, atol=1e-8)
    assert ref > 0
    for method in ("auto", "lowrank", "pytorch-fid"):
        assert fid_from_features(f_r, f_f, method=method) == pytest.approx(ref, abs=1e-3, rel=1e-4), method


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_fid_2048_equals_pytorch_fid_path_based(model, tmp_path):
    """The standard pool3 features: our (low-rank) FID == pytorch-fid's path-based FID (one 2048x2048 sqrtm, ~12 s)."""
    real_u8, fake_u8 = uint8_images(8, seed=12), uint8_images(8, seed=13)
    ref, _, _ = _pytorch_fid_of_pngs(model, real_u8, fake_u8, tmp_path, batch_size=8, dims=2048)
    ours = fid_from_features(inception_features(model, pm1(real_u8)), inception_features(model, pm1(fake_u8)))
    assert ref > 0
    assert ours == pytest.approx(ref, abs=1e-3, rel=1e-4)


def test_fid_zero_on_itself_and_grows_with_distortion(model):
    x = pm1(uint8_images(12, seed=20))
    f = inception_features(model, x)
    fids = [fid_from_features(f, inception_features(model, distort(x, a))) for a in (0.05, 0.2, 0.5)]
    same = fid_from_features(f, f)
    assert abs(same) < 1e-9 * max(1.0, fids[0])
    assert 0 < fids[0] < fids[1] < fids[2]


def test_lowrank_fid_equals_pytorch_fid_on_synthetic_features():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(15, 96)), 0)
    b = np.maximum(rng.normal(0.2, 1.2, size=(21, 96)), 0)
    ref = fid.fid_from_stats(FIDStats.from_features(a), FIDStats.from_features(b))
    assert fid_from_features(a, b, method="lowrank") == pytest.approx(ref, rel=1e-6)
    # n > d: "auto" falls back to pytorch-fid's sqrtm, and lowrank still agrees
    a2, b2 = rng.normal(size=(90, 24)), rng.normal(0.3, 1.0, size=(80, 24))
    ref2 = fid.fid_from_stats(FIDStats.from_features(a2), FIDStats.from_features(b2))
    assert fid_from_features(a2, b2) == pytest.approx(ref2, rel=1e-9)
    assert fid_from_features(a2, b2, method="lowrank") == pytest.approx(ref2, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid_from_features(a[:1], b)


# --------------------------------------------------------------------------- KID


def kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, explicit loops."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)


def test_kid_matches_reference():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=(7, 16)), 0)
    y = np.maximum(rng.normal(0.3, 1.0, size=(9, 16)), 0)
    kid, std = kid_from_features(x, y)
    assert kid == pytest.approx(kid_reference(x, y), abs=1e-6)
    assert std == 0.0
    # large sets: subsets of min(subset_size, m, n), drawn real-then-fake per subset
    x2 = np.maximum(rng.normal(size=(30, 8)), 0)
    y2 = np.maximum(rng.normal(0.5, 1.0, size=(25, 8)), 0)
    kid2, std2 = kid_from_features(x2, y2, subsets=4, subset_size=10, seed=3)
    r = np.random.default_rng(3)
    vals = []
    for _ in range(4):
        ix, iy = r.choice(30, 10, replace=False), r.choice(25, 10, replace=False)
        vals.append(kid_reference(x2[ix], y2[iy]))
    assert kid2 == pytest.approx(np.mean(vals), abs=1e-6)
    assert std2 == pytest.approx(np.std(vals), abs=1e-6)


def test_kid_identical_sets_near_zero(model):
    x = pm1(uint8_images(12, seed=30))
    f = inception_features(model, x)
    far, _ = kid_from_features(f, inception_features(model, distort(x, 0.5)))
    same, _ = kid_from_features(f, f)
    assert far > 0
    assert -0.2 * far < same <= 1e-12  # unbiased: slightly negative for a set against itself


# --------------------------------------------------------------------------- cache and evaluator


@pytest.fixture
def count_features(monkeypatch):
    """Counts the images that go through Inception."""
    counter = {"images": 0}
    orig = fid._features_on_device

    def counting(model, images, batch_size):
        counter["images"] += images.shape[0]
        return orig(model, images, batch_size)

    monkeypatch.setattr(fid, "_features_on_device", counting)
    return counter


def test_evaluator_and_cache_hit(model, tmp_path, count_features):
    real, fake = pm1(uint8_images(4, seed=40)), pm1(uint8_images(4, seed=41))
    cache = RealStatsCache(tmp_path / "cache")
    key = real_stats_key(model, "unit-test/val", content=images_fingerprint(real), image_size=SIZE)

    ev = FIDEvaluator(model, cache=cache, real_key=key, batch_size=3)
    assert ev.needs_real
    for i in (0, 2):
        ev.add(fake[i:i + 2], real[i:i + 2])
    first = ev.compute()
    assert count_features["images"] == 8
    assert set(first) == {"fid", "kid", "kid_std", "fid_images"} and first["fid_images"] == 4
    assert cache.path(key).is_file() and not list(cache.dir.glob("*.tmp"))
    f_r, f_f = inception_features(model, real), inception_features(model, fake)
    assert first["fid"] == pytest.approx(fid_from_features(f_r, f_f), rel=1e-9)
    assert first["kid"] == pytest.approx(kid_from_features(f_r, f_f)[0], rel=1e-9)

    count_features["images"] = 0
    ev2 = FIDEvaluator(model, cache=RealStatsCache(tmp_path / "cache"), real_key=key)
    assert not ev2.needs_real and ev2.cache.hits == 1
    ev2.add(fake, real)  # real ignored: the cache has it
    second = ev2.compute()
    assert count_features["images"] == 4
    assert second == pytest.approx(first, rel=1e-12)


def test_evaluator_needs_two_images():
    ev = FIDEvaluator(TinyFeatures())
    x = pm1(uint8_images(2, size=16, seed=50))
    ev.add(x[:1], x)
    with pytest.raises(ValueError, match="at least 2 generated"):
        ev.compute()
    ev.reset()
    ev.add(x, x[:1])
    with pytest.raises(ValueError, match="at least 2 real"):
        ev.compute()


def test_cache_key_depends_on_data_settings_and_weights(model, model64, tmp_path):
    u8 = uint8_images(3, size=16, seed=60)
    x = pm1(u8)
    base = dict(data_id="set/val", content=images_fingerprint(x), image_size=64)
    k0 = real_stats_key(model, **base)
    assert k0 == real_stats_key(model, **base)
    x2 = x.clone()
    x2[0, 0, 0, 0] += 1 / 127.5
    other_weights = types.SimpleNamespace(weights_id="sha256:other", dims=2048, resize_input=False,
                                          normalize_input=True)
    keys = {
        k0,
        real_stats_key(model, **{**base, "content": images_fingerprint(x2)}),
        real_stats_key(model, **{**base, "data_id": "set/test"}),
        real_stats_key(model, **{**base, "image_size": 128}),
        real_stats_key(model64, **base),
        real_stats_key(other_weights, **base),
        real_stats_key(model, **base, n_images=3),
    }
    assert len(keys) == 7
    files = write_pngs(u8, tmp_path / "f")
    h1 = fid.files_fingerprint(files)
    Image.fromarray(u8[1].flip(0).permute(1, 2, 0).numpy()).save(files[1])
    os.utime(files[1], ns=(1, 1))
    assert fid.files_fingerprint(files) != h1


def test_corrupt_cache_file_is_recomputed(tmp_path, caplog):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(5, 8))
    cache = RealStatsCache(tmp_path)
    key = "a" * 64
    calls = []

    def compute():
        calls.append(1)
        return feats

    cache.path(key).write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING, logger="mtbench.fid"):
        st = cache.get_or_compute(key, compute)
    assert len(calls) == 1 and "unreadable" in caplog.text and str(cache.path(key)) in caplog.text
    np.testing.assert_array_equal(st.features, feats)
    st2 = cache.get_or_compute(key, compute)  # the rewritten file is valid
    assert len(calls) == 1
    np.testing.assert_allclose(st2.sigma, np.cov(feats, rowvar=False))
    # truncated file, and a file stored under another key
    data = cache.path(key).read_bytes()
    cache.path(key).write_bytes(data[: len(data) // 2])
    assert cache.load(key) is None
    cache.save("b" * 64, FIDStats.from_features(feats))
    cache.path(key).write_bytes(cache.path("b" * 64).read_bytes())
    assert cache.load(key) is None
    cache.get_or_compute(key, compute)
    assert len(calls) == 2 and cache.load(key) is not None


# --------------------------------------------------------------------------- weights


def test_missing_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline():
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fid, "_download_fid_state_dict", offline)
    hub = tmp_path / "torch_home" / "hub" / "checkpoints" / FID_WEIGHTS_FILE
    assert fid.fid_weights_hub_path() == hub
    with pytest.raises(MissingWeightsError) as e:
        load_inception()
    msg = str(e.value)
    for part in (FID_WEIGHTS_FILE, FID_WEIGHTS_URL, str(hub), "eval.fid_weights=", "mtbench eval", "no network",
                 "kept"):
        assert part in msg, part
    with pytest.raises(MissingWeightsError, match="eval.fid_weights"):
        load_inception(weights_path=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(InvalidWeightsError, match=re.escape(FID_WEIGHTS_URL)):
        load_inception(weights_path=bad)
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(InvalidWeightsError, match="not the FID Inception"):
        load_inception(weights_path=bad)


def test_load_from_weights_path_and_hub_dir(model, state0, tmp_path, monkeypatch):
    path = tmp_path / "pt_inception-2015-12-05-test.pth"
    torch.save(state0, path)
    loaded = load_inception(weights_path=path)
    assert loaded.resize_input and loaded.normalize_input and loaded.dims == 2048
    assert loaded.weights_id.startswith("sha256:") and loaded.weights_source == str(path)
    a, b = loaded.state_dict(), model.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = pm1(uint8_images(2, seed=70))
    monkeypatch.setattr(loaded, "resize_input", False)  # same 80x80 input as the fixture, for speed
    np.testing.assert_array_equal(inception_features(loaded, x).numpy(), inception_features(model, x).numpy())

    # the hub checkpoint folder is found without any download
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(fid, "_download_fid_state_dict", lambda: pytest.fail("must not download"))
    fid.fid_weights_hub_path().parent.mkdir(parents=True)
    fid.fid_weights_hub_path().write_bytes(path.read_bytes())
    hub_model = load_inception(dims=768)
    assert hub_model.weights_id == loaded.weights_id and hub_model.dims == 768 and len(hub_model.blocks) == 3
