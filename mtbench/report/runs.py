"""Finding and reading run directories for ``mtbench report``.

A run directory is what ``mtbench train`` (or ``mtbench trivial``) writes: a
finished run has ``summary.json``; an unfinished one (interrupted, crashed or
still running) has ``metrics.jsonl`` or ``checkpoints/last.pt`` but no summary.
:func:`find_runs` finds both kinds at any depth below the given paths,
:func:`load_run` reads a finished run into a :class:`Run`, and
:func:`unfinished_run` summarises an unfinished one.

Everything read from a run directory is untrusted data: JSON is parsed with
:mod:`json`, YAML with ``yaml.safe_load``, nothing is instantiated or executed,
the values used are type-checked, and a malformed ``summary.json`` or
``.hydra/overrides.yaml`` is one ``ValueError`` line naming the file.
Unreadable lines of ``metrics.jsonl`` (a run stopped mid-write leaves a
truncated last line) are skipped and counted, never an error.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtbench.rundir import CHECKPOINT, METRICS, RUN_CONFIG, SUMMARY, read_summary  # the run-directory contract

PathLike = str | os.PathLike
# data choices that load a folder: the dataset is named by the experiment (pix2pix_people_contours -> people_contours)
FOLDER_LOADERS = ("facades", "cyclegan_unaligned", "sr_folder")


class RunDirs(list):
    """The finished run directories (a list of Paths); ``.unfinished`` holds the unfinished ones."""

    def __init__(self, finished: Iterable[Path] = (), unfinished: Iterable[Path] = ()) -> None:
        super().__init__(finished)
        self.unfinished: list[Path] = list(unfinished)


@dataclass
class Series:
    """One logged scalar over the steps (sorted by step; a re-logged step keeps its last value)."""

    steps: list[int]
    values: list[float]


@dataclass
class Run:
    """One finished run: what the report uses of its ``summary.json`` and ``metrics.jsonl``.

    ``metrics``: the final metrics in logged order (a value that is not a number is None:
    shown as missing); ``series``: every logged scalar (``loss/<term>``, ``weight/<term>``,
    ``eval/<metric>``, ...); ``terms``: the loss-term names (those with a logged weight, else
    the final weights'); ``overrides``: the command-line overrides (the summary's, else
    ``.hydra/overrides.yaml``); ``bad_lines``: unreadable lines of ``metrics.jsonl`` skipped.
    ``data`` names the dataset (:func:`data_name`: ``people_contours``, ``mnist_t10k``); ``loader``
    is the run's ``data`` config choice (``facades``, ``mnist``), which a tune baseline file names.
    """

    run_dir: Path
    model: str
    data: str
    method: str
    loader: str | None = None
    seed: Any = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    primary_metric: str | None = None
    higher_is_better: bool = True
    wall_time_s: float | None = None
    final_weights: dict[str, float] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=dict)
    terms: list[str] = field(default_factory=list)
    bad_lines: int = 0


@dataclass
class UnfinishedRun:
    """A run without ``summary.json``: its last logged step (None: none) and whether it has a checkpoint."""

    run_dir: Path
    last_logged_step: int | None
    checkpoint: bool


def _as_list(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    return list(paths)


def _scan(root: Path) -> tuple[list[Path], list[Path]]:
    finished, unfinished = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if SUMMARY in filenames:
            finished.append(d)
            dirnames[:] = []
        elif METRICS in filenames or (d / CHECKPOINT).is_file():
            unfinished.append(d)
            dirnames[:] = []
        else:  # .hydra, .git, .venv: never hold runs
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
    return finished, unfinished


def find_runs(paths: PathLike | Iterable[PathLike]) -> RunDirs:
    """The run directories in or under ``paths`` (run dirs, multirun folders, ``runs/``, at any depth).

    Returns the finished runs (those with ``summary.json``), sorted by path, as a list
    whose ``unfinished`` attribute lists the runs that have a checkpoint or a
    ``metrics.jsonl`` but no ``summary.json`` (interrupted, crashed or still running).
    A path that does not exist, or holds no run at all, raises ``ValueError`` naming it.
    """
    given = _as_list(paths)
    if not given:
        raise ValueError("no run directory given")
    finished: dict[Path, Path] = {}
    unfinished: dict[Path, Path] = {}
    for raw in given:
        p = Path(raw).expanduser()
        if p.name == SUMMARY and p.is_file():
            p = p.parent
        if not p.exists():
            raise ValueError(f"{raw}: no such run directory or folder")
        if not p.is_dir():
            raise ValueError(f"{raw}: not a directory (give run directories or folders that hold them)")
        fin, unf = _scan(p)
        if not fin and not unf:
            raise ValueError(f"{raw}: holds no run (no {SUMMARY}, {METRICS} or {CHECKPOINT} in it or below it)")
        for d in fin:
            finished.setdefault(d.resolve(), d)
        for d in unf:
            unfinished.setdefault(d.resolve(), d)
    return RunDirs(sorted(finished.values(), key=str), sorted(unfinished.values(), key=str))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_metrics(path: PathLike) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a ``metrics.jsonl`` (those with an integer ``step``) and the number of lines skipped.

    A run stopped mid-write can leave a truncated last line; such lines are skipped
    (and counted), never an error. A missing file gives no records.
    """
    records, bad = [], 0
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return [], 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and not isinstance(rec["step"], bool):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def series_of(records: list[dict[str, Any]]) -> dict[str, Series]:
    """Every numeric key of the records as a :class:`Series` (a resumed run re-logs steps: the last line wins)."""
    by_key: dict[str, dict[int, float]] = {}
    for rec in records:
        step = rec["step"]
        for k, v in rec.items():
            if k != "step" and _is_number(v):
                by_key.setdefault(k, {})[step] = float(v)
    return {k: Series(sorted(d), [d[s] for s in sorted(d)]) for k, d in by_key.items()}


def _read_overrides(run_dir: Path) -> list[str]:
    f = run_dir / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return []
    try:
        got = yaml.safe_load(f.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ValueError(f"{f}: cannot read it: {' '.join(str(err).split())}") from None
    if got is None:
        return []
    if not isinstance(got, list) or not all(isinstance(o, (str, int, float)) for o in got):
        raise ValueError(f"{f}: not a list of overrides (key=value strings)")
    return [str(o) for o in got]


def run_yaml(run_dir: Path) -> dict[str, Any]:
    """The run's ``run.yaml`` (its resolved config and config choices) as a dict; {} when there is none;
    ``ValueError`` naming the file when it cannot be read."""
    f = run_dir / RUN_CONFIG
    if not f.is_file():
        return {}
    try:
        got = yaml.safe_load(f.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ValueError(f"{f}: cannot read it: {' '.join(str(err).split())[:200]}") from None
    return got if isinstance(got, dict) else {}


def yaml_get(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...``; None where a level is missing or not a mapping."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def data_name(choice: str, config: dict[str, Any], overrides: list[str] = ()) -> str:
    """The dataset's name from the ``data`` choice and the run's ``run.yaml`` (``config``): ``mnist`` with
    ``data.subset=t10k`` is ``mnist_t10k``; a folder loader (facades, cyclegan_unaligned, sr_folder) is named
    by its experiment (``pix2pix_people_contours`` -> ``people_contours``, ``srgan_bsd68`` -> ``bsd68``; not a
    ``*_paper`` experiment, whose folder is the loader's own dataset); else the ``data`` choice itself. The
    experiment is run.yaml's choice, else an ``experiment=`` of ``overrides`` (``mtbench trivial`` writes no
    run.yaml)."""
    subset = yaml_get(config, "config", "data", "subset")
    if choice == "mnist" and isinstance(subset, str) and subset != "full":
        return f"mnist_{subset}"
    experiment = yaml_get(config, "choices", "experiment")
    if experiment is None:
        experiment = next((o.split("=", 1)[1] for o in overrides if o.startswith("experiment=")), None)
    if choice in FOLDER_LOADERS and isinstance(experiment, str) and "_" in experiment:
        name = experiment.split("_", 1)[1]
        if name != "paper" and name.replace("_", "").isalnum():
            return name
    return choice


def _name(summary: dict, key: str, f: Path, default: str | None = None) -> str:
    v = summary.get(key, default)
    if v is None or isinstance(v, (dict, list, bool)):
        raise ValueError(f"{f}: '{key}' must be a name, got {v!r:.80}")
    return str(v)


def load_run(run_dir: PathLike) -> Run:
    """One finished run directory as a :class:`Run`; ``ValueError`` naming the file when it is not one."""
    d = Path(run_dir)
    f = d / SUMMARY
    summary = read_summary(d)
    seed = summary.get("seed")
    if isinstance(seed, (dict, list)):
        raise ValueError(f"{f}: 'seed' must be a number or a name, got {seed!r:.80}")
    primary = summary.get("primary_metric")
    weights = summary.get("final_weights")
    overrides = summary.get("overrides")
    if isinstance(overrides, list) and overrides:
        if not all(isinstance(o, (str, int, float)) for o in overrides):
            raise ValueError(f"{f}: 'overrides' must be a list of key=value strings")
        overrides = [str(o) for o in overrides]
    else:
        overrides = _read_overrides(d)
    records, bad = read_metrics(d / METRICS)
    series = series_of(records)
    terms = [k.split("/", 1)[1] for k in series if k.startswith("weight/")]
    final_weights = {str(k): float(v) for k, v in weights.items() if _is_number(v)} if isinstance(weights, dict) else {}
    wall = summary.get("wall_time_s")
    loader = _name(summary, "data", f, "?")
    return Run(run_dir=d, model=_name(summary, "model", f), data=data_name(loader, run_yaml(d), overrides),
               loader=loader,
               method=_name(summary, "method", f), seed=seed,
               metrics={str(k): float(v) if _is_number(v) else None for k, v in summary["metrics"].items()},
               primary_metric=None if primary is None or isinstance(primary, (dict, list)) else str(primary),
               higher_is_better=bool(summary.get("higher_is_better", True)),
               wall_time_s=float(wall) if _is_number(wall) else None, final_weights=final_weights,
               overrides=overrides, series=series, terms=terms or list(final_weights), bad_lines=bad)


def unfinished_run(d: Path) -> UnfinishedRun:
    """The last logged step and the checkpoint of a run without ``summary.json``."""
    records, _ = read_metrics(d / METRICS)
    steps = [r["step"] for r in records]
    return UnfinishedRun(run_dir=d, last_logged_step=max(steps) if steps else None,
                         checkpoint=(d / CHECKPOINT).is_file())
