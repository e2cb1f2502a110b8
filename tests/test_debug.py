"""debug=fast|overfit|anomaly|profile (conf/debug/, issue 12 item 12): each preset's real effect, through the
runner, and through the console script once; every preset composes with every model and the preset wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CONF, compose_cfg, load_ckpt, train_with_signal_at
from mtbench.errors import ConfigError
from mtbench.models.mnist import MNISTModel
from mtbench.settings import TrainerSettings
from mtbench.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

PRESETS = sorted(p.stem for p in (CONF / "debug").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
BASE = ["device=cpu", "trainer.progress=false"]  # no trainer key the presets set: the preset's values count
# tiny nets and data per model (as tests/models/test_contract.py)
TINY = {
    "mnist": ["data.train_per_class=10", "trainer.eval_batch_size=100"],
    "pix2pix": ["model=pix2pix", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
                "model.ngf=8", "model.ndf=8", "trainer.batch_size=2", "trainer.eval_batch_size=2"],
    "cyclegan": ["model=cyclegan", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
                 "model.ngf=8", "model.ndf=8", "model.n_blocks=2", "trainer.batch_size=2",
                 "trainer.eval_batch_size=2"],
    "srgan": ["model=srgan", "model.n_blocks=2", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16",
              "model.perceptual=false", "data.crop_size=32", "data.n_train=8", "data.n_val=2", "data.n_test=4",
              "trainer.batch_size=4", "trainer.eval_batch_size=4"],
}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _sum_of_terms(record: dict) -> float:
    return sum(v for k, v in record.items() if k.startswith("loss/term_"))


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_preset_composes_with_every_model_and_overrides_its_trainer(preset, model):
    for extra in ([], [f"experiment={model}_quick"] if (CONF / "experiment" / f"{model}_quick.yaml").is_file() else []):
        cfg = compose_cfg([f"model={model}", *extra, f"debug={preset}"])
        t = TrainerSettings.from_config(cfg.trainer)
        expected = {"fast": {"max_steps": 5, "log_every": 1, "eval_limit_batches": 2, "save_checkpoints": False},
                    "overfit": {"overfit_batches": 1, "max_steps": 100, "save_checkpoints": False},
                    "anomaly": {"detect_anomaly": True},
                    "profile": {"profile_steps": 3, "max_steps": 5, "save_checkpoints": False}}[preset]
        assert {k: getattr(t, k) for k in expected} == expected, (model, extra)
        assert cfg.hydra.run.dir.startswith(f"runs/debug/{preset}/{model}-fixed/")
        if preset != "anomaly":
            assert cfg.eval.fid is False


@pytest.mark.parametrize("model", MODELS)
def test_fast_trains_5_steps_logs_each_writes_no_checkpoint_on_every_model(model, tmp_path):
    summary = train(compose_cfg([*BASE, *TINY[model], "debug=fast"]), out=tmp_path / "r")
    assert summary["steps"] == 5 and "none written" in summary["checkpoints"]
    assert [r["step"] for r in _records(tmp_path / "r") if "time/step_ms" in r] == [1, 2, 3, 4, 5]
    assert not (tmp_path / "r" / "checkpoints").exists()
    assert summary["best"]["value"] is None  # no best.pt either: nothing pretends there is one
    # nothing to resume: the run says so rather than pretending
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(compose_cfg([*BASE, *TINY[model], "debug=fast", "resume=true"]), out=tmp_path / "r")


def test_fast_evaluates_only_the_first_batches(tmp_path, monkeypatch):
    seen = []
    original = MNISTModel.evaluate

    def evaluate(self, loader):
        batches = list(loader)
        seen.append((len(loader), [len(y) for _, y in batches]))
        return original(self, batches)

    monkeypatch.setattr(MNISTModel, "evaluate", evaluate)
    train(compose_cfg([*BASE, "debug=fast", "trainer.eval_batch_size=100", "trainer.eval_every=2"]),
          out=tmp_path / "r")
    # 2 periodic evaluations on val, the final one on test and on val again (best.pt / selection)
    assert seen and all(s == (2, [100, 100]) for s in seen), seen


def test_eval_limit_batches_refuses_fid(tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.eval_limit_batches=2 evaluates part .* set eval.fid=false"):
        train(compose_cfg([*BASE, *TINY["pix2pix"], "eval.fid=true", "trainer.eval_limit_batches=2"]),
              out=tmp_path / "r")
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_overfit_trains_on_the_same_batch_every_step_and_its_loss_falls(tmp_path, monkeypatch):
    batches = []
    original = MNISTModel.training_step

    def training_step(self, batch, method):
        batches.append([t.clone() for t in batch])
        return original(self, batch, method)

    monkeypatch.setattr(MNISTModel, "training_step", training_step)
    summary = train(compose_cfg([*BASE, "debug=overfit", "trainer.max_steps=30", "trainer.eval_batch_size=100"]),
                    out=tmp_path / "r")
    assert summary["steps"] == 30 and len(batches) == 30 and summary["epochs"] == 30  # one batch per epoch
    x0, y0 = batches[0]
    assert len(y0) == 64 and all(torch.equal(x, x0) and torch.equal(y, y0) for x, y in batches)
    losses = [_sum_of_terms(r) for r in _records(tmp_path / "r") if "time/step_ms" in r]
    assert [r["step"] for r in _records(tmp_path / "r") if "time/step_ms" in r] == [1, 10, 20, 30]
    assert losses[-1] < 0.5 * losses[0], losses


def test_overfit_resumes_exactly_with_the_same_batches(tmp_path):
    """overfit_batches=2 (the batches are drawn under a forked, seeded RNG): SIGTERM at step 3 and resume end
    with the parameters of an uninterrupted run."""
    base = [*BASE, "trainer.overfit_batches=2", "trainer.max_steps=6", "trainer.batch_size=16",
            "trainer.log_every=2", "trainer.checkpoint_every=null"]
    train(compose_cfg(base), out=tmp_path / "full")
    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "cut", stop_step=3)
    train(compose_cfg([*base, "resume=true"]), out=tmp_path / "cut")
    a, b = load_ckpt(tmp_path / "full")["model"], load_ckpt(tmp_path / "cut")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="trainer.overfit_batches: 2 -> 1"):  # it changes the trajectory
        train(compose_cfg([*base, "trainer.overfit_batches=1", "resume=true", "trainer.max_steps=8"]),
              out=tmp_path / "cut")


def test_anomaly_detection_is_on_during_the_steps_and_names_the_op_of_a_nan_backward(tmp_path, monkeypatch):
    seen = []
    original = MNISTModel.training_step

    def training_step(self, batch, method):
        seen.append(torch.is_anomaly_enabled())
        return original(self, batch, method)

    monkeypatch.setattr(MNISTModel, "training_step", training_step)
    train(compose_cfg([*BASE, "debug=anomaly", "trainer.max_steps=2", "trainer.checkpoint_every=null"]),
          out=tmp_path / "on")
    assert seen == [True, True] and not torch.is_anomaly_enabled()  # on for the run only
    train(compose_cfg([*BASE, "trainer.max_steps=2"]), out=tmp_path / "off")
    assert seen[2:] == [False, False]

    terms = MNISTModel.terms

    def nan_backward(self, x, y):  # finite forward (sqrt(0) = 0), NaN gradient (inf * 0) in MulBackward0
        t = terms(self, x, y)
        t["term_0"] = t["term_0"] + torch.sqrt(t["term_0"] * 0)
        return t

    monkeypatch.setattr(MNISTModel, "terms", nan_backward)
    with pytest.warns(UserWarning, match="Traceback of forward call"), \
            pytest.raises(RuntimeError, match=r"Function 'MulBackward0' returned nan values"):
        train(compose_cfg([*BASE, "debug=anomaly", "trainer.max_steps=2"]), out=tmp_path / "nan")
    assert not torch.is_anomaly_enabled()


def test_profile_writes_a_chrome_trace_of_the_recorded_steps_and_stops(tmp_path):
    summary = train(compose_cfg([*BASE, "debug=profile", "trainer.batch_size=16"]), out=tmp_path / "r")
    assert summary["steps"] == 5
    [trace] = (tmp_path / "r" / "profile").glob("*.pt.trace.json")
    events = json.loads(trace.read_text())["traceEvents"]
    steps = {e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"}, steps  # after 1 wait, 1 warmup
    assert any("convolution" in str(e.get("name", "")) for e in events)
    with pytest.raises(ConfigError, match=r"trainer.profile_steps=3 records steps 3 to 5 .* has 4 steps"):
        train(compose_cfg([*BASE, "debug=profile", "trainer.max_steps=4"]), out=tmp_path / "short")


def test_debug_fast_through_the_console_script(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "mtbench.cli", "train", "debug=fast", "device=cpu",
                        "data.train_per_class=10", "logger=[tensorboard,csv]"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr
    [run] = (tmp_path / "runs" / "debug" / "fast" / "mnist-fixed").iterdir()
    assert r.stdout.strip().splitlines()[-1].endswith(f"run dir {run}")
    assert "| 5 steps in" in r.stdout and not (run / "checkpoints").exists()
    assert (run / "metrics.csv").is_file() and list(run.glob("events.out.tfevents.*"))
    assert json.loads((run / "summary.json").read_text())["command"] == (
        "mtbench train debug=fast device=cpu data.train_per_class=10 'logger=[tensorboard,csv]'")
