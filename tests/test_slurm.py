"""Sweeps on a real single-node Slurm cluster (scripts/slurm_local.sh) through hydra/launcher=slurm_cluster.

Skipped, with the reason, where Slurm and munge are not installed (``scripts/slurm_local.sh install``) or the
cluster cannot start. Slurm's accounting database is not set up, so submitit's status queries (``sacct``) fail
and it finds each job's end by its result file, as it is designed to fall back to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10", "trainer.progress=false",
        "device=cpu", "device.threads=1"]
LAUNCHER = ["hydra/launcher=slurm_cluster", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm():
    """The environment of a started local cluster (SLURM_CONF), stopped and removed at the end."""
    where = Path(tempfile.mkdtemp(prefix="mtbench-slurm-"))
    r = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "start", str(where)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop", str(where)], capture_output=True)
        shutil.rmtree(where, ignore_errors=True)
        reason = "Slurm or munge is not installed (scripts/slurm_local.sh install)" if r.returncode == 3 else \
            f"a local Slurm cluster could not start here: {r.stderr.strip()[-300:]}"
        pytest.skip(reason)
    env = {**os.environ, "SLURM_CONF": str(where / "slurm.conf"), "PYTHONUNBUFFERED": "1",
           "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"}
    try:
        probe = where / "probe.out"  # the cluster is up: can it also run a job here?
        subprocess.run(["sbatch", "--wrap", "echo ran", "-o", str(probe)], env=env, capture_output=True, timeout=60)
        deadline = time.monotonic() + 60
        while not (probe.is_file() and "ran" in probe.read_text()) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not (probe.is_file() and "ran" in probe.read_text()):
            pytest.skip(f"the local Slurm cluster started but ran no job within 60 s (logs in {where})")
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), "stop", str(where)], capture_output=True,
                       timeout=60)
        shutil.rmtree(where, ignore_errors=True)


def _slurm(env, *args: str) -> str:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60).stdout


def _jobs(env) -> list[tuple[str, str]]:
    """(job id, state) of every job in the queue."""
    return [tuple(line.split()) for line in _slurm(env, "squeue", "-h", "-o", "%i %T").splitlines() if line.strip()]


def _sweep(tmp_path: Path, env, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtbench.cli", "train", "-m", *LAUNCHER, *TINY, *overrides,
           f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _release_requeued(env, deadline: float) -> None:
    """Slurm holds a requeued job for about two minutes (BeginTime); start it now, as a free cluster would."""
    while time.monotonic() < deadline:
        pending = [j for j, state in _jobs(env) if state == "PENDING"]
        for j in pending:
            _slurm(env, "scontrol", "update", f"JobId={j}", "StartTime=now")
        if pending or not _jobs(env):
            return
        time.sleep(0.5)


def _reference(tmp_path: Path, *overrides: str) -> Path:
    """The same run, uninterrupted, on this machine without Slurm."""
    out = tmp_path / "reference"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    r = subprocess.run([sys.executable, "-m", "mtbench.cli", "train", *TINY, *overrides, f"hydra.run.dir={out}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def _assert_identical(run: Path, ref: Path) -> None:
    a = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(ref / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert a["step"] == b["step"] and a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((run / "summary.json").read_text())["metrics"] == \
        json.loads((ref / "summary.json").read_text())["metrics"]


def test_a_sweep_runs_every_job_in_its_own_run_dir_and_reports_the_failed_one(tmp_path, slurm):
    p = _sweep(tmp_path, slurm, "trainer.max_steps=6", "seed=0,1", "model.scales.low=0,2000")  # low > high fails
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 1, out[-3000:]
    sweep = tmp_path / "sweep"
    done = sorted(d.name for d in sweep.iterdir() if (d / "summary.json").is_file())
    failed = sorted(d.name for d in sweep.iterdir() if (d / "failed.json").is_file())
    assert len(done) == 2 and len(failed) == 2 and not set(done) & set(failed)
    assert f"sweep {sweep}: 2 job(s) finished, 2 failed" in out
    assert "uniform needs 0 <= low < high, got low=2000" in out
    assert all(json.loads((sweep / d / "summary.json").read_text())["steps"] == 6 for d in done)


def test_scontrol_requeue_of_a_running_job_resumes_it_bit_identical(tmp_path, slurm):
    args = ["trainer.max_steps=400", "trainer.checkpoint_every=20", "trainer.log_every=20", "seed=3"]
    p = _sweep(tmp_path, slurm, *args)
    run = tmp_path / "sweep" / "0_mnist_fixed_s3"
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "last.pt").is_file():  # it has trained and checkpointed: mid-run
        assert time.monotonic() < deadline and p.poll() is None, "the job never reached its first checkpoint"
        time.sleep(0.5)
    [(job, state)] = _jobs(slurm)
    assert state == "RUNNING"
    _slurm(slurm, "scontrol", "requeue", job)
    _release_requeued(slurm, deadline)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    log = (run / "train.log").read_text()
    assert "interrupted by signal 15" in log or "signal 15 received" in log
    assert "Slurm job restart 1: resuming the run" in log
    _assert_identical(run, _reference(tmp_path, *args))


def test_a_job_at_its_time_limit_checkpoints_is_requeued_and_resumes_bit_identical(tmp_path, slurm):
    """A 2-minute limit with SIGUSR2 60 s before it: the job is signalled while training, writes its checkpoint,
    submitit requeues it (max_num_timeout), and the requeued job resumes; as many times as it takes.

    slurmctld checks time limits every 30 s and signals at its first check from 30 s before the warning time on,
    so this signal comes 30-60 s after each start (measured: 53 s). A shorter limit (1 minute, 50 s) lets the first check signal the
    job within its first seconds: before the training loop (submitit requeues by itself and the run starts
    afresh) or, on a loaded machine, before submitit has installed its handler, when the signal kills the job
    and, with no accounting database here, the sweep waits for it forever."""
    args = ["trainer.max_steps=2500", "trainer.checkpoint_every=100", "trainer.log_every=100", "seed=4"]
    p = _sweep(tmp_path, slurm, *args, "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=60",
               "hydra.launcher.max_num_timeout=30")
    run = tmp_path / "sweep" / "0_mnist_fixed_s4"
    deadline = time.monotonic() + 1500  # unloaded: 2-4 starts; a loaded machine trains less in each
    while p.poll() is None:
        if time.monotonic() > deadline:
            log = (run / "train.log").read_text() if (run / "train.log").is_file() else "(no train.log)"
            jobs = _jobs(slurm)
            for j, _ in jobs:
                _slurm(slurm, "scancel", j)
            p.kill()
            pytest.fail(f"the sweep did not end in 1500 s; queue {jobs}; train.log ends:\n{log[-3000:]}")
        if any(state == "PENDING" for _, state in _jobs(slurm)):
            _release_requeued(slurm, deadline)
        time.sleep(1)
    out, _ = p.communicate()
    assert p.returncode == 0, out[-3000:]
    log = (run / "train.log").read_text()
    handed = re.findall(r"checkpoint written at step (\d+): handing signal 12 to the Slurm job's handler", log)
    resumed = re.findall(r"Slurm job restart (\d+): resuming the run", log)
    assert handed and resumed, log[-3000:]  # USR2 while training: checkpoint first, then submitit requeues
    froms = [int(s) for s in re.findall(r"resuming \S+ from step (\d+)", log)]
    assert sorted(set(froms)) == [int(s) for s in handed]  # each restart resumed from a step handed over
    _assert_identical(run, _reference(tmp_path, *args))
