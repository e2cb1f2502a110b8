"""One page over every benchmark: each arm's primary metric per benchmark, from the per-seed CSVs alone.

For each per-seed CSV (one benchmark; :mod:`mtbench.report.records`) the statistics
are those of its ``table.md`` (:func:`mtbench.report.seedtable.build`: mean and 95%
CI over seeds, paired or Welch t-test against the tuned arm, Holm across that
benchmark's table). The overview puts the primary metric of every arm side by side:
one row per arm, one column per benchmark, each cell ``mean [95% CI]`` and the
verdict against the tuned arm (``better``, ``worse``, ``tie``; ``baseline`` for
the tuned arm itself), bold where the benchmark's table bolds it (the best mean,
its CI clear of the runner-up's). An arm absent from a benchmark is ``—``. Rows
follow :data:`ORDER` (the papers' arms first), then the other arms by name::

    python scripts/summarize_results.py results/ [--out results/summary.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mtbench.report.seedtable import DISPLAY, SeedTable, build, find_csvs, fmt
from mtbench.utils import atomic_write_text

ORDER = ["balanced", "fixed", "tuned", "softadapt", "softadapt_normalized", "softadapt_loss_weighted",
         "softadapt_on_defaults", "softadapt_normalized_on_defaults", "softadapt_loss_weighted_on_defaults",
         "mtadam"]


def cell(t: SeedTable, arm: str) -> str:
    """``mean [lo, hi] verdict`` of ``arm``'s primary metric in table ``t`` (``—`` when absent)."""
    c = t.cells.get((arm, t.primary))
    if c is None:
        return "—"
    d = c.described
    text = fmt(d.mean) + ("" if d.lo is None else f" [{fmt(d.lo, like=d.mean)}, {fmt(d.hi, like=d.mean)}]")
    if c.bold:
        text = f"**{text}**"
    verdict = "baseline" if arm == t.baseline else c.verdict
    return f"{text} {verdict}".rstrip() + ("" if d.n > 1 else f" (n = {d.n})")


def overview(csvs: list[Path], home: Path) -> str:
    """The markdown page (module doc) for the per-seed CSVs ``csvs``, its links relative to the folder ``home``."""
    tables = [build(p) for p in csvs]
    names = [Path(os.path.relpath(p.parent.resolve(), home.resolve())).as_posix() for p in csvs]
    arms = list(dict.fromkeys(a.name for t in tables for a in t.arms))
    arms.sort(key=lambda a: (ORDER.index(a) if a in ORDER else len(ORDER), a))
    head = ["arm", *[f"{n} ({t.primary} {'↑' if t.higher_is_better else '↓'})" for n, t in zip(names, tables)]]
    out = ["# Summary: the primary metric of every arm on every benchmark", "",
           ("Made by `python scripts/summarize_results.py results/` from the per-seed CSVs alone. Each cell: mean "
           "over seeds [95% CI of the mean], then the verdict against the Hyperband-tuned fixed weights (`tuned`) "
           "after Holm's correction across that benchmark's table: a difference the test cannot tell from 0 is a "
           "**tie**. Bold: the benchmark's best mean, its CI clear of the runner-up's. The full tables (every "
           "metric, sd, p-values, seeds, settings) are the `table.md` beside each CSV."), "",
           "| " + " | ".join(head) + " |", "|---|" + "---:|" * len(tables)]
    for a in arms:
        label = DISPLAY.get(a, a)
        if any(x.name == a and x.equals_defaults for t in tables for x in t.arms):
            label += " (= defaults in " + ", ".join(n for n, t in zip(names, tables)
                                                     if any(x.name == a and x.equals_defaults for x in t.arms)) + ")"
        out.append("| " + " | ".join([label, *[cell(t, a) for t in tables]]) + " |")
    out += ["", "Benchmarks (per-seed CSV, runs):", ""]
    out += [f"- [{n}]({n}/table.md): `{n}/per_seed.csv`, {sum(len(a.seeds) for a in t.arms)} runs, "
            f"{len(t.arms)} arms, model {t.model}, data {t.data}" for n, t in zip(names, tables)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="summarize_results.py", description="One page over every benchmark "
                                 "(primary metric, 95% CI, verdict against tuned) from the per-seed CSVs alone.")
    ap.add_argument("paths", nargs="*", default=["results"], metavar="CSV_OR_FOLDER",
                    help="per-seed CSVs, or folders searched for per_seed.csv (default results)")
    ap.add_argument("--out", type=Path, default=None, help="default: <first folder>/summary.md")
    args = ap.parse_args(argv)
    first = Path(args.paths[0])
    out = args.out or (first if first.is_dir() else first.parent) / "summary.md"
    try:
        csvs = find_csvs(args.paths)
        atomic_write_text(overview(csvs, out.parent), out)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{out}: {len(csvs)} benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
