"""Logging a run: per-step scalars kept on the device, brought to the host every ``trainer.log_every`` steps.

Hot-path rule: the loop never syncs with the device except at log, evaluation
and checkpoint time. :class:`StepLog` copies each step's loss values into a
small device buffer; :meth:`RunLogger.flush` brings the interval to the host
in one transfer, checks it for NaN/inf (naming the term and the step), and
writes the means and the method's weights (``loss/<term>``, ``weight/<term>``,
``time/step_ms``) to ``metrics.jsonl``, the run's logging backends
(:mod:`mtbench.training.loggers`: TensorBoard, CSV, MLflow) and the progress bar
(the unweighted sum of the terms, comparable across methods; when stderr is
not a terminal, one plain line per interval instead of carriage-return updates).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mtbench.errors import NonFiniteLossError
from mtbench.rundir import METRICS
from mtbench.training.loggers import Logger
from mtbench.utils import disk_full_error

__all__ = ["StepLog", "RunLogger"]


class StepLog:
    """Per-step scalars kept on the device; brought to the host every ``log_every`` steps."""

    def __init__(self, names: list[str], capacity: int, device: torch.device) -> None:
        self.names = names
        self.buf = torch.zeros(capacity, len(names), device=device)
        self.rows = 0
        self.first_step = 0

    def add(self, step: int, logs: dict[str, torch.Tensor]) -> None:
        if self.rows == 0:
            self.first_step = step
        self.buf[self.rows].copy_(torch.stack([logs[n].float().reshape(()) for n in self.names]))
        self.rows += 1

    def flush(self) -> tuple[torch.Tensor, int] | None:
        """(rows, K) host tensor of the interval and the step of its first row; resets."""
        if self.rows == 0:
            return None
        values = self.buf[: self.rows].cpu()
        first, self.rows = self.first_step, 0
        return values, first


class RunLogger:
    """``metrics.jsonl``, the progress bar and the run's backends (TensorBoard, CSV, MLflow: conf/logger/), open
    while it trains. ``backends=None``: TensorBoard alone; ``params``: the run's settings for the backends."""

    def __init__(self, out: Path, total_steps: int, initial_step: int, desc: str, progress: bool,
                 backends: list[Logger] | None = None, params: dict[str, Any] | None = None) -> None:
        from tqdm.auto import tqdm

        from mtbench.training.loggers.tensorboard import TensorBoardLogger

        self.backends: list[Logger] = [TensorBoardLogger()] if backends is None else list(backends)
        self.metrics_file = open(out / METRICS, "a")  # noqa: SIM115 - closed in close()
        #: on a terminal a progress bar; otherwise (a pipe, a Slurm log) one plain line per log interval
        self.last_step = initial_step
        self.plain = progress and not sys.stderr.isatty()
        self.desc, self.total, self.started = desc, total_steps, time.perf_counter()
        self.pbar = tqdm(total=total_steps, initial=initial_step, desc=desc, unit="step", dynamic_ncols=True,
                         disable=not progress or self.plain, file=sys.stderr)
        self.opened: list[Logger] = []
        try:
            for backend in self.backends:
                backend.open(out, initial_step, desc, params or {})
                self.opened.append(backend)
        except BaseException:
            self.close("FAILED")
            raise

    def _write(self, step: int, record: dict[str, float]) -> None:
        self.last_step = step
        try:
            self.metrics_file.write(json.dumps({"step": step, **record}) + "\n")
            self.metrics_file.flush()
        except OSError as err:  # a full disk: one line naming the file, not a traceback
            raise disk_full_error(err, self.metrics_file.name) or err from None
        for backend in self.backends:
            backend.log_metrics(step, record)

    def flush(self, steplog: StepLog, step: int, weights: dict[str, float], terms: list[str], interval_s: float,
              checkpoint: Path | None) -> None:
        """Log the interval's means at ``step``; a NaN/inf term raises, naming it and its step (under
        trainer.nan_policy=skip such steps were undone and never reach the log). ``checkpoint``: the last
        good checkpoint the error names (None: the run writes none)."""
        got = steplog.flush()
        if got is None:
            return
        values, first = got
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            row, col = (~finite).nonzero()[0].tolist()
            bad_step, name, val = first + row, steplog.names[col], values[row, col].item()
            kept = (f"the last good checkpoint is {checkpoint}" if checkpoint is not None else
                    "no checkpoint is written (trainer.save_checkpoints=false)")
            raise NonFiniteLossError(
                f"loss term {name!r} is {val} at step {bad_step}; {kept} "
                f"(trainer.nan_policy=skip skips such steps instead)")
        means = values.mean(0).tolist()
        record: dict[str, float] = {f"loss/{n}": v for n, v in zip(steplog.names, means)}
        record.update({f"weight/{n}": w for n, w in weights.items()})
        record["time/step_ms"] = 1000.0 * interval_s / len(values)
        self._write(step, record)
        # the unweighted sum of the terms: comparable across methods (each method weighs them differently)
        total = sum(record[f"loss/{n}"] for n in terms)
        self.pbar.set_postfix_str(f"sum of terms {total:.4g}", refresh=False)
        if self.plain:
            elapsed = time.perf_counter() - self.started
            print(f"{self.desc}: step {step}/{self.total} | sum of terms {total:.4g} | "
                  f"{record['time/step_ms']:.1f} ms/step | {elapsed:.0f}s", file=sys.stderr, flush=True)

    def log_eval(self, step: int, metrics: dict[str, float], prefix: str = "eval/") -> None:
        """eval/<metric> on the final split; val/<metric> for the selection split when that is another one."""
        self._write(step, {f"{prefix}{k}": v for k, v in metrics.items()})

    def log_images(self, step: int, images: dict[str, torch.Tensor]) -> None:
        for backend in self.backends:
            backend.log_images(step, images)

    def log_final(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's settings and final metrics (TensorBoard's HPARAMS, MLflow's final/<metric>)."""
        for backend in self.backends:
            backend.log_final(self.last_step, hparams, metrics)

    def close(self, status: str = "FINISHED") -> None:
        """Close every backend (``status``: FINISHED, FAILED or KILLED) and the files."""
        self.pbar.close()
        for backend in self.opened:
            backend.close(status)
        try:
            self.metrics_file.close()
        except OSError:  # the write that failed (full disk) has been reported; closing must not mask it
            pass
