"""Tables from a per-seed CSV alone (:mod:`mtbench.report.records`): statistics, tests against the tuned baseline.

For one per-seed CSV (one benchmark), :func:`build` computes, per arm and metric, the
mean, sample sd and 95% CI over seeds and the comparison with the baseline arm
(default ``tuned``; :mod:`mtbench.report.seedstats`), and :func:`markdown` writes it:
one table per metric (the primary metric first), then the arms (settings, seeds,
wall time, threads). The rules, stated under every table:

* **Tests**: each arm against the baseline arm, per metric: paired t-test over the
  seeds when both have the same seeds, else Welch's t-test; two-sided.
* **Holm across the table**: every comparison of the table (all arms, all metrics
  with a p-value) is one family, Holm-adjusted.
* **Tie**: a difference whose Holm-adjusted p is >= alpha (0.05) is written ``tie``:
  for a single comparison this is exactly "the 95% CI of the difference (paired, or
  Welch) contains 0"; Holm widens it for the family. Otherwise ``better``/``worse``
  (``higher``/``lower`` for a metric of unknown direction).
* **Bold**: per metric, the best mean is bold only when its 95% CI and the
  runner-up's 95% CI do not overlap (the winner's interval excludes the runner-up's).
  No bold when either has one seed (no interval), or the direction is unknown.
* **= defaults**: a baseline arm whose final weights equal those of the defaults arm
  (default ``fixed``) says so in its row.

Metrics with the same value in every run (an image count) are listed, not tabled. A metric equal to an
earlier one in every run (one number under two names: SRGAN's ``psnr`` is its first evaluation folder's
``bsd68_val/psnr``) is named beside it, not tabled or tested again: a duplicate would only enlarge Holm's family.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtbench.report.records import (
    METRIC,
    WEIGHT,
    RecordError,
    SeedCsv,
    canonical_settings,
    number,
    read_seed_csv,
)
from mtbench.report.seedstats import Comparison, Described, compare, describe, holm
from mtbench.utils import atomic_write_text

ALPHA = 0.05
# direction of the metrics other than the primary one (whose direction the runs record), by last name part
HIGHER = {"acc", "psnr", "ssim", "accuracy"}
LOWER = {"nll", "l1", "cycle_l1", "fid", "kid", "lpips", "mse", "loss"}
# longer labels for a few arms (the arm label itself is the short one)
DISPLAY = {"tuned": "tuned (fixed, Hyperband)", "balanced": "balanced (reference)"}


def direction(metric: str, primary: str, higher_is_better: bool) -> bool | None:
    """True: higher is better; False: lower; None: unknown."""
    if metric == primary:
        return higher_is_better
    last = metric.rsplit("/", 1)[-1]
    if last in HIGHER:
        return True
    if last in LOWER or last.startswith(("fid_", "kid_")):
        return False
    return None


@dataclass
class Cell:
    """One arm on one metric."""

    described: Described
    values: dict[int, float]
    comparison: Comparison | None = None
    p_holm: float | None = None
    verdict: str = ""
    bold: bool = False


@dataclass
class Arm:
    name: str
    method: str
    settings: str
    seeds: list[int]
    wall_time_s: float | None
    threads: str
    equals_defaults: bool = False


@dataclass
class SeedTable:
    source: str
    model: str
    data: str
    primary: str
    higher_is_better: bool
    baseline: str | None
    defaults: str
    arms: list[Arm]
    metrics: list[str]
    cells: dict[tuple[str, str], Cell]
    constant: dict[str, float] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # metric -> the tabled metric it equals in every run
    notes: list[str] = field(default_factory=list)
    alpha: float = ALPHA


def _values(table: SeedCsv, arm: str, metric: str) -> dict[int, float]:
    out = {}
    for r in table.rows:
        if r["arm"] == arm:
            v = number(r.get(METRIC + metric, ""))
            if v is not None:
                out[int(r["seed"])] = v
    return out


def _weights(rows: list[dict[str, str]]) -> list[dict[str, float | None]]:
    return [{k: number(v) for k, v in r.items() if k.startswith(WEIGHT) and v != ""} for r in rows]


def _same_weights(a: list[dict[str, str]], b: list[dict[str, str]]) -> bool:
    wa, wb = _weights(a), _weights(b)
    ref = wb[0]
    if not ref or any(w.keys() != ref.keys() for w in wa + wb):
        return False
    return all(x is not None and ref[k] is not None and math.isclose(x, ref[k], rel_tol=1e-9, abs_tol=0.0)
               for w in wa + wb for k, x in w.items())


def _one(table: SeedCsv, key: str) -> str:
    got = sorted({r[key] for r in table.rows})
    if len(got) != 1:
        raise RecordError(f"{table.path}: the rows disagree on {key} ({', '.join(got)}): one benchmark per file")
    return got[0]


def build(path: str | Path, baseline: str = "tuned", defaults: str = "fixed", alpha: float = ALPHA) -> SeedTable:
    """The statistics of one per-seed CSV (module doc); ``RecordError`` naming the file for bad input."""
    table = read_seed_csv(path)
    if not table.rows:
        raise RecordError(f"{path}: no rows")
    for r in table.rows:
        try:
            int(r["seed"])
        except ValueError:
            raise RecordError(f"{path}: seed {r['seed']!r} of arm {r['arm']!r} is not an integer") from None
    primary, hib = _one(table, "primary_metric"), _one(table, "higher_is_better") == "true"
    models = sorted({r["model"] for r in table.rows})
    data = sorted({r["data"] for r in table.rows})
    names = list(dict.fromkeys(r["arm"] for r in table.rows))
    by_arm = {a: [r for r in table.rows if r["arm"] == a] for a in names}
    metrics, constant, aliases, columns = [], {}, {}, {}
    for m in [primary, *[x for x in table.metrics if x != primary]]:
        column = tuple(number(r.get(METRIC + m, "")) for r in table.rows)
        vals = [v for v in column if v is not None]
        if not vals:
            continue
        if len(set(vals)) == 1 and len(vals) > 1 and m != primary:
            constant[m] = vals[0]
        elif column in columns:  # the same numbers as a tabled metric, row for row
            aliases[m] = columns[column]
        else:
            metrics.append(m)
            columns[column] = m
    if primary not in table.metrics:
        raise RecordError(f"{path}: no metric.{primary} column (the primary metric)")
    arms = []
    for a in names:
        rows = by_arm[a]
        walls = [w for w in (number(r["wall_time_s"]) for r in rows) if w is not None]
        arms.append(Arm(a, rows[0]["method"], rows[0]["settings"], sorted(int(r["seed"]) for r in rows),
                        sum(walls) / len(walls) if walls else None,
                        ",".join(sorted({r["threads"] or "?" for r in rows}))))
    notes = []
    base = baseline if baseline in by_arm else None
    if base is None:
        notes.append(f"no `{baseline}` arm: no comparisons")
    elif defaults in by_arm and base != defaults and _same_weights(by_arm[base], by_arm[defaults]):
        next(x for x in arms if x.name == base).equals_defaults = True
    cells = {(a, m): Cell(describe(list(v.values())), v) for a in names for m in metrics
             if (v := _values(table, a, m))}
    if base is not None:
        keys = [(a, m) for (a, m) in cells if a != base and (base, m) in cells]
        for k in keys:
            cells[k].comparison = compare(cells[k].values, cells[(base, k[1])].values)
        adjusted = holm([cells[k].comparison.p for k in keys])
        for k, p in zip(keys, adjusted):
            c = cells[k]
            c.p_holm = p
            if p is None:
                continue
            hi = direction(k[1], primary, hib)
            if p >= alpha:
                same = c.values == cells[(base, k[1])].values
                c.verdict = "tie (identical runs)" if same else "tie"
            elif hi is None:
                c.verdict = "higher" if c.comparison.diff > 0 else "lower"
            else:
                c.verdict = "better" if (c.comparison.diff > 0) == hi else "worse"
    for m in metrics:
        _mark_winner(cells, names, m, direction(m, primary, hib))
    return SeedTable(source=Path(path).name, model=", ".join(models), data=", ".join(data), primary=primary,
                     higher_is_better=hib, baseline=base, defaults=defaults, arms=arms, metrics=metrics,
                     cells=cells, constant=constant, aliases=aliases, notes=notes, alpha=alpha)


def _mark_winner(cells: dict[tuple[str, str], Cell], names: list[str], metric: str, hi: bool | None) -> None:
    """Bold the best mean when its 95% CI and the runner-up's do not overlap (module doc)."""
    ranked = [cells[(a, metric)] for a in names if (a, metric) in cells]
    if hi is None or len(ranked) < 2:
        return
    ranked.sort(key=lambda c: c.described.mean, reverse=hi)
    win, run = ranked[0].described, ranked[1].described
    if win.lo is None or run.lo is None or win.mean == run.mean:
        return
    ranked[0].bold = win.lo > run.hi if hi else win.hi < run.lo


# --------------------------------------------------------------------------- output
def places(x: float | None, digits: int = 4) -> int:
    """Decimal places that show ``x`` to ``digits`` significant digits above 10 (272.7, 17.23; an FID to 0.1), and
    ``digits`` places below (0.9816, 3.3687)."""
    if x is None or abs(x) < 10:
        return digits
    return max(0, digits - len(str(int(abs(x)))))


def fmt(x: float | None, digits: int = 4, like: float | None = None) -> str:
    """``x`` with the decimal places of ``like`` (a cell's mean, so that its sd, CI and difference read alike), or
    of ``x`` itself; a nonzero number too small for those places in scientific notation."""
    if x is None:
        return "n/a"
    p = places(x if like is None else like, digits)
    if x != 0 and abs(x) < 10 ** -(min(p, digits - 1)):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{p}f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def arm_label(arm: Arm, table: SeedTable) -> str:
    label = DISPLAY.get(arm.name, arm.name)
    if arm.equals_defaults:
        label += f" (= defaults: weights of `{table.defaults}`)"
    return label


def metric_table(t: SeedTable, metric: str) -> list[str]:
    hi = direction(metric, t.primary, t.higher_is_better)
    arrow = {True: " ↑", False: " ↓", None: ""}[hi]
    vs = f"vs {t.baseline}" if t.baseline else "vs baseline"
    head = ["arm", "n", "mean ± sd", "95% CI", f"Δ {vs}", "test", "p (Holm)", vs]
    out = [f"### {metric}{arrow}{' (primary)' if metric == t.primary else ''}", "",
           "| " + " | ".join(head) + " |", "|---|" + "---:|" * 3 + "---:|---|---:|---|"]
    for arm in t.arms:
        c = t.cells.get((arm.name, metric))
        if c is None:
            continue
        d = c.described
        ms = f"{fmt(d.mean)} ± {fmt(d.sd, like=d.mean)}"
        ci = "n/a" if d.lo is None else f"[{fmt(d.lo, like=d.mean)}, {fmt(d.hi, like=d.mean)}]"
        cmp = c.comparison
        base_row = arm.name == t.baseline
        out.append("| " + " | ".join([
            arm_label(arm, t), str(d.n), f"**{ms}**" if c.bold else ms, ci,
            "baseline" if base_row else ("—" if cmp is None else ("+" if cmp.diff >= 0 else "-") + fmt(abs(cmp.diff), like=d.mean)),
            "" if base_row or cmp is None else (cmp.test or "— (n < 2)"), "" if base_row else fmt_p(c.p_holm),
            "" if base_row else (c.verdict or "—")]) + " |")
    return out + [""]


def arms_table(t: SeedTable) -> list[str]:
    out = ["### Arms", "", "| arm | method | settings | seeds | wall time (s) | threads |", "|---|---|---|---|---:|---|"]
    for a in t.arms:
        settings = ", ".join(f"`{s}`" for s in canonical_settings(a.settings).split(";") if s) or "(defaults)"
        out.append(f"| {arm_label(a, t)} | {a.method} | {settings.replace('|', '/')} | "
                   f"{','.join(map(str, a.seeds))} | {'n/a' if a.wall_time_s is None else f'{a.wall_time_s:.1f}'} | "
                   f"{a.threads} |")
    return out + [""]


def markdown(t: SeedTable) -> str:
    n_runs = sum(len(a.seeds) for a in t.arms)
    out = [f"## {t.model} / {t.data}", "",
           f"From `{t.source}` alone ({n_runs} runs, {len(t.arms)} arms): `python scripts/make_tables.py`. "
           "Per cell: mean ± sample sd over seeds (n-1) and the 95% confidence interval of the mean "
           "(Student t, n-1 degrees of freedom). "
           + (f"Each arm against `{t.baseline}`: a paired t-test over seeds when the seeds match, else Welch's; "
              f"the p-values of the whole table are Holm-adjusted; an adjusted p >= {t.alpha:g} is a **tie**. "
              if t.baseline else "")
           + "A best mean is bold only when its 95% CI does not overlap the runner-up's.", ""]
    for m in t.metrics:
        out += metric_table(t, m)
    out += arms_table(t)
    if t.constant:
        out += ["Constant in every run: " + ", ".join(f"{k} = {v:g}" for k, v in t.constant.items()), ""]
    if t.aliases:
        out += ["The same numbers as a tabled metric in every run (not tabled or tested again): "
                + ", ".join(f"{k} = {v}" for k, v in t.aliases.items()), ""]
    out += [f"- {n}" for n in t.notes] + ([""] if t.notes else [])
    return "\n".join(out).rstrip() + "\n"


def to_frame(t: SeedTable) -> pd.DataFrame:
    """One line per (arm, metric): n, mean, sd, CI, the comparison, Holm's p, the verdict, bold."""
    recs = []
    for a in t.arms:
        for m in t.metrics:
            c = t.cells.get((a.name, m))
            if c is None:
                continue
            d, cmp = c.described, c.comparison
            recs.append({"arm": a.name, "metric": m, "n": d.n, "mean": d.mean, "sd": d.sd, "ci_low": d.lo,
                         "ci_high": d.hi, "diff_vs_baseline": None if cmp is None else cmp.diff,
                         "test": "" if cmp is None else cmp.test, "p": None if cmp is None else cmp.p,
                         "p_holm": c.p_holm, "verdict": c.verdict, "bold": c.bold,
                         "equals_defaults": a.equals_defaults})
    return pd.DataFrame.from_records(recs)


def find_csvs(paths: list[str]) -> list[Path]:
    found = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(p.rglob("per_seed.csv"))
        elif p.is_file():
            found.append(p)
        else:
            raise RecordError(f"{raw}: no such file or folder")
    if not found:
        raise RecordError(f"no per_seed.csv in {', '.join(paths)}")
    return found


def main(argv: list[str] | None = None) -> int:
    """``python scripts/make_tables.py CSV_OR_FOLDER... [--baseline-arm tuned] [--defaults-arm fixed]``."""
    ap = argparse.ArgumentParser(prog="make_tables.py", description="Tables (table.md, table_stats.csv, beside "
                                 "each per_seed.csv) from per-seed CSVs alone.")
    ap.add_argument("paths", nargs="+", metavar="CSV_OR_FOLDER", help="per-seed CSVs, or folders searched for "
                    "per_seed.csv")
    ap.add_argument("--baseline-arm", default="tuned", help="the arm every other is tested against (default tuned)")
    ap.add_argument("--defaults-arm", default="fixed", help="the arm with the default weights (default fixed)")
    ap.add_argument("--alpha", type=float, default=ALPHA, help="significance level after Holm (default 0.05)")
    args = ap.parse_args(argv)
    try:
        for csv_path in find_csvs(args.paths):
            t = build(csv_path, args.baseline_arm, args.defaults_arm, args.alpha)
            atomic_write_text(markdown(t), csv_path.parent / "table.md")
            atomic_write_text(to_frame(t).to_csv(index=False, lineterminator="\n"),
                              csv_path.parent / "table_stats.csv")
            print(f"{csv_path.parent / 'table.md'}: {len(t.arms)} arms, {len(t.metrics)} metrics")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
