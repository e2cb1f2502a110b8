"""``mtbench report <run or multirun dirs...>``: tables and figures over finished runs.

Give it run directories, multirun folders or a whole ``runs/``; every run
directory below them is found (:func:`find_runs`), read (:func:`load_run`) and
summarised into ``--out`` (default ``reports/<date>_<time>/``) by
:func:`make_report`:

``report.md``
    one table per (model, data): a row per method, the final metrics as
    mean ± sample standard deviation over seeds (n-1; ``n/a`` with one seed),
    the number of seeds and the mean wall time per run. The primary metric
    comes first, marked ↑ (higher is better) or ↓. Methods are ordered fixed,
    softadapt, softadapt_normalized, softadapt_loss_weighted, mtadam, then
    the others alphabetically, then the untrained baselines of ``mtbench
    trivial`` (identity, mean_train_photo; labelled "trivial baseline"). GAN
    runs with FID list FID and KID right after the primary metric (FID itself
    when it is the primary metric), then the task metrics. Runs of one method whose command lines differ
    in a setting (``method.beta=0.5`` against the default, say) are never
    pooled: each such variant gets its own row, labelled with the settings.
    Unfinished runs (a checkpoint or ``metrics.jsonl`` but no
    ``summary.json``) are listed, not silently dropped.
``report.csv``
    the same rows, one per method (variant) and per baseline, all groups in one
    file, full precision: ``<metric>_mean`` and ``<metric>_std`` columns.
``<model>_<data>_weights_<method>.png``
    each term's weight over the steps (mean over seeds, one line per term;
    log y-axis when the weights span more than two decades).
``<model>_<data>_loss.png``
    the total training loss over the steps per method: the **unweighted sum
    of the logged loss terms** (``loss/<term>`` for every term that has a
    ``weight/<term>``; a GAN's ``loss/D`` is not a term and is left out), mean
    over seeds with a min-max band. Unweighted, so that methods that weight
    the terms differently are compared on the same objective.

A baseline row (``--baseline FILE`` or ``baseline=`` in :func:`make_report`)
is a mapping, or a YAML/JSON file holding one (or a list of them)::

    method: hyperband-tuned fixed   # the row's label (this is the default)
    metrics: {acc: 0.95, nll: 0.17} # final metrics; or `score: 0.95`, read as the primary metric
    model: mnist                    # optional: only in this model's tables ...
    data: mnist5k                   # ... and this dataset's (default: every table)

The files of ``mtbench tune`` (``results/baselines/<model>-<data>.yaml``) work
as they are: their ``test_metrics`` are read as ``metrics`` and their
``val_score`` as ``score``.

The report never deletes anything in ``--out`` and refuses to replace a report
file that is already there unless ``overwrite=True`` (``--overwrite``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
CHECKPOINT = Path("checkpoints") / "last.pt"
METHOD_ORDER = ("fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam")
# untrained baselines of `mtbench trivial` (mtbench/trivial.py): rows of their own, after every trained method
TRIVIAL_METHODS = ("identity", "mean_train_photo")
TRIVIAL_LABEL = "trivial baseline"
DEFAULT_BASELINE_LABEL = "hyperband-tuned fixed"
# command-line overrides that do not change what a run computes: never split rows on them
NEUTRAL_OVERRIDES = {"seed", "model", "data", "method", "resume", "name", "trainer.progress", "trainer.log_every",
                     "trainer.checkpoint_every", "trainer.num_workers", "trainer.eval_batch_size",
                     "trainer.image_every", "device.threads"}

PathLike = str | os.PathLike


class RunDirs(list):
    """The finished run directories (a list of Paths); ``.unfinished`` holds the unfinished ones."""

    def __init__(self, finished: Iterable[Path] = (), unfinished: Iterable[Path] = ()) -> None:
        super().__init__(finished)
        self.unfinished: list[Path] = list(unfinished)


# --------------------------------------------------------------------------- finding and reading runs
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


def read_metrics(path: PathLike) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a ``metrics.jsonl`` and the number of unreadable lines skipped.

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
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def _series(records: list[dict[str, Any]]) -> dict[str, dict[str, list]]:
    by_key: dict[str, dict[int, float]] = {}
    for rec in records:
        step = rec["step"]
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                by_key.setdefault(k, {})[step] = float(v)  # a resumed run re-logs steps: the last line wins
    return {k: {"steps": sorted(d), "values": [d[s] for s in sorted(d)]} for k, d in by_key.items()}


def _read_overrides(run_dir: Path) -> list[str]:
    f = run_dir / ".hydra" / "overrides.yaml"
    if not f.is_file():
        return []
    try:
        import yaml

        got = yaml.safe_load(f.read_text())
    except Exception:  # noqa: BLE001 - the overrides only label rows; a broken file means none
        return []
    return [str(x) for x in got] if isinstance(got, list) else []


def load_run(run_dir: PathLike) -> dict[str, Any]:
    """One finished run: its ``summary.json`` plus its ``metrics.jsonl`` as series.

    The summary's keys (model, method, data, seed, metrics, primary_metric,
    higher_is_better, final_weights, wall_time_s, ...) with these added or replaced:

    - ``run_dir``: the Path it was read from (the summary's own is kept as ``summary_run_dir``);
    - ``series``: ``{key: {"steps": [...], "values": [...]}}`` for every logged scalar
      (``loss/<term>``, ``weight/<term>``, ``time/step_ms``, ``eval/<metric>``, ...), sorted by step;
    - ``terms``: the loss-term names (those with a logged weight, else the final weights');
    - ``overrides``: the command-line overrides (summary, else ``.hydra/overrides.yaml``);
    - ``bad_lines``: how many unreadable lines of ``metrics.jsonl`` were skipped.
    """
    d = Path(run_dir)
    f = d / SUMMARY
    try:
        summary = json.loads(f.read_text())
    except FileNotFoundError:
        raise ValueError(f"{d}: no {SUMMARY} (an unfinished run?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{f}: cannot read it: {err}") from None
    missing = [k for k in ("model", "method", "metrics") if k not in summary] if isinstance(summary, dict) else ["all"]
    if missing or not isinstance(summary.get("metrics"), dict):
        raise ValueError(f"{f}: not an mtbench run summary (missing {', '.join(missing) or 'metrics'})")
    records, bad = read_metrics(d / METRICS)
    series = _series(records)
    terms = [k.split("/", 1)[1] for k in series if k.startswith("weight/")]
    if not terms:
        terms = list(summary.get("final_weights") or {})
    overrides = summary.get("overrides")
    if not isinstance(overrides, list) or not overrides:
        overrides = _read_overrides(d)
    return {**summary, "data": summary.get("data", "?"), "summary_run_dir": summary.get("run_dir"), "run_dir": d,
            "series": series, "terms": terms, "overrides": [str(o) for o in overrides], "bad_lines": bad}


def _unfinished_info(d: Path) -> dict[str, Any]:
    records, _ = read_metrics(d / METRICS)
    steps = [r["step"] for r in records]
    return {"run_dir": d, "last_logged_step": max(steps) if steps else None,
            "checkpoint": (d / CHECKPOINT).is_file()}


# --------------------------------------------------------------------------- baselines
def load_baseline(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]] | PathLike | None) -> list[dict[str, Any]]:
    """Baseline rows from a mapping, a list of mappings, or a YAML/JSON file (see the module doc)."""
    if spec is None:
        return []
    where = "baseline"
    if isinstance(spec, (str, os.PathLike)):
        where = f"baseline file {spec}"
        p = Path(spec).expanduser()
        if not p.is_file():
            raise ValueError(f"{where}: no such file")
        try:
            text = p.read_text()
            if p.suffix.lower() == ".json":
                spec = json.loads(text)
            else:
                import yaml

                spec = yaml.safe_load(text)
        except Exception as err:  # noqa: BLE001 - any unreadable file: one clear line
            raise ValueError(f"{where}: cannot read it: {err}") from None
    items = [spec] if isinstance(spec, Mapping) else spec
    if not isinstance(items, list) or not items or not all(isinstance(b, Mapping) for b in items):
        raise ValueError(f"{where}: expected a mapping with 'metrics' or 'score' (or a list of them)")
    out = []
    for b in items:
        metrics = b.get("metrics", b.get("test_metrics"))
        score = b.get("score", b.get("val_score"))
        if metrics is None and score is None:
            raise ValueError(f"{where}: needs a 'metrics' mapping or a 'score' number")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise ValueError(f"{where}: 'metrics' must be a mapping metric: value, got {metrics!r}")
        clean = {}
        for k, v in (metrics or {}).items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"{where}: metric {k!r} must be a number, got {v!r}")
            clean[str(k)] = float(v)
        if score is not None and (not isinstance(score, (int, float)) or isinstance(score, bool)):
            raise ValueError(f"{where}: 'score' must be a number, got {score!r}")
        out.append({"method": str(b.get("method") or b.get("name") or DEFAULT_BASELINE_LABEL), "metrics": clean,
                    "score": None if score is None else float(score),
                    "model": b.get("model"), "data": b.get("data")})
    return out


# --------------------------------------------------------------------------- statistics and rows
def method_rank(method: str) -> tuple[int, str]:
    """Sort key: the five methods of the papers in their order, the others alphabetically, then the trivial ones."""
    if method in TRIVIAL_METHODS:
        return (len(METHOD_ORDER) + 1, str(TRIVIAL_METHODS.index(method)))
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _stats(values: list[float]) -> dict[str, Any]:
    n = len(values)
    if n == 0:
        return {"mean": None, "std": None, "n": 0}
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
    return {"mean": mean, "std": std, "n": n}


def _override_map(overrides: list[str]) -> dict[str, str]:
    out = {}
    for o in overrides:
        if "=" not in o:
            continue
        key, value = o.split("=", 1)
        key = key.lstrip("+~")
        if key in NEUTRAL_OVERRIDES or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        out[key] = value
    return out


def _group_settings(runs: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """(settings common to every run of the group, keys whose values differ between its runs)."""
    maps = [_override_map(r["overrides"]) for r in runs]
    keys = sorted({k for m in maps for k in m})
    common = {k: maps[0][k] for k in keys if all(k in m and m[k] == maps[0][k] for m in maps)}
    varying = [k for k in keys if k not in common]
    return common, varying


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


def _metric_order(runs: list[dict[str, Any]], primary: str) -> list[str]:
    """The primary metric, then FID and KID (when the runs have them), then the task metrics in logged order."""
    names = [primary]
    for r in runs:
        for k in r["metrics"]:
            if k not in names:
                names.append(k)
    return [primary, *sorted(names[1:], key=_fid_rank)]  # stable: the logged order within each rank


def build_rows(runs: list[dict[str, Any]], baselines: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Table rows: one per (model, data, method, varying settings), then the baselines, per group."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((str(r["model"]), str(r["data"])), []).append(r)
    rows: list[dict[str, Any]] = []
    used = [False] * len(baselines)
    for (model, data) in sorted(groups):
        g = groups[(model, data)]
        primary = str(g[0].get("primary_metric") or next(iter(g[0]["metrics"]), "?"))
        hib = bool(g[0].get("higher_is_better", True))
        names = _metric_order(g, primary)
        common, varying = _group_settings(g)
        cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in g:
            m = _override_map(r["overrides"])
            settings = ", ".join(f"{k}={m[k]}" for k in varying if k in m)
            cells.setdefault((str(r["method"]), settings), []).append(r)
        for (method, settings) in sorted(cells, key=lambda c: (method_rank(c[0]), c[1])):
            cell = cells[(method, settings)]
            seeds = [r.get("seed") for r in cell]
            metrics = {}
            for name in names:
                vals = [float(r["metrics"][name]) for r in cell if isinstance(r["metrics"].get(name), (int, float))]
                metrics[name] = _stats(vals)
            walls = [float(r["wall_time_s"]) for r in cell if isinstance(r.get("wall_time_s"), (int, float))]
            dup = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
            trivial = method in TRIVIAL_METHODS
            rows.append({"model": model, "data": data, "method": method, "settings": settings,
                         "label": method + (f" ({TRIVIAL_LABEL})" if trivial else "")
                         + (f" [{settings}]" if settings else ""), "baseline": False, "trivial": trivial,
                         "n": len(cell), "seeds": seeds, "duplicate_seeds": dup,
                         "wall_time_s": statistics.mean(walls) if walls else None,
                         "metrics": metrics, "metric_names": names, "primary_metric": primary,
                         "higher_is_better": hib, "common_settings": common,
                         "runs": [str(r["run_dir"]) for r in cell]})
        for i, b in enumerate(baselines):
            if (b["model"] is not None and str(b["model"]) != model) or (b["data"] is not None and str(b["data"]) != data):
                continue
            values = dict(b["metrics"])
            if b["score"] is not None:
                values.setdefault(primary, b["score"])
            if not any(k in values for k in names):
                continue
            used[i] = True
            rows.append({"model": model, "data": data, "method": b["method"], "settings": "",
                         "label": f"{b['method']} (baseline)", "baseline": True, "n": None, "seeds": [],
                         "duplicate_seeds": [], "wall_time_s": None,
                         "metrics": {k: {"mean": values[k], "std": None, "n": None} for k in names if k in values},
                         "metric_names": names, "primary_metric": primary, "higher_is_better": hib,
                         "common_settings": common, "runs": []})
    for b, ok in zip(baselines, used):
        if not ok:
            scope = "/".join(str(x) for x in (b["model"], b["data"]) if x is not None) or "any table"
            tables = ", ".join(f"{m}/{d}" for m, d in sorted(groups))
            raise ValueError(f"baseline {b['method']!r} ({scope}) matches no table: it has none of the metrics of "
                             f"{tables} (or names another model/data)")
    return rows


# --------------------------------------------------------------------------- formatting
def fmt(x: float | None) -> str:
    """4 decimals; scientific for tiny magnitudes; ``n/a`` for None."""
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4f}"


def _cell(s: dict[str, Any] | None, baseline: bool) -> str:
    if s is None or s["mean"] is None:
        return "—"
    if baseline:
        return fmt(s["mean"])
    return f"{fmt(s['mean'])} ± {fmt(s['std'])}"


def _group_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["model"], r["data"]), []).append(r)
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of one (model, data) group."""
    first = rows[0]
    names, primary = first["metric_names"], first["primary_metric"]
    arrow = "↑" if first["higher_is_better"] else "↓"
    head = ["method", *[f"{n} {arrow}" if n == primary else n for n in names], "seeds", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in rows:
        label = f"*{r['method']}* (baseline)" if r["baseline"] else r["label"]
        cells = [label, *[_cell(r["metrics"].get(n), r["baseline"]) for n in names],
                 "—" if r["n"] is None else str(r["n"]),
                 "—" if r["wall_time_s"] is None else f"{r['wall_time_s']:.1f}"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _markdown(rows, unfinished, notes, figures, sources, n_runs, loss_note, with_figures: bool) -> str:
    out = ["# mtbench report", "",
           f"{n_runs} finished run{'s' if n_runs != 1 else ''} from {', '.join(f'`{s}`' for s in sources)}; "
           f"made {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}.", "",
           "Final metrics: mean ± sample standard deviation over seeds (n-1; n/a with one seed). "
           "The primary metric comes first: ↑ higher is better, ↓ lower is better. "
           "Wall time: mean per run.", ""]
    for (model, data), grows in _group_rows(rows).items():
        out += [f"## {model} / {data}", ""]
        common = grows[0]["common_settings"]
        if common:
            out += ["Settings of every run: " + ", ".join(f"`{k}={v}`" for k, v in common.items()), ""]
        out += [markdown_table(grows), ""]
        if with_figures:
            figs = figures.get((model, data), [])
            if figs:
                out += [loss_note, ""]
            out += [f"![{title}]({name})" for title, name in figs]
            if figs:
                out.append("")
    if notes:
        out += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if unfinished:
        out += ["## Unfinished runs (not in the tables)", "", "| run dir | last logged step | checkpoint |",
                "|---|---:|---|"]
        for u in unfinished:
            step = "—" if u["last_logged_step"] is None else str(u["last_logged_step"])
            out.append(f"| `{u['run_dir']}` | {step} | {'yes' if u['checkpoint'] else 'no'} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _csv(rows: list[dict[str, Any]]) -> str:
    names: list[str] = []
    for r in rows:
        names += [n for n in r["metric_names"] if n not in names]
    head = ["model", "data", "method", "settings", "baseline", "n_seeds", "seeds", "wall_time_s_mean",
            "primary_metric", "higher_is_better"]
    for n in names:
        head += [f"{n}_mean", f"{n}_std"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in rows:
        line = [r["model"], r["data"], r["method"], r["settings"], str(r["baseline"]).lower(),
                "" if r["n"] is None else r["n"], ";".join(str(s) for s in r["seeds"]),
                "" if r["wall_time_s"] is None else repr(r["wall_time_s"]), r["primary_metric"],
                str(r["higher_is_better"]).lower()]
        for n in names:
            s = r["metrics"].get(n)
            if s is None or s["mean"] is None:
                line += ["", ""]
            else:
                line += [repr(s["mean"]), "n/a" if s["std"] is None else repr(s["std"])]
        w.writerow(line)
    return buf.getvalue()


# --------------------------------------------------------------------------- figures
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def _mean_over_runs(per_run: list[tuple[list[int], list[float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Align series on their steps: (steps, mean, min, max) over the runs that logged each step."""
    at: dict[int, list[float]] = {}
    for steps, values in per_run:
        for s, v in zip(steps, values):
            at.setdefault(s, []).append(v)
    steps = sorted(at)
    finite = [[v for v in at[s] if math.isfinite(v)] or [math.nan] for s in steps]
    return (steps, [sum(v) / len(v) for v in finite], [min(v) for v in finite], [max(v) for v in finite])


def _log_scale(values: Iterable[float]) -> bool:
    pos = [v for v in values if math.isfinite(v) and v > 0]
    return bool(pos) and max(pos) / min(pos) > 100.0


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
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)


def _finish_axes(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    log = ax.get_yscale() == "log"
    ax.grid(True, alpha=0.3, which="both" if log else "major")


def _wrap(text: str, width: int = 48) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


def _legend(ax, n: int, title: str) -> None:
    """Outside, right of the axes; below them when the labels are long (method variants)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if max(len(lb) for lb in labels) <= 32:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", title=title,
                  title_fontsize="small", ncol=1 if n <= 16 else 2, frameon=False, borderaxespad=0.0)
    else:
        ax.legend([*handles], [_wrap(lb, 60) for lb in labels], loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  fontsize="small", title=title, title_fontsize="small", ncol=2 if n > 3 else 1, frameon=False)


def plot_weights(row: dict[str, Any], runs: list[dict[str, Any]], path: Path) -> None:
    """Each term's weight over the steps, mean over the row's seeds."""
    terms: list[str] = []
    for r in runs:
        terms += [t for t in r["terms"] if t not in terms]
    fig, ax = _new_figure()
    allv: list[float] = []
    constant = True
    few = True
    for term, color, i in zip(terms, _colors(len(terms)), range(len(terms))):
        key = f"weight/{term}"
        per = [(r["series"][key]["steps"], r["series"][key]["values"]) for r in runs if key in r["series"]]
        if not per:
            continue
        steps, mean, _, _ = _mean_over_runs(per)
        few = few and len(steps) <= 25
        allv += mean
        fin = [v for v in mean if math.isfinite(v)]
        constant = constant and (not fin or max(fin) - min(fin) <= 1e-12 * max(1.0, abs(max(fin))))
        ax.plot(steps, mean, color=color, linestyle=("-", "--", ":", "-.")[(i // 10) % 4], linewidth=1.4,
                marker="o" if len(steps) <= 25 else None, markersize=3, label=term)
    if _log_scale(allv):
        ax.set_yscale("log")
    n = row["n"]
    ax.set_title(_wrap(f"{row['model']} / {row['data']}: loss-term weights, {row['label']}", 90) + "\n"
                 f"mean over {n} seed{'s' if n != 1 else ''}" + (" (constant weights)" if constant else ""),
                 fontsize="medium")
    ax.set_xlabel("step")
    ax.set_ylabel("weight" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    _finish_axes(ax)
    _legend(ax, len(terms), "term")
    _save(fig, path)


def total_loss(run: dict[str, Any]) -> tuple[list[int], list[float]]:
    """The unweighted sum of the run's logged loss terms, at the steps where every term was logged."""
    terms = run["terms"] or [k.split("/", 1)[1] for k in run["series"] if k.startswith("loss/") and k != "loss/D"]
    per = [run["series"].get(f"loss/{t}") for t in terms]
    if not per or any(p is None for p in per):
        return [], []
    maps = [dict(zip(p["steps"], p["values"])) for p in per]
    steps = sorted(set.intersection(*(set(m) for m in maps)))
    return steps, [sum(m[s] for m in maps) for s in steps]


LOSS_NOTE = ("Total loss: the unweighted sum of the logged loss terms (`loss/<term>`, each averaged over its "
             "logging interval; a GAN's `loss/D` is not included), mean over seeds with a min-max band.")


def plot_loss(model: str, data: str, rows: list[dict[str, Any]], runs_by_row: list[list[dict[str, Any]]],
              path: Path) -> None:
    """Per method: the total loss over the steps, mean over seeds with a min-max band."""
    fig, ax = _new_figure()
    allv: list[float] = []
    colors = _colors(len(rows))
    for i, (row, runs) in enumerate(zip(rows, runs_by_row)):
        per = [total_loss(r) for r in runs]
        per = [p for p in per if p[0]]
        if not per:
            continue
        steps, mean, lo, hi = _mean_over_runs(per)
        allv += lo + hi
        ax.plot(steps, mean, color=colors[i], linewidth=1.5, marker="o" if len(steps) <= 25 else None, markersize=3,
                linestyle=("-", "--", ":", "-.")[(i // 10) % 4], label=f"{row['label']} (n={row['n']})")
        if len(per) > 1:
            ax.fill_between(steps, lo, hi, color=colors[i], alpha=0.18, linewidth=0)
    if _log_scale(allv):
        ax.set_yscale("log")
    ax.set_title(f"{model} / {data}: total training loss (unweighted sum of the loss terms)\n"
                 "mean over seeds, band: min-max", fontsize="medium")
    ax.set_xlabel("step")
    ax.set_ylabel("Σ loss terms" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    _finish_axes(ax)
    _legend(ax, len(rows), "method")
    _save(fig, path)


# --------------------------------------------------------------------------- the report
def make_report(paths: PathLike | Iterable[PathLike], out_dir: PathLike,
                baseline: Mapping[str, Any] | Sequence[Mapping[str, Any]] | PathLike | None = None,
                overwrite: bool = False) -> dict[str, Any]:
    """Tables (``report.md``, ``report.csv``) and figures (PNG) over the runs in ``paths``, into ``out_dir``.

    ``baseline``: a mapping ``{"method": label, "metrics": {...}}`` (or ``"score"``), a list of
    them, or a YAML/JSON file holding one (module doc). Nothing in ``out_dir`` is deleted;
    a report file already there raises ``FileExistsError`` unless ``overwrite``.

    Returns ``{"out_dir", "rows", "files", "unfinished", "notes", "markdown"}``: ``rows`` as
    made by :func:`build_rows` (per row: model, data, method, settings, label, baseline, n,
    seeds, wall_time_s, metrics {name: {mean, std, n}}, primary_metric, higher_is_better, runs),
    ``files`` the Paths written.
    """
    found = find_runs(paths)
    sources = [str(p) for p in _as_list(paths)]
    baselines = load_baseline(baseline)
    if not found:
        raise ValueError(f"no finished run (with {SUMMARY}) in {', '.join(sources)}; "
                         f"{len(found.unfinished)} unfinished: {', '.join(str(u) for u in found.unfinished)}")
    runs = [load_run(d) for d in found]
    rows = build_rows(runs, baselines)
    unfinished = [_unfinished_info(d) for d in found.unfinished]
    notes = []
    for r in runs:
        if r["bad_lines"]:
            notes.append(f"`{r['run_dir'] / METRICS}`: skipped {r['bad_lines']} unreadable line(s) "
                         f"(a truncated last line?)")
    for row in rows:
        if row["duplicate_seeds"]:
            notes.append(f"{row['model']}/{row['data']} {row['label']}: more than one run with seed(s) "
                         f"{', '.join(map(str, row['duplicate_seeds']))}; all are counted")

    by_dir = {str(r["run_dir"]): r for r in runs}
    out = Path(out_dir).expanduser()
    plans: list[tuple[str, Any]] = []  # (file name, writer(path))
    figures: dict[tuple[str, str], list[tuple[str, str]]] = {}
    taken: set[str] = set()
    for (model, data), grows in _group_rows(rows).items():
        mrows = [r for r in grows if not r["baseline"] and not r.get("trivial")]  # trained runs: figures
        runs_by_row = [[by_dir[p] for p in r["runs"]] for r in mrows]
        if any(total_loss(x)[0] for rr in runs_by_row for x in rr):
            name = f"{_slug(model)}_{_slug(data)}_loss.png"
            taken.add(name)
            plans.append((name, lambda p, m=model, d=data, a=mrows, b=runs_by_row: plot_loss(m, d, a, b, p)))
            figures.setdefault((model, data), []).append(("total loss", name))
        else:
            notes.append(f"{model}/{data}: no loss series in {METRICS}; no loss figure")
        for row, rruns in zip(mrows, runs_by_row):
            if not any(k.startswith("weight/") for x in rruns for k in x["series"]):
                notes.append(f"{model}/{data} {row['label']}: no weight series in {METRICS}; no weights figure")
                continue
            stem = f"{_slug(model)}_{_slug(data)}_weights_{_slug(row['method'])}"
            if row["settings"]:  # a variant: its settings, or a short digest of them when long
                tag = _slug(row["settings"])
                stem += "-" + (tag if len(tag) <= 40 else hashlib.sha1(row["settings"].encode()).hexdigest()[:8])
            name, k = f"{stem}.png", 2
            while name in taken:
                name, k = f"{stem}-{k}.png", k + 1
            taken.add(name)
            plans.append((name, lambda p, a=row, b=rruns: plot_weights(a, b, p)))
            figures.setdefault((model, data), []).append((f"weights: {row['label']}", name))

    names = ["report.md", "report.csv", *[n for n, _ in plans]]
    if not overwrite:
        there = [n for n in names if (out / n).exists()]
        if there:
            raise FileExistsError(f"{out} already holds a report ({', '.join(there[:4])}"
                                  f"{', ...' if len(there) > 4 else ''}); pass --overwrite "
                                  f"(overwrite=True) or choose another output folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: not a directory")
    out.mkdir(parents=True, exist_ok=True)

    md = _markdown(rows, unfinished, notes, figures, sources, len(runs), LOSS_NOTE, with_figures=True)
    files = []
    for name, write in plans:
        write(out / name)
        files.append(out / name)
    (out / "report.csv").write_text(_csv(rows))
    (out / "report.md").write_text(md)
    files = [out / "report.md", out / "report.csv", *files]
    return {"out_dir": out, "rows": rows, "files": files, "unfinished": unfinished, "notes": notes,
            "markdown": md,
            "console": _markdown(rows, unfinished, notes, figures, sources, len(runs), LOSS_NOTE, with_figures=False)}


# --------------------------------------------------------------------------- the command
class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like the other commands
        self.exit(2, f"error: {message} (mtbench report --help)\n")


def main(argv: list[str] | None = None) -> int:
    """``mtbench report <run or multirun dirs...> [--out DIR] [--baseline FILE] [--overwrite]``."""
    parser = _Parser(
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
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed as one line)
        return stop.code if isinstance(stop.code, int) else 2
    out = args.out or str(Path("reports") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    try:
        res = make_report(args.paths, out, baseline=args.baseline, overwrite=args.overwrite)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(res["console"].rstrip())
    print(f"\nreport: {res['out_dir']} ({len(res['files'])} files: report.md, report.csv, "
          f"{len(res['files']) - 2} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
