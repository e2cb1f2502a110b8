"""The Hyperband-tuned fixed-weights baseline: where it lives, how runs are compared to it.

``mtbench tune model=M data=D`` writes ``results/baselines/<M>-<D>.yaml``
(see :mod:`mtbench.tune`): the tuned weights, the validation score of the best
trial, the test metrics of a full run with those weights, the budget and the
command. ``method=fixed method.weights=baseline`` trains with those weights,
and every train run's summary compares its score with the baseline's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

BASELINE_DIR = Path("results") / "baselines"


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


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read baseline file {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("weights"), dict):
        raise ValueError(f"baseline file {path} has no 'weights' mapping (make it with `mtbench tune`)")
    return data


def baseline_weights(path: str | Path) -> dict[str, float]:
    """The tuned weights for ``method.weights=baseline``; a clear error when there are none."""
    path = resolve(path)
    if not path.exists():
        stem = path.stem.split("-", 1)
        how = f"`mtbench tune model={stem[0]} data={stem[1]}`" if len(stem) == 2 else "`mtbench tune`"
        raise ValueError(f"method.weights=baseline but there is no baseline file {path}; make one with {how}")
    return {k: float(v) for k, v in load_baseline(path)["weights"].items()}


def compare_to_baseline(summary: dict[str, Any], cfg=None) -> dict[str, Any]:
    """The run's primary metric beside the baseline's for the same model and data."""
    model, data, key = summary["model"], summary["data"], summary["primary_metric"]
    directory = cfg.get("baselines_dir") if cfg is not None else None
    path = baseline_path(model, data, directory)
    value = summary["metrics"].get(key)
    if not path.exists():
        return {"exists": False, "metric": key, "path": str(path),
                "hint": f"no Hyperband-tuned baseline for {model}-{data}; make one with "
                        f"`mtbench tune model={model} data={data}`"}
    try:
        base = load_baseline(path)
    except ValueError as err:
        return {"exists": False, "metric": key, "path": str(path), "hint": str(err)}
    split = summary.get("eval_split", "auto")
    reference = base.get("val_score") if split == "val" else (base.get("test_metrics") or {}).get(key)
    delta = (value - reference) if (value is not None and isinstance(reference, (int, float))) else None
    return {"exists": True, "metric": key, "path": str(path), "value": value, "baseline": reference,
            "delta": delta, "higher_is_better": summary.get("higher_is_better", True),
            "baseline_weights": base.get("weights")}


def format_comparison(cmp: dict[str, Any]) -> str:
    if not cmp.get("exists"):
        return cmp.get("hint", "no baseline")
    v, b, d = cmp.get("value"), cmp.get("baseline"), cmp.get("delta")
    if v is None or b is None or d is None or not math.isfinite(d):
        return f"baseline {cmp['path']} has no comparable {cmp['metric']} score"
    better = (d > 0) == bool(cmp["higher_is_better"]) and d != 0
    return f"{cmp['metric']} {v:.4g} vs Hyperband-tuned baseline {b:.4g} ({d:+.4g}, {'better' if better else 'not better'})"
