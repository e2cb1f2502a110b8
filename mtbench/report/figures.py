"""The figures of ``mtbench report`` (matplotlib, PNG; no pyplot, no display needed).

Per (model, data) table: ``<model>_<data>_loss.png``, the total training loss
over the steps per method, and per trained row
``<model>_<data>_weights_<method>[-<settings>].png``, each loss term's weight
over the steps. The total loss is the **unweighted sum of the logged loss
terms** (``loss/<term>`` for every term with a ``weight/<term>``; a GAN's
``loss/D`` is not a term), so that methods that weight the terms differently
are compared on the same objective. Curves are the mean over seeds (steps
aligned; the loss with a min-max band); the y-axis is logarithmic when the
values span more than two decades. :func:`plan_figures` names the files and
says which rows have no series to plot.
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

from mtbench.report.runs import METRICS, Run
from mtbench.report.table import Row, group_rows
from mtbench.utils import atomic_writer

LOSS_NOTE = ("Total loss: the unweighted sum of the logged loss terms (`loss/<term>`, each averaged over its "
             "logging interval; a GAN's `loss/D` is not included), mean over seeds with a min-max band.")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def mean_over_runs(per_run: list[tuple[list[int], list[float]]]) -> tuple[list[int], list[float], list[float],
                                                                           list[float]]:
    """Align series on their steps: (steps, mean, min, max) over the runs that logged each step."""
    at: dict[int, list[float]] = {}
    for steps, values in per_run:
        for s, v in zip(steps, values):
            at.setdefault(s, []).append(v)
    steps = sorted(at)
    finite = [[v for v in at[s] if math.isfinite(v)] or [math.nan] for s in steps]
    return (steps, [sum(v) / len(v) for v in finite], [min(v) for v in finite], [max(v) for v in finite])


def log_scale(values: Iterable[float]) -> bool:
    """Whether the positive finite values span more than two decades."""
    pos = [v for v in values if math.isfinite(v) and v > 0]
    return bool(pos) and max(pos) / min(pos) > 100.0


def total_loss(run: Run) -> tuple[list[int], list[float]]:
    """The unweighted sum of the run's logged loss terms, at the steps where every term was logged."""
    terms = run.terms or [k.split("/", 1)[1] for k in run.series if k.startswith("loss/") and k != "loss/D"]
    per = [run.series.get(f"loss/{t}") for t in terms]
    if not per or any(p is None for p in per):
        return [], []
    maps = [dict(zip(p.steps, p.values)) for p in per]
    steps = sorted(set.intersection(*(set(m) for m in maps)))
    return steps, [sum(m[s] for m in maps) for s in steps]


def _colors(n: int) -> list:
    import matplotlib

    if n <= 10:
        cmap = matplotlib.colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = matplotlib.colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _new_figure():
    from matplotlib.figure import Figure  # no pyplot: no display, no global backend state

    fig = Figure(figsize=(8.5, 4.6), layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> None:
    """PNG into a temp file renamed over ``path``: never through a link, never a partial file."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def _finish_axes(ax, xlabel: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")


def _wrap(text: str, width: int = 48) -> str:
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _legend(ax, n: int, title: str) -> None:
    """Outside, right of the axes; below them when the labels are long (method variants)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if max(len(lb) for lb in labels) <= 32:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title=title,
                  title_fontsize="small", ncol=1 if n <= 16 else 2, frameon=False, borderaxespad=0.0)
    else:  # below the x label (constrained layout keeps it clear of it), the figure taller by the legend's rows
        ncol = 2 if n > 3 else 1
        labels = [_wrap(lb, 60) for lb in labels]
        fig = ax.figure
        width, height = fig.get_size_inches()
        per = math.ceil(len(labels) / ncol)  # matplotlib fills the first column first
        rows = max(sum(lb.count("\n") + 1 for lb in labels[i:i + per]) for i in range(0, len(labels), per))
        fig.set_size_inches(width, height + 0.2 * max(0, rows - 4))
        fig.legend([*handles], labels, loc="outside lower center", fontsize="small", title=title,
                   title_fontsize="small", ncol=ncol, frameon=False)


def _linestyle(i: int) -> str:
    return ("-", "--", ":", "-.")[(i // 10) % 4]


def plot_weights(row: Row, path: Path) -> None:
    """Each term's weight over the steps, mean over the row's seeds."""
    terms: list[str] = []
    for r in row.runs:
        terms += [t for t in r.terms if t not in terms]
    fig, ax = _new_figure()
    allv: list[float] = []
    constant = True
    for i, (term, color) in enumerate(zip(terms, _colors(len(terms)))):
        key = f"weight/{term}"
        per = [(r.series[key].steps, r.series[key].values) for r in row.runs if key in r.series]
        if not per:
            continue
        steps, mean, _, _ = mean_over_runs(per)
        allv += mean
        fin = [v for v in mean if math.isfinite(v)]
        constant = constant and (not fin or max(fin) - min(fin) <= 1e-12 * max(1.0, abs(max(fin))))
        ax.plot(steps, mean, color=color, linestyle=_linestyle(i), linewidth=1.4,
                marker="o" if len(steps) <= 25 else None, markersize=3, label=term)
    if log_scale(allv):
        ax.set_yscale("log")
    n = row.n
    points = max((len(r.series[k].steps) for r in row.runs for k in r.series if k.startswith("weight/")), default=0)
    note = (f" (only {points} logged step{'s' if points != 1 else ''}: too few to show a trend; lower "
            f"trainer.log_every)" if points < 3 else " (constant weights)" if constant else "")
    ax.set_title(_wrap(f"{row.model} / {row.data}: loss-term weights, {row.short_label or row.label}", 90) + "\n"
                 f"mean over {n} seed{'s' if n != 1 else ''}" + note, fontsize="medium")
    _finish_axes(ax, "step", "weight")
    _legend(ax, len(terms), "term")
    _save(fig, path)


def plot_loss(model: str, data: str, rows: list[Row], path: Path) -> None:
    """Per row (method): the total loss over the steps, mean over seeds with a min-max band."""
    fig, ax = _new_figure()
    allv: list[float] = []
    colors = _colors(len(rows))
    for i, row in enumerate(rows):
        per = [p for p in (total_loss(r) for r in row.runs) if p[0]]
        if not per:
            continue
        steps, mean, lo, hi = mean_over_runs(per)
        allv += lo + hi
        ax.plot(steps, mean, color=colors[i], linewidth=1.5, marker="o" if len(steps) <= 25 else None, markersize=3,
                linestyle=_linestyle(i), label=f"{row.short_label or row.label} (n={row.n})")
        if len(per) > 1:
            ax.fill_between(steps, lo, hi, color=colors[i], alpha=0.18, linewidth=0)
    if log_scale(allv):
        ax.set_yscale("log")
    ax.set_title(f"{model} / {data}: total training loss (unweighted sum of the loss terms)\n"
                 "mean over seeds, band: min-max", fontsize="medium")
    _finish_axes(ax, "step", "Σ loss terms")
    _legend(ax, len(rows), "method")
    _save(fig, path)


Plan = tuple[str, Callable[[Path], None]]  # (file name, draw(path))


def plan_figures(rows: list[Row]) -> tuple[list[Plan], dict[tuple[str, str], list[tuple[str, str]]], list[str]]:
    """The figures to draw for the trained rows (not baselines, not trivial ones).

    Returns (plans: (file name, draw into a path)), {(model, data): [(title, file name)]}
    for the markdown, and notes for the rows that have nothing to plot.
    """
    plans: list[Plan] = []
    figures: dict[tuple[str, str], list[tuple[str, str]]] = {}
    notes: list[str] = []
    taken: set[str] = set()
    for (model, data), grows in group_rows(rows).items():
        mrows = [r for r in grows if not r.baseline and not r.trivial]
        if any(total_loss(x)[0] for r in mrows for x in r.runs):
            name = f"{_slug(model)}_{_slug(data)}_loss.png"
            taken.add(name)
            plans.append((name, lambda p, m=model, d=data, a=mrows: plot_loss(m, d, a, p)))
            figures.setdefault((model, data), []).append(("total loss", name))
        else:
            notes.append(f"{model}/{data}: no loss series in {METRICS}; no loss figure")
        for row in mrows:
            if not any(k.startswith("weight/") for x in row.runs for k in x.series):
                notes.append(f"{model}/{data} {row.label}: no weight series in {METRICS}; no weights figure")
                continue
            stem = f"{_slug(model)}_{_slug(data)}_weights_{_slug(row.method)}"
            if row.settings:  # a variant: its settings, or a short digest of them when long
                tag = _slug(row.settings)
                stem += "-" + (tag if len(tag) <= 40 else hashlib.sha1(row.settings.encode()).hexdigest()[:8])
            name, k = f"{stem}.png", 2
            while name in taken:
                name, k = f"{stem}-{k}.png", k + 1
            taken.add(name)
            plans.append((name, lambda p, a=row: plot_weights(a, p)))
            figures.setdefault((model, data), []).append((f"weights: {row.label}", name))
    return plans, figures, notes
