"""``mtbench eval run=<dir>``: recompute a finished (or interrupted) run's metrics from a checkpoint.

The run is rebuilt from the package's own conf/ and the overrides it was
started with (:func:`mtbench.rundir.rebuild_config`: nothing in the run
directory is instantiated, a foreign ``_target_`` is refused); the
checkpoint's weights are loaded (``weights_only``) and the model is evaluated. The result is appended to ``summary.json`` (``evaluations``);
with ``checkpoint=last`` the run's ``metrics`` are updated too (new metrics
such as FID are added, recomputed ones replaced). An unfinished run (no
summary.json) gets ``eval.json`` instead, so it still counts as unfinished.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from mtbench.rundir import EVAL_RECORD, SUMMARY, read_summary, rebuild_config, write_summary
from mtbench.utils import ConfigError, atomic_write_text


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    from mtbench.training.checkpoint import load_model_weights
    from mtbench.training.loop import Runner

    run = Path(str(cfg.run))
    if not run.is_dir():
        raise ConfigError(f"run={run}: no such directory")
    if cfg.checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint must be last or best, got {cfg.checkpoint!r}")
    ckpt = run / "checkpoints" / f"{cfg.checkpoint}.pt"
    if not ckpt.is_file():
        raise ConfigError(f"no checkpoint {ckpt}" + (" (best.pt is kept by runs with trainer.keep_best=true, the default, chosen on the val split)"
                                                      if cfg.checkpoint == "best" else ""))
    run_cfg, choices = rebuild_config(run)  # the package's conf/ + the run's overrides; never the run's YAML
    with open_dict(run_cfg):
        run_cfg.device = cfg.device
        run_cfg.eval = cfg.eval
        run_cfg.trainer.progress = False
        if cfg.eval_split:
            run_cfg.trainer.eval_split = cfg.eval_split
    runner = Runner(run_cfg, run, with_method=False)  # evaluation needs no method or optimiser
    state = load_model_weights(runner.exp, ckpt)
    metrics = runner.evaluate()
    label = f"{choices.get('model')}/{choices.get('method')} seed {run_cfg.seed}"
    entry = {"checkpoint": cfg.checkpoint, "step": state["step"], "metrics": metrics,
             "eval_split": str(run_cfg.trainer.get("eval_split", "auto")), "device": str(runner.device),
             "time": dt.datetime.now().isoformat(timespec="seconds"),
             "command": " ".join(["mtbench", "eval", *sys.argv[1:]])}
    summary_file = run / SUMMARY
    if summary_file.is_file():
        summary = read_summary(run)
        summary.setdefault("evaluations", []).append(entry)
        if cfg.checkpoint == "last":
            summary["metrics"] = {**summary.get("metrics", {}), **metrics}
        write_summary(run, summary)
        written = summary_file
    else:
        written = run / EVAL_RECORD
        prior = json.loads(written.read_text()) if written.is_file() else {"evaluations": []}
        prior["evaluations"].append(entry)
        atomic_write_text(json.dumps(prior, indent=2) + "\n", written)
    return {"label": label, "written": str(written), **entry}


def format_eval(r: dict[str, Any]) -> str:
    shown = " ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
    return f"eval: {r['label']} {r['checkpoint']}.pt (step {r['step']}) | {shown} | updated {r['written']}"
