"""Where a tune study lives: an Optuna journal file or a database (SQLite, PostgreSQL), opened safely.

Several ``mtbench tune`` workers (``tune.worker=k``) share one study through
its storage, on one machine or many (a Slurm cluster, README "Tuning on a
database"):

* **A journal file** (the default, ``runs/tune/<model>-<data>/study.journal``):
  needs only a shared file system. A file that is not a journal is one line;
  a last record cut short by a killed writer is set aside (Optuna cannot read
  past it once another record is appended).
* **A database URL** (``sqlite:///study.db``, or
  ``postgresql+psycopg://user@host/db`` with the ``postgres`` extra). Optuna
  creates the tables of a new database without a lock, so workers started
  together race and all but one used to die (``table studies already
  exists``); here the losers open it again once the winner is done. SQLite
  has no row lock, so there each transaction takes the write lock when it
  begins: two workers never claim the same enqueued trial. On a database,
  Optuna's heartbeat (``tune.heartbeat_interval``) lets the live workers fail
  and retry the trial of a worker that died on another machine; on one
  machine a rerun also finds it by its process id (mtbench.tune).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from mtbench.utils import ConfigError

log = logging.getLogger("mtbench.tune")


@dataclass
class Heartbeat:
    """Optuna's heartbeat for database storages: a worker that stops beating (killed, its machine gone) has its
    RUNNING trial failed by the next worker that starts a trial after ``grace_period`` seconds, and
    :meth:`on_stale_trial` enqueues that trial again so that a live worker (or a rerun) repeats it."""

    interval: int | None = None
    grace_period: int | None = None
    #: the search space: a stale trial is retried only when its params lie in it (set once it is known)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def on_stale_trial(self, study, trial) -> None:
        from mtbench.tune import RETRY_OF

        params = dict(trial.params)
        if self.ranges and params.keys() == self.ranges.keys():
            study.enqueue_trial({n: float(params[n]) for n in self.ranges},
                                user_attrs={RETRY_OF: trial.number, STALE: True})
            log.warning("trial %d stopped beating (its worker died or lost the database): marked FAIL and "
                        "enqueued again", trial.number)


#: user attribute of a retry of a trial whose worker stopped beating
STALE = "retry_of_stale"


def make_storage(spec: str | Path, key: str = "tune.storage", heartbeat: Heartbeat | None = None):
    """A database URL (``sqlite:///...``, ``postgresql+psycopg://...``) or a journal file path, checked first.

    Anything Optuna cannot open is one :class:`ConfigError` line naming ``key``,
    the file or the URL (password hidden) and what to do. Workers that open a
    new database at the same moment all succeed (the race to create its
    tables is retried). ``heartbeat`` applies to database storages only.
    """
    spec = str(spec)
    if "://" in spec:
        return _database_storage(spec, key, heartbeat)
    return _journal_storage(Path(spec), key)


def hide_password(url: str) -> str:
    """``scheme://user:***@host/db``: a URL as it may be printed or written to a baseline file."""
    return re.sub(r"^([^:/]+://[^:/@]*:)[^@]*@", r"\1***@", url)


def first_line(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


#: what a database says when another worker created the same schema, rows or study a moment earlier
_CREATION_RACE = re.compile(r"already exists|duplicate key|unique constraint|UNIQUE constraint failed|"
                            r"database is locked|deadlock detected", re.IGNORECASE)
#: attempts at opening a database storage while other workers create its schema
STORAGE_ATTEMPTS = 8


def _database_storage(url: str, key: str, heartbeat: Heartbeat | None):
    import optuna
    from sqlalchemy import exc

    shown, scheme = hide_password(url), url.split("://", 1)[0]
    kwargs = {"connect_args": {"timeout": 60}} if scheme.startswith("sqlite") else {}
    beats = {}
    if heartbeat is not None and heartbeat.interval is not None:
        beats = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace_period,
                 "heartbeat_stale_trial_callback": heartbeat.on_stale_trial}
    rng = random.Random()  # not the global RNG: workers started together would draw the same delays
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, **beats)
            if scheme.startswith("sqlite"):
                _lock_at_begin(storage.engine)
            return storage
        except (exc.NoSuchModuleError, exc.ArgumentError):
            raise ConfigError(f"{key}={shown}: unknown database URL scheme {scheme!r}; give a journal file path or "
                              f"a URL such as sqlite:///study.db or postgresql+psycopg://user@host/db") from None
        except ImportError:
            raise ConfigError(f"{key}={shown}: the Python database driver for {scheme!r} is not installed; install "
                              f"it (for postgresql: pip install -e '.[postgres]') or give a journal file "
                              f"path") from None
        except (exc.SQLAlchemyError, ValueError) as err:
            # Optuna creates the tables, then its version row, with no lock: N workers opening a new database
            # together race, and all but one fail with an error of the kind above. The schema is whole once the
            # winner is done: open it again.
            if attempt < STORAGE_ATTEMPTS and _CREATION_RACE.search(str(err)):
                log.info("%s: another worker is creating the study's tables (%s); trying again", shown,
                         first_line(err))
                time.sleep(rng.uniform(0.05, 0.25) * attempt)
                continue
            raise ConfigError(f"{key}={shown}: cannot open the database ({first_line(err)}); check the URL, the "
                              f"server and the permissions, or give a journal file path") from None
    raise AssertionError("unreachable")


def _lock_at_begin(engine) -> None:
    """Make every SQLite transaction of ``engine`` take the database's write lock when it begins.

    Optuna claims an enqueued trial by reading it (``SELECT ... FOR UPDATE``),
    checking that it is WAITING and marking it RUNNING. SQLite has no row lock,
    and Python's driver begins a transaction only at the first write, so two
    workers could both read WAITING and both run the trial; the second to
    finish then died on "Cannot tell a COMPLETE trial". ``BEGIN IMMEDIATE``
    makes the read and the write one step, as the row lock does on
    PostgreSQL; a worker waits (up to the 60 s busy timeout) for another's.
    This is SQLAlchemy's documented recipe for SQLite transactions.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _driver_does_not_begin(dbapi_connection, connection_record) -> None:  # noqa: ARG001
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # the connections Optuna opened to create the schema: later ones get the listeners


def _journal_storage(path: Path, key: str):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if path.is_dir():
        raise ConfigError(f"{key}={path} is a directory; give a journal file path or a database URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_journal(path)
        return JournalStorage(JournalFileBackend(str(path)))
    except ConfigError:
        raise
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot use the journal file ({err.strerror or err}); give a writable "
                          f"journal file path or a database URL") from None
    except (ValueError, KeyError, TypeError, IndexError, AssertionError) as err:  # Optuna could not replay it
        raise ConfigError(_not_a_journal(path, f"{type(err).__name__}: {first_line(err)}")) from None


#: how Optuna's JournalStorage starts every record (one JSON object a line)
JOURNAL_RECORD = b'{"op_code":'


def _not_a_journal(path: Path, why: str) -> str:
    return (f"{path} is not an Optuna journal that tune can read ({why[:200]}); move it aside to start a new "
            f"study, or point tune.storage at the study's journal")


def check_journal(path: Path) -> None:
    """Refuse a file that is not an Optuna journal; set aside a last record cut short by a killed writer.

    Optuna reads past a last line without its newline (another worker may be
    writing it) but the next record appended to the file would be glued to it,
    and the journal could no longer be read. Under Optuna's own journal lock
    (so that no live worker is mid-write) such a tail is moved to
    ``<journal>.partial-<time>`` and cut off; every complete record stays.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    *records, tail = data.split(b"\n")
    for number, line in enumerate(records, 1):
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ConfigError(_not_a_journal(path, f"line {number} is not JSON: {err}")) from None
        if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
            raise ConfigError(_not_a_journal(path, f"line {number} is not a journal record"))
    if not tail:
        return
    if not (tail.startswith(JOURNAL_RECORD) or JOURNAL_RECORD.startswith(tail)):
        raise ConfigError(_not_a_journal(path, f"line {len(records) + 1} is not a journal record"))
    _set_aside_partial_record(path)


def _set_aside_partial_record(path: Path) -> None:
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))  # the lock JournalFileBackend takes to append
    lock.acquire()
    try:
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        if cut == len(data):  # a live worker was writing it: it is whole now
            return
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = fresh_path(path.with_name(f"{path.name}.partial-{stamp}"))
        aside.write_bytes(data[cut:])
        os.truncate(path, cut)
    finally:
        lock.release()
    log.warning("study journal %s ended in a record cut short (a worker stopped while writing it): moved its "
                "%d bytes to %s; every complete record is kept", path, len(data) - cut, aside)


def fresh_path(base: Path, make_dir: bool = False) -> Path:
    """``base``, else ``base_2``, ``base_3``...: the first that did not exist, created here (atomically, so two
    processes never get the same one)."""
    for k in itertools.count(1):
        cand = base if k == 1 else base.with_name(f"{base.name}_{k}")
        try:
            if make_dir:
                cand.mkdir(parents=True)
            else:
                os.close(os.open(cand, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return cand
        except FileExistsError:
            continue
    raise AssertionError("unreachable")
