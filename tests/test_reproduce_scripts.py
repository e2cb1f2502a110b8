"""scripts/reproduce_lib.sh and the reproduce scripts with a fake ``mtbench`` (no training): which runs a rerun
resumes, which it trains afresh, and that an interrupted stage stops the script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
REPO = SCRIPTS.parent
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
i=0
for s in ${seeds//,/ }; do  # a summary.json that scripts/record_run.py reads (acc differs per method and seed)
  d=${dirs[$i]}; i=$((i + 1)); mkdir -p "$d"
  printf '{"model": "%s", "method": "%s", "data": "mnist5k", "seed": %s, "metrics": {"acc": 0.%s%s}, "primary_metric": "acc", "higher_is_better": true, "wall_time_s": 1.5, "steps": 4, "device": "cpu", "versions": {"torch": "2.0"}, "command": "mtbench train %s", "overrides": []}\n' \
    "${FAKE_MODEL:-mnist}" "$method" "$s" "${#method}" "$s" "$*" > "$d/summary.json"
done
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


RECORDING = ("reproduce_mnist.sh", "reproduce_lib.sh", "record_run.py", "make_tables.py")


def test_reproduce_mnist_stops_at_an_interrupt_and_resumes_when_rerun(tmp_path, fake):
    scripts = _copy_scripts(tmp_path, *RECORDING)
    env = {**os.environ, "MTBENCH": str(fake), "RUN_ROOT": str(tmp_path / "runs"), "SKIP_TUNE": "1",
           "FAKE_LOG": str(tmp_path / "calls.log"), "PYTHON": sys.executable}
    cmd = ["bash", str(scripts / "reproduce_mnist.sh"), "unused", "0,1", "mnist5k", "uniform"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120,
                       env={**env, "FAKE_STOP_AT": "2"})
    assert r.returncode == 143 and len(calls(tmp_path)) == 2  # fixed done, softadapt interrupted: stopped
    out = tmp_path / "results" / "mnist" / "mnist5k_uniform"
    assert sorted(p.name for p in out.iterdir()) == ["per_seed.csv"]  # fixed's rows are kept; no table yet
    assert [line.split(",")[:2] for line in (out / "per_seed.csv").read_text().splitlines()[1:]] == [
        ["fixed", "0"], ["fixed", "1"]]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    rerun = calls(tmp_path)[2:]
    unbalanced = tmp_path / "runs" / "mnist5k_uniform" / "unbalanced"
    assert rerun[0][-2:] == ["resume=true", f"hydra.run.dir={unbalanced / '0_mnist_softadapt_s0'}"]
    assert rerun[1][:2] == ["train", "-m"] and "method=softadapt" in rerun[1] and "seed=1" in rerun[1]
    assert [c[0] for c in rerun].count("report") == 1 and len([c for c in rerun if "-m" in c]) == 5


DRIVER_CSV = """set -euo pipefail
SEEDS={seeds}; MT={mt}; PY={py}; COMMON=(trainer.progress=false); SEED_CSV=$2
source {lib}
stage "$1/unbalanced" mnist fixed experiment=mnist_unbalanced
ARM=tuned stage "$1/tuned" mnist fixed experiment=mnist_unbalanced method.weights=baseline
echo "missing runs: $MISSING_RUNS"
"""


def run_csv_driver(tmp_path: Path, fake: Path, root: Path, csv_path: Path, seeds: str):
    driver = tmp_path / "driver_csv.sh"
    driver.write_text(DRIVER_CSV.format(seeds=seeds, mt=fake, py=sys.executable, lib=SCRIPTS / "reproduce_lib.sh"))
    return subprocess.run(["bash", str(driver), str(root), str(csv_path)], check=False, capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ, "FAKE_LOG": str(tmp_path / "calls.log")})


def seeds_trained(done: list[list[str]]) -> list[str]:
    """Per train call: the multirun's seeds, with '+tuned' for the tuned stage."""
    return [next(a for a in c if a.startswith("seed=")) + ("+tuned" if "method.weights=baseline" in c else "")
            for c in done if c[:2] == ["train", "-m"]]


def rows(csv_path: Path) -> list[list[str]]:
    return [line.split(",")[:2] for line in csv_path.read_text().splitlines()[1:]]


def test_stages_append_each_finished_run_and_skip_the_recorded_ones(tmp_path, fake):
    csv_path = tmp_path / "results" / "per_seed.csv"
    first = tmp_path / "machine1"
    r = run_csv_driver(tmp_path, fake, first, csv_path, "0,1")
    assert r.returncode == 0, r.stderr
    assert seeds_trained(calls(tmp_path)) == ["seed=0,1", "seed=0,1+tuned"] and len(calls(tmp_path)) == 2
    assert rows(csv_path) == [["fixed", "0"], ["fixed", "1"], ["tuned", "0"], ["tuned", "1"]]
    assert "missing runs: 0" in r.stdout
    assert re.search(r'(^|[=\[,\s"])/', csv_path.read_text()) is None  # no absolute path: commands made relative
    recorded = csv_path.read_text()

    r = run_csv_driver(tmp_path, fake, first, csv_path, "0,1")  # everything recorded: nothing runs or is read
    assert r.returncode == 0 and len(calls(tmp_path)) == 2 and "recorded" not in r.stdout
    assert csv_path.read_text() == recorded

    # a new machine (no runs) with one more seed: only seed 2 trains, its rows are appended, the others kept
    r = run_csv_driver(tmp_path, fake, tmp_path / "machine2", csv_path, "0,1,2")
    assert r.returncode == 0, r.stderr
    assert seeds_trained(calls(tmp_path)[2:]) == ["seed=2", "seed=2+tuned"] and len(calls(tmp_path)) == 4
    assert csv_path.read_text().startswith(recorded)
    assert rows(csv_path)[4:] == [["fixed", "2"], ["tuned", "2"]]
    assert "missing runs: 1" in r.stdout  # seeds 0 and 1 are only in the CSV: the curves cannot be redrawn

    # runs finished but never recorded (the CSV lost, or a stop between the run and its row): recorded, not rerun
    csv_path.unlink()
    r = run_csv_driver(tmp_path, fake, first, csv_path, "0,1")
    assert r.returncode == 0, r.stderr
    assert len(calls(tmp_path)) == 4  # no call: recorded from the runs there
    assert rows(csv_path) == [["fixed", "0"], ["fixed", "1"], ["tuned", "0"], ["tuned", "1"]]


def test_reproduce_mnist_restores_the_published_tuned_weights_and_tables_from_the_csv(tmp_path, fake):
    scripts = _copy_scripts(tmp_path, *RECORDING)
    out = tmp_path / "results" / "mnist" / "mnist5k_uniform"
    out.mkdir(parents=True)
    (out / "hyperband_baseline.yaml").write_text(
        "model: mnist\ndata: mnist5k\nweights: {term_0: 1.0}\nbudget:\n  min_resource: 90\n  max_resource: 810\n")
    env = {**os.environ, "MTBENCH": str(fake), "RUN_ROOT": str(tmp_path / "runs"), "PYTHON": sys.executable,
           "FAKE_LOG": str(tmp_path / "calls.log")}
    cmd = ["bash", str(scripts / "reproduce_mnist.sh"), "unused", "0", "mnist5k", "uniform"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=200, env=env)
    assert r.returncode == 0, r.stderr
    done = calls(tmp_path)
    assert not any(c[0] == "tune" for c in done)  # the published weights, not a new tuning
    assert (tmp_path / "runs" / "mnist5k_uniform" / "baseline" / "mnist-mnist5k.yaml").is_file()
    assert all("device.threads=1" in c for c in done if c[0] == "train")  # one thread, recorded in the command
    assert [a for a, _ in rows(out / "per_seed.csv")] == [
        "fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam", "balanced", "tuned"]
    table = (out / "table.md").read_text()
    assert "### acc ↑ (primary)" in table and "tuned (fixed, Hyperband)" in table and str(tmp_path) not in table
    assert re.search(r'(^|[=\[,\s"])/', (out / "per_seed.csv").read_text()) is None
    assert [c[0] for c in done].count("report") == 1


@pytest.mark.parametrize("budget", ["budget:\n  max_resource: 600\n", ""])
def test_published_weights_of_another_step_budget_are_tuned_again(tmp_path, budget):
    """A hyperband_baseline.yaml tuned for an earlier protocol (another max_resource, or none recorded) is not
    restored: restore_baseline says why and returns 1, and the caller tunes again."""
    src = tmp_path / "hyperband_baseline.yaml"
    src.write_text("model: pix2pix\ndata: facades\nweights: {G_GAN: 1.0, G_L1: 725.7}\n" + budget)
    script = f"source {REPO / 'scripts' / 'reproduce_lib.sh'}; restore_baseline {src} {tmp_path / 'bl'} 2000"
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{src}: tuned with max_resource '{'600' if budget else 'none'}', this protocol's is 2000" in r.stderr
    assert not (tmp_path / "bl").exists()
    src.write_text(src.read_text().replace("600", "2000") if budget else src.read_text() + "  max_resource: 2000\n")
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=30)
    assert (tmp_path / "bl" / "pix2pix-facades.yaml").read_text() == src.read_text()


def test_reproduce_mnist_trains_the_new_methods_on_t10k_with_their_own_seeds(tmp_path, fake):
    scripts = _copy_scripts(tmp_path, *RECORDING)
    env = {**os.environ, "MTBENCH": str(fake), "RUN_ROOT": str(tmp_path / "runs"), "SKIP_TUNE": "1",
           "FAKE_LOG": str(tmp_path / "calls.log"), "PYTHON": sys.executable, "NEW_METHODS": "dwa mgda"}
    cmd = ["bash", str(scripts / "reproduce_mnist.sh"), "unused", "0,1,2,3", "t10k mnist5k", "uniform"]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=200, env=env)
    assert r.returncode == 0, r.stderr
    t10k = rows(tmp_path / "results" / "mnist" / "t10k_uniform" / "per_seed.csv")
    assert [s for a, s in t10k if a == "mtadam"] == ["0", "1", "2", "3"]  # the papers' methods: every seed
    assert [s for a, s in t10k if a == "dwa"] == [s for a, s in t10k if a == "mgda"] == ["0", "1", "2"]
    mnist5k = rows(tmp_path / "results" / "mnist" / "mnist5k_uniform" / "per_seed.csv")
    assert not any(a in ("dwa", "mgda") for a, _ in mnist5k)  # mnist5k keeps the papers' methods only


def test_published_tuned_weights_hold_no_absolute_path(tmp_path):
    """publish_baseline: the tune run's baseline file as results/.../hyperband_baseline.yaml, with the repository
    root cut from its paths and DATA_ROOT written as given (the scripts resolve it for the data layouts)."""
    (tmp_path / "data").mkdir()
    src = tmp_path / "bl.yaml"
    src.write_text(f"study:\n  storage: {tmp_path}/runs/tune.journal\n"
                   f"command: mtbench tune data.eval_roots=[{tmp_path / 'data'}/Set5]\n")
    script = (f"DATA_ROOT=data; source {REPO / 'scripts' / 'reproduce_lib.sh'}; "
              f"publish_baseline {src} {tmp_path / 'out.yaml'}")
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True, timeout=30)
    assert (tmp_path / "out.yaml").read_text() == (
        "study:\n  storage: runs/tune.journal\ncommand: mtbench tune data.eval_roots=[data/Set5]\n")
