"""The runner end to end: every method through Hydra compose, resume, signals, NaN policy, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import train_with_signal_at, compose_cfg, load_ckpt
from mtbench.models.mnist import MNISTModel
from mtbench.train import NonFiniteLossError, train
from mtbench.utils import ConfigError

SMALL = ["trainer.batch_size=32", "trainer.eval_batch_size=500"]


def test_tensorboard_has_terms_weights_eval_and_hparams(run_train):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out = run_train(["method=mtadam", "trainer.max_steps=4", *SMALL])
    acc = EventAccumulator(str(out))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {f"loss/term_{c}" for c in range(10)} <= tags
    assert {f"weight/term_{c}" for c in range(10)} <= tags
    assert {"eval/acc", "time/step_ms"} <= tags
    hp = EventAccumulator(str(out), size_guidance={"tensors": 0})
    hp.Reload()
    # add_hparams writes the plugin data the HPARAMS tab reads
    assert "hparams" in hp.PluginTagToContent("hparams") or hp.PluginTagToContent("hparams")


def test_resume_refuses_a_different_config(tmp_path):
    base = ["trainer.max_steps=2", "trainer.progress=false", "device=cpu", *SMALL]
    train(compose_cfg(base), out=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"differ .*method\._target_: mtbench\.methods\.fixed\.Fixed -> "
                                          r"mtbench\.methods\.mtadam\.MTAdamMethod"):
        train(compose_cfg([*base, "trainer.max_steps=4", "method=mtadam", "resume=true"]), out=tmp_path / "r")


def test_resume_of_a_finished_run_continues_to_a_larger_budget(tmp_path):
    base = ["trainer.progress=false", "device=cpu", *SMALL]
    train(compose_cfg([*base, "trainer.max_steps=2"]), out=tmp_path / "r")
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(compose_cfg([*base, "trainer.max_steps=2", "resume=true"]), out=tmp_path / "r")
    s = train(compose_cfg([*base, "trainer.max_steps=4", "resume=true"]), out=tmp_path / "r")
    assert s["steps"] == 4


def test_existing_run_dir_is_never_overwritten(tmp_path):
    base = ["trainer.max_steps=2", "trainer.progress=false", "device=cpu", *SMALL]
    train(compose_cfg(base), out=tmp_path / "r")
    before = (tmp_path / "r" / "summary.json").read_bytes(), (tmp_path / "r/checkpoints/last.pt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(compose_cfg(base), out=tmp_path / "r")
    after = (tmp_path / "r" / "summary.json").read_bytes(), (tmp_path / "r/checkpoints/last.pt").read_bytes()
    assert before == after


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(compose_cfg(["resume=true", "device=cpu"]), out=tmp_path / "empty")


def test_unreadable_checkpoint_names_the_file(tmp_path):
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"cannot read checkpoint .*last\.pt"):
        train(compose_cfg(["resume=true", "device=cpu", "trainer.progress=false"]), out=tmp_path / "r")


def _nan_at(step_to_break: int):
    original = MNISTModel.terms
    count = {"n": 0}

    def terms(self, x, y):
        t = original(self, x, y)
        count["n"] += 1
        if count["n"] == step_to_break:
            t["term_3"] = t["term_3"] * float("nan")
        return t

    return original, terms


def test_nan_policy_raise_names_the_term_and_step_and_keeps_the_last_checkpoint(tmp_path):
    cfg = compose_cfg(["trainer.max_steps=12", "trainer.progress=false", "trainer.log_every=4",
                       "trainer.checkpoint_every=4", "device=cpu", *SMALL])
    original, broken = _nan_at(7)
    MNISTModel.terms = broken
    try:
        with pytest.raises(NonFiniteLossError, match=r"'term_3' is nan at step 7"):
            train(cfg, out=tmp_path / "r")
    finally:
        MNISTModel.terms = original
    ckpt = load_ckpt(tmp_path / "r")
    assert ckpt["step"] == 4  # the last good checkpoint, not one written after the NaN
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_policy_skip_skips_the_step_and_finishes(tmp_path):
    cfg = compose_cfg(["trainer.max_steps=6", "trainer.progress=false", "trainer.log_every=3",
                       "trainer.nan_policy=skip", "trainer.max_skipped=0.5", "device=cpu", *SMALL])
    original, broken = _nan_at(2)
    MNISTModel.terms = broken
    try:
        s = train(cfg, out=tmp_path / "r")
    finally:
        MNISTModel.terms = original
    assert s["skipped_nonfinite_steps"] == 1  # counted once
    ckpt = load_ckpt(tmp_path / "r")
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.parametrize(("override", "message"), [
    ("model.optim.lr=0", "method.optimizer.lr must be a finite number > 0"),
    ("model.optim.betas=[0.9,1.0]", r"betas\[1\] must be (a number )?in \[0, 1\)"),
    ("trainer.batch_size=0", "trainer.batch_size must be an integer >= 1"),
    ("trainer.nan_policy=ignore", "trainer.nan_policy must be 'raise' or 'skip'"),
    ("device=cuda", "no CUDA device"),
])
def test_bad_values_are_rejected_with_the_key(tmp_path, override, message):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from hydra.errors import InstantiationException

    from mtbench.cli import explain

    overrides = ["trainer.progress=false", override] if override.startswith("device") else \
        ["trainer.progress=false", "device=cpu", override]
    with pytest.raises((ValueError, InstantiationException)) as info:
        train(compose_cfg(overrides), out=tmp_path / "r")
    import re

    assert re.search(message, explain(info.value))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_resume_true_without_a_dir_continues_the_newest_unfinished_run_of_the_same_seed(tmp_path):
    common = ["data.train_per_class=5", "trainer.batch_size=10", "trainer.max_steps=6", "trainer.progress=false",
              "trainer.checkpoint_every=null", "device=cpu", "seed=4"]
    parent = tmp_path / "runs" / "mnist" / "fixed"
    train_with_signal_at(MNISTModel, compose_cfg(common), parent / "2026-01-01_00-00-00_s4", stop_step=2)
    fresh = parent / "2026-01-02_00-00-00_s4"  # what Hydra makes for the new invocation
    (fresh / ".hydra").mkdir(parents=True)
    s = train(compose_cfg([*common, "resume=true"]), out=fresh, search_siblings=True)
    assert s["run_dir"].endswith("2026-01-01_00-00-00_s4") and s["steps"] == 6
    assert not fresh.exists()  # the empty folder of this invocation is removed, nothing else


# val and test scores by training step (the fake evaluation below): val is best at the end, test earlier
SCORES = {"val": {2: 0.5, 4: 0.2, 6: 0.7}, "test": {2: 0.9, 4: 0.95, 6: 0.1}}


def test_best_checkpoint_and_on_eval_read_the_val_split_and_the_final_metrics_the_test_split(tmp_path, monkeypatch):
    """Periodic evaluations on val choose best.pt (also at the end, by an extra val evaluation), not test."""
    step = {"n": 0}
    original_step = MNISTModel.training_step

    def training_step(self, batch, method):
        step["n"] += 1
        return original_step(self, batch, method)

    def evaluate(self, loader):  # 100 val digits (10 per class), 1,000 test digits
        return {"acc": SCORES["val" if len(loader.dataset) == 100 else "test"][step["n"]]}

    monkeypatch.setattr(MNISTModel, "training_step", training_step)
    monkeypatch.setattr(MNISTModel, "evaluate", evaluate)
    seen = []
    cfg = compose_cfg(["data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10", "trainer.max_steps=6",
                       "trainer.eval_every=2", "trainer.progress=false", "trainer.log_every=2",
                       "trainer.checkpoint_every=null", "device=cpu"])
    s = train(cfg, out=tmp_path / "r", on_eval=lambda st, m: seen.append((st, m["acc"])))
    assert s["metrics"]["acc"] == 0.1 and s["eval_split"] == "auto"  # reported on test
    assert s["best"] == {"value": 0.7, "step": 6, "split": "val"}  # chosen on val: not 0.95 at step 4 (test)
    assert seen == [(2, 0.5), (4, 0.2), (6, 0.7)]  # tuning would only ever see val
    best = torch.load(tmp_path / "r" / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert best["step"] == 6 and best["best"] == 0.7
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["val/acc"]) for r in lines if "val/acc" in r] == [(2, 0.5), (4, 0.2), (6, 0.7)]
    assert [(r["step"], r["eval/acc"]) for r in lines if "eval/acc" in r] == [(6, 0.1)]


def test_without_a_val_split_best_pt_is_chosen_on_test_and_the_summary_says_so(run_train):
    summary, out = run_train(["data.val_per_class=0", "data.train_per_class=5", "trainer.batch_size=10",
                              "trainer.max_steps=4", "trainer.eval_every=2", *SMALL[1:]])
    assert summary["best"]["split"] == "test" and "no val split" in summary["best"]["note"]
    assert summary["best"]["value"] is not None and (out / "checkpoints" / "best.pt").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "eval/acc" in r] == [2, 4] and not any("val/acc" in r for r in lines)


def test_summary_records_the_thread_count_and_deterministic_algorithms(run_train):
    threads = torch.get_num_threads()
    try:
        summary, _ = run_train(["trainer.max_steps=2", *SMALL, "device=cpu", "device.threads=1",
                                "device.deterministic=true"])
        assert summary["threads"] == 1 and summary["deterministic"] is True
        summary, _ = run_train(["trainer.max_steps=2", *SMALL, "device=cpu", "device.threads=1"], name="default")
        assert summary["deterministic"] is False
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def _same_weights(a, b) -> bool:
    ca, cb = load_ckpt(a), load_ckpt(b)
    return ca["step"] == cb["step"] and all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


def test_a_job_that_slurm_requeued_resumes_its_run_bit_identical(tmp_path, monkeypatch):
    """SLURM_RESTART_COUNT > 0 (a requeued job) and a checkpoint in the run dir: the job continues it; the same
    command outside a requeue refuses to touch the run."""
    base = ["trainer.max_steps=8", "trainer.progress=false", "device=cpu", *SMALL]
    train(compose_cfg(base), out=tmp_path / "ref")
    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "run", stop_step=3)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(compose_cfg(base), out=tmp_path / "run")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert train(compose_cfg(base), out=tmp_path / "run")["steps"] == 8
    assert _same_weights(tmp_path / "run", tmp_path / "ref")


def test_sigusr2_in_a_slurm_job_writes_the_checkpoint_then_calls_submitits_handler(tmp_path, monkeypatch):
    """hydra-submitit-launcher's jobs handle SIGUSR2 (time limit ahead) by requeueing and exiting: the runner
    finishes the step and writes its checkpoint first, then calls that handler."""
    import signal

    base = ["trainer.max_steps=8", "trainer.progress=false", "device=cpu", *SMALL]
    train(compose_cfg(base), out=tmp_path / "ref")
    called = []

    def submitit_like(signum, frame):  # what submitit's handler does after `scontrol requeue`
        called.append((signum, load_ckpt(tmp_path / "run")["step"]))
        raise SystemExit(-1)

    old = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "run", stop_step=5,
                             signum=signal.SIGUSR2, raises=SystemExit)
    finally:
        signal.signal(signal.SIGUSR2, old)
    assert called == [(signal.SIGUSR2, 5)]  # the step's checkpoint was on disk when submitit took over
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    train(compose_cfg(base), out=tmp_path / "run")
    assert _same_weights(tmp_path / "run", tmp_path / "ref")
