"""The console script as a user runs it: help, bad input, a real run, multirun, SIGTERM + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MTBENCH = [sys.executable, "-m", "mtbench.cli"]


def run(args, cwd, timeout=240, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*MTBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def test_top_level_help_lists_the_commands(tmp_path):
    r = run(["--help"], tmp_path)
    assert r.returncode == 0 and "train" in r.stdout and "usage: mtbench" in r.stdout


def test_train_help_lists_every_config_group_and_choice(tmp_path):
    r = run(["train", "--help"], tmp_path)
    assert r.returncode == 0
    for word in ["model:", "method:", "data:", "device:", "trainer:", "experiment:", "mtadam",
                 "softadapt_loss_weighted", "softadapt_normalized", "mnist5k", "mnist_unbalanced"]:
        assert word in r.stdout, word


def test_unknown_command_and_unknown_choice_fail_clearly(tmp_path):
    r = run(["trian"], tmp_path)
    assert r.returncode == 2 and "unknown command 'trian'" in r.stderr
    r = run(["train", "method=nope"], tmp_path)
    methods = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "method").glob("*.yaml"))
    assert {"fixed", "mtadam", "softadapt", "pcgrad", "famo"} <= set(methods)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: method=nope is not an option of method; valid: {', '.join(methods)}"]


def test_bad_value_is_one_line_and_nonzero(tmp_path):
    r = run(["train", "method=softadapt", "method.window=1", "hydra.run.dir=out"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "error: method.window must be >= 2, got 1"
    assert "Traceback" not in r.stderr


def test_real_run_and_multirun_from_another_directory(tmp_path):
    r = run(["train", "trainer.max_steps=3", "trainer.batch_size=16", "trainer.progress=false"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("done: mnist/fixed seed 0 | acc ")
    assert "(no tuned baseline yet: mtbench tune) |" in r.stdout  # the defaults: no override to repeat
    [summary] = list((tmp_path / "runs" / "mnist" / "fixed").glob("*/summary.json"))
    assert json.loads(summary.read_text())["steps"] == 3
    r = run(["train", "-m", "method=fixed,softadapt", "seed=0,1", "trainer.max_steps=2",
             "trainer.batch_size=16", "trainer.progress=false"], tmp_path)
    assert r.returncode == 0, r.stderr
    jobs = sorted(p.parent.name for p in (tmp_path / "runs" / "multirun").glob("*/*/summary.json"))
    assert jobs == ["0_mnist_fixed_s0", "1_mnist_fixed_s1", "2_mnist_softadapt_s0", "3_mnist_softadapt_s1"]


def test_sigterm_writes_a_checkpoint_and_resume_finishes(tmp_path):
    args = ["train", "trainer.max_steps=300", "trainer.batch_size=16", "trainer.log_every=5",
            "trainer.progress=false", "hydra.run.dir=run"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*MTBENCH, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    metrics = Path(tmp_path / "run" / "metrics.jsonl")
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resume=true" in err
    import torch

    ckpt = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert 1 <= ckpt["step"] < 300 and not ckpt["finished"]
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    # a changed budget would change the run's schedule: refused in one line, nothing written
    r = run(["train", "trainer.max_steps=10", "trainer.batch_size=16", "trainer.progress=false",
             "hydra.run.dir=run", "resume=true"], tmp_path)
    assert r.returncode == 2 and "trainer.max_steps: 300 -> 10" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    assert set(after) - {tmp_path / "run" / "train.log"} == set(before) - {tmp_path / "run" / "train.log"}
    assert all(after[p] == before[p] for p in before if p.name != "train.log")
    r = run([*args, "resume=true"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "run/summary.json").read_text())["steps"] == 300


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_multirun_with_a_failing_job_finishes_the_others_and_reports_it(tmp_path, launcher):
    args = ["train", "-m", "method=softadapt", "method.window=1,5", "trainer.max_steps=2",
            "trainer.batch_size=16", "trainer.progress=false", f"hydra/launcher={launcher}"]
    r = run(args, tmp_path, timeout=300)
    assert r.returncode == 1
    [sweep] = list((tmp_path / "runs" / "multirun").iterdir())
    failed = json.loads((sweep / "0_mnist_softadapt_s0" / "failed.json").read_text())
    assert failed["error"] == "method.window must be >= 2, got 1"
    assert (sweep / "1_mnist_softadapt_s0" / "summary.json").is_file()
    assert "1 job(s) finished, 1 failed" in r.stderr
