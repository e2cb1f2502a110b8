"""mtbench tune under faults: interrupts, failed and orphaned trials, shared output dirs, bad storages and targets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import compose_cfg
from omegaconf import OmegaConf

from mtbench.errors import RunInterrupted
from mtbench.tune import make_storage, tune, worker_identity, worker_is_dead
from mtbench.utils import ConfigError

TINY = ["data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10",
        "trainer.eval_batch_size=500", "device=cpu"]
ONE_RUNG = ["tune.min_resource=2", "tune.max_resource=2", "tune.final_run=false"]
DEFAULTS = {f"term_{c}": 1.0 for c in range(1, 10)}  # MNIST's tuned terms (term_0 is the fixed reference)
STUDY = "mnist-mnist5k"


def _cfg(tmp_path: Path, *extra: str, journal: str = "s.journal"):
    return compose_cfg(["tune.n_trials=1", *ONE_RUNG, f"tune.storage={tmp_path / journal}",
                        f"baselines_dir={tmp_path / 'bl'}", *TINY, *extra], config_name="tune")


def _study(tmp_path: Path, journal: str = "s.journal"):
    import optuna

    return optuna.create_study(study_name=STUDY, storage=make_storage(tmp_path / journal), direction="maximize",
                               load_if_exists=True)


def _fail_one(study, params: dict[str, float], user_attrs: dict | None = None) -> None:
    """One enqueued trial with these params that fails (an error in the objective)."""
    study.enqueue_trial(params, user_attrs=user_attrs)

    def boom(trial):
        for name, value in params.items():
            trial.suggest_float(name, value / 100, value * 100, log=True)
        raise RuntimeError("boom")

    study.optimize(boom, n_trials=1, catch=(RuntimeError,))


def _params(trial) -> dict[str, float]:
    return {k: trial.params[k] for k in sorted(trial.params)}


# -- item 10: interrupts and retries ----------------------------------------------------------------------------

def _tune_cmd(tmp_path: Path) -> list[str]:
    return [sys.executable, "-m", "mtbench.cli", "tune", "tune.n_trials=1", "tune.min_resource=100",
            "tune.max_resource=100", "tune.final_run=false", "trainer.log_every=2", f"tune.storage={tmp_path / 's.j'}",
            f"baselines_dir={tmp_path / 'bl'}", f"hydra.run.dir={tmp_path / 'tune'}", *TINY]


@pytest.mark.slow  # two mtbench processes: ~40 s on 2 busy cores
def test_sigterm_during_a_trial_is_one_line_and_a_rerun_completes_the_default_weights(tmp_path):
    """SIGTERM while the enqueued defaults train: exit 143, one line with how to continue; the rerun retries them."""
    import optuna

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(_tune_cmd(tmp_path), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "tune" / "trial_0000" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted by signal 15 at step ")
    assert "rerun the same `mtbench tune " in line and str(tmp_path / "s.j") in line and STUDY in line
    assert not (tmp_path / "bl").exists()
    storage = make_storage(tmp_path / "s.j")
    [first] = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert first.state.name == "FAIL" and first.user_attrs["interrupted"]["signal"] == 15

    r = subprocess.run(_tune_cmd(tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
                       check=False)
    assert r.returncode == 0, r.stderr
    trials = optuna.load_study(study_name=STUDY, storage=make_storage(tmp_path / "s.j")).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert _params(trials[1]) == DEFAULTS and trials[1].user_attrs["retry_of"] == 0
    data = yaml.safe_load((tmp_path / "bl" / f"{STUDY}.yaml").read_text())
    assert data["best_trial"] == 1 and data["weights"] == {"term_0": 1.0, **DEFAULTS}


def test_a_failed_enqueued_trial_is_retried_once(tmp_path):
    """The defaults failed (not by an interrupt): the next run retries them; a failed retry is not retried again."""
    study = _study(tmp_path)
    _fail_one(study, DEFAULTS)
    other = {**DEFAULTS, "term_1": 3.0}
    _fail_one(study, other)
    record = tune(_cfg(tmp_path, "tune.n_trials=2"), out=tmp_path / "o1")
    trials = _study(tmp_path).trials
    assert [(t.state.name, t.user_attrs.get("retry_of")) for t in trials[2:]] == [("COMPLETE", 0), ("COMPLETE", 1)]
    assert _params(trials[2]) == DEFAULTS and _params(trials[3]) == other
    assert record["weights"]["term_1"] in (1.0, 3.0)

    study = _study(tmp_path, "b.journal")
    _fail_one(study, DEFAULTS)
    _fail_one(study, DEFAULTS, user_attrs={"retry_of": 0})  # its retry failed too: no third attempt
    tune(_cfg(tmp_path, f"baselines_dir={tmp_path / 'bl2'}", journal="b.journal"), out=tmp_path / "o2")
    trials = _study(tmp_path, "b.journal").trials
    assert len(trials) == 3 and _params(trials[2]) != DEFAULTS and "retry_of" not in trials[2].user_attrs


def test_enqueue_defaults_when_no_trial_has_them_even_in_an_old_study(tmp_path):
    """A study made with enqueue_defaults=false (or other defaults) gets them on the next run with it on."""
    tune(_cfg(tmp_path, "tune.enqueue_defaults=false"), out=tmp_path / "o1")
    tune(_cfg(tmp_path, "tune.overwrite=true"), out=tmp_path / "o2")
    trials = _study(tmp_path).trials
    assert _params(trials[0]) != DEFAULTS and _params(trials[1]) == DEFAULTS
    tune(_cfg(tmp_path, "tune.overwrite=true"), out=tmp_path / "o3")  # done once: not enqueued again
    trials = _study(tmp_path).trials
    assert len(trials) == 3 and _params(trials[2]) != DEFAULTS


def _orphan(tmp_path: Path, pid: int) -> None:
    """A RUNNING trial with the default weights, started by process ``pid`` on this host (which never ends it)."""
    study = _study(tmp_path)
    study.enqueue_trial(DEFAULTS)
    trial = study.ask()
    for name in DEFAULTS:
        trial.suggest_float(name, 0.01, 100.0, log=True)
    trial.set_user_attr("worker", {**worker_identity(0), "pid": pid})


def test_a_running_trial_of_a_dead_worker_on_this_host_is_failed_and_retried(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _orphan(tmp_path, dead.pid)
    tune(_cfg(tmp_path), out=tmp_path / "o")
    trials = _study(tmp_path).trials
    assert trials[0].state.name == "FAIL" and "died" in trials[0].user_attrs["interrupted"]["reason"]
    assert trials[1].state.name == "COMPLETE" and _params(trials[1]) == DEFAULTS
    assert trials[1].user_attrs["retry_of"] == 0


def test_a_running_trial_of_a_live_worker_is_left_alone(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _orphan(tmp_path, live.pid)
        tune(_cfg(tmp_path), out=tmp_path / "o")
    finally:
        live.kill()
        live.wait()
    trials = _study(tmp_path).trials
    assert trials[0].state.name == "RUNNING"
    assert len(trials) == 2 and _params(trials[1]) != DEFAULTS  # the defaults are being run: not enqueued twice


def test_a_worker_is_dead_only_when_this_host_can_tell():
    me = worker_identity(0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert worker_is_dead({**me, "pid": dead.pid})
    assert not worker_is_dead({**me, "pid": os.getppid()})  # alive
    assert worker_is_dead({**me, "pid": os.getppid(), "boot": "another-boot"})  # the machine restarted since
    assert not worker_is_dead({**me, "pid": dead.pid, "host": "elsewhere"})  # cannot be checked
    assert not worker_is_dead({**me, "pid": dead.pid, "pid_ns": "pid:[1]"})  # another container's pid
    assert not worker_is_dead(None) and not worker_is_dead({"host": me["host"]})



def test_a_signal_between_trainings_is_an_interrupt_and_the_trial_is_retried(tmp_path, monkeypatch):
    """SIGTERM outside the training loop (building a trial) also ends tune as RunInterrupted with a hint."""
    import mtbench.tune as tune_module

    real_train = tune_module.train

    def train_after_a_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises here
        return real_train(*args, **kwargs)

    class Killed(Exception):
        pass

    def guard(signum, frame):  # the old code installed no handler: do not let SIGTERM end pytest
        raise Killed

    previous = signal.signal(signal.SIGTERM, guard)
    try:
        monkeypatch.setattr(tune_module, "train", train_after_a_signal)
        with pytest.raises(RunInterrupted) as info:
            tune(_cfg(tmp_path), out=tmp_path / "o1")
        assert signal.getsignal(signal.SIGTERM) is guard  # restored
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert info.value.signum == signal.SIGTERM and "rerun the same" in info.value.hint
    assert str(tmp_path / "s.journal") in info.value.hint
    monkeypatch.setattr(tune_module, "train", real_train)
    tune(_cfg(tmp_path), out=tmp_path / "o2")
    trials = _study(tmp_path).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and _params(trials[1]) == DEFAULTS


# -- item 6: output directories of concurrent workers -----------------------------------------------------------

def test_workers_started_in_the_same_second_get_their_own_run_dir():
    """The run dir ends in the worker number, after the start time (to the second)."""
    dirs = [OmegaConf.select(compose_cfg([f"tune.worker={k}"], config_name="tune"), "hydra.run.dir") for k in (0, 1)]
    assert dirs[0].endswith("_w0") and dirs[1].endswith("_w1")
    template = OmegaConf.to_container(compose_cfg([], config_name="tune").hydra.run, resolve=False)["dir"]
    assert template.endswith("/${now:%Y-%m-%d_%H-%M-%S}_w${tune.worker}")


def test_two_studies_tuned_into_one_output_dir_do_not_collide(tmp_path):
    """Same out dir (e.g. one worker number given twice): trial and final-run dirs are never shared."""
    out = tmp_path / "same"
    records = [tune(_cfg(tmp_path, "tune.final_run=true", f"baselines_dir={tmp_path / b}", journal=j), out=out)
               for j, b in (("a.journal", "bl_a"), ("b.journal", "bl_b"))]
    assert records[0]["final_run"] != records[1]["final_run"]
    for r in records:
        summary = json.loads((Path(r["final_run"]) / "summary.json").read_text())
        assert summary["final_weights"] == pytest.approx(r["weights"])
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("trial_")) == ["trial_0000", "trial_0000_2"]


# -- item 15: storages and baseline targets ------------------------------------------------------------------------

def test_storage_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=rf"tune.storage={tmp_path} is a directory; give a journal file path"):
        make_storage(tmp_path)


def _journal_with_trials(tmp_path: Path) -> Path:
    import optuna

    study = optuna.create_study(study_name="s", storage=make_storage(tmp_path / "j.journal"))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    return tmp_path / "j.journal"


@pytest.mark.parametrize("case", ["random", "cut_line_inside", "yaml", "json_not_journal", "one_line_garbage"])
def test_a_corrupt_journal_is_one_line_naming_it(tmp_path, case):
    path = tmp_path / "x.journal"
    if case == "random":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "cut_line_inside":
        lines = _journal_with_trials(tmp_path).read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join([*lines[:3], lines[3][:15] + b"\n", *lines[4:]]))
    elif case == "yaml":
        path.write_text("weights:\n  term_0: 1.0\n")
    elif case == "json_not_journal":
        path.write_text('{"a": 1}\n{"b": 2}\n')
    else:
        path.write_bytes(b"SQLite format 3\x00")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=rf"{path} is not an Optuna journal.*move it aside"):
        make_storage(path)
    assert path.read_bytes() == before  # untouched


def test_a_journal_cut_in_its_last_record_keeps_working(tmp_path):
    """A worker killed mid-write leaves half a last line: the study loads, takes new trials and reloads."""
    import optuna

    path = _journal_with_trials(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    study = optuna.load_study(study_name="s", storage=make_storage(path))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    again = optuna.load_study(study_name="s", storage=make_storage(path))
    assert [t.state.name for t in again.trials] == ["COMPLETE", "RUNNING", "COMPLETE"]
    [aside] = list(tmp_path.glob("j.journal.partial-*"))
    assert aside.read_bytes() == data[data.rfind(b"\n", 0, len(data) - 20) + 1:-20]


@pytest.mark.parametrize(("url", "message"), [
    ("foo://x/y", "tune.storage=foo://x/y: unknown database URL scheme 'foo'"),
    ("mysql://me:secret@localhost:1/db", r"tune.storage=mysql://me:\*\*\*@localhost:1/db: .*driver"),
    ("postgresql+psycopg://me:secret@127.0.0.1:1/db",  # nothing listens on port 1
     r"tune.storage=postgresql\+psycopg://me:\*\*\*@127.0.0.1:1/db: cannot open the database \(connection"),
    ("sqlite:////nonexistent/dir/x.db", "tune.storage=sqlite:////nonexistent/dir/x.db: cannot open the database"),
])
def test_a_bad_database_url_is_one_line(url, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_storage(url)
    assert "secret" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["directory", "bad_yaml", "binary", "a_list"])
def test_an_unreadable_baseline_target_is_one_line_before_any_trial(tmp_path, case, monkeypatch):
    import mtbench.tune as tune_module

    target = tmp_path / "bl" / f"{STUDY}.yaml"
    target.parent.mkdir()
    if case == "directory":
        target.mkdir()
    elif case == "bad_yaml":
        target.write_text("weights: [1, 2\n")
    elif case == "binary":
        target.write_bytes(b"\xff\xfe\x00garbage")
    else:
        target.write_text("- 1\n- 2\n")
    monkeypatch.setattr(tune_module, "train", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(ConfigError, match=rf"baseline file {target}.*(tune.overwrite=true|move it)"):
        tune(_cfg(tmp_path), out=tmp_path / "o")


def test_baselines_dir_that_is_a_file_is_one_line_before_any_trial(tmp_path, monkeypatch):
    import mtbench.tune as tune_module

    (tmp_path / "bl").write_text("not a folder")
    monkeypatch.setattr(tune_module, "train", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(ConfigError, match=rf"baselines_dir {tmp_path / 'bl'}"):
        tune(_cfg(tmp_path), out=tmp_path / "o")


def test_each_finished_trial_is_one_line_with_its_weights_value_and_the_best_so_far():
    """Issue 12 item 10: not just "trial 1: COMPLETE 0.308"."""
    import optuna
    from optuna.distributions import FloatDistribution

    from mtbench.tune import describe_trial

    dist = {"term_1": FloatDistribution(0.01, 100, log=True)}
    done = optuna.trial.create_trial(params={"term_1": 2.5}, distributions=dist, value=0.875)
    pruned = optuna.trial.create_trial(params={"term_1": 0.04}, distributions=dist,
                                       state=optuna.trial.TrialState.PRUNED, intermediate_values={50: 0.31, 150: 0.42})
    done.number, pruned.number = 0, 4
    assert describe_trial(done, 1, 20, "acc", "steps", done) == (
        "trial 1/20 (study trial 0): COMPLETE acc 0.875 | weights term_1=2.5 | best so far acc 0.875 (trial 0)")
    assert describe_trial(pruned, 2, 20, "acc", "steps", done) == (
        "trial 2/20 (study trial 4): PRUNED at 150 steps: acc 0.42 | weights term_1=0.04 | best so far acc 0.875 "
        "(trial 0)")
    assert describe_trial(pruned, 1, 3, "fid", "epochs", None).endswith("| none complete yet")
