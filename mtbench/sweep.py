"""Multirun bookkeeping: a failed job does not stop the sweep, and the sweep ends with a report.

In a Hydra multirun (``mtbench train -m ...``), an error in one job is
recorded in that job's folder as ``failed.json`` (the one-line error, the
job's overrides, and the traceback for unexpected errors; written atomically)
and the launcher goes on with the other jobs. An interrupt (SIGINT/SIGTERM) is
not a failure: the command line exits 128 + the signal, which stops the sweep.

:class:`SweepReport`, a Hydra callback configured in conf/train.yaml, prints
at the end which jobs finished and which failed, and makes the command exit
with status 1 if any failed. A failure that a later attempt superseded does
not count: its folder has a newer ``summary.json`` (the job was resumed and
finished), or a newer ``summary.json`` elsewhere in the sweep folder has the
same overrides (the job was run again under another job number, as the
reproduce scripts do). An unreadable ``failed.json`` counts as a failure. This
works for the basic launcher and for hydra-submitit-launcher
(``hydra/launcher=submitit_local`` or ``submitit_slurm``), whose jobs run in
other processes or on other machines. Before a Slurm sweep starts, it refuses
a time limit and warning signal that could signal a job in its first 30 s
(:func:`slurm_signal_problem`).
"""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from mtbench.rundir import FAILED, SUMMARY, read_summary
from mtbench.utils import atomic_write_text


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(message: str, err: BaseException | None = None) -> Path:
    """Write failed.json into this job's output folder (atomically: never a half-written file)."""
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    payload: dict[str, Any] = {"error": message, "overrides": list(hc.overrides.task), "job": hc.job.num}
    if err is not None:
        payload["traceback"] = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    atomic_write_text(json.dumps(payload, indent=2) + "\n", out / FAILED)
    return out / FAILED


@dataclass(frozen=True)
class Failure:
    """One failed.json: its job folder, the error line, the job's overrides (None if unknown), its time."""

    job: Path
    error: str
    overrides: frozenset[str] | None
    mtime: float


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("-inf")


def _overrides_key(overrides: Any) -> frozenset[str] | None:
    """The overrides that identify a job (order and ``resume=`` aside); None unless a list of strings."""
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return None
    return frozenset(o for o in overrides if not o.startswith("resume="))


def read_failure(path: Path) -> Failure:
    """A job's failed.json; one that cannot be read is a failure with the error "unreadable failed.json"."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        return Failure(path.parent, f"unreadable {FAILED} ({type(err).__name__})", None, _mtime(path))
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return Failure(path.parent, f"unreadable {FAILED} (not an error record)", None, _mtime(path))
    return Failure(path.parent, data["error"], _overrides_key(data.get("overrides")), _mtime(path))


def _finished_runs(sweep: Path) -> list[tuple[Path, frozenset[str] | None, float]]:
    """(job folder, overrides, summary time) of every job with a summary.json in the sweep folder."""
    runs = []
    for f in sorted(sweep.glob(f"*/{SUMMARY}")):
        try:
            overrides = _overrides_key(read_summary(f.parent).get("overrides"))
        except ValueError:  # not a readable summary: it still marks the folder as finished
            overrides = None
        runs.append((f.parent, overrides, _mtime(f)))
    return runs


def superseded_by(failure: Failure, finished: list[tuple[Path, frozenset[str] | None, float]]) -> Path | None:
    """The finished job that supersedes ``failure`` (a newer summary.json of the same job), else None."""
    for job, overrides, mtime in finished:
        if mtime <= failure.mtime:
            continue
        if job == failure.job or (failure.overrides is not None and overrides == failure.overrides):
            return job
    return None


SLURM_CHECK_S = 30  # slurmctld checks time limits (and sends the --signal warning) every 30 s


def slurm_signal_problem(launcher: Any) -> str | None:
    """Why a Slurm launcher's time limit and warning signal do not fit together, else None.

    slurmctld sends SIGUSR2 at its first 30-s check from ``signal_delay_s`` + 30 s before the limit on, so a job
    may get it ``timeout_min`` * 60 - ``signal_delay_s`` - 30 s after it starts. Less than 30 s, and the signal can
    come while Python is still importing, before submitit has set its handler: the signal then ends the job
    instead of requeueing it."""
    if not str(launcher.get("_target_", "")).endswith("SlurmLauncher"):
        return None
    limit, delay = launcher.get("timeout_min"), launcher.get("signal_delay_s")
    if not isinstance(limit, (int, float)) or not isinstance(delay, (int, float)):
        return None
    earliest = limit * 60 - delay - SLURM_CHECK_S
    if earliest >= SLURM_CHECK_S:
        return None
    return (f"hydra.launcher.signal_delay_s={delay} with hydra.launcher.timeout_min={limit}: Slurm may send the "
            f"time-limit signal {max(earliest, 0):g} s into a job (it checks every {SLURM_CHECK_S} s), before the "
            f"job can checkpoint; keep timeout_min * 60 - signal_delay_s >= {2 * SLURM_CHECK_S}")


class SweepReport(Callback):
    """Before a multirun: refuse Slurm time settings that signal a job before it can start. At its end: count
    finished and failed jobs; exit 1 if any failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        why = slurm_signal_problem(config.hydra.launcher)
        if why:
            print(f"error: {why}", file=sys.stderr)
            raise SystemExit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        if not sweep.is_dir():
            return
        finished = _finished_runs(sweep)
        failed, superseded = [], []
        for f in sorted(sweep.glob(f"*/{FAILED}")):
            failure = read_failure(f)
            by = superseded_by(failure, finished)
            (failed if by is None else superseded).append((failure, by))
        note = f", {len(superseded)} earlier failure(s) superseded" if superseded else ""
        print(f"sweep {sweep}: {len(finished)} job(s) finished, {len(failed)} failed{note}", file=sys.stderr)
        for failure, _ in failed:
            print(f"  failed: {failure.job.name}: {failure.error}", file=sys.stderr)
        for failure, by in superseded:
            again = "" if by == failure.job else f" by {by.name}"
            print(f"  earlier failure superseded: {failure.job.name} (finished since{again}): {failure.error}",
                  file=sys.stderr)
        if failed:
            raise SystemExit(1)
