"""FID inside training runs, through the real code path (test-only random-weight Inception)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import compose_cfg
from mtbench.metrics.fid_testing import random_fid_inception_state_dict
from mtbench.train import train

SRGAN_TINY = ["model=srgan", "experiment=srgan_quick", "trainer.max_steps=2", "trainer.batch_size=2",
              "data.crop_size=16", "data.n_train=4", "data.n_val=3", "data.n_test=3", "model.n_blocks=1",
              "model.n_features=8", "model.ndf=8", "model.d_fc_features=16", "trainer.progress=false",
              "trainer.image_every=null", "trainer.eval_every=null", "trainer.checkpoint_every=null", "device=cpu"]


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """Random FID-Inception weights in the real file's format: NOT FID, for exercising the code path only."""
    path = tmp_path_factory.mktemp("w") / "pt_inception-test-random.pth"
    torch.save(random_fid_inception_state_dict(seed=0), path)
    return path


def test_fid_is_computed_cached_and_becomes_the_primary_metric(tmp_path, fake_weights):
    torch.set_num_threads(1)
    cache = tmp_path / "fidcache"
    over = [*SRGAN_TINY, "eval.fid=true", f"eval.fid_weights={fake_weights}", f"eval.fid_cache={cache}"]
    s = train(compose_cfg(over), out=tmp_path / "a")
    assert s["primary_metric"] == "fid" and s["higher_is_better"] is False
    m = s["metrics"]
    assert math.isfinite(m["fid"]) and m["fid"] > 0 and m["fid_images"] == 3 and "kid" in m and "psnr" in m
    assert len(list(cache.glob("real_*.npz"))) == 2  # the test split (reported) and val (chooses best.pt)
    s2 = train(compose_cfg([*over, "seed=1"]), out=tmp_path / "b")
    assert len(list(cache.glob("real_*.npz"))) == 2  # same real splits: statistics from the cache
    assert math.isfinite(s2["metrics"]["fid"])


def test_fid_auto_without_weights_reports_task_metrics_and_says_why(tmp_path, monkeypatch):
    from mtbench.train import format_summary

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "empty_cache"))
    s = train(compose_cfg([*SRGAN_TINY, "eval.fid=auto"]), out=tmp_path / "r")
    assert s["primary_metric"] == "psnr" and "fid" not in s["metrics"]
    note = "FID off: weights not found, run `mtbench weights fid`; ranked by psnr instead"
    assert s["fid_note"] == note and note in format_summary(s)
    s = train(compose_cfg([*SRGAN_TINY, "eval.fid=false"]), out=tmp_path / "off")
    assert s["fid_note"] == "FID off: eval.fid=false; ranked by psnr instead" and "fid" not in s["metrics"]


def test_fid_auto_finds_the_converted_weights(tmp_path, monkeypatch, fake_weights):
    from mtbench.metrics.fid_weights import converted_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    converted_weights_path().parent.mkdir(parents=True)
    torch.save({"state_dict": {k: v for k, v in torch.load(fake_weights, weights_only=True).items()
                               if not k.startswith("fc.")}}, converted_weights_path())  # the converted layout
    s = train(compose_cfg([*SRGAN_TINY, "eval.fid=auto", f"eval.fid_cache={tmp_path / 'c'}"]), out=tmp_path / "r")
    assert s["primary_metric"] == "fid" and math.isfinite(s["metrics"]["fid"]) and s["fid_note"] is None


def test_fid_required_without_weights_keeps_the_run_then_fails_clearly(tmp_path, monkeypatch):
    import mtbench.metrics.fid as fid

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(fid, "load_state_dict_from_url", offline, raising=False)
    with pytest.raises(RuntimeError) as info:
        train(compose_cfg([*SRGAN_TINY, "eval.fid=true"]), out=tmp_path / "r")
    msg = str(info.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and "mtbench eval" in msg
    assert (tmp_path / "r" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "r" / "summary.json").is_file()
