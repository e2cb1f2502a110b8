"""``mtbench report <run or multirun dirs...>``: tables and figures over finished runs.

Give it run directories, multirun folders or a whole ``runs/``; every run
directory below them is found and read (:mod:`mtbench.report.runs`),
summarised into rows (:mod:`mtbench.report.table`) and drawn
(:mod:`mtbench.report.figures`) into ``--out`` (default
``reports/<date>_<time>/``) by :func:`make_report`:

``report.md``
    one table per (model, data): a row per method, the final metrics as
    mean ± sample standard deviation over seeds (n-1; ``n/a`` with one seed),
    the number of seeds and the mean wall time per run. The primary metric
    comes first, marked ↑ (higher is better) or ↓. Methods are ordered fixed,
    softadapt, softadapt_normalized, softadapt_loss_weighted, mtadam, then
    the others alphabetically, then the untrained baselines of ``mtbench
    trivial`` (identity, mean_train_photo; labelled "trivial baseline"). GAN
    runs with FID list FID and KID right after the primary metric (FID itself
    when it is the primary metric), then the task metrics. Runs of one method
    whose command lines differ in a setting (``method.beta=0.5`` against the
    default, say) are never pooled: each such variant gets its own row,
    labelled with the settings. Unfinished runs (a checkpoint or
    ``metrics.jsonl`` but no ``summary.json``) are listed, not silently dropped.
``report.csv``
    the same rows, one per method (variant) and per baseline, all groups in one
    file, full precision: ``<metric>_mean`` and ``<metric>_std`` columns.
``<model>_<data>_weights_<method>.png``, ``<model>_<data>_loss.png``
    each term's weight over the steps per method, and the total training loss
    (the unweighted sum of the logged loss terms) per method.

A baseline row (``--baseline FILE`` or ``baseline=`` in :func:`make_report`)
is a mapping, or a YAML/JSON file holding one (or a list of them), read by
:func:`mtbench.baseline.load_baselines`::

    method: hyperband-tuned fixed   # the row's label (this is the default)
    metrics: {acc: 0.95, nll: 0.17} # final metrics; or `score: 0.95`, read as the primary metric
    model: mnist                    # optional: only in this model's tables ...
    data: mnist5k                   # ... and this dataset's (default: every table)

The files of ``mtbench tune`` (``results/baselines/<model>-<data>.yaml``) work
as they are: their ``test_metrics`` are read as ``metrics`` and their
``val_score`` as ``score``.

The report never deletes anything in ``--out`` and refuses to replace a report
file that is already there (a file, or a symbolic link, even a dangling one)
unless ``overwrite=True`` (``--overwrite``). Every file is written to a temp
file in ``--out`` and renamed over its name (:func:`mtbench.utils.atomic_writer`):
a link there is replaced, never written through, and a full disk leaves the
previous file whole and no partial PNG (one ``error:`` line naming the file).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from mtbench.errors import ArgParser, DataError
from mtbench.baseline import load_baselines
from mtbench.report.figures import LOSS_NOTE, plan_figures, total_loss
from mtbench.report.runs import METRICS, SUMMARY, PathLike, Run, RunDirs, UnfinishedRun, _as_list, find_runs, \
    load_run, read_metrics, unfinished_run
from mtbench.report.table import METHOD_ORDER, TRIVIAL_LABEL, TRIVIAL_METHODS, Row, Stat, build_rows, markdown, \
    parse_label_rule, short_labels, \
    method_rank, to_csv
from mtbench.utils import atomic_write_text

__all__ = ["METHOD_ORDER", "TRIVIAL_LABEL", "TRIVIAL_METHODS", "Row", "Run", "RunDirs", "Stat", "UnfinishedRun",
           "build_rows", "find_runs", "load_run", "main", "make_report", "method_rank", "read_metrics", "total_loss"]


def make_report(paths: PathLike | Iterable[PathLike], out_dir: PathLike,
                baseline: Mapping[str, Any] | Sequence[Mapping[str, Any]] | PathLike | None = None,
                overwrite: bool = False, labels: Sequence[str] = ()) -> dict[str, Any]:
    """Tables (``report.md``, ``report.csv``) and figures (PNG) over the runs in ``paths``, into ``out_dir``.

    ``labels``: ``NAME:KEY=VALUE`` rules naming the rows in the figures (legends, titles): a row whose runs
    all have the override ``KEY=VALUE`` is drawn as ``NAME`` (:func:`mtbench.report.table.short_labels`).

    ``baseline``: a mapping ``{"method": label, "metrics": {...}}`` (or ``"score"``), a list of
    them, or a YAML/JSON file holding one (module doc). Nothing in ``out_dir`` is deleted;
    a report file already there raises ``FileExistsError`` unless ``overwrite``.

    Returns ``{"out_dir", "rows", "files", "unfinished", "notes", "markdown", "console"}``:
    ``rows`` the :class:`Row` s, ``unfinished`` the :class:`UnfinishedRun` s, ``files`` the
    Paths written, ``console`` the markdown without the figures.
    """
    rules = [parse_label_rule(t) for t in labels]
    found = find_runs(paths)
    sources = [str(p) for p in _as_list(paths)]
    baselines = load_baselines(baseline)
    if not found:
        raise ValueError(f"no finished run (with {SUMMARY}) in {', '.join(sources)}; "
                         f"{len(found.unfinished)} unfinished: {', '.join(str(u) for u in found.unfinished)}")
    runs = [load_run(d) for d in found]
    rows = build_rows(runs, baselines)
    short_labels(rows, rules)
    unfinished = [unfinished_run(d) for d in found.unfinished]
    notes = [f"`{r.run_dir / METRICS}`: skipped {r.bad_lines} unreadable line(s) (a truncated last line?)"
             for r in runs if r.bad_lines]
    notes += [f"{row.model}/{row.data} {row.label}: more than one run with seed(s) "
              f"{', '.join(map(str, row.duplicate_seeds))}; all are counted" for row in rows if row.duplicate_seeds]
    plans, figures, figure_notes = plan_figures(rows)
    notes += figure_notes

    out = Path(out_dir).expanduser()
    names = ["report.md", "report.csv", *[n for n, _ in plans]]
    if not overwrite:
        _refuse_existing(out, names)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: not a directory")
    out.mkdir(parents=True, exist_ok=True)

    md = markdown(rows, unfinished, notes, sources, len(runs), figures, LOSS_NOTE)
    for name, draw in plans:
        draw(out / name)
    atomic_write_text(to_csv(rows), out / "report.csv")
    atomic_write_text(md, out / "report.md")
    return {"out_dir": out, "rows": rows, "files": [out / n for n in names], "unfinished": unfinished,
            "notes": notes, "markdown": md, "console": markdown(rows, unfinished, notes, sources, len(runs))}


def _refuse_existing(out: Path, names: list[str]) -> None:
    """``FileExistsError`` (one line) when a report file is in ``out``, as a file, folder or link (even dangling)."""
    there = [n for n in names if os.path.lexists(out / n)]
    if there:
        links = [n for n in there if (out / n).is_symlink()]
        raise FileExistsError(f"{out} already holds a report ({', '.join(there[:4])}"
                              f"{', ...' if len(there) > 4 else ''}"
                              f"{'; ' + ', '.join(links[:4]) + ' a symbolic link' if links else ''}); "
                              f"pass --overwrite (overwrite=True: it replaces them, links included, never "
                              f"writing through a link) or choose another output folder")


def main(argv: list[str] | None = None) -> int:
    """``mtbench report <run or multirun dirs...> [--out DIR] [--baseline FILE] [--overwrite]``."""
    parser = ArgParser(
        prog="mtbench report",
        description="Tables (mean ± std over seeds) and figures (weights, total loss) over finished runs.",
        epilog="examples:\n  mtbench report runs/multirun/2026-01-01_10-00-00\n"
               "  mtbench report runs --out reports/all --baseline results/baselines/mnist-mnist5k.yaml\n\n"
               "Writes report.md, report.csv and PNG figures; never deletes files in --out.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="RUN_OR_FOLDER",
                        help="run directories, or folders holding them at any depth (a multirun folder, runs/)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: reports/<date>_<time>)")
    parser.add_argument("--baseline", metavar="FILE", default=None,
                        help="YAML/JSON with `metrics: {name: value}` or `score: value` (the primary metric), "
                             "optional `method` (label), `model`, `data`; an `mtbench tune` baseline file works")
    parser.add_argument("--overwrite", action="store_true", help="replace report files already in --out")
    parser.add_argument("--label", metavar="NAME:KEY=VALUE", action="append", default=[],
                        help="name the rows whose runs have the override KEY=VALUE in the figures, e.g. "
                             "tuned:method.weights=baseline (repeatable; the first rule that matches wins)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed as one line)
        return stop.code if isinstance(stop.code, int) else 2
    out = args.out or str(Path("reports") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    try:
        res = make_report(args.paths, out, baseline=args.baseline, overwrite=args.overwrite, labels=args.label)
    except (ValueError, OSError, DataError) as err:  # DataError: a full disk (utils.DiskFullError)
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(res["console"].rstrip())
    print(f"\nreport: {res['out_dir']} ({len(res['files'])} files: report.md, report.csv, "
          f"{len(res['files']) - 2} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
