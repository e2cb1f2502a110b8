"""The rows of ``mtbench report``: statistics over seeds, the method order, markdown and CSV.

Runs are grouped per (model, data) into one table each; within a table, one
:class:`Row` per method and per variant of a method (runs whose command lines
differ in a setting that changes what is computed are never pooled), then one
per baseline (:class:`mtbench.baseline.Baseline`) that has a metric of the
table. A row's metrics are the mean and sample standard deviation (n-1, None
with one seed) over its runs, computed with :mod:`statistics` so that the
numbers are exact and a NaN result stays NaN; the CSV is written with pandas.

Methods come in the order of the papers (fixed, the SoftAdapt variants of
Heydari et al. 2019, MTAdam of Malkiel & Wolf 2021), then the others
alphabetically, then the untrained baselines of ``mtbench trivial``. The
primary metric is the first column; GAN tables then list FID and KID before
the task metrics (see README.md, "Reproducing results/").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from mtbench.baseline import Baseline
from mtbench.report.runs import Run, UnfinishedRun

METHOD_ORDER = ("fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam")
# untrained baselines of `mtbench trivial` (mtbench/trivial.py): rows of their own, after every trained method
TRIVIAL_METHODS = ("identity", "mean_train_photo")
TRIVIAL_LABEL = "trivial baseline"
# command-line overrides that do not change what a run computes: never split rows on them
NEUTRAL_OVERRIDES = {"seed", "model", "data", "method", "resume", "name", "trainer.progress", "trainer.log_every",
                     "trainer.checkpoint_every", "trainer.num_workers", "trainer.eval_batch_size",
                     "trainer.image_every", "device.threads"}


class _ItemAccess:
    """``row["method"]`` as ``row.method``: read access for callers written against the former dict rows."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


@dataclass(frozen=True)
class Stat(_ItemAccess):
    """A metric over a row's runs: mean, sample std (None with fewer than 2 values) and count (None: a baseline)."""

    mean: float | None
    std: float | None = None
    n: int | None = None


@dataclass
class Row(_ItemAccess):
    """One table row: a method (variant) over its seeds, or a baseline (``baseline``: no seeds, no std).

    The table's own fields (``metric_names`` in column order, ``primary_metric``,
    ``higher_is_better``, ``common_settings``: the overrides every run of the table
    shares) are repeated on each of its rows.
    """

    model: str
    data: str
    method: str
    label: str
    metrics: dict[str, Stat]
    metric_names: list[str]
    primary_metric: str
    higher_is_better: bool
    settings: str = ""
    baseline: bool = False
    trivial: bool = False
    n: int | None = None
    seeds: list[Any] = field(default_factory=list)
    duplicate_seeds: list[Any] = field(default_factory=list)
    wall_time_s: float | None = None
    common_settings: dict[str, str] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    #: the figures' name for the row (legends, titles): a ``labels`` rule's name, else the method and only the
    #: settings that tell it from the method's other rows, keys and paths shortened (:func:`short_labels`)
    short_label: str = ""


def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the five methods of the papers in their order, the others alphabetically, then the trivial ones."""
    if method in TRIVIAL_METHODS:
        return (len(METHOD_ORDER) + 1, str(TRIVIAL_METHODS.index(method)))
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def stats(values: list[float]) -> Stat:
    """Mean and sample standard deviation (n-1); NaN when they cannot be computed (infinities)."""
    n = len(values)
    if n == 0:
        return Stat(None, None, 0)
    try:
        mean = statistics.mean(values)
    except (ValueError, OverflowError):
        mean = math.nan
    std = None
    if n >= 2:
        try:
            std = statistics.stdev(values)
        except (ValueError, OverflowError):
            std = math.nan
    return Stat(mean, std, n)


def override_map(overrides: list[str]) -> dict[str, str]:
    """``key=value`` overrides that change what a run computes (not seeds, logging, threads, hydra.*)."""
    out = {}
    for o in overrides:
        if "=" not in o:
            continue
        key, value = o.split("=", 1)
        key = key.lstrip("+~")
        if key in NEUTRAL_OVERRIDES or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        # a resumed run's overrides come back from its run.yaml as true/false, a fresh run's as typed (True)
        out[key] = value.lower() if value.lower() in ("true", "false") else value
    return out


def _group_settings(runs: list[Run]) -> tuple[dict[str, str], list[str]]:
    """(settings common to every run of the group, keys whose values differ between its runs)."""
    maps = [override_map(r.overrides) for r in runs]
    keys = sorted({k for m in maps for k in m})
    common = {k: maps[0][k] for k in keys if all(k in m and m[k] == maps[0][k] for m in maps)}
    return common, [k for k in keys if k not in common]


def _fid_rank(name: str) -> int:
    """GAN metrics: FID and KID first (0), their per-direction values (1), KID stds (2), task metrics (3),
    image counts (4)."""
    if name in ("fid", "kid"):
        return 0
    if name.startswith(("fid_images", "kid_std")):
        return 4 if name.startswith("fid_images") else 2
    if name.startswith(("fid_", "kid_")):
        return 1
    return 3


def _metric_order(runs: list[Run], primary: str) -> list[str]:
    """The primary metric, then FID and KID (when the runs have them), then the task metrics in logged order."""
    names = [primary]
    for r in runs:
        names += [k for k in r.metrics if k not in names]
    return [primary, *sorted(names[1:], key=_fid_rank)]  # stable: the logged order within each rank


def _method_rows(model: str, data: str, group: list[Run], names: list[str], primary: str, hib: bool,
                 common: dict[str, str], varying: list[str]) -> list[Row]:
    cells: dict[tuple[str, str], list[Run]] = {}
    for r in group:
        m = override_map(r.overrides)
        cells.setdefault((r.method, ", ".join(f"{k}={m[k]}" for k in varying if k in m)), []).append(r)
    rows = []
    for (method, settings) in sorted(cells, key=lambda c: (method_rank(c[0]), c[1])):
        cell = cells[(method, settings)]
        seeds = [r.seed for r in cell]
        walls = [r.wall_time_s for r in cell if r.wall_time_s is not None]
        trivial = method in TRIVIAL_METHODS
        rows.append(Row(
            model=model, data=data, method=method, settings=settings,
            label=method + (f" ({TRIVIAL_LABEL})" if trivial else "") + (f" [{settings}]" if settings else ""),
            metrics={n: stats([r.metrics[n] for r in cell if r.metrics.get(n) is not None]) for n in names},
            metric_names=names, primary_metric=primary, higher_is_better=hib, trivial=trivial, n=len(cell),
            seeds=seeds, duplicate_seeds=sorted({s for s in seeds if seeds.count(s) > 1}, key=str),
            wall_time_s=statistics.mean(walls) if walls else None, common_settings=common, runs=cell))
    return rows


def parse_label_rule(text: str) -> tuple[str, str, str]:
    """``NAME:KEY=VALUE`` (``tuned:method.weights=baseline``) as (name, key, value); ValueError naming it."""
    name, sep, cond = text.partition(":")
    key, eq, value = cond.partition("=")
    if not sep or not eq or not name.strip() or not key.strip():
        raise ValueError(f"--label {text!r}: expected NAME:KEY=VALUE, e.g. tuned:method.weights=baseline")
    return name.strip(), key.strip().lstrip("+~"), value


def _short(key: str, value: str) -> str:
    value = value.rstrip("/").rsplit("/", 1)[-1] if "/" in value else value
    return f"{key.rsplit('.', 1)[-1]}={value}"


def short_labels(rows: list[Row], rules: Sequence[tuple[str, str, str]] = ()) -> None:
    """Set each trained row's ``short_label``: the name of the first rule ``(name, key, value)`` whose
    ``key=value`` every run of the row has; else the method, with the settings in which it differs from the
    method's other rows without a rule name (``on_default_weights=true``: the key's last part, a path's last
    component). Baselines and trivial rows keep their label."""
    named: dict[int, str] = {}
    for i, row in enumerate(rows):
        if row.baseline or row.trivial:
            row.short_label = row.label
            continue
        maps = [override_map(r.overrides) for r in row.runs]
        for name, key, value in rules:
            if maps and all(m.get(key) == value for m in maps):
                named[i] = name
                break
    for i, row in enumerate(rows):
        if row.baseline or row.trivial:
            continue
        if i in named:
            row.short_label = named[i]
            continue
        mine = override_map(row.runs[0].overrides) if row.runs else {}
        others = [override_map(o.runs[0].overrides) for j, o in enumerate(rows)
                  if j != i and j not in named and o.runs and not o.baseline and not o.trivial
                  and (o.model, o.data, o.method) == (row.model, row.data, row.method)]
        keys = [k for k in sorted(mine) if any(o.get(k) != mine[k] for o in others)]
        row.short_label = row.method + (f" [{', '.join(_short(k, mine[k]) for k in keys)}]" if keys else "")


def build_rows(runs: list[Run], baselines: list[Baseline] = ()) -> list[Row]:
    """Table rows: per (model, data), one per (method, varying settings), then the baselines that match."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.model, r.data), []).append(r)
    rows: list[Row] = []
    used = [False] * len(baselines)
    for (model, data) in sorted(groups):
        g = groups[(model, data)]
        primary = g[0].primary_metric or next(iter(g[0].metrics), "?")
        hib = g[0].higher_is_better
        names = _metric_order(g, primary)
        common, varying = _group_settings(g)
        rows += _method_rows(model, data, g, names, primary, hib, common, varying)
        names_of_data = {data} | {r.loader for r in g if r.loader}  # a tune file names the loader (facades)
        for i, b in enumerate(baselines):
            if (b.model is not None and b.model != model) or (b.data is not None and b.data not in names_of_data):
                continue
            values = dict(b.metrics)
            if b.score is not None:
                values.setdefault(primary, b.score)
            if not any(k in values for k in names):
                continue
            used[i] = True
            rows.append(Row(model=model, data=data, method=b.label, label=f"{b.label} (baseline)", baseline=True,
                            metrics={k: Stat(values[k]) for k in names if k in values}, metric_names=names,
                            primary_metric=primary, higher_is_better=hib, common_settings=common))
    for b, ok in zip(baselines, used):
        if not ok:
            scope = "/".join(x for x in (b.model, b.data) if x is not None) or "any table"
            tables = ", ".join(f"{m}/{d}" for m, d in sorted(groups))
            raise ValueError(f"baseline {b.label!r} ({scope}) matches no table: it has none of the metrics of "
                             f"{tables} (or names another model/data)")
    return rows


def group_rows(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """The rows per (model, data), in order."""
    out: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        out.setdefault((r.model, r.data), []).append(r)
    return out


# --------------------------------------------------------------------------- markdown
def fmt(x: float | None) -> str:
    """4 decimals; scientific for tiny magnitudes; ``n/a`` for None."""
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4f}"


def _cell(s: Stat | None, baseline: bool) -> str:
    if s is None or s.mean is None:
        return "—"
    return fmt(s.mean) if baseline else f"{fmt(s.mean)} ± {fmt(s.std)}"


def markdown_table(rows: list[Row]) -> str:
    """The markdown table of one (model, data) group."""
    first = rows[0]
    names, primary = first.metric_names, first.primary_metric
    arrow = "↑" if first.higher_is_better else "↓"
    head = ["method", *[f"{n} {arrow}" if n == primary else n for n in names], "seeds", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        cells = [f"*{r.method}* (baseline)" if r.baseline else r.label,
                 *[_cell(r.metrics.get(n), r.baseline) for n in names],
                 "—" if r.n is None else str(r.n), "—" if r.wall_time_s is None else f"{r.wall_time_s:.1f}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[Row], unfinished: list[UnfinishedRun], notes: list[str], sources: list[str], n_runs: int,
             figures: dict[tuple[str, str], list[tuple[str, str]]] | None = None, figure_note: str = "") -> str:
    """The whole report: a table per (model, data) (with its figures, when given), notes, unfinished runs."""
    out = ["# mtbench report", "",
           f"{n_runs} finished run{'s' if n_runs != 1 else ''} from {', '.join(f'`{s}`' for s in sources)}; "
           f"made {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}.", "",
           "Final metrics: mean ± sample standard deviation over seeds (n-1; n/a with one seed). "
           "The primary metric comes first: ↑ higher is better, ↓ lower is better. "
           "Wall time: mean per run.", ""]
    for (model, data), grows in group_rows(rows).items():
        out += [f"## {model} / {data}", ""]
        if grows[0].common_settings:
            out += ["Settings of every run: " + ", ".join(f"`{k}={v}`" for k, v in grows[0].common_settings.items()),
                    ""]
        out += [markdown_table(grows), ""]
        figs = (figures or {}).get((model, data), [])
        if figs:
            out += [figure_note, "", *[f"![{title}]({name})" for title, name in figs], ""]
    if notes:
        out += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if unfinished:
        out += ["## Unfinished runs (not in the tables)", "", "| run dir | last logged step | checkpoint |",
                "|---|---:|---|"]
        for u in unfinished:
            step = "—" if u.last_logged_step is None else str(u.last_logged_step)
            out.append(f"| `{u.run_dir}` | {step} | {'yes' if u.checkpoint else 'no'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("model", "data", "method", "settings", "baseline", "n_seeds", "seeds", "wall_time_s_mean",
               "primary_metric", "higher_is_better")


def to_frame(rows: list[Row]) -> pd.DataFrame:
    """The rows as the CSV's table: identification columns, then ``<metric>_mean`` and ``<metric>_std``.

    Cells are as written: floats at full precision, ``n/a`` for the std of one seed, empty
    (NaN) for a metric a row does not have; booleans as ``true``/``false``, seeds ``;``-joined.
    """
    names: list[str] = []
    for r in rows:
        names += [n for n in r.metric_names if n not in names]
    records = []
    for r in rows:
        rec: dict[str, Any] = {
            "model": r.model, "data": r.data, "method": r.method, "settings": r.settings,
            "baseline": str(r.baseline).lower(), "n_seeds": "" if r.n is None else str(r.n),
            "seeds": ";".join(str(s) for s in r.seeds),
            "wall_time_s_mean": "" if r.wall_time_s is None else repr(r.wall_time_s),
            "primary_metric": r.primary_metric, "higher_is_better": str(r.higher_is_better).lower()}
        for n in names:
            s = r.metrics.get(n)
            if s is not None and s.mean is not None:
                rec[f"{n}_mean"] = repr(s.mean)
                rec[f"{n}_std"] = "n/a" if s.std is None else repr(s.std)
        records.append(rec)
    columns = [*CSV_COLUMNS, *[f"{n}_{k}" for n in names for k in ("mean", "std")]]
    return pd.DataFrame.from_records(records, columns=columns)


def to_csv(rows: list[Row]) -> str:
    """``report.csv``: one line per row of every table (see :func:`to_frame`)."""
    return to_frame(rows).to_csv(index=False, lineterminator="\n")
