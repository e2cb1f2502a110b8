"""Tune workers on database storages: SQLite and a real, throwaway PostgreSQL server.

Four ``mtbench tune`` workers started in the same second on a fresh database
all run and record every trial once; a worker killed mid-trial loses nothing
(its trial is failed and retried, by the live workers' heartbeat check or a rerun).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import compose_cfg

from mtbench.tune_storage import STORAGE_ATTEMPTS, make_storage
from mtbench.utils import ConfigError

TINY = ["data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10", "trainer.eval_batch_size=500",
        "device=cpu"]
STUDY = "mnist-mnist5k"


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster of its own (initdb, pg_ctl) on a free local port; yields a function making databases."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver is missing: pip install -e '.[postgres]'")
    root = Path(tempfile.mkdtemp(prefix="mtbench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the server runs as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no postgres user to run the PostgreSQL server as")
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-U", "mtbench", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100", "start"],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        log = (root / "server.log").read_text()[-2000:] if (root / "server.log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start a PostgreSQL server: {err}\n{getattr(err, 'stderr', b'')!r}\n{log}")

    def new_database() -> str:
        name = f"study_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={port} user=mtbench dbname=postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://mtbench@127.0.0.1:{port}/{name}"

    try:
        yield new_database
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres")()


def _worker(tmp_path: Path, url: str, k: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mtbench.cli", "tune", "tune.final_run=false", f"tune.storage={url}",
           f"baselines_dir={tmp_path / 'bl'}", f"tune.worker={k}", *TINY, *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _study(url: str):
    import optuna

    return optuna.load_study(study_name=STUDY, storage=make_storage(url))


@pytest.mark.slow
def test_four_workers_started_together_on_a_fresh_database_record_every_trial_once(tmp_path, storage_url):
    from optuna.trial import TrialState

    budget = ["tune.n_trials=2", "tune.min_resource=2", "tune.max_resource=6"]
    procs = [_worker(tmp_path, storage_url, k, *budget) for k in range(4)]  # the same second, a fresh database
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    trials = _study(storage_url).trials
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    by_worker = sorted(t.user_attrs["worker"]["worker"] for t in trials)
    assert by_worker == [0, 0, 1, 1, 2, 2, 3, 3]  # each worker ran its own two trials
    assert sorted(p.name for p in (tmp_path / "bl").iterdir()) == ["mnist-mnist5k.yaml"]  # one baseline file
    record = yaml.safe_load((tmp_path / "bl" / "mnist-mnist5k.yaml").read_text())
    assert record["study"]["name"] == STUDY and 2 <= record["trials"]["total"] <= 8


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, storage_url):
    """SIGKILL one of four workers while it trains a trial: that trial ends FAIL and exactly one retry of it
    finishes (by a live worker once its heartbeat is stale, else by rerunning the killed worker's command)."""
    from optuna.trial import TrialState

    budget = ["tune.n_trials=2", "tune.min_resource=10", "tune.max_resource=90", "tune.heartbeat_interval=1",
              "tune.grace_period=2", "tune.enqueue_defaults=false"]
    procs = [_worker(tmp_path, storage_url, k, *budget) for k in range(4)]
    victim, killed = procs[0], None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.5)
        try:
            trials = _study(storage_url).trials
        except Exception:  # noqa: BLE001 - the study may not exist yet
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("worker", {}).get(
            "pid") == victim.pid and t.intermediate_values]  # it has trained and reported: mid-trial
        if running:
            victim.send_signal(signal.SIGKILL)
            killed = running[0].number
    assert killed is not None, "the victim never reached the middle of a trial"
    victim.wait(timeout=60)
    for p in procs[1:]:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    if any(t.state == TrialState.RUNNING for t in _study(storage_url).trials):  # no live worker saw it go stale
        rerun = _worker(tmp_path, storage_url, 0, *budget[:-1], "tune.n_trials=1")
        _, err = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, err[-3000:]
    trials = _study(storage_url).trials
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == trials[killed].params
    assert not any(t.state == TrialState.RUNNING for t in trials)
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed]


def test_opening_a_database_that_other_workers_are_creating_is_retried(tmp_path, monkeypatch):
    import optuna
    from sqlalchemy import exc

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) < 3:
            raise exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    make_storage(f"sqlite:///{tmp_path / 'a.db'}")
    assert len(calls) == 3

    def always(url, **kwargs):
        calls.append(url)
        raise exc.IntegrityError("INSERT", {}, Exception('duplicate key value violates unique constraint "x"'))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", always)
    with pytest.raises(ConfigError, match=r"tune.storage=sqlite:///.*b.db: cannot open the database \(duplicate"):
        make_storage(f"sqlite:///{tmp_path / 'b.db'}")
    assert len(calls) == STORAGE_ATTEMPTS

    def refused(url, **kwargs):
        calls.append(url)
        raise exc.OperationalError("connect", {}, Exception("connection refused"))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", refused)
    with pytest.raises(ConfigError, match="connection refused"):
        make_storage("postgresql+psycopg://u:secret@127.0.0.1:1/db")
    assert len(calls) == 1  # not a creation race: one line at once


def test_bad_heartbeat_settings_are_one_line(tmp_path):
    from mtbench.tune import tune

    cfg = compose_cfg(["tune.heartbeat_interval=0", f"baselines_dir={tmp_path}", *TINY], config_name="tune")
    with pytest.raises(ConfigError, match="tune.heartbeat_interval must be an integer >= 1, got 0"):
        tune(cfg, out=tmp_path / "o")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage", "ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_whose_worker_stopped_beating_is_failed_and_enqueued_again(tmp_path):
    """Optuna's stale-trial check (run by a live worker before each trial) fails it; the callback re-enqueues its
    params with retry_of, which the queue rules then never retry a second time."""
    import optuna
    from optuna.trial import TrialState

    from mtbench.tune import trials_to_retry
    from mtbench.tune_storage import Heartbeat

    ranges = {"b": (0.01, 100.0)}
    beat = Heartbeat(interval=1, grace_period=1, ranges=ranges)
    storage = make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=beat)
    study = optuna.create_study(study_name=STUDY, storage=storage)
    trial = study.ask()
    trial.suggest_float("b", 0.01, 100.0, log=True)
    storage.record_heartbeat(trial._trial_id)  # the worker beat once, then died
    time.sleep(2.5)
    optuna.storages.fail_stale_trials(study)  # what Study.optimize runs before each trial
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].system_attrs["fixed_params"] == trials[0].params
    assert trials_to_retry(trials, ranges) == []  # already retried: a rerun does not enqueue it again


def test_two_workers_claiming_the_same_waiting_trial_at_once_on_sqlite_only_one_gets_it(tmp_path):
    """SQLite has no row lock (Optuna's SELECT ... FOR UPDATE is a plain SELECT there): two workers that both read
    an enqueued trial as WAITING before either marks it RUNNING both used to run it, and the second to finish
    died on "Cannot tell a COMPLETE trial". Worker A is held between its read and its write while B claims."""
    import threading

    import optuna
    from optuna.trial import TrialState
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'race.db'}"
    a, b = make_storage(url), make_storage(url)
    study = optuna.create_study(study_name="race", storage=a)
    study.enqueue_trial({"x": 1.0})
    [waiting] = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    a_has_read, b_is_done, paused = threading.Event(), threading.Event(), []

    def hold_a_after_its_read(conn, cursor, statement, *args):  # noqa: ARG001
        if not paused and statement.lstrip().upper().startswith("SELECT") and "trials" in statement:
            paused.append(statement)
            a_has_read.set()
            b_is_done.wait(2)  # B claims now; with the lock taken at BEGIN, B waits for A instead

    claimed = {}
    event.listen(a.engine, "after_cursor_execute", hold_a_after_its_read)
    worker_a = threading.Thread(target=lambda: claimed.update(
        a=a.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)))
    worker_a.start()
    assert a_has_read.wait(30)
    claimed["b"] = b.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    b_is_done.set()
    worker_a.join(60)
    assert claimed == {"a": True, "b": False}  # A read first: A runs it; B sees RUNNING and asks for another
    assert study.trials[0].state == TrialState.RUNNING
