"""``mtbench eval run=<dir>``: recompute a finished (or interrupted) run's metrics from a checkpoint.

The run is rebuilt from the package's own conf/ and the overrides it was
started with (:func:`mtbench.rundir.rebuild_config`: nothing in the run
directory is instantiated, a foreign ``_target_`` is refused); the
checkpoint's weights are loaded (``weights_only``) and the model is evaluated.

Each result is recorded under its split and checkpoint, in ``summary.json``'s
``evaluations`` mapping (``{"val/last": {...}, "test/best": {...}}``): a later
evaluation of the same split and checkpoint replaces only that entry. The
run's own ``metrics`` (its final evaluation, on its own split) are never
replaced; an evaluation of ``checkpoint=last`` on that same split only adds
metrics the run did not have (e.g. FID, with ``eval.fid_weights``). An
unfinished run (no summary.json) gets the same mapping in ``eval.json``
instead, so it still counts as unfinished.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from mtbench.errors import ConfigError, DataError
from mtbench.rundir import EVAL_RECORD, SUMMARY, read_summary, rebuild_config, write_summary
from mtbench.utils import atomic_write_text


def split_name(data: Any, eval_split: str) -> str:
    """``val`` or ``test``: the split that ``trainer.eval_split=eval_split`` evaluates ``data`` on."""
    if eval_split == "auto":  # as DataSplits.eval_split: test if the data has one, else val
        return "test" if getattr(data, "test", None) is not None else "val"
    return eval_split


def as_mapping(evaluations: Any, data: Any, source: Path) -> dict[str, Any]:
    """The ``evaluations`` of a summary or eval.json as ``{"<split>/<checkpoint>": entry}``.

    Earlier versions kept a list (the split as ``eval_split``, possibly ``auto``);
    its entries are keyed the same way, a later one replacing an earlier one.
    """
    if evaluations is None:
        return {}
    if isinstance(evaluations, dict):
        return dict(evaluations)
    if not isinstance(evaluations, list) or not all(isinstance(e, dict) for e in evaluations):
        raise DataError(f"{source}: 'evaluations' is neither a mapping nor a list of records; "
                        f"move the file aside to record a new evaluation")
    keyed: dict[str, Any] = {}
    for e in evaluations:
        keyed[f"{split_name(data, str(e.get('eval_split', 'auto')))}/{e.get('checkpoint', 'last')}"] = e
    return keyed


def _read_eval_record(path: Path) -> dict[str, Any]:
    """An unfinished run's eval.json (empty when there is none); a damaged one is named, never overwritten."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DataError(f"{path}: cannot read it ({type(err).__name__}: {err}); move it aside to record "
                        f"a new evaluation") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: cannot read it (not a JSON object); move it aside to record a new evaluation")
    return record


def _checkpoint(run: Path, which: str) -> Path:
    if which not in ("last", "best"):
        raise ConfigError(f"checkpoint must be last or best, got {which!r}")
    ckpt = run / "checkpoints" / f"{which}.pt"
    if not ckpt.is_file():
        hint = (" (best.pt is kept by runs with trainer.keep_best=true, the default, chosen on the val split)"
                if which == "best" else "")
        raise ConfigError(f"no checkpoint {ckpt}{hint}")
    return ckpt


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` of ``cfg.run`` on ``cfg.eval_split`` (null: the run's own) and record it."""
    from mtbench.training.checkpoint import load_model_weights
    from mtbench.training.loop import Runner

    if OmegaConf.is_missing(cfg, "run"):
        raise ConfigError("mtbench eval needs the run to evaluate: mtbench eval run=<run dir> "
                          "(e.g. run=runs/mnist/fixed/<date>_<time>_s0, a folder with checkpoints/last.pt)")
    run = Path(str(cfg.run))
    if not run.is_dir():
        raise ConfigError(f"run={run}: no such directory")
    ckpt = _checkpoint(run, cfg.checkpoint)
    run_cfg, choices = rebuild_config(run)  # the package's conf/ + the run's overrides; never the run's YAML
    own_setting = str(run_cfg.trainer.get("eval_split", "auto"))
    with open_dict(run_cfg):
        run_cfg.device = cfg.device
        run_cfg.eval = cfg.eval
        run_cfg.trainer.progress = False
        if cfg.eval_split:
            run_cfg.trainer.eval_split = cfg.eval_split
    runner = Runner(run_cfg, run, with_method=False)  # evaluation needs no method or optimiser
    state = load_model_weights(runner.exp, ckpt)
    metrics = runner.evaluate()
    split = split_name(runner.data, str(run_cfg.trainer.get("eval_split", "auto")))
    entry = {"split": split, "checkpoint": cfg.checkpoint, "step": state["step"], "metrics": metrics,
             "device": str(runner.device), "time": dt.datetime.now().isoformat(timespec="seconds"),
             "command": " ".join(["mtbench", "eval", *sys.argv[1:]])}
    own = cfg.checkpoint == "last" and split == split_name(runner.data, own_setting)
    written, added = _record(run, entry, runner.data, own)
    label = f"{choices.get('model')}/{choices.get('method')} seed {run_cfg.seed}"
    return {"label": label, "written": str(written), "key": f"{split}/{cfg.checkpoint}", "added": added, **entry}


def _record(run: Path, entry: dict[str, Any], data: Any, own: bool) -> tuple[Path, list[str]]:
    """Store ``entry`` under its split/checkpoint; returns (the file written, metrics added to the run's own).

    ``own``: the entry is of last.pt on the run's own split, so metrics the run
    lacks are added to its ``metrics``; recorded values are never replaced.
    """
    key = f"{entry['split']}/{entry['checkpoint']}"
    if (run / SUMMARY).is_file():
        summary = read_summary(run)
        summary["evaluations"] = {**as_mapping(summary.get("evaluations"), data, run / SUMMARY), key: entry}
        added = [k for k in entry["metrics"] if k not in summary["metrics"]] if own else []
        summary["metrics"].update({k: entry["metrics"][k] for k in added})
        write_summary(run, summary)
        return run / SUMMARY, added
    path = run / EVAL_RECORD
    record = _read_eval_record(path)
    record["evaluations"] = {**as_mapping(record.get("evaluations"), data, path), key: entry}
    atomic_write_text(json.dumps(record, indent=2) + "\n", path)
    return path, []


def format_eval(r: dict[str, Any]) -> str:
    shown = " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
    added = f"; added {', '.join(r['added'])} to the run's metrics" if r.get("added") else ""
    return (f"eval: {r['label']} {r['checkpoint']}.pt (step {r['step']}) on {r['split']} | {shown} | "
            f"recorded in {r['written']} (evaluations {r['key']}{added})")
