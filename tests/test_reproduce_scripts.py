"""scripts/reproduce_lib.sh and the reproduce scripts with a fake ``mtbench`` (no training): which runs a rerun
resumes, which it trains afresh, and that an interrupted stage stops the script."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SEP = "\x1f"

# The fake records each call (arguments separated by SEP) and makes what a run leaves: summary.json in each
# job folder of a multirun (<n>_<model>_<method>_s<seed>) or in hydra.run.dir. Call number FAKE_STOP_AT is
# "interrupted": its (first) run gets a checkpoint and no summary, and the fake exits FAKE_RC.
FAKE = r"""#!/usr/bin/env bash
set -eu
printf '%s\x1f' "$@" >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
n=$(wc -l < "$FAKE_LOG")
cmd=$1; shift
multi=0 seeds="" method="" sweep="" rundir=""
for a in "$@"; do
  case $a in
    -m) multi=1 ;; seed=*) seeds=${a#seed=} ;; method=*) method=${a#method=} ;;
    hydra.sweep.dir=*) sweep=${a#*=} ;; hydra.run.dir=*) rundir=${a#*=} ;;
  esac
done
[ "$cmd" = train ] || exit 0
dirs=()
if [ $multi = 1 ]; then
  i=0; for s in ${seeds//,/ }; do dirs+=("$sweep/${i}_${FAKE_MODEL:-mnist}_${method}_s$s"); i=$((i + 1)); done
else
  dirs=("$rundir")
fi
if [ "$n" = "${FAKE_STOP_AT:-0}" ]; then
  mkdir -p "${dirs[0]}/checkpoints"; echo ckpt > "${dirs[0]}/checkpoints/last.pt"; exit "${FAKE_RC:-143}"
fi
for d in "${dirs[@]}"; do mkdir -p "$d"; echo '{}' > "$d/summary.json"; done
"""

DRIVER = """set -euo pipefail
SEEDS={seeds}; MT={mt}; COMMON=(trainer.progress=false)
source {lib}
stage "$1" mnist fixed experiment=mnist_unbalanced
stage "$1" mnist mtadam experiment=mnist_unbalanced
echo all stages done
"""


@pytest.fixture
def fake(tmp_path):
    mt = tmp_path / "fake_mtbench"
    mt.write_text(FAKE)
    mt.chmod(0o755)
    return mt


def calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.log"
    return [line.split(SEP)[:-1] for line in log.read_text().splitlines()] if log.exists() else []


def run_driver(tmp_path: Path, fake: Path, sweep: Path, seeds: str = "0,1,2", **env: str):
    driver = tmp_path / "driver.sh"
    driver.write_text(DRIVER.format(seeds=seeds, mt=fake, lib=SCRIPTS / "reproduce_lib.sh"))
    return subprocess.run(["bash", str(driver), str(sweep)], check=False, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "FAKE_LOG": str(tmp_path / "calls.log"), **env})


def job(sweep: Path, name: str, *files: str, age: float = 0.0) -> Path:
    d = sweep / name
    for f in (".hydra/config.yaml", *files):
        (d / f).parent.mkdir(parents=True, exist_ok=True)
        (d / f).write_text("x")
        t = time.time() - age
        os.utime(d / f, (t, t))
    return d


def test_a_fresh_folder_is_one_multirun_per_method(tmp_path, fake):
    sweep = tmp_path / "sweep"
    r = run_driver(tmp_path, fake, sweep)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [
        ["train", "-m", "experiment=mnist_unbalanced", f"method={m}", "seed=0,1,2", "trainer.progress=false",
         f"hydra.sweep.dir={sweep}"] for m in ("fixed", "mtadam")]
    assert "all stages done" in r.stdout
    assert run_driver(tmp_path, fake, sweep).returncode == 0  # everything finished: a rerun trains nothing
    assert len(calls(tmp_path)) == 2


def test_a_rerun_resumes_unfinished_runs_and_multiruns_only_the_missing_seeds(tmp_path, fake):
    sweep = tmp_path / "sweep"
    job(sweep, "0_mnist_fixed_s0", "checkpoints/last.pt", "summary.json")  # finished
    job(sweep, "1_mnist_fixed_s1", "checkpoints/last.pt", age=100)  # unfinished, an older attempt
    newest = job(sweep, "4_mnist_fixed_s1", "checkpoints/last.pt", "failed.json")  # unfinished, newest
    job(sweep, "2_mnist_fixed_s2", "metrics.jsonl")  # killed before its first checkpoint: not resumable
    job(sweep, "0_mnist_fixed_s22", "checkpoints/last.pt")  # seed 22, not seed 2
    job(sweep, "0_mnist_mtadam_s0", "summary.json")
    job(sweep, "3_mnist_mtadam_s2", "checkpoints/last.pt")
    r = run_driver(tmp_path, fake, sweep)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [
        ["train", "experiment=mnist_unbalanced", "method=fixed", "seed=1", "trainer.progress=false", "resume=true",
         f"hydra.run.dir={newest}"],
        ["train", "-m", "experiment=mnist_unbalanced", "method=fixed", "seed=2", "trainer.progress=false",
         f"hydra.sweep.dir={sweep}"],
        ["train", "experiment=mnist_unbalanced", "method=mtadam", "seed=2", "trainer.progress=false",
         "resume=true", f"hydra.run.dir={sweep / '3_mnist_mtadam_s2'}"],
        ["train", "-m", "experiment=mnist_unbalanced", "method=mtadam", "seed=1", "trainer.progress=false",
         f"hydra.sweep.dir={sweep}"],
    ]


@pytest.mark.parametrize("stop_at", [1, 2])  # the resume (call 1) or the multirun (call 2) is interrupted
@pytest.mark.parametrize("rc", [130, 143])
def test_an_interrupted_stage_stops_the_script_and_a_rerun_resumes_it(tmp_path, fake, stop_at, rc):
    sweep = tmp_path / "sweep"
    job(sweep, "0_mnist_fixed_s0", "checkpoints/last.pt")
    r = run_driver(tmp_path, fake, sweep, seeds="0,1", FAKE_STOP_AT=str(stop_at), FAKE_RC=str(rc))
    assert r.returncode == rc
    assert "all stages done" not in r.stdout and "interrupted" in r.stderr
    assert len(calls(tmp_path)) == stop_at  # nothing after the interrupted command
    r = run_driver(tmp_path, fake, sweep, seeds="0,1")
    assert r.returncode == 0, r.stderr
    rerun = calls(tmp_path)[stop_at:]
    interrupted = sweep / ("0_mnist_fixed_s0" if stop_at == 1 else "0_mnist_fixed_s1")  # the resume; the multirun
    assert rerun[0][-2:] == ["resume=true", f"hydra.run.dir={interrupted}"]
    assert all("method=mtadam" not in c or "-m" in c for c in rerun)
    assert "all stages done" in r.stdout


def test_a_failed_stage_stops_the_script(tmp_path, fake):
    r = run_driver(tmp_path, fake, tmp_path / "sweep", FAKE_STOP_AT="1", FAKE_RC="1")
    assert r.returncode == 1 and "all stages done" not in r.stdout and len(calls(tmp_path)) == 1


def _copy_scripts(tmp_path: Path, *names: str) -> Path:
    """The scripts in tmp_path/scripts, so that they cd to tmp_path and write results/ there."""
    (tmp_path / "scripts").mkdir()
    for name in names:
        shutil.copy(SCRIPTS / name, tmp_path / "scripts" / name)
    return tmp_path / "scripts"


def test_reproduce_mnist_stops_at_an_interrupt_and_resumes_when_rerun(tmp_path, fake):
    scripts = _copy_scripts(tmp_path, "reproduce_mnist.sh", "reproduce_lib.sh")
    env = {**os.environ, "MTBENCH": str(fake), "RUN_ROOT": str(tmp_path / "runs"), "SKIP_TUNE": "1",
           "FAKE_LOG": str(tmp_path / "calls.log")}
    cmd = ["bash", str(scripts / "reproduce_mnist.sh"), "unused", "0,1", "mnist5k", "uniform"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30, env={**env, "FAKE_STOP_AT": "2"})
    assert r.returncode == 143 and len(calls(tmp_path)) == 2  # fixed done, softadapt interrupted: stopped
    assert not (tmp_path / "results").exists()
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    rerun = calls(tmp_path)[2:]
    unbalanced = tmp_path / "runs" / "mnist5k_uniform" / "unbalanced"
    assert rerun[0][-2:] == ["resume=true", f"hydra.run.dir={unbalanced / '0_mnist_softadapt_s0'}"]
    assert rerun[1][:2] == ["train", "-m"] and "method=softadapt" in rerun[1] and "seed=1" in rerun[1]
    assert [c[0] for c in rerun].count("report") == 1 and len([c for c in rerun if "-m" in c]) == 5
