"""The loop: train an experiment for its step budget, evaluating, checkpointing and logging at intervals.

Per step: move the batch (non-blocking), ``model.training_step`` (which calls
``method.step``), the LR schedulers, and a copy of the step's scalars into a
device buffer (:mod:`mtbench.training.logging`). At intervals: log (one host
sync), evaluate on the selection split (val when the data has one: periodic
evaluations, ``best.pt`` and Hyperband's ``on_eval`` never read the test
split), sample images, checkpoint. SIGINT/SIGTERM finish the step, write a
checkpoint and raise :class:`~mtbench.errors.RunInterrupted`; in a Slurm job
of hydra-submitit-launcher, SIGUSR2 (time limit or preemption ahead) does the
same, then calls submitit's handler, which requeues the job (the requeued job
resumes, :func:`mtbench.train.train`). At the end: the
last checkpoint (first, so that nothing trained is lost if evaluation fails),
the final evaluation on ``trainer.eval_split``, ``summary.json``.

Before the first step, everything that can fail later is checked: the eval
splits exist and every image in them decodes. Under ``trainer.nan_policy=skip``
a step whose terms or losses are not all finite is undone
(:mod:`mtbench.training.skip`) and counted once; the run fails when more than
``trainer.max_skipped`` of its steps were skipped. The logging backends
(``cfg.logger``, :mod:`mtbench.training.loggers`) are built with the runner and
opened by :meth:`Runner.fit`; the debugging settings (``detect_anomaly``,
``profile_steps``, ``overfit_batches``, ``eval_limit_batches``) are applied
through :mod:`mtbench.training.debug`; ``save_checkpoints=false`` writes none.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import Dataset

from mtbench.baseline import compare_to_baseline
from mtbench.errors import ConfigError, NonFiniteLossError, RunInterrupted
from mtbench.experiment import build_experiment
from mtbench.rundir import build_summary, choice, flat_hparams, write_summary
from mtbench.training.checkpoint import BEST, CHECKPOINT, TrainState, load_checkpoint, save_checkpoint
from mtbench.training.data_order import Position, make_eval_loader, make_train_loader
from mtbench.training.debug import FirstBatches, debug_tools, first_batches
from mtbench.training.loggers import Logger
from mtbench.training.logging import RunLogger, StepLog
from mtbench.training.skip import StepUndo, all_finite
from mtbench.utils import to_device

log = logging.getLogger("mtbench.train")

__all__ = ["Runner", "build_loggers"]


def build_loggers(node: DictConfig | None) -> list[Logger]:
    """The logging backends chosen in ``cfg.logger`` (conf/logger/: one entry per chosen option; null: none),
    built with ``instantiate``; a missing package or a bad setting is one ConfigError line (nothing written)."""
    backends = []
    for entry in (node or {}).values():
        try:
            backends.append(instantiate(entry, _convert_="object"))
        except InstantiationException as err:
            if isinstance(err.__cause__, ConfigError):
                raise err.__cause__ from None
            raise
    return backends


class Runner:
    """One run: an experiment (built once from ``cfg``), its state, and the loop over it."""

    def __init__(self, cfg: DictConfig, out: Path, with_method: bool = True) -> None:
        self.cfg, self.out = cfg, out
        self.exp = build_experiment(cfg, with_method=with_method)
        #: TensorBoard, CSV, MLflow (conf/logger/); built now (checked, nothing written), opened by fit()
        self.loggers = build_loggers(cfg.get("logger")) if with_method else []
        self.state = TrainState()
        self._overfit: list | None = None  # trainer.overfit_batches: the batches repeated
        self.stop_signal: int | None = None
        self.last_eval: dict[str, float] = {}
        #: called as on_eval(step, metrics) after every selection evaluation (Hyperband reports and prunes here)
        self.on_eval = None

    # the experiment's parts, as the commands and the tests use them
    model = property(lambda self: self.exp.model)
    data = property(lambda self: self.exp.data)
    method = property(lambda self: self.exp.method)
    device = property(lambda self: self.exp.device)
    total_steps = property(lambda self: self.exp.total_steps)
    objective = property(lambda self: self.exp.objective)
    fid_error = property(lambda self: self.exp.objective.fid_error)
    pos = property(lambda self: self.state.pos)
    init_from = property(lambda self: self.state.init_from)

    @init_from.setter
    def init_from(self, value: dict[str, Any] | None) -> None:
        self.state.init_from = value

    # -- checkpoints ------------------------------------------------------------------
    def save(self, finished: bool, elapsed: float, path: Path | None = None) -> Path:
        return save_checkpoint(self.exp, self.state, path or self.out / CHECKPOINT, finished, elapsed)

    def load(self, path: Path) -> dict[str, Any]:
        return load_checkpoint(self.exp, self.state, path)

    def keep_best(self, metrics: dict[str, float], start: float) -> None:
        """Save checkpoints/best.pt when the primary metric improves (selection-split evaluations only)."""
        if not (self.exp.trainer.keep_best and self.exp.trainer.save_checkpoints):
            return
        value = metrics.get(self.objective.primary)
        if self.objective.better(value, self.state.best):
            self.state.best, self.state.best_step = value, self.pos.step
            self.save(False, self.state.elapsed_before + time.perf_counter() - start, self.out / BEST)

    # -- evaluation ---------------------------------------------------------------------
    def eval_split(self) -> Dataset:
        which = self.exp.trainer.eval_split
        if which == "auto":
            return self.data.eval_split()
        split = getattr(self.data, which)
        if split is None:
            raise ConfigError(f"trainer.eval_split={which} but data {self.data.name!r} has no {which} split")
        return split

    def selection_split(self) -> Dataset:
        """What periodic evaluations, best.pt and tuning read: val, or the final split when there is no val."""
        return self.data.val if self.data.val is not None else self.eval_split()

    def check_eval_data(self) -> None:
        """Fail now, not after training, when an evaluation would: a missing eval split, an unreadable image."""
        from mtbench.data.transforms import load_rgb

        splits = [self.eval_split(), self.selection_split(), *getattr(self.data, "extra_eval", {}).values()]
        seen: set[int] = set()
        for split in splits:
            if id(split) in seen:
                continue
            seen.add(id(split))
            files = getattr(split, "image_files", None)  # the image-folder datasets (in-memory ones have none)
            for path in files() if files is not None else ():
                load_rgb(path)  # a full decode: a truncated file raises DataError naming it

    def _skip(self, undo: StepUndo, step: int) -> None:
        """Undo a step with a non-finite term or loss; fail once too many were skipped."""
        undo.restore()
        self.state.skipped += 1
        limit = self.exp.trainer.max_skipped
        if self.state.skipped == 1 or self.state.skipped % 100 == 0:
            log.warning("step %d had a NaN/inf term or loss: undone (%d skipped so far)", step, self.state.skipped)
        if self.state.skipped > limit * self.total_steps:
            raise NonFiniteLossError(
                f"{self.state.skipped} of the run's {self.total_steps} steps had a NaN/inf term or loss and were "
                f"skipped, more than trainer.max_skipped={limit:g} of them; " + (
                    f"the last good checkpoint is {self.out / CHECKPOINT}" if self.exp.trainer.save_checkpoints
                    else "no checkpoint is written (trainer.save_checkpoints=false)"))

    def evaluate(self, split: Dataset | None = None) -> dict[str, float]:
        """Metrics on ``split``, by default the final split (trainer.eval_split); extra_eval sets only then."""
        final = split is None
        split = self.eval_split() if final else split
        bs = getattr(self.data, "eval_batch_size", None)
        self.model.eval()
        try:
            loader = self._eval_loader(split, bs)
            metrics = self.model.evaluate(loader)
            name = "val" if split is self.data.val else "test"
            metrics.update(self.objective.fid_metrics(self.model, loader, self.cfg.data, name, self.device))
            main = dict(metrics)
            for extra_name, extra in getattr(self.data, "extra_eval", {}).items():
                if extra is split:  # the eval split is also reported under its own name (e.g. Set5/psnr)
                    metrics.update({f"{extra_name}/{k}": v for k, v in main.items()})
                elif final and self.exp.trainer.eval_split != "val":
                    m = self.model.evaluate(self._eval_loader(extra, bs))
                    metrics.update({f"{extra_name}/{k}": v for k, v in m.items()})
        finally:
            self.model.train()
        self.last_eval = metrics
        return metrics

    def _eval_loader(self, split: Dataset, batch_size: int | None):
        loader = make_eval_loader(split, self.cfg, self.device, batch_size)
        limit = self.exp.trainer.eval_limit_batches
        return loader if limit is None else FirstBatches(loader, limit)

    def _train_batches(self):
        """The batches of the current epoch from the current position: the training loader's or, with
        trainer.overfit_batches=N, the first N batches of the first epoch, the same tensors every epoch."""
        n = self.exp.trainer.overfit_batches
        if not n:
            return make_train_loader(self.data.train, self.cfg, self.cfg.seed, self.pos, self.device)
        if self._overfit is None:
            self._overfit = first_batches(
                lambda: make_train_loader(self.data.train, self.cfg, self.cfg.seed, Position(), self.device),
                n, self.cfg.seed)
        return self._overfit[self.pos.batch_in_epoch:]

    def params(self) -> dict[str, Any]:
        """The run's settings as TensorBoard's HPARAMS shows them (model, data, method, seed, the model's and the
        method's settings); fit() gives the backends these and the trainer settings when the run starts."""
        return {"model": choice("model"), "method": choice("method"), "data": choice("data"), "seed": self.cfg.seed,
                **flat_hparams("model", self.model.hparams()),
                **({"model.init_from": self.init_from["path"]} if self.init_from else {}),
                **flat_hparams("method", self.method.hparams())}

    def sample_images(self, batch) -> dict[str, torch.Tensor]:
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model.sample_images(batch)
        finally:
            self.model.train()

    # -- the loop -----------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop_signal is not None:  # a second signal: stop now, without a new checkpoint
            last = self.out / CHECKPOINT
            raise RunInterrupted(signum, self.pos.step, None, hint=(
                f"stopped at once by a second signal, without a new checkpoint; continue from the last one "
                f"({last}) with `mtbench train <same overrides> resume=true hydra.run.dir={self.out}`"
                if last.is_file() else "stopped at once by a second signal, before the first checkpoint: "
                "start the run again"))
        self.stop_signal = signum
        log.warning("signal %d received: finishing the step, writing a checkpoint, then exiting", signum)

    def fit(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.exp.trainer  # typed, validated settings
        params = {**self.params(), **flat_hparams("trainer", dataclasses.asdict(t))}
        logger = RunLogger(self.out, self.total_steps, self.pos.step, f"{cfg.get('name', 'train')}", t.progress,
                           backends=self.loggers, params=params)
        status = "FAILED"  # what the backends record unless the run finishes or is interrupted
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # a Slurm job's SIGUSR2 (hydra-submitit-launcher: a time limit or preemption ahead) is handled by submitit,
        # which requeues the job and exits at once: first finish the step and write a checkpoint, then hand over
        chained = {}
        if callable(signal.getsignal(signal.SIGUSR2)):
            chained[signal.SIGUSR2] = old_handlers[signal.SIGUSR2] = signal.signal(signal.SIGUSR2, self._on_signal)
        start = interval_start = time.perf_counter()
        steplog: StepLog | None = None
        image_every = t.image_every
        select = self.selection_split()
        select_prefix = "eval/" if select is self.eval_split() else "val/"
        checkpoint = self.out / CHECKPOINT if t.save_checkpoints else None  # what errors may name

        undo = StepUndo(self.model, self.method, self.model.aux_optimizers()) if t.nan_policy == "skip" else None

        def flush(now: float) -> None:
            logger.flush(steplog, self.pos.step, self.method.weights(), self.model.term_names, now - interval_start,
                         checkpoint)

        try:
            self.check_eval_data()
            self.model.train()
            with debug_tools(t, self.out, self.device) as after_step:  # anomaly detection, profiler (or none)
                while self.pos.step < self.total_steps:
                    for batch in self._train_batches():
                        batch = to_device(batch, self.device)
                        if undo is not None:
                            undo.take()
                        logs = self.model.training_step(batch, self.method)
                        for s in self.exp.schedulers:
                            s.step()
                        self.pos.step += 1
                        self.pos.batch_in_epoch += 1
                        after_step()
                        if steplog is None:
                            steplog = StepLog(list(logs), t.log_every, self.device)
                        if undo is not None and not all_finite(logs):
                            self._skip(undo, self.pos.step)
                        else:
                            steplog.add(self.pos.step, logs)
                        logger.pbar.update(1)
                        step = self.pos.step
                        # the first step too: even a short run has a start and an end to plot
                        if step % t.log_every == 0 or step == self.total_steps or step == 1:
                            now = time.perf_counter()
                            flush(now)
                            interval_start = now
                        if image_every and (step % image_every == 0 or step == 1):
                            logger.log_images(step, self.sample_images(batch))
                        if t.eval_every and step % t.eval_every == 0 and step < self.total_steps:
                            flush(time.perf_counter())
                            metrics = self.evaluate(select)
                            logger.log_eval(step, metrics, select_prefix)
                            self.keep_best(metrics, start)
                            if self.on_eval is not None:
                                self.on_eval(step, metrics)
                            interval_start = time.perf_counter()
                        stopping = self.stop_signal is not None
                        if stopping or (t.checkpoint_every and step % t.checkpoint_every == 0):
                            flush(time.perf_counter())
                            path = (self.save(False, self.state.elapsed_before + time.perf_counter() - start)
                                    if t.save_checkpoints else None)
                            if stopping:
                                if self.stop_signal in chained:
                                    status = "KILLED"
                                    log.warning("checkpoint written at step %d: handing signal %d to the Slurm "
                                                "job's handler (submitit requeues the job)", step, self.stop_signal)
                                    chained[self.stop_signal](self.stop_signal, None)
                                raise RunInterrupted(self.stop_signal, step, path, hint=None if path else (
                                    "no checkpoint was written (trainer.save_checkpoints=false): start the run "
                                    "again"))
                        if step >= self.total_steps:
                            break
                    else:
                        self.pos.epoch += 1
                        self.pos.batch_in_epoch = 0
            if steplog is not None:
                flush(time.perf_counter())
            logger.pbar.close()
            summary = self._finish(logger, start, select, select_prefix)
            status = "FINISHED"
            return summary
        except (RunInterrupted, KeyboardInterrupt):
            status = "KILLED"
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            logger.close(status)

    def _finish(self, logger: RunLogger, start: float, select: Dataset, select_prefix: str) -> dict[str, Any]:
        """The last checkpoint (first: an evaluation that fails loses nothing, and ``resume=true`` then finishes
        the run), the final evaluation, best.pt, the backends' hparams and final metrics, and summary.json."""
        wall = self.state.elapsed_before + time.perf_counter() - start
        if self.exp.trainer.save_checkpoints:
            self.save(True, wall)
        metrics = self.evaluate()
        logger.log_eval(self.pos.step, metrics)
        chosen = metrics  # reported; best.pt and on_eval read a val evaluation when the final split is test
        if select_prefix == "val/" and (self.exp.trainer.keep_best or self.on_eval is not None):
            chosen = self.evaluate(select)
            logger.log_eval(self.pos.step, chosen, select_prefix)
        self.keep_best(chosen, start)
        if self.on_eval is not None:
            self.on_eval(self.pos.step, chosen)
        summary = self.summary(metrics, wall)
        summary["baseline"] = compare_to_baseline(summary, self.cfg)
        if not self.exp.trainer.save_checkpoints:
            summary["checkpoints"] = "none written (trainer.save_checkpoints=false): the run cannot be resumed"
        logger.log_final(self.params(), metrics)
        if self.fid_error is not None:
            summary["fid_note"] = f"FID not computed: {self.fid_error}"
        write_summary(self.out, summary)
        if self.fid_error is not None:  # eval.fid=true: the run is saved; say how to add FID later
            raise self.fid_error
        return summary

    def summary(self, metrics: dict[str, float], wall: float) -> dict[str, Any]:
        return build_summary(self, metrics, wall)
