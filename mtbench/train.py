"""``mtbench train``: one model trained with one balancing method, in one run directory.

``mtbench train [overrides]`` composes ``conf/train.yaml`` with Hydra and calls
:func:`train`: it decides the run directory (a fresh one, or the run to
resume), locks it (one process per run dir), removes the temp files of a
killed write, builds the experiment once (:func:`mtbench.experiment.build_experiment`,
through :class:`~mtbench.training.loop.Runner`), starts the generator from
another run when ``model.init_from`` says so (a job that Slurm requeued,
``SLURM_RESTART_COUNT`` > 0, resumes its run), and runs the loop
(:mod:`mtbench.training`). The final console line is :func:`format_summary`.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from mtbench.baseline import format_comparison
from mtbench.errors import ConfigError, NonFiniteLossError, RunInterrupted
from mtbench.rundir import (CHECKPOINT, SUMMARY, find_resumable, lock_run_dir, only_hydra_files, remove_temp_files,
                            run_dir_given, set_aside_dead_run, write_run_config)
from mtbench.training.loop import Runner

log = logging.getLogger("mtbench.train")

__all__ = ["train", "format_summary", "Runner", "RunInterrupted", "NonFiniteLossError"]


def _run_dir(cfg: DictConfig, out: Path, search_siblings: bool) -> Path:
    """The directory this invocation trains in: ``out``, or (``resume=true`` with no run dir named) the newest
    unfinished run of the same seed beside it. Only reads; nothing is written before the run dir is locked."""
    out.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        return out
    found = find_resumable(out, CHECKPOINT, search_siblings)
    if found is None:
        where = f"in {out} or in an unfinished run beside it under {out.parent}" if search_siblings else f"in {out}"
        raise ConfigError(f"resume=true but no checkpoint ({CHECKPOINT}) {where}")
    if found != out and only_hydra_files(out):
        shutil.rmtree(out)  # the empty dir Hydra just made for this invocation
    return found


def _check_fresh(out: Path) -> None:
    """A fresh run never continues or overwrites another: refuse a run dir holding a run; set aside the files of
    one killed before its first checkpoint."""
    for name in (CHECKPOINT, Path(SUMMARY)):
        if (out / name).exists():
            raise ConfigError(f"run dir {out} already holds a run ({name}); pass resume=true to continue "
                              f"it, or choose another hydra.run.dir")
    set_aside_dead_run(out)


def train(cfg: DictConfig, out: Path | None = None, on_eval=None, search_siblings: bool | None = None
          ) -> dict[str, Any]:
    """Run one training job as configured; returns the summary (also in summary.json).

    ``on_eval(step, metrics)`` is called after every selection evaluation; an
    exception it raises (e.g. ``optuna.TrialPruned``) stops the run, leaving its
    last checkpoint. The run dir is locked for the whole run; a refused run
    (bad settings, a resume whose settings differ) writes nothing.
    ``search_siblings``: with ``resume=true``, whether a run dir without a
    checkpoint may hand over to the newest unfinished run of the same seed
    beside it (default: only when the Hydra run dir was not named).
    """
    if search_siblings is None:
        search_siblings = out is None and not run_dir_given()
    hydra_dir = Path(HydraConfig.get().runtime.output_dir) if out is None else None
    restarts = slurm_restarts()
    if not cfg.resume and restarts and (Path(out or hydra_dir) / CHECKPOINT).is_file():
        # Slurm requeued this job (preemption, a time limit, scontrol requeue): continue its run
        log.info("Slurm job restart %d: resuming the run in %s", restarts, Path(out or hydra_dir))
        cfg = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.resume = True
    out = _run_dir(cfg, Path(out or hydra_dir), search_siblings)
    with lock_run_dir(out):
        remove_temp_files(out)
        if not cfg.resume:
            _check_fresh(out)
        runner = Runner(cfg, out)
        runner.on_eval = on_eval
        if cfg.resume:
            _resume(runner, out)  # refuses (one line) before anything is written
        else:
            init_from = getattr(runner.model, "init_from", None)
            if init_from:  # the generator's weights from another run
                runner.init_from = runner.model.load_generator(init_from)
                log.info("generator initialised from %s", runner.init_from["checkpoint"])
        write_run_config(cfg, out, hydra_files=out == hydra_dir)  # the run is accepted: record its config
        return runner.fit()


def slurm_restarts() -> int:
    """How many times Slurm has requeued this job (``SLURM_RESTART_COUNT``; 0 outside Slurm or when unreadable)."""
    try:
        return max(0, int(os.environ.get("SLURM_RESTART_COUNT", "0")))
    except ValueError:
        return 0


def _resume(runner: Runner, out: Path) -> None:
    """Restore the run in ``out``; a run whose last checkpoint is final but has no summary is finished
    (evaluated, summary written): it was stopped after its last checkpoint."""
    ckpt = runner.load(out / CHECKPOINT)
    if ckpt["finished"] and runner.pos.step >= runner.total_steps:
        if (out / SUMMARY).exists():
            raise ConfigError(f"nothing to resume: {out} finished at step {runner.pos.step} "
                              f"(raise trainer.max_steps/epochs to train further)")
        log.info("finishing %s: trained to step %d, not yet evaluated", out, runner.pos.step)
        return
    log.info("resuming %s from step %d (epoch %d, batch %d)", out, runner.pos.step, runner.pos.epoch,
             runner.pos.batch_in_epoch)


def tune_command(summary: dict[str, Any]) -> str:
    """The ``mtbench tune`` command that makes the tuned baseline this run is compared with: the run's own choice
    of experiment, model, data and device (config groups) and their data.*/model.* settings and baselines_dir,
    without the method, seed or run-specific settings."""
    import shlex

    try:
        words = shlex.split(summary.get("command") or "")[2:]  # mtbench train OVERRIDES...
    except ValueError:
        words = []
    keep = []
    for w in words:
        key = w.split("=", 1)[0].lstrip("+~")
        if "=" not in w or key in ("method", "seed", "resume") or key.startswith(("hydra", "method.")):
            continue
        if "." not in key or key.startswith(("data.", "model.")) or key == "baselines_dir":
            keep.append(shlex.quote(w))
    return " ".join(["mtbench tune", *keep])


def format_summary(summary: dict[str, Any]) -> str:
    """The final console line: the score beside the tuned baseline's, steps, time, FID note, run dir."""
    m = summary["metrics"]
    key = summary["primary_metric"]
    others = " ".join(f"{k} {v:.4g}" for k, v in m.items() if k != key)
    cmp = summary.get("baseline")
    score = format_comparison(cmp) if cmp and cmp.get("exists") else f"{key} {m.get(key, float('nan')):.4g}" + (
        f" (no tuned baseline yet: {tune_command(summary)})" if cmp else "")
    note = f" | {summary['fid_note']}" if summary.get("fid_note") else ""
    return (f"done: {summary['model']}/{summary['method']} seed {summary['seed']} | {score} | {others} | "
            f"{summary['steps']} steps in {summary['wall_time_s']:.1f}s on {summary['device']}{note} | "
            f"run dir {summary['run_dir']}")
