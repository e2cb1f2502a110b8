#!/usr/bin/env python
"""Rerun one recorded row of a per-seed CSV from its recorded command and compare every final metric exactly.

    python scripts/spot_check.py results/mnist/t10k_uniform/per_seed.csv ARM SEED [--out results/spot_checks.md]

The row's ``command`` (a ``mtbench train`` line, paths relative to the repository
root) is run again in a fresh run dir under ``runs/spot_check/`` with the row's
thread count (``device.threads`` is in the command; ``OMP_NUM_THREADS`` is set
to the row's ``threads``), and each ``metric.<name>`` of the row is compared
with the new run's ``summary.json`` at full precision: a rerun under
``device.deterministic=true`` on the same code and machine kind matches bit for
bit. The result is one markdown line (printed; appended to ``--out``): the row,
the commit it was recorded at and the one rerun here, and ``identical`` or the
metrics that differ. Exit status 0 when identical, 1 when not, 2 on bad input.

The command is read as untrusted data: only ``mtbench train`` followed by
``key=value`` overrides is run (never through a shell); its ``hydra.run.dir``,
``hydra.sweep.dir`` and ``resume`` are left out (the rerun trains from the start
in its own folder: a resumed run ends bit-identical to an uninterrupted one).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtbench.report.records import RecordError, read_seed_csv  # noqa: E402

OVERRIDE = re.compile(r"^[A-Za-z_][\w.@/-]*=[^\s;|&`$<>]*$")
#: overrides of the recorded command that the rerun leaves out: its folder is its own, and it trains from the start
FOLDER_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "resume")


def parse_command(command: str) -> list[str]:
    """The overrides of a recorded ``mtbench train ...`` command; ValueError naming what is refused."""
    try:
        words = shlex.split(command)
    except ValueError as err:
        raise ValueError(f"the recorded command cannot be split into words ({err})") from None
    if words[:2] != ["mtbench", "train"]:
        raise ValueError(f"the recorded command is not `mtbench train ...`: {command[:80]!r}")
    overrides = []
    for w in words[2:]:
        if not OVERRIDE.match(w) or w.startswith("hydra/"):
            raise ValueError(f"the recorded command holds {w!r}, which is not a key=value override")
        if w.split("=", 1)[0] not in FOLDER_KEYS:  # where the run went, or that it was resumed: not its result
            overrides.append(w)
    return overrides


def head_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("arm")
    ap.add_argument("seed")
    ap.add_argument("--out", type=Path, help="append the markdown line to this file")
    ap.add_argument("--mtbench", default=str(ROOT / ".venv" / "bin" / "mtbench"))
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "spot_check", help="where the rerun goes")
    args = ap.parse_args(argv)
    try:
        table = read_seed_csv(args.csv)
    except RecordError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = [r for r in table.rows if r["arm"] == args.arm and r["seed"] == args.seed]
    if len(rows) != 1:
        print(f"error: {args.csv} has {len(rows)} rows for arm {args.arm!r} seed {args.seed!r}", file=sys.stderr)
        return 2
    row = rows[0]
    try:
        overrides = parse_command(row["command"])
    except ValueError as err:
        print(f"error: {args.csv}, arm {args.arm} seed {args.seed}: {err}", file=sys.stderr)
        return 2
    threads = row["threads"] if row["threads"].isdigit() else ""
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    run_dir = args.runs.resolve() / f"{args.arm}_s{args.seed}_{stamp}"
    env = {**os.environ, **({"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if threads else {})}
    print(f"rerunning {args.arm} seed {args.seed} into {run_dir}", file=sys.stderr)
    r = subprocess.run([args.mtbench, "train", *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env)
    if r.returncode != 0:
        print(f"error: the rerun failed (exit status {r.returncode}); see {run_dir}/train.log", file=sys.stderr)
        return 1
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    diffs = []
    for name in table.metrics:
        cell = row.get(f"metric.{name}", "")
        if cell == "":
            continue
        new = metrics.get(name)
        if not isinstance(new, (int, float)) or not same(float(cell), float(new)):
            diffs.append(f"{name} {cell} -> {new}")
    now = head_commit()
    verdict = "identical (every metric bit for bit)" if not diffs else "differs: " + "; ".join(diffs)
    line = (f"| {args.csv.as_posix()} | {args.arm} | {args.seed} | {row['git_commit'][:7]} | {now[:7]} | "
            f"{threads or 'default'} | {verdict} |")
    print(line)
    if args.out:
        new_file = not args.out.exists()
        with args.out.open("a") as f:
            if new_file:
                f.write("| per-seed CSV | arm | seed | recorded at | rerun at | threads | result |\n"
                        "|---|---|---:|---|---|---:|---|\n")
            f.write(line + "\n")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
