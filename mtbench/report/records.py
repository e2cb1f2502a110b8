"""Per-seed CSVs: one flat row per finished run, appended to the CSV beside a results table.

A per-seed CSV (``results/<benchmark>/per_seed.csv``) holds every run of one table,
one row per (arm, seed). The tables and figures of the published results are made
from these files alone (:mod:`mtbench.report.seedtable`, :mod:`mtbench.report.leaderboard`),
so that the runs themselves need not survive: the reproduce scripts skip an
(arm, seed) already recorded and append each run's row once it finishes.

Columns (:data:`COLUMNS`, in this order; then the run's metrics and final weights):

``arm``             short label of the table row (``[A-Za-z0-9_.+-]``): the method, or
                    ``tuned``, ``balanced``, ``softadapt_on_defaults``, ... (given by the script)
``seed``            the run's seed (an integer >= 0; 0 for a trivial baseline of ``mtbench trivial``,
                    whose summary's seed is "n/a"); (arm, seed) is the row's key
``model``           ``summary.json``'s model (the ``model`` config choice)
``data``            the dataset's name: ``--data`` when given, else the ``data`` choice, made
                    exact where the choice is a generic loader (:func:`mtbench.report.runs.data_name`)
``method``          the ``method`` config choice
``settings``        the overrides that tell arms apart: the run's own, less seed, model, data,
                    method, hydra, logging and thread keys and every path-valued one (data
                    roots, ``baselines_dir``, ``model.init_from``: machine-specific), ``;``-joined
``primary_metric``, ``higher_is_better``   what ranks the runs (``true``/``false``)
``wall_time_s``, ``steps``                 from ``summary.json``
``threads``         torch intra-op threads: ``summary.json``'s ``threads`` when recorded, else
                    ``run.yaml``'s ``device.threads`` (empty: torch's default, not recorded)
``deterministic``   ``summary.json``'s ``deterministic``, else ``run.yaml``'s
                    ``device.deterministic`` (empty: not recorded)
``device``, ``torch``, ``git_commit``, ``git_dirty``   ``summary.json``'s device (a CPU with its model and
                    torch's vector ISA, versions.cpu, where recorded: ``cpu (AMD EPYC; torch AVX512)``),
                    versions.torch, code.git_commit and code.uncommitted_changes (empty when not recorded)
``command``         ``summary.json``'s ``command``, absolute paths made relative to the folder
                    the row is recorded from (the repository root in the scripts)
``metric.<name>``   every final metric (``summary.json``'s ``metrics``), full precision
``weight.<term>``   the final weight of each loss term (``final_weights``)

No cell holds an absolute path. Appending (:func:`append_rows`) rewrites the file
through a temp file renamed over it (:func:`mtbench.utils.atomic_writer`), under a
lock on its folder: a row already recorded (same arm and seed) is skipped, a file
whose columns are not a per-seed CSV's is refused in one line naming it, and rows
already there are never dropped or changed. A metric or weight new to the file
adds its column (empty for the rows before).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import io
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtbench.report.runs import PathLike, load_run, run_yaml, yaml_get
from mtbench.report.table import override_map
from mtbench.rundir import read_summary
from mtbench.utils import atomic_writer

TRIVIAL_SEED = "n/a"  # the seed in a trivial baseline's summary (mtbench.trivial.SEED)
COLUMNS = ("arm", "seed", "model", "data", "method", "settings", "primary_metric", "higher_is_better", "wall_time_s",
           "steps", "threads", "deterministic", "device", "torch", "git_commit", "git_dirty", "command")
METRIC, WEIGHT = "metric.", "weight."
ARM_RE = re.compile(r"[A-Za-z0-9_.+-]+")


class RecordError(ValueError):
    """Bad input to the per-seed CSV tools: one line naming the file or key."""


@dataclass
class SeedCsv:
    """A per-seed CSV read back: its metric and weight columns and its rows (dicts of strings)."""

    path: Path
    metrics: list[str]
    weights: list[str]
    rows: list[dict[str, str]]

    @property
    def columns(self) -> list[str]:
        return [*COLUMNS, *(METRIC + m for m in self.metrics), *(WEIGHT + w for w in self.weights)]

    def keys(self) -> set[tuple[str, str]]:
        return {(r["arm"], r["seed"]) for r in self.rows}


# --------------------------------------------------------------------------- one run -> one row
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: Any) -> str:
    """Full precision (``repr``) for numbers, empty for anything else (a missing or malformed value)."""
    if not _is_number(v):
        return ""
    return repr(int(v)) if isinstance(v, int) else repr(float(v))


def _looks_like_path(value: str) -> bool:
    v = value.strip("[]'\" ")
    return "/" in v or v in (".", "..") or v.startswith("~")


def relative(value: str, base: Path) -> str:
    """``value`` with every absolute path in it (``/a/b``, ``[/a,/b]``, ``key=/a``) made relative to ``base``."""
    def rel(m: re.Match) -> str:
        return os.path.relpath(m.group(0), base)

    return re.sub(r"(?<![\w.~-])/[^,\]\s'\"]*", rel, value)


def settings_of(overrides: Sequence[str]) -> str:
    """The overrides that tell arms apart (table.override_map, less path-valued keys), sorted, ``;``-joined."""
    kept = {k: v for k, v in override_map(list(overrides)).items()
            if not _looks_like_path(v) and k not in ("baselines_dir", "model.init_from")}
    return ";".join(f"{k}={kept[k]}" for k in sorted(kept))


def _flag(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else ""


def device_of(summary: dict) -> str:
    """The device column: ``cpu (<model>; torch <ISA>)`` when the summary names its CPU (summaries from
    2026-12-02 on; a CPU run's floats can differ between machines), else the summary's device as it is."""
    device = summary.get("device")
    if not isinstance(device, str):
        return ""
    cpu = yaml_get(summary, "versions", "cpu")
    if device == "cpu" and isinstance(cpu, str) and cpu and len(cpu) <= 200:
        return f"cpu ({cpu})"
    return device


def run_row(run_dir: PathLike, arm: str, data: str | None = None, base: PathLike = ".") -> dict[str, str]:
    """One finished run directory as a per-seed row (strings; see the module doc for the columns).

    ``arm`` labels the table row; ``data`` names the dataset (default the run's:
    :func:`mtbench.report.runs.data_name`); absolute paths in the command are made relative to
    ``base``. ``RecordError``/``ValueError`` naming the file for a run that is not a finished run
    or has no integer seed.
    """
    if not ARM_RE.fullmatch(arm or ""):
        raise RecordError(f"arm {arm!r}: use letters, digits and _ . + - only")
    d = Path(run_dir)
    run = load_run(d)  # untrusted: safe JSON/YAML, type-checked, ValueError naming the file
    summary = read_summary(d)
    f = d / "summary.json"
    seed = run.seed
    if seed == TRIVIAL_SEED and isinstance(summary.get("trivial"), dict) and summary.get("steps") == 0:
        seed = 0  # a trivial baseline (mtbench trivial) draws nothing at random: its one row is seed 0
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise RecordError(f"{f}: 'seed' must be an integer >= 0, got {seed!r:.40}")
    ry = run_yaml(d)
    threads = summary.get("threads", yaml_get(ry, "config", "device", "threads"))
    deterministic = summary.get("deterministic", yaml_get(ry, "config", "device", "deterministic"))
    code = summary.get("code") if isinstance(summary.get("code"), dict) else {}
    commit = code.get("git_commit")
    torch_version = yaml_get(summary, "versions", "torch")
    command = summary.get("command")
    base = Path(base).resolve()
    row = {
        "arm": arm, "seed": str(seed), "model": run.model,
        "data": data or run.data, "method": run.method, "settings": settings_of(run.overrides),
        "primary_metric": run.primary_metric or "", "higher_is_better": _flag(run.higher_is_better),
        "wall_time_s": _num(run.wall_time_s), "steps": _num(summary.get("steps")),
        "threads": _num(threads) if isinstance(threads, int) else "", "deterministic": _flag(deterministic),
        "device": device_of(summary),
        "torch": torch_version if isinstance(torch_version, str) else "",
        "git_commit": commit if isinstance(commit, str) else "", "git_dirty": _flag(code.get("uncommitted_changes")),
        "command": relative(command, base) if isinstance(command, str) else "",
    }
    row.update({METRIC + k: _num(v) for k, v in run.metrics.items()})
    row.update({WEIGHT + k: _num(v) for k, v in run.final_weights.items()})
    for k, v in row.items():
        if k != "command" and "\n" in v:
            raise RecordError(f"{f}: '{k}' holds a line break")
    return row


# --------------------------------------------------------------------------- the CSV
def read_seed_csv(path: PathLike) -> SeedCsv:
    """A per-seed CSV (a missing or empty file: no rows); ``RecordError`` naming it when its columns are wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return SeedCsv(p, [], [], [])
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{p}: cannot read it: {err}") from None
    if not text.strip():
        return SeedCsv(p, [], [], [])
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        body = list(reader)
    except csv.Error as err:
        raise RecordError(f"{p}: not a CSV file: {err}") from None
    if tuple(header[:len(COLUMNS)]) != COLUMNS or not all(c.startswith((METRIC, WEIGHT)) for c in header[len(COLUMNS):]):
        raise RecordError(f"{p}: not a per-seed CSV: its header must start with {','.join(COLUMNS[:4])},... "
                          f"(mtbench.report.records.COLUMNS) followed by metric.* and weight.* columns")
    if len(set(header)) != len(header):
        raise RecordError(f"{p}: the header repeats a column")
    rows = []
    for i, cells in enumerate(body, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise RecordError(f"{p}: line {i} has {len(cells)} cells, the header {len(header)}")
        rows.append(dict(zip(header, cells)))
    extra = header[len(COLUMNS):]
    return SeedCsv(p, [c[len(METRIC):] for c in extra if c.startswith(METRIC)],
                   [c[len(WEIGHT):] for c in extra if c.startswith(WEIGHT)], rows)


def _to_text(table: SeedCsv) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=table.columns, lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(table.rows)
    return buf.getvalue()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (fcntl on the directory itself: no lock file left behind)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def canonical_settings(settings: str) -> str:
    """``settings`` with every boolean value spelled true/false (a resumed run's overrides come back from its
    run.yaml as true/false, a fresh run's as typed: True/False)."""
    return ";".join(re.sub(r"=(true|false)$", lambda m: "=" + m.group(1).lower(), kv, flags=re.IGNORECASE)
                    for kv in settings.split(";"))


def _same_setting(key: str, a: str, b: str) -> bool:
    """Equal cells; in ``settings``, a boolean spelled True/true counts as the same (:func:`canonical_settings`)."""
    if key != "settings" or a == b:
        return a == b
    return canonical_settings(a) == canonical_settings(b)


def _check_arm(table: SeedCsv, row: dict[str, str]) -> None:
    """An arm is one setting: a new seed of an arm must match its recorded model, data, method and settings."""
    for old in table.rows:
        if old["arm"] == row["arm"]:
            diff = [k for k in ("model", "data", "method", "settings") if not _same_setting(k, old[k], row[k])]
            if diff:
                k = diff[0]
                raise RecordError(f"{table.path}: arm {row['arm']!r} is recorded with {k}={old[k]!r}, this run has "
                                  f"{k}={row[k]!r}: give this run another arm label")
            return


def append_rows(path: PathLike, rows: Sequence[dict[str, str]]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Append ``rows`` to the per-seed CSV ``path`` (created when missing): (appended, skipped as recorded)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with _locked(p.parent):
        table = read_seed_csv(p)
        keys = table.keys()
        added, skipped = [], []
        for row in rows:
            if (row["arm"], row["seed"]) in keys:
                skipped.append(row)
                continue
            _check_arm(table, row)
            for k in row:
                if k.startswith(METRIC) and k[len(METRIC):] not in table.metrics:
                    table.metrics.append(k[len(METRIC):])
                elif k.startswith(WEIGHT) and k[len(WEIGHT):] not in table.weights:
                    table.weights.append(k[len(WEIGHT):])
            table.rows.append(row)
            keys.add((row["arm"], row["seed"]))
            added.append(row)
        if added:
            with atomic_writer(p, "w") as f:
                f.write(_to_text(table))
    return added, skipped


def recorded_seeds(path: PathLike, arm: str) -> list[str]:
    """The seeds of ``arm`` already in the per-seed CSV."""
    return [r["seed"] for r in read_seed_csv(path).rows if r["arm"] == arm]


def number(cell: str) -> float | None:
    """A numeric cell as a float; None when empty or not finite."""
    try:
        x = float(cell)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# --------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``python scripts/record_run.py CSV RUN_DIR... --arm LABEL [--data NAME]``: append finished runs' rows."""
    ap = argparse.ArgumentParser(prog="record_run.py", description="Append finished runs to a per-seed CSV "
                                 "(one row per arm and seed; a row already recorded is skipped).")
    ap.add_argument("csv", metavar="CSV", help="the per-seed CSV (created when missing)")
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished run directories (with summary.json)")
    ap.add_argument("--arm", required=True, help="the table row's short label (tuned, mtadam, balanced, ...)")
    ap.add_argument("--data", default=None, help="the dataset's name (default: from run.yaml)")
    args = ap.parse_args(argv)
    try:
        rows = [run_row(d, args.arm, args.data) for d in args.runs]
        added, skipped = append_rows(args.csv, rows)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    csv_name = args.csv
    for r in added:
        print(f"{csv_name}: recorded {r['arm']} seed {r['seed']}")
    if skipped:
        done = ", ".join(f"{r['arm']} seed {r['seed']}" for r in skipped)
        print(f"{csv_name}: already recorded, skipped: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
