"""``mtbench train``: one model trained with one balancing method, in one run directory.

``mtbench train [overrides]`` composes ``conf/train.yaml`` with Hydra and calls
:func:`train`: it decides the run directory (a fresh one, or the run to
resume), builds the experiment once (:func:`mtbench.experiment.build_experiment`,
through :class:`~mtbench.training.loop.Runner`), starts the generator from
another run when ``model.init_from`` says so, and runs the loop
(:mod:`mtbench.training`). The final console line is :func:`format_summary`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mtbench.baseline import format_comparison
from mtbench.errors import ConfigError, NonFiniteLossError, RunInterrupted
from mtbench.rundir import CHECKPOINT, SUMMARY, find_resumable, only_hydra_files, write_run_config
from mtbench.training.loop import Runner

log = logging.getLogger("mtbench.train")

__all__ = ["train", "format_summary", "Runner", "RunInterrupted", "NonFiniteLossError"]


def _run_dir(cfg: DictConfig, out: Path) -> Path:
    """The directory this invocation trains in: ``out``, or the run to resume; never one that holds a run."""
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        for name in (CHECKPOINT, Path(SUMMARY)):
            if (out / name).exists():
                raise ConfigError(f"run dir {out} already holds a run ({name}); pass resume=true to continue "
                                  f"it, or choose another hydra.run.dir")
        return out
    found = find_resumable(out, CHECKPOINT)
    if found is None:
        raise ConfigError(f"resume=true but no checkpoint ({CHECKPOINT}) in {out} or in an unfinished "
                          f"run beside it under {out.parent}")
    if found != out and only_hydra_files(out):
        shutil.rmtree(out)  # the empty dir Hydra just made for this invocation
    return found


def train(cfg: DictConfig, out: Path | None = None, on_eval=None) -> dict[str, Any]:
    """Run one training job as configured; returns the summary (also in summary.json).

    ``on_eval(step, metrics)`` is called after every selection evaluation; an
    exception it raises (e.g. ``optuna.TrialPruned``) stops the run, leaving its
    last checkpoint.
    """
    out = _run_dir(cfg, Path(out or HydraConfig.get().runtime.output_dir))
    runner = Runner(cfg, out)
    runner.on_eval = on_eval
    init_from = getattr(runner.model, "init_from", None)
    if init_from and not cfg.resume:  # fresh run: the generator's weights from another run (resume: its own)
        runner.init_from = runner.model.load_generator(init_from)
        log.info("generator initialised from %s", runner.init_from["checkpoint"])
    write_run_config(cfg, out)
    if cfg.resume:
        ckpt = runner.load(out / CHECKPOINT)
        if ckpt["finished"] and runner.pos.step >= runner.total_steps:
            raise ConfigError(f"nothing to resume: {out} finished at step {runner.pos.step} "
                              f"(raise trainer.max_steps/epochs to train further)")
        log.info("resuming %s from step %d (epoch %d, batch %d)", out, runner.pos.step, runner.pos.epoch,
                 runner.pos.batch_in_epoch)
    return runner.fit()


def format_summary(summary: dict[str, Any]) -> str:
    """The final console line: the score beside the tuned baseline's, steps, time, FID note, run dir."""
    m = summary["metrics"]
    key = summary["primary_metric"]
    others = " ".join(f"{k} {v:.4g}" for k, v in m.items() if k != key)
    cmp = summary.get("baseline")
    score = format_comparison(cmp) if cmp and cmp.get("exists") else f"{key} {m.get(key, float('nan')):.4g}" + (
        f" (no tuned baseline yet: mtbench tune model={summary['model']} data={summary['data']})" if cmp else "")
    note = f" | {summary['fid_note']}" if summary.get("fid_note") else ""
    return (f"done: {summary['model']}/{summary['method']} seed {summary['seed']} | {score} | {others} | "
            f"{summary['steps']} steps in {summary['wall_time_s']:.1f}s on {summary['device']}{note} | "
            f"run dir {summary['run_dir']}")
