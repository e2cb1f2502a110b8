"""Multirun bookkeeping (mtbench/sweep.py): failed.json, the end-of-sweep report, and interrupts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mtbench.sweep import SweepReport, record_failure, slurm_signal_problem

OVERRIDES = ["method=fixed", "seed=1", "trainer.max_steps=2"]


def _job(sweep: Path, name: str, *, failed: str | None = None, summary: bool = False,
         overrides: list[str] = OVERRIDES, age: float = 0.0) -> Path:
    """A job folder; ``failed``: the failed.json text; ``age``: seconds its files are back-dated."""
    d = sweep / name
    d.mkdir(parents=True)
    if failed is not None:
        (d / "failed.json").write_text(failed)
    if summary:
        (d / "summary.json").write_text(json.dumps({"model": "mnist", "method": "fixed", "metrics": {},
                                                    "overrides": overrides}))
    for f in d.iterdir():
        t = time.time() - age
        os.utime(f, (t, t))
    return d


def _failure(msg: str = "boom", overrides: list[str] = OVERRIDES) -> str:
    return json.dumps({"error": msg, "overrides": overrides, "job": 0})


def _report(sweep: Path, capsys) -> tuple[int, str]:
    """(exit status, stderr) of SweepReport at the end of a multirun into ``sweep``."""
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    try:
        SweepReport().on_multirun_end(cfg)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def test_a_failed_job_fails_the_sweep(tmp_path, capsys):
    _job(tmp_path, "0_mnist_fixed_s0", summary=True, overrides=["seed=0"])
    _job(tmp_path, "1_mnist_fixed_s1", failed=_failure("method.window must be >= 2, got 1"))
    code, err = _report(tmp_path, capsys)
    assert code == 1
    assert "1 job(s) finished, 1 failed" in err and "failed: 1_mnist_fixed_s1: method.window must be >= 2" in err


def test_a_failure_superseded_by_a_newer_summary_in_its_folder_does_not_fail_the_sweep(tmp_path, capsys):
    d = _job(tmp_path, "0_mnist_fixed_s1", failed=_failure(), age=60)  # the first attempt failed
    (d / "summary.json").write_text(json.dumps({"model": "mnist", "method": "fixed", "metrics": {}}))  # rerun
    code, err = _report(tmp_path, capsys)
    assert code == 0, err
    assert "1 job(s) finished, 0 failed" in err and "earlier failure superseded: 0_mnist_fixed_s1" in err


def test_a_failure_superseded_by_a_newer_run_of_the_same_overrides_in_another_folder(tmp_path, capsys):
    # attempt 1 ran seeds 0,1 (seed 1 was job 1 and failed); the rerun of seed 1 alone was job 0 of its multirun
    _job(tmp_path, "1_mnist_fixed_s1", failed=_failure(), age=60)
    _job(tmp_path, "0_mnist_fixed_s1", summary=True, overrides=list(reversed(OVERRIDES)))
    code, err = _report(tmp_path, capsys)
    assert code == 0, err
    assert "earlier failure superseded: 1_mnist_fixed_s1" in err


def test_a_failure_newer_than_the_summary_or_of_other_overrides_still_counts(tmp_path, capsys):
    d = _job(tmp_path, "0_mnist_fixed_s1", summary=True, age=60)
    (d / "failed.json").write_text(_failure("later failure"))  # e.g. a later resume that failed
    _job(tmp_path, "1_mnist_fixed_s2", failed=_failure(overrides=["method=fixed", "seed=2"]), age=60)
    code, err = _report(tmp_path, capsys)
    assert code == 1
    assert "2 failed" in err and "failed: 0_mnist_fixed_s1: later failure" in err and "1_mnist_fixed_s2" in err


@pytest.mark.parametrize("text", ['{"error": "cut sh', "[1, 2]", "", '{"error": 3}', "\udcff"])
def test_an_unreadable_failed_json_counts_as_failed_without_a_traceback(tmp_path, capsys, text):
    d = _job(tmp_path, "0_mnist_fixed_s0")
    (d / "failed.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    code, err = _report(tmp_path, capsys)
    assert code == 1
    assert "1 failed" in err and "failed: 0_mnist_fixed_s0: unreadable failed.json" in err
    assert "Traceback" not in err


@pytest.fixture
def job(tmp_path, monkeypatch) -> Path:
    """A multirun job's Hydra config (output dir tmp_path/job, job number 3); returns the output dir."""
    import mtbench.sweep

    hc = OmegaConf.create({"runtime": {"output_dir": str(tmp_path / "job")}, "overrides": {"task": OVERRIDES},
                           "job": {"num": 3}})
    monkeypatch.setattr(mtbench.sweep.HydraConfig, "get", staticmethod(lambda: hc))
    return tmp_path / "job"


def test_record_failure_writes_the_error_and_the_overrides(job):
    path = record_failure("bad value")
    assert path == job / "failed.json"
    assert json.loads(path.read_text()) == {"error": "bad value", "overrides": OVERRIDES, "job": 3}


def test_record_failure_is_atomic(job, monkeypatch):
    """A write that fails half-way (an I/O error, a kill) leaves the previous failed.json whole and no temp file."""
    first = record_failure("first error")
    before = first.read_text()

    def broken_disk(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_disk)
    with pytest.raises((OSError, RuntimeError)):  # RuntimeError: mtbench's DataError naming the file
        record_failure("second error")
    assert first.read_text() == before
    assert sorted(p.name for p in first.parent.iterdir()) == ["failed.json"]


def test_an_interrupt_stops_the_multirun_and_is_not_a_failure(tmp_path):
    """SIGTERM during job 0: exit 128+15, job 0 keeps its checkpoint, no failed.json, job 1 never starts."""
    args = ["train", "-m", "seed=0,1,2", "trainer.max_steps=100000", "trainer.batch_size=16", "trainer.log_every=2",
            "trainer.progress=false", "hydra.sweep.dir=sweep"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mtbench.cli", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    first = tmp_path / "sweep" / "0_mnist_fixed_s0"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (
            (first / "metrics.jsonl").is_file() and (first / "metrics.jsonl").stat().st_size > 0):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the sweep went on after SIGTERM: {sorted(p.name for p in (tmp_path / 'sweep').iterdir())}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "resume=true" in err and "Traceback" not in err
    assert (first / "checkpoints" / "last.pt").is_file() and not (first / "summary.json").exists()
    assert not list((tmp_path / "sweep").rglob("failed.json"))
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["0_mnist_fixed_s0"]


SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@pytest.mark.parametrize("limit, delay, ok", [
    (1, 50, False),   # first check may signal at 60 - 50 - 30 < 0 s: while Python imports
    (1, 1, False),    # 60 - 1 - 30 = 29 s: one second short
    (1, 0, True),     # 30 s
    (2, 60, True),    # 30 s (tests/test_slurm.py's setting)
    (2, 61, False),
    (240, 120, True),  # the preset
])
def test_slurm_signal_must_leave_a_job_30_s_after_slurms_30_s_check(limit, delay, ok):
    launcher = OmegaConf.create({"_target_": SLURM, "timeout_min": limit, "signal_delay_s": delay})
    assert (slurm_signal_problem(launcher) is None) == ok


def test_other_launchers_are_not_checked():
    local = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
             "timeout_min": 1, "signal_delay_s": 50}
    assert slurm_signal_problem(OmegaConf.create(local)) is None
    assert slurm_signal_problem(OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher."
                                                              "BasicLauncher"})) is None


def test_a_slurm_sweep_signalled_before_it_can_start_is_refused_in_one_line_before_anything_is_made(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "mtbench.cli", "train", "-m", "hydra/launcher=slurm_cluster",
                        "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=50", "seed=0,1",
                        f"hydra.sweep.dir={sweep}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: hydra.launcher.signal_delay_s=50 with hydra.launcher.timeout_min=1: Slurm may send the time-limit "
        "signal 0 s into a job (it checks every 30 s), before the job can checkpoint; keep timeout_min * 60 - "
        "signal_delay_s >= 60"]
    assert not sweep.exists()
