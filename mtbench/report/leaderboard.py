"""The leaderboard figure: each method's mean rank over the benchmarks against its step-time ratio to fixed.

Inputs: per-seed CSVs (one per benchmark, :mod:`mtbench.report.records`) and the
step-time ratios, either ``results/bench_methods.md`` (its table with the columns
``method`` and ``ratio to fixed``) or a CSV with the columns ``method,ratio_to_fixed``.

The arms on the board are those whose label is a method of the ratios (fixed,
softadapt, ..., mtadam) plus the baseline arm (``tuned``: the ratio of its method,
fixed); ``--arms`` chooses others (an arm without a ratio of its own takes its
method's). In each benchmark the arms on the board are ranked by the mean of the
primary metric over seeds (1 = best; equal means share the average rank); an arm's
mean rank is over the benchmarks it is in. A benchmark with fewer than two arms on the
board (one that has only begun) is left out with a note. Benchmarks can rank different numbers of arms
(SRGAN and CycleGAN run the papers' arms only): each benchmark's ranks are stretched linearly onto 1..N, N the
most arms any benchmark ranks (``1 + (rank - 1) * (N - 1) / (n - 1)`` for a benchmark of n arms), so a last
place counts as a last place everywhere and 1 stays the best; with equal n nothing changes.
Writes ``leaderboard.png`` (mean rank up, 1 at the top, against the ratio on a log axis; short labels,
legend inside the axes) and ``leaderboard.csv`` (per arm: ratio, mean rank, benchmarks, the rank in each).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import rankdata

from mtbench.report.records import RecordError, number, read_seed_csv
from mtbench.report.seedstats import describe
from mtbench.report.seedtable import find_csvs
from mtbench.utils import atomic_write_text, atomic_writer

SHORT = {"fixed": "fixed", "tuned": "fixed (tuned)", "softadapt": "SoftAdapt", "softadapt_normalized": "SA-norm",
         "softadapt_loss_weighted": "SA-loss-w", "mtadam": "MTAdam", "balanced": "balanced ref.",
         "softadapt_on_defaults": "SoftAdapt (on defaults)", "softadapt_normalized_on_defaults": "SA-norm (on defaults)",
         "softadapt_loss_weighted_on_defaults": "SA-loss-w (on defaults)", "uncertainty": "Uncertainty",
         "dwa": "DWA", "rlw": "RLW", "gls": "GLS", "relobralo": "ReLoBRaLo", "famo": "FAMO", "gradnorm": "GradNorm",
         "mgda": "MGDA-UB", "pcgrad": "PCGrad", "cagrad": "CAGrad", "imtl": "IMTL", "aligned_mtl": "Aligned-MTL"}
BASELINE_ARM = "tuned"


def read_ratios(path: str | Path) -> dict[str, float]:
    """``{method: step time / fixed's}`` from bench_methods.md's table or a ``method,ratio_to_fixed`` CSV."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RecordError(f"{p}: cannot read it: {err}") from None
    out: dict[str, float] = {}
    if p.suffix == ".csv":
        for r in csv.DictReader(io.StringIO(text)):
            if "method" not in r or "ratio_to_fixed" not in r:
                raise RecordError(f"{p}: needs the columns method,ratio_to_fixed")
            x = number(r["ratio_to_fixed"])
            if x is None or x <= 0:
                raise RecordError(f"{p}: ratio_to_fixed of {r['method']!r} must be a positive number")
            out[r["method"]] = x
    else:
        head = None
        for line in text.splitlines():
            cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            if cells is None:
                if head is not None and out:
                    break
                head = None
                continue
            if head is None:
                if "method" in cells and any("ratio to fixed" in c for c in cells):
                    head = (cells.index("method"), next(i for i, c in enumerate(cells) if "ratio to fixed" in c))
                continue
            if len(cells) > max(head) and not set(cells[0]) <= set("-: "):
                x = number(cells[head[1]])
                if x is not None and x > 0:
                    out[cells[head[0]]] = x
    if not out:
        raise RecordError(f"{p}: no step-time ratios (a table with the columns `method` and `ratio to fixed`)")
    return out


def benchmark_names(csvs: list[Path]) -> list[str]:
    """Each CSV's folder relative to the folder they share (``mnist/t10k_uniform``): never an absolute path."""
    parents = [p.parent.resolve() for p in csvs]
    root = Path(os.path.commonpath(parents)) if len(parents) > 1 else parents[0].parent
    return [str(q.relative_to(root)) or q.name for q in parents]


def ranks(csvs: list[Path], ratios: dict[str, float], arms: list[str] | None = None) -> pd.DataFrame:
    """Per arm on the board: ``ratio``, ``mean_rank``, ``benchmarks`` and a rank column per benchmark."""
    per: dict[str, dict[str, float]] = {}
    arm_ratio: dict[str, float] = {}
    names = benchmark_names(csvs)
    ranked: list[str] = []
    raw: dict[str, dict[str, float]] = {}  # benchmark -> arm -> rank among that benchmark's arms
    for path, name in zip(csvs, names):
        table = read_seed_csv(path)
        if not table.rows:
            raise RecordError(f"{path}: no rows")
        primaries = {(r["primary_metric"], r["higher_is_better"]) for r in table.rows}
        if len(primaries) != 1:
            raise RecordError(f"{path}: the rows disagree on the primary metric")
        primary, hib = next(iter(primaries))
        means: dict[str, float] = {}
        for a in dict.fromkeys(r["arm"] for r in table.rows):
            rows = [r for r in table.rows if r["arm"] == a]
            method = rows[0]["method"]
            on_board = (a in arms) if arms is not None else (a in ratios or a == BASELINE_ARM)
            if not on_board:
                continue
            ratio = ratios.get(a, ratios.get(method))
            if ratio is None:
                raise RecordError(f"{path}: arm {a!r} (method {method!r}) has no step-time ratio")
            arm_ratio[a] = ratio
            vals = [v for v in (number(r.get("metric." + primary, "")) for r in rows) if v is not None]
            if vals:
                means[a] = describe(vals).mean
        if len(means) < 2:  # a rank among one arm (a benchmark that has only begun) says nothing
            if means:
                print(f"note: {name}: only {', '.join(means)} on the board so far: not ranked", file=sys.stderr)
            continue
        ranked.append(name)
        order = list(means)
        score = [-means[a] if hib == "true" else means[a] for a in order]
        raw[name] = dict(zip(order, (float(r) for r in rankdata(score, method="average"))))
    n_max = max((len(by) for by in raw.values()), default=0)
    for name, by in raw.items():  # stretched onto 1..n_max: a last place is a last place in every benchmark
        for a, rk in by.items():
            per.setdefault(a, {})[name] = 1 + (rk - 1) * (n_max - 1) / (len(by) - 1)
    recs = []
    for a, by in per.items():
        recs.append({"arm": a, "label": SHORT.get(a, a), "ratio": arm_ratio[a],
                     "mean_rank": sum(by.values()) / len(by), "benchmarks": len(by),
                     **{f"rank:{n}": by.get(n) for n in ranked}})
    df = pd.DataFrame.from_records(recs)
    df = df.sort_values(["mean_rank", "arm"]).reset_index(drop=True) if len(df) else df
    df.attrs["benchmarks"] = ranked  # the benchmarks with two or more arms on the board
    df.attrs["n_max"] = n_max if len({len(by) for by in raw.values()}) > 1 else None  # set when ranks were stretched
    return df


# where a point's name may go, in points from the marker: right, left, above, below, then further out
_OFFSETS = [(6, 3, "left"), (-6, 3, "right"), (6, -11, "left"), (-6, -11, "right"), (0, 8, "center"),
            (0, -16, "center"), (10, 14, "left"), (-10, 14, "right"), (10, -22, "left"), (-10, -22, "right")]


def _place_labels(fig, ax, df: pd.DataFrame) -> None:
    """Name every point beside its marker, each name at the first candidate offset that overlaps no name placed
    before it, no marker and not the legend (else at the offset with the least overlap): points with close
    ranks and step times (common: many arms cost what fixed costs) stay readable."""
    renderer = fig.canvas.get_renderer()
    fig.draw_without_rendering()  # final axes limits and legend position
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend is not None else []
    markers = [ax.transData.transform((x, y)) for x, y in zip(df["ratio"], df["mean_rank"])]
    half = 6.0  # half a marker's size in pixels, about
    ax_box = ax.get_window_extent(renderer)

    def overlap(a, b) -> float:
        w = min(a.x1, b.x1) - max(a.x0, b.x0)
        h = min(a.y1, b.y1) - max(a.y0, b.y0)
        return w * h if w > 0 and h > 0 else 0.0

    from matplotlib.transforms import Bbox

    marker_boxes = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in markers]
    for j, (_, r) in enumerate(df.iterrows()):
        best = None
        for dx, dy, ha in _OFFSETS:
            t = ax.annotate(r["label"], (r["ratio"], r["mean_rank"]), textcoords="offset points", xytext=(dx, dy),
                            fontsize="small", ha=ha)
            box = t.get_window_extent(renderer)
            cost = sum(overlap(box, o) for o in taken + marker_boxes)
            # a name nearer to another point than to its own reads as that point's
            gap = [max(b.x0 - x, 0, x - b.x1) ** 2 + max(b.y0 - y, 0, y - b.y1) ** 2
                   for b in [box] for x, y in markers]
            cost += 500.0 * sum(g < gap[j] for k, g in enumerate(gap) if k != j)
            cost += 0.0 if (box.x0 >= ax_box.x0 and box.x1 <= ax_box.x1 and box.y0 >= ax_box.y0
                            and box.y1 <= ax_box.y1) else 1e6  # outside the axes: cut off
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, t, box)
            else:
                t.remove()
            if cost == 0:
                break
        taken.append(best[2])


def plot(df: pd.DataFrame, path: Path, n_benchmarks: int) -> None:
    """Mean rank (1 at the top) against the step-time ratio (log axis); one marker per arm, legend inside."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    markers = "osD^vP*Xh<>"
    for i, r in df.iterrows():
        label = r["label"] + (f" ({r['benchmarks']}/{n_benchmarks})" if r["benchmarks"] != n_benchmarks else "")
        ax.scatter([r["ratio"]], [r["mean_rank"]], s=60, marker=markers[i % len(markers)], label=label, zorder=3)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = df["ratio"].min(), df["ratio"].max()
    ax.set_xlim(lo / 1.6, hi * 2.8)  # room on the right for the legend, clear of the points and their names
    top = max(df["mean_rank"].max(), 1.0)
    ax.set_ylim(top + 0.5, 0.5)  # rank 1 (best) at the top
    ax.set_xlabel("step time / fixed's step time (log scale)")
    n_max = df.attrs.get("n_max")  # set when a benchmark's ranks were stretched onto 1..n_max
    stretched = f"\n(each benchmark stretched to 1..{n_max})" if n_max else ""
    ax.set_ylabel("mean rank over benchmarks (1 = best)" + stretched)
    ax.set_title(f"Mean rank over {n_benchmarks} benchmark{'s' if n_benchmarks != 1 else ''} vs step time",
                 fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize="small", framealpha=0.9)
    _place_labels(fig, ax, df)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def main(argv: list[str] | None = None) -> int:
    """``python scripts/plot_leaderboard.py CSV_OR_FOLDER... --ratios results/bench_methods.md --out DIR``."""
    ap = argparse.ArgumentParser(prog="plot_leaderboard.py", description="Mean rank over benchmarks vs step-time "
                                 "ratio: leaderboard.png and leaderboard.csv, from per-seed CSVs alone.")
    ap.add_argument("paths", nargs="+", metavar="CSV_OR_FOLDER")
    ap.add_argument("--ratios", required=True, help="bench_methods.md, or a CSV method,ratio_to_fixed")
    ap.add_argument("--out", required=True, metavar="DIR")
    ap.add_argument("--arms", default=None, help="comma-separated arms to rank (default: the methods of the ratios "
                    "and tuned)")
    args = ap.parse_args(argv)
    try:
        csvs = find_csvs(args.paths)
        df = ranks(csvs, read_ratios(args.ratios), args.arms.split(",") if args.arms else None)
        if df.empty:
            raise RecordError("no arm of the board in the CSVs")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot(df, out / "leaderboard.png", len(df.attrs["benchmarks"]))
        atomic_write_text(df.to_csv(index=False, lineterminator="\n"), out / "leaderboard.csv")
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(df[["label", "ratio", "mean_rank", "benchmarks"]].to_string(index=False))
    print(f"{out / 'leaderboard.png'}, {out / 'leaderboard.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
