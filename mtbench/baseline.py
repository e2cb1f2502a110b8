"""The Hyperband-tuned fixed-weights baseline: reading it, and comparing runs with it.

``mtbench tune model=M data=D`` writes ``results/baselines/<M>-<D>.yaml``
(see :mod:`mtbench.tune`): the tuned weights, the validation score of the best
trial, the test metrics of a full run with those weights, the budget and the
command. ``method=fixed method.weights=baseline`` trains with those weights
(:func:`baseline_weights`), every train run's summary compares its score with
the baseline's (:func:`compare_to_baseline`), and ``mtbench report --baseline``
adds it as a row (:func:`load_baselines`).

This module is the one place that reads such a file. It is data, never code:
YAML is read with ``yaml.safe_load`` (JSON with :mod:`json`), nothing is
instantiated, and every value is checked before use: weights are a non-empty
mapping term: finite number >= 0, not all zero; the score is a finite number;
metrics are numbers, a null or non-finite one counting as not measured (a final
run that diverged must not hide the tuned weights); labels are names. A missing,
unreadable or malformed file is one :class:`BaselineError` line naming it and
the key. Where a baseline is only informative (the comparison at the end of a
training run) :func:`compare_to_baseline` never raises: the note says the file
is unreadable and why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtbench.errors import DataError

BASELINE_DIR = Path("results") / "baselines"
DEFAULT_LABEL = "hyperband-tuned fixed"


class BaselineError(DataError, ValueError):
    """A missing, unreadable or malformed baseline file, or a bad value in it: one line naming the file (and key).

    A :class:`~mtbench.errors.DataError` (the command line prints it as one line) and a ``ValueError``
    (what callers of this module caught before).
    """


@dataclass(frozen=True)
class Baseline:
    """One baseline: a label, final metrics and/or a score (the primary metric), optional scope and weights.

    A tune file's ``test_metrics`` are ``metrics`` and its ``val_score`` is ``score``.
    ``model``/``data`` (None: any) limit the report tables it is shown in.
    """

    label: str = DEFAULT_LABEL
    metrics: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    model: str | None = None
    data: str | None = None
    weights: dict[str, float] | None = None
    source: str = "baseline"


def resolve(path: str | Path) -> Path:
    """A relative path as given if it exists from the working directory, else from the mtbench checkout."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    repo = Path(__file__).resolve().parent.parent / p
    return repo if repo.exists() else p


def baseline_path(model: str, data: str, directory: str | Path | None = None) -> Path:
    """<directory, default results/baselines>/<model>-<data>.yaml (see :func:`resolve`)."""
    return resolve(Path(directory or BASELINE_DIR) / f"{model}-{data}.yaml")


def _number(value: Any, what: str, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise BaselineError(f"{where}: {what} must be a number, got {value!r:.80}")
    return float(value)


def _finite(value: Any, what: str, where: str) -> float:
    number = _number(value, what, where)
    if not math.isfinite(number):
        raise BaselineError(f"{where}: {what} must be a finite number, got {number!r}")
    return number


def _numbers(value: Any, what: str, where: str, skip_null: bool = False) -> dict[str, float]:
    """A mapping name: number; with ``skip_null`` a null or non-finite value (a metric not measured) is left out."""
    if not isinstance(value, Mapping):
        raise BaselineError(f"{where}: '{what}' must be a mapping name: number, got {value!r:.80}")
    numbers = {str(k): _number(v, f"{what} {k!r}", where) for k, v in value.items() if not (skip_null and v is None)}
    return {k: v for k, v in numbers.items() if math.isfinite(v)} if skip_null else numbers


def _weights(value: Any, where: str) -> dict[str, float]:
    """The tuned weights: a non-empty mapping term name: finite number >= 0, not all zero."""
    if not isinstance(value, Mapping):
        raise BaselineError(f"{where}: 'weights' must be a mapping term: weight, got {value!r:.80}")
    if not value:
        raise BaselineError(f"{where}: 'weights' is empty (make the file with `mtbench tune`)")
    weights = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise BaselineError(f"{where}: weights key {k!r:.40} must be a term name")
        w = _number(v, f"weights {k!r}", where)
        if not math.isfinite(w) or w < 0:
            raise BaselineError(f"{where}: weights {k!r} must be a finite number >= 0, got {w!r}")
        weights[k] = w
    if not any(weights.values()):
        raise BaselineError(f"{where}: weights are all zero (the loss would be 0); make the file with `mtbench tune`")
    return weights


def _label(value: Any, what: str, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise BaselineError(f"{where}: '{what}' must be a name, got {value!r:.80}")
    return str(value)


def parse_baseline(item: Any, where: str = "baseline") -> Baseline:
    """A :class:`Baseline` from one mapping (a tune file's, or ``method``/``metrics``/``score``/...)."""
    if not isinstance(item, Mapping):
        raise BaselineError(f"{where}: expected a mapping with 'metrics' or 'score' (or a list of them)")
    metrics = item.get("metrics", item.get("test_metrics"))
    score = item.get("score", item.get("val_score"))
    weights = item.get("weights")
    return Baseline(label=_label(item.get("method") or item.get("name"), "method", where) or DEFAULT_LABEL,
                    metrics={} if metrics is None else _numbers(metrics, "metrics", where, skip_null=True),
                    score=None if score is None else _finite(score, "'score'", where),
                    model=_label(item.get("model"), "model", where), data=_label(item.get("data"), "data", where),
                    weights=None if weights is None else _weights(weights, where), source=where)


def _read(path: str | os.PathLike) -> Any:
    p = Path(path).expanduser()
    where = f"baseline file {path}"
    if not p.is_file():
        raise BaselineError(f"{where}: no such file")
    try:
        text = p.read_text()
        return json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, RecursionError) as err:
        one_line = " ".join(str(err).split())
        raise BaselineError(f"{where}: cannot read it: {one_line}") from None


def load_baseline(path: str | Path) -> Baseline:
    """The file ``mtbench tune`` writes (one mapping with a ``weights`` mapping), checked."""
    where = f"baseline file {path}"
    data = _read(path)
    if not isinstance(data, Mapping) or data.get("weights") is None:
        raise BaselineError(f"{where} has no 'weights' mapping (make it with `mtbench tune`)")
    return parse_baseline(data, where)


def load_baselines(spec: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str | os.PathLike | None,
                   ) -> list[Baseline]:
    """Report baselines from a mapping, a list of mappings, or a YAML/JSON file holding one or a list.

    Each needs ``metrics`` (``test_metrics``) or ``score`` (``val_score``); None gives none.
    """
    if spec is None:
        return []
    where = "baseline"
    if isinstance(spec, (str, os.PathLike)):
        where = f"baseline file {spec}"
        spec = _read(spec)
    items = [spec] if isinstance(spec, Mapping) else spec
    if not isinstance(items, list) or not items or not all(isinstance(b, Mapping) for b in items):
        raise BaselineError(f"{where}: expected a mapping with 'metrics' or 'score' (or a list of them)")
    out = []
    for item in items:
        b = parse_baseline(item, where)
        if item.get("metrics", item.get("test_metrics")) is None and b.score is None:
            raise BaselineError(f"{where}: needs a 'metrics' mapping or a 'score' number")
        out.append(b)
    return out


def baseline_weights(path: str | Path) -> dict[str, float]:
    """The tuned weights for ``method.weights=baseline``; a clear error when there are none."""
    path = resolve(path)
    if not path.exists():
        stem = path.stem.split("-", 1)
        how = f"`mtbench tune model={stem[0]} data={stem[1]}`" if len(stem) == 2 else "`mtbench tune`"
        raise BaselineError(f"method.weights=baseline but there is no baseline file {path}; make one with {how}")
    return dict(load_baseline(path).weights or {})


def compare_to_baseline(summary: dict[str, Any], cfg=None) -> dict[str, Any]:
    """The run's primary metric beside the baseline's for the same model and data.

    Only informative, and run after the run is saved: it never raises. A baseline file that is
    there but unreadable or malformed gives ``exists`` true and ``error`` (the one-line reason),
    which :func:`format_comparison` prints as a note.
    """
    model, data, key = summary["model"], summary["data"], summary["primary_metric"]
    value = summary["metrics"].get(key)
    path: Path | str = f"{BASELINE_DIR}/{model}-{data}.yaml"
    try:
        directory = cfg.get("baselines_dir") if cfg is not None else None
        path = baseline_path(model, data, directory)
        if not path.exists() and not path.is_symlink():
            return {"exists": False, "metric": key, "path": str(path),
                    "hint": f"no Hyperband-tuned baseline for {model}-{data}; make one with "
                            f"`mtbench tune model={model} data={data}`"}
        return _comparison(summary, load_baseline(path), path, value)
    except Exception as err:  # noqa: BLE001 - informative only: a note, never a crash of a finished run
        reason = str(err) if isinstance(err, BaselineError) else f"baseline file {path}: {type(err).__name__}: {err}"
        return {"exists": True, "metric": key, "path": str(path), "value": value, "error": " ".join(reason.split())}


def _comparison(summary: dict[str, Any], base: Baseline, path: Path, value: Any) -> dict[str, Any]:
    key = summary["primary_metric"]
    split = summary.get("eval_split", "auto")
    reference = base.score if split == "val" else base.metrics.get(key)
    delta = (value - reference) if (value is not None and reference is not None) else None
    return {"exists": True, "metric": key, "path": str(path), "value": value, "baseline": reference,
            "delta": delta, "higher_is_better": summary.get("higher_is_better", True),
            "baseline_weights": base.weights}


def format_comparison(cmp: dict[str, Any]) -> str:
    """One line: the run's primary metric, the baseline's, the difference and whether it is better."""
    if not cmp.get("exists"):
        return cmp.get("hint", "no baseline")
    v, b, d = cmp.get("value"), cmp.get("baseline"), cmp.get("delta")
    if cmp.get("error"):
        score = f"{cmp['metric']} {v:.4g}" if isinstance(v, (int, float)) else str(cmp["metric"])
        return f"{score} (baseline unreadable, not compared: {cmp['error']})"
    if v is None or b is None or d is None or not math.isfinite(d):
        return f"baseline {cmp['path']} has no comparable {cmp['metric']} score"
    better = (d > 0) == bool(cmp["higher_is_better"]) and d != 0
    return f"{cmp['metric']} {v:.4g} vs Hyperband-tuned baseline {b:.4g} ({d:+.4g}, {'better' if better else 'not better'})"
