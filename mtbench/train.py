"""The runner: build data, model and method from the config, train, checkpoint, evaluate, summarise.

``mtbench train [overrides]`` composes ``conf/train.yaml`` with Hydra and calls
:func:`train`. Everything is built with ``hydra.utils.instantiate``; the
runner does not know which model or method runs.

Hot-path rules: the loop never syncs with the device except every
``trainer.log_every`` steps (and at evaluation/checkpoint time). Per-step
loss values are copied into a small device buffer; at log time one transfer
brings them to the host, where they are averaged, checked for NaN/inf and
written to TensorBoard, ``metrics.jsonl`` and the progress bar.

Checkpoints (``checkpoints/last.pt``, written atomically) hold the model, the
method (with its optimiser), the model's own optimisers, LR schedulers, every
RNG state and the data position, so ``resume=true`` continues mid-epoch and
ends with the parameters of an uninterrupted run (CPU, ``num_workers=0``).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from mtbench.baseline import compare_to_baseline, format_comparison
from mtbench.metrics.fid_runner import FIDComputer, fid_active, fid_mode
from mtbench.rundir import RUN_CONFIG
from mtbench.utils import (ConfigError, atomic_torch_save, atomic_write_text, resolve_device, rng_state,
                           seed_everything, set_rng_state, to_device, versions)

log = logging.getLogger("mtbench.train")

CHECKPOINT = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"
# config sections that must match when a run is resumed
RESUME_KEYS = ("model", "data", "method", "seed")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite (nan_policy=raise)."""


class RunInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was written."""

    def __init__(self, signum: int, step: int, path: Path) -> None:
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"interrupted by signal {signum} at step {step}; checkpoint {path}")


# --------------------------------------------------------------------------- data order
class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, starting at ``start`` (the resume position)."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, shuffle: bool = True) -> None:
        self.n, self.start = n, start
        if shuffle:
            g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
            self.order = torch.randperm(n, generator=g)
        else:
            self.order = torch.arange(n)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, self.n - self.start)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1)


@dataclass
class Position:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def _num_workers(value: Any, device: torch.device) -> int:
    if value is None or value == "auto":
        return 4 if device.type == "cuda" else 0
    if not isinstance(value, int) or value < 0:
        raise ConfigError(f"trainer.num_workers must be 'auto' or an integer >= 0, got {value!r}")
    return value


def make_train_loader(ds: Dataset, cfg: DictConfig, seed: int, pos: Position, device: torch.device) -> DataLoader:
    bs = cfg.trainer.batch_size
    workers = _num_workers(cfg.trainer.num_workers, device)
    # the loader's own generator seeds its workers, so creating a loader mid-epoch
    # (resume) does not consume the global RNG differently from an uninterrupted run
    gen = torch.Generator().manual_seed(_epoch_seed(seed, pos.epoch) + 1)
    sampler = EpochSampler(len(ds), seed, pos.epoch, start=pos.batch_in_epoch * bs, shuffle=cfg.trainer.shuffle)
    return DataLoader(ds, batch_size=bs, sampler=sampler, num_workers=workers, generator=gen,
                      pin_memory=device.type == "cuda", drop_last=False,
                      persistent_workers=False)


def make_eval_loader(ds: Dataset, cfg: DictConfig, device: torch.device, batch_size: int | None = None) -> DataLoader:
    workers = _num_workers(cfg.trainer.num_workers, device)
    # its own generator: evaluating must not consume the training RNG (eval_every would change training)
    return DataLoader(ds, batch_size=batch_size or cfg.trainer.eval_batch_size, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- validation
def validate_trainer(t: DictConfig) -> None:
    def positive_int(key: str, allow_none: bool = False) -> None:
        v = t.get(key)
        if v is None and allow_none:
            return
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"trainer.{key} must be an integer >= 1{' or null' if allow_none else ''}, got {v!r}")

    positive_int("batch_size")
    positive_int("eval_batch_size")
    positive_int("log_every")
    positive_int("checkpoint_every", allow_none=True)
    positive_int("eval_every", allow_none=True)
    positive_int("max_steps", allow_none=True)
    positive_int("epochs", allow_none=t.get("max_steps") is not None)
    if t.nan_policy not in ("raise", "skip"):
        raise ConfigError(f"trainer.nan_policy must be 'raise' or 'skip', got {t.nan_policy!r}")


# --------------------------------------------------------------------------- logging buffer
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


# --------------------------------------------------------------------------- the runner
class Runner:
    def __init__(self, cfg: DictConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out
        validate_trainer(cfg.trainer)
        self.device = resolve_device(str(cfg.device.type))
        amp = cfg.device.get("amp", False)
        if amp not in (False, None, "bf16", "bfloat16", True):
            raise ConfigError(f"device.amp must be false or bf16, got {amp!r}")
        self.amp_dtype = torch.bfloat16 if amp else None
        threads = cfg.device.get("threads")
        if threads is not None:
            if not isinstance(threads, int) or threads < 1:
                raise ConfigError(f"device.threads must be an integer >= 1 or null, got {threads!r}")
            torch.set_num_threads(threads)
        seed_everything(cfg.seed)
        self.data = instantiate(cfg.data, _convert_="object")
        self.model = instantiate(cfg.model, _convert_="object")
        self.model.configure_runtime(self.device, self.amp_dtype, bool(cfg.device.get("channels_last", False)))
        #: what model.init_from loaded into the generator (train() applies it to fresh runs only)
        self.init_from: dict[str, Any] | None = None
        self.method = instantiate(cfg.method, params=self.model.multi_term_parameters(),
                                  term_names=self.model.term_names,
                                  default_weights=self.model.default_weights, _convert_="object")
        self.method.skip_nonfinite = cfg.trainer.nan_policy == "skip"
        self.fid_cfg = cfg.get("eval")
        self.fid_on = fid_active(self.fid_cfg, self.model)
        self.fid_computer = None
        self.fid_error: Exception | None = None
        self.fid_note: str | None = None
        self.primary_metric = "fid" if self.fid_on else self.model.primary_metric
        if getattr(self.model, "supports_fid", False) and not self.fid_on:  # never silent about FID
            explicit = self.fid_cfg.get("fid_weights") if self.fid_cfg is not None else None
            why = ("eval.fid=false" if fid_mode(self.fid_cfg) == "false" else
                   f"weights not found at eval.fid_weights={explicit}" if explicit else
                   "weights not found, run `mtbench weights fid`")
            self.fid_note = f"FID off: {why}; ranked by {self.primary_metric} instead"
        self.higher_is_better = False if self.fid_on else self.model.higher_is_better
        bs = cfg.trainer.batch_size
        self.steps_per_epoch = math.ceil(len(self.data.train) / bs)
        if self.steps_per_epoch == 0:
            raise ConfigError(f"the training split of data {self.data.name!r} is empty")
        self.total_steps = cfg.trainer.max_steps or cfg.trainer.epochs * self.steps_per_epoch
        self.schedulers = self.model.lr_schedulers(self.method, self.total_steps)
        self.pos = Position()
        self.elapsed_before = 0.0
        self.stop_signal: int | None = None
        self.log_names: list[str] | None = None
        self.last_eval: dict[str, float] = {}
        self.skipped_nonfinite = 0
        self.best: float | None = None
        self.best_step: int | None = None
        #: called as on_eval(step, metrics) after every evaluation (Hyperband tuning reports and prunes here)
        self.on_eval = None

    # -- checkpoints ----------------------------------------------------------
    def resume_snapshot(self) -> str:
        sub = {k: OmegaConf.to_container(self.cfg[k], resolve=True) if isinstance(self.cfg[k], DictConfig)
               else self.cfg[k] for k in RESUME_KEYS}
        return json.dumps(sub, sort_keys=True)

    def state(self, finished: bool, elapsed: float) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.pos.step, "epoch": self.pos.epoch, "batch_in_epoch": self.pos.batch_in_epoch,
            "finished": finished, "elapsed_s": elapsed,
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "aux_optimizers": {k: o.state_dict() for k, o in self.model.aux_optimizers().items()},
            "schedulers": [s.state_dict() for s in self.schedulers],
            "rng": rng_state(),
            "config": self.resume_snapshot(),
            "best": self.best, "best_step": self.best_step,
            "init_from": self.init_from,
        }

    def save(self, finished: bool, elapsed: float, path: Path | None = None) -> Path:
        path = path or self.out / CHECKPOINT
        atomic_torch_save(self.state(finished, elapsed), path)
        return path

    def keep_best(self, metrics: dict[str, float], start: float) -> None:
        """Save checkpoints/best.pt when the primary metric improves (evaluations on selection_split only)."""
        if not self.cfg.trainer.get("keep_best", True):
            return
        key = self.primary_metric
        value = metrics.get(key)
        if value is None or not math.isfinite(value):
            return
        better = self.best is None or (value > self.best if self.higher_is_better else value < self.best)
        if better:
            self.best = value
            self.best_step = self.pos.step
            self.save(False, self.elapsed_before + time.perf_counter() - start, self.out / BEST)

    def load(self, path: Path) -> dict[str, Any]:
        try:
            ckpt = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
            raise ConfigError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None
        if ckpt.get("config") != self.resume_snapshot():
            old, new = json.loads(ckpt.get("config") or "{}"), json.loads(self.resume_snapshot())
            diff = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
            raise ConfigError(f"cannot resume {path}: the config differs from the checkpoint's in {diff}; "
                              f"resume with the same model/data/method/seed or start a new run")
        self.model.load_state_dict(ckpt["model"])
        self.method.load_state_dict(ckpt["method"])
        for k, o in self.model.aux_optimizers().items():
            o.load_state_dict(ckpt["aux_optimizers"][k])
        for s, st in zip(self.schedulers, ckpt["schedulers"]):
            s.load_state_dict(st)
        # RNG states are CPU tensors; map_location may have moved them
        rng = ckpt["rng"]
        rng["torch"] = rng["torch"].cpu()
        rng["numpy"]["keys"] = rng["numpy"]["keys"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        set_rng_state(rng)
        self.pos = Position(ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"])
        self.elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        self.best, self.best_step = ckpt.get("best"), ckpt.get("best_step")
        self.init_from = ckpt.get("init_from")
        return ckpt

    # -- evaluation -------------------------------------------------------------
    def eval_split(self) -> Dataset:
        which = self.cfg.trainer.get("eval_split", "auto")
        if which == "auto":
            return self.data.eval_split()
        if which not in ("val", "test"):
            raise ConfigError(f"trainer.eval_split must be auto, val or test, got {which!r}")
        split = getattr(self.data, which)
        if split is None:
            raise ConfigError(f"trainer.eval_split={which} but data {self.data.name!r} has no {which} split")
        return split

    def selection_split(self) -> Dataset:
        """What periodic evaluations, best.pt and tuning read: val, or the final split when there is no val."""
        return self.data.val if self.data.val is not None else self.eval_split()

    def evaluate(self, split: Dataset | None = None) -> dict[str, float]:
        """Metrics on ``split``, by default the final split (trainer.eval_split); extra_eval sets only then."""
        final = split is None
        split = self.eval_split() if final else split
        bs = getattr(self.data, "eval_batch_size", None)
        self.model.eval()
        try:
            loader = make_eval_loader(split, self.cfg, self.device, bs)
            metrics = self.model.evaluate(loader)
            if self.fid_on and self.fid_error is None:
                if self.fid_computer is None:
                    try:
                        self.fid_computer = FIDComputer(self.fid_cfg, self.device)
                    except RuntimeError as err:  # missing/invalid Inception weights: keep training, report at the end
                        if type(err).__name__ not in ("MissingWeightsError", "InvalidWeightsError"):
                            raise
                        self.fid_error = err
                if self.fid_computer is not None:
                    name = "val" if split is self.data.val else "test"
                    metrics.update(self.fid_computer.compute(self.model, loader, self.cfg.data, name))
            main = dict(metrics)
            for name, extra in getattr(self.data, "extra_eval", {}).items():
                if extra is split:  # the eval split is also reported under its own name (e.g. Set5/psnr)
                    metrics.update({f"{name}/{k}": v for k, v in main.items()})
                elif final and self.cfg.trainer.get("eval_split", "auto") != "val":
                    m = self.model.evaluate(make_eval_loader(extra, self.cfg, self.device, bs))
                    metrics.update({f"{name}/{k}": v for k, v in m.items()})
        finally:
            self.model.train()
        self.last_eval = metrics
        return metrics

    # -- logging -------------------------------------------------------------------
    def flush(self, steplog: StepLog, writer, metrics_file, pbar, interval_s: float) -> None:
        got = steplog.flush()
        if got is None:
            return
        values, first = got
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            row, col = (~finite).nonzero()[0].tolist()
            bad_step, name, val = first + row, steplog.names[col], values[row, col].item()
            if self.cfg.trainer.nan_policy == "raise":
                raise NonFiniteLossError(
                    f"loss term {name!r} is {val} at step {bad_step}; the last good checkpoint is "
                    f"{self.out / CHECKPOINT} (trainer.nan_policy=skip skips such steps instead)")
            self.skipped_nonfinite += int((~finite.all(1)).sum())
            values = values[finite.all(1)]
        step = self.pos.step
        means = values.mean(0).tolist() if len(values) else [float("nan")] * len(steplog.names)
        weights = self.method.weights()
        record: dict[str, float] = {f"loss/{n}": v for n, v in zip(steplog.names, means)}
        record.update({f"weight/{n}": w for n, w in weights.items()})
        record["time/step_ms"] = 1000.0 * interval_s / max(1, len(values) or 1)
        for k, v in record.items():
            writer.add_scalar(k, v, step)
        metrics_file.write(json.dumps({"step": step, **record}) + "\n")
        metrics_file.flush()
        terms = self.model.term_names
        total = sum(weights[n] * record[f"loss/{n}"] for n in terms)
        pbar.set_postfix_str(f"loss {total:.4g}", refresh=False)

    def log_eval(self, metrics: dict[str, float], writer, metrics_file, prefix: str = "eval/") -> None:
        """eval/<metric> on the final split; val/<metric> for the selection split when that is another one."""
        for k, v in metrics.items():
            writer.add_scalar(f"{prefix}{k}", v, self.pos.step)
        metrics_file.write(json.dumps({"step": self.pos.step, **{f"{prefix}{k}": v for k, v in metrics.items()}})
                           + "\n")
        metrics_file.flush()

    def log_images(self, batch, writer) -> None:
        from torchvision.utils import make_grid

        self.model.eval()
        try:
            with torch.no_grad():
                images = self.model.sample_images(batch)
        finally:
            self.model.train()
        for name, img in images.items():
            writer.add_image(f"images/{name}", make_grid(img.float().clamp(0, 1).cpu(), nrow=4), self.pos.step)

    # -- the loop --------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        if self.stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.stop_signal = signum
        log.warning("signal %d received: finishing the step, writing a checkpoint, then exiting", signum)

    def fit(self) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        cfg, t = self.cfg, self.cfg.trainer
        writer = SummaryWriter(log_dir=str(self.out))
        metrics_file = open(self.out / "metrics.jsonl", "a")  # noqa: SIM115 - closed in finally
        old_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        start = time.perf_counter()
        interval_start = start
        steplog: StepLog | None = None
        image_every = t.get("image_every")
        pbar = tqdm(total=self.total_steps, initial=self.pos.step, desc=f"{cfg.get('name', 'train')}",
                    unit="step", dynamic_ncols=True, disable=not t.progress, file=sys.stderr)
        # periodic evaluations, best.pt and on_eval (tuning) read the selection split, never test when val exists
        select = self.selection_split()
        select_prefix = "eval/" if select is self.eval_split() else "val/"
        try:
            self.model.train()
            while self.pos.step < self.total_steps:
                loader = make_train_loader(self.data.train, cfg, cfg.seed, self.pos, self.device)
                for batch in loader:
                    batch = to_device(batch, self.device)
                    logs = self.model.training_step(batch, self.method)
                    for s in self.schedulers:
                        s.step()
                    self.pos.step += 1
                    self.pos.batch_in_epoch += 1
                    if steplog is None:
                        self.log_names = list(logs)
                        steplog = StepLog(self.log_names, t.log_every, self.device)
                    steplog.add(self.pos.step, logs)
                    pbar.update(1)
                    step = self.pos.step
                    if steplog.rows == t.log_every or step == self.total_steps:
                        now = time.perf_counter()
                        self.flush(steplog, writer, metrics_file, pbar, now - interval_start)
                        interval_start = now
                    if image_every and (step % image_every == 0 or step == 1):
                        self.log_images(batch, writer)
                    if t.eval_every and step % t.eval_every == 0 and step < self.total_steps:
                        self.flush(steplog, writer, metrics_file, pbar, time.perf_counter() - interval_start)
                        metrics = self.evaluate(select)
                        self.log_eval(metrics, writer, metrics_file, select_prefix)
                        self.keep_best(metrics, start)
                        if self.on_eval is not None:
                            self.on_eval(step, metrics)
                        interval_start = time.perf_counter()
                    stopping = self.stop_signal is not None
                    if stopping or (t.checkpoint_every and step % t.checkpoint_every == 0):
                        self.flush(steplog, writer, metrics_file, pbar, time.perf_counter() - interval_start)
                        path = self.save(False, self.elapsed_before + time.perf_counter() - start)
                        if stopping:
                            raise RunInterrupted(self.stop_signal, step, path)
                    if step >= self.total_steps:
                        break
                else:
                    self.pos.epoch += 1
                    self.pos.batch_in_epoch = 0
            if steplog is not None:
                self.flush(steplog, writer, metrics_file, pbar, time.perf_counter() - interval_start)
            pbar.close()
            metrics = self.evaluate()
            self.log_eval(metrics, writer, metrics_file)
            wall = self.elapsed_before + time.perf_counter() - start
            chosen = metrics  # reported; best.pt and on_eval read a val evaluation when the final split is test
            if select_prefix == "val/" and (t.get("keep_best", True) or self.on_eval is not None):
                chosen = self.evaluate(select)
                self.log_eval(chosen, writer, metrics_file, select_prefix)
            self.keep_best(chosen, start)
            if self.on_eval is not None:
                self.on_eval(self.pos.step, chosen)
            self.save(True, wall)
            summary = self.summary(metrics, wall)
            summary["baseline"] = compare_to_baseline(summary, self.cfg)
            hp = {"model": _choice("model"), "method": _choice("method"), "data": _choice("data"),
                  "seed": cfg.seed, **_flat_hparams("model", self.model.hparams()),
                  **({"model.init_from": self.init_from["path"]} if self.init_from else {}),
                  **_flat_hparams("method", self.method.hparams())}
            writer.add_hparams(hp, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
            if self.fid_error is not None:
                summary["fid_note"] = f"FID not computed: {self.fid_error}"
            atomic_write_text(json.dumps(summary, indent=2) + "\n", self.out / "summary.json")
            if self.fid_error is not None:  # eval.fid=true: the run is saved; say how to add FID later
                raise self.fid_error
            return summary
        finally:
            pbar.close()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            writer.close()
            metrics_file.close()

    def summary(self, metrics: dict[str, float], wall: float) -> dict[str, Any]:
        no_val = self.data.val is None
        return {
            "model": _choice("model"), "method": _choice("method"), "data": _choice("data"),
            "seed": self.cfg.seed,
            "metrics": metrics,
            "primary_metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
            "fid_note": self.fid_note,
            "eval_split": str(self.cfg.trainer.get("eval_split", "auto")),
            "best": {"value": self.best, "step": self.best_step, "split": "test" if no_val else "val",
                     **({"note": "the data has no val split: best.pt is chosen on the test split"} if no_val else {})},
            "final_weights": self.method.weights(),
            "init_from": self.init_from,
            "steps": self.pos.step, "epochs": self.pos.step / self.steps_per_epoch,
            "skipped_nonfinite_steps": self.skipped_nonfinite + getattr(self.method, "skipped_steps", 0),
            "wall_time_s": round(wall, 3),
            "device": str(self.device) + (f" ({torch.cuda.get_device_name(self.device)})"
                                          if self.device.type == "cuda" else ""),
            "amp": str(self.amp_dtype) if self.amp_dtype else None,
            "versions": versions(),
            "command": " ".join(["mtbench", *sys.argv[1:]]) if sys.argv else "",
            "overrides": list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [],
            "run_dir": str(self.out),
        }


def write_run_config(cfg: DictConfig, out: Path) -> None:
    """run.yaml: the overrides (what `mtbench eval` rebuilds the run from, with conf/), choices, resolved config."""
    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    choices = {g: _choice(g) for g in ("model", "data", "method", "device", "trainer", "experiment")}
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    text = OmegaConf.to_yaml(OmegaConf.create({"choices": choices, "overrides": overrides, "config": resolved}))
    atomic_write_text("# written by mtbench train: the resolved config of this run\n" + text, out / RUN_CONFIG)


def _choice(group: str) -> str:
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group))
    return "?"


def _flat_hparams(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out[f"{prefix}.{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


# --------------------------------------------------------------------------- entry points
def _find_resumable(out: Path) -> Path | None:
    """The run dir to resume: ``out`` itself, else the newest unfinished sibling with a checkpoint."""
    if (out / CHECKPOINT).is_file():
        return out
    parent = out.parent
    seed_tag = out.name.rpartition("_s")[2]  # runs of the same seed only (dir names end in _s<seed>)
    candidates = sorted((p for p in parent.iterdir() if p != out and (p / CHECKPOINT).is_file()
                         and p.name.rpartition("_s")[2] == seed_tag),
                        key=lambda p: p.name, reverse=True) if parent.is_dir() else []
    for p in candidates:
        if not (p / "summary.json").is_file():
            return p
    return None


def _only_hydra_files(d: Path) -> bool:
    return all(p.name in (".hydra", "train.log") for p in d.iterdir())


def train(cfg: DictConfig, out: Path | None = None, on_eval=None) -> dict[str, Any]:
    """Run one training job as configured; returns the summary (also in summary.json).

    ``on_eval(step, metrics)`` is called after every evaluation; an exception it
    raises (e.g. ``optuna.TrialPruned``) stops the run, leaving its last checkpoint.
    """
    out = Path(out or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        found = _find_resumable(out)
        if found is None:
            raise ConfigError(f"resume=true but no checkpoint ({CHECKPOINT}) in {out} or in an unfinished "
                              f"run beside it under {out.parent}")
        if found != out and _only_hydra_files(out):
            import shutil

            shutil.rmtree(out)  # the empty dir Hydra just made for this invocation
        out = found
    else:
        for name in (CHECKPOINT, Path("summary.json")):
            if (out / name).exists():
                raise ConfigError(f"run dir {out} already holds a run ({name}); pass resume=true to continue "
                                  f"it, or choose another hydra.run.dir")
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
    """The final console line: the score beside the tuned baseline's, steps, time, run dir."""
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
