"""The run-directory contract: what a run writes (run.yaml, summary.json) and how it is read back safely.

Reading a run directory without trusting it: a run is rebuilt from the package's conf/ and its overrides.

A run directory is data from outside (someone else's experiment, a download, a
shared file system). Its YAML files could name any Python callable as a
``_target_``; instantiating them would run that code. So nothing read from a
run directory is ever instantiated:

* :func:`recorded_overrides` reads the command-line overrides the run was
  started with (``run.yaml``'s ``overrides``, else Hydra's
  ``.hydra/overrides.yaml``), checks they are a list of strings, and drops
  ``hydra.*`` keys;
* :func:`rebuild_config` composes the package's own ``conf/train.yaml`` with
  them (Hydra's override grammar parses them; nothing is evaluated);
* :func:`check_targets` then refuses, with one line, any ``_target_`` that is
  not one of the package's own (those in ``conf/``): an override such as
  ``model._target_=os.system`` cannot smuggle a callable in.

``run.yaml``'s resolved config stays a record for people to read; only its
``overrides`` list is used, and only through the steps above.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import functools
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from mtbench.utils import ConfigError

log = logging.getLogger("mtbench.train")

RUN_CONFIG = "run.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
EVAL_RECORD = "eval.json"  # `mtbench eval` of an unfinished run (no summary.json)
FAILED = "failed.json"  # a multirun job that failed (mtbench.sweep)
CHECKPOINT = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"
LOCK = ".lock"  # held (fcntl) by the process that trains in the run dir; holds its pid
#: what a run writes as it trains: a fresh run never appends to these when a dead run left them behind
RUN_LOGS = ("metrics.jsonl", "metrics.csv", "events.out.tfevents.*", RUN_CONFIG, ".hydra")

__all__ = ["RUN_CONFIG", "SUMMARY", "METRICS", "EVAL_RECORD", "FAILED", "CHECKPOINT", "BEST", "recorded_overrides", "rebuild_config", "allowed_targets", "check_targets",
           "choice", "flat_hparams", "write_run_config", "build_summary", "write_summary", "read_summary", "find_resumable",
           "only_hydra_files", "LOCK", "lock_run_dir", "remove_temp_files", "set_aside_dead_run", "run_dir_given",
           "CheckOutputDir"]


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())  # plain data only: no tags, no objects
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None


def recorded_overrides(run: Path) -> list[str]:
    """The overrides ``mtbench train`` was given for this run, without ``hydra.*`` keys."""
    path = run / RUN_CONFIG
    data = _read_yaml(path) if path.is_file() else None
    if isinstance(data, dict) and "overrides" in data:
        overrides, source = data["overrides"], path
    elif (run / HYDRA_OVERRIDES).is_file():
        overrides, source = _read_yaml(run / HYDRA_OVERRIDES), run / HYDRA_OVERRIDES
    else:
        raise ConfigError(f"{run} is not an mtbench run directory (no {RUN_CONFIG} with its overrides, "
                          f"no {HYDRA_OVERRIDES})")
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{source}: the recorded overrides must be a list of strings, "
                          f"got {type(overrides).__name__}")
    return [o for o in overrides if not o.lstrip("~+").startswith("hydra.") and o.lstrip("~+") != "hydra"]


def rebuild_config(run: Path, config_name: str = "train") -> tuple[DictConfig, dict[str, str]]:
    """(config, group choices) of a run, composed from the package's conf/ and the run's overrides.

    Raises :class:`ConfigError` naming the run for overrides that no longer
    compose (a removed option, a renamed key) and for foreign ``_target_`` values.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mtbench.cli import config_dir

    overrides = recorded_overrides(run)
    try:
        if GlobalHydra.instance().is_initialized():  # inside a Hydra app (mtbench eval): its search path is conf/
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        else:
            with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
                cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise ConfigError(f"cannot rebuild {run} from mtbench's conf/ and its recorded overrides {overrides}: "
                          f"{str(err).splitlines()[0]}") from None
    choices = {k: str(v) for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra/")}
    # resolve ${hydra:...} against the rebuilt run's Hydra node, not the calling command's
    holder = HydraConfig.instance()
    previous = holder.cfg
    holder.set_config(cfg)
    try:
        resolved = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        OmegaConf.resolve(resolved)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot rebuild {run}: {str(err).splitlines()[0]}") from None
    finally:
        holder.cfg = previous
    check_targets(resolved, f"the overrides recorded in {run}")
    return resolved, choices


@functools.lru_cache(maxsize=1)
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` value in the package's conf/ (the only callables a rebuilt run may name)."""
    from mtbench.cli import config_dir

    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                found.add(node["_target_"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in sorted(config_dir().rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text()))
    return frozenset(found)


def _targets(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, DictConfig):
        for key in node.keys():
            if key == "hydra" and not prefix:
                continue  # Hydra's own node (callbacks, launcher): not something mtbench instantiates
            value = node._get_node(key)
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_":
                yield path, value._value()  # unresolved: an interpolation is not a target name either
            elif isinstance(value, (DictConfig, ListConfig)):
                yield from _targets(value, path)
    elif isinstance(node, ListConfig):
        for i, value in enumerate(node._iter_ex(resolve=False)):
            if isinstance(value, (DictConfig, ListConfig)):
                yield from _targets(value, f"{prefix}[{i}]")


def check_targets(cfg: DictConfig, source: str) -> None:
    """Refuse (one line) a config whose ``_target_`` values are not all among :func:`allowed_targets`."""
    allowed = allowed_targets()
    for path, target in _targets(cfg, ""):
        if not isinstance(target, str) or target not in allowed:
            raise ConfigError(f"refusing {path}={target!r} from {source}: not one of mtbench's own targets "
                              f"(those in its conf/); nothing read from a run directory is instantiated "
                              f"otherwise")


# --------------------------------------------------------------------------- writing a run directory


def choice(group: str) -> str:
    """The option chosen for a config group in the running Hydra app ("?" outside one)."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.choices.get(group))
    return "?"


def flat_hparams(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    """``{prefix.key: value}`` with values TensorBoard's hparams accept (others as strings)."""
    return {f"{prefix}.{k}": v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in d.items()}


def _task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_run_config(cfg: DictConfig, out: Path, hydra_files: bool = True) -> None:
    """run.yaml: the overrides (what `mtbench eval` rebuilds the run from, with conf/), choices, resolved config."""
    from mtbench.utils import atomic_write_text

    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    choices = {g: choice(g) for g in ("model", "data", "method", "device", "trainer", "experiment")}
    text = OmegaConf.to_yaml(OmegaConf.create({"choices": choices, "overrides": _task_overrides(),
                                               "config": resolved}))
    atomic_write_text("# written by mtbench train: the resolved config of this run\n" + text, out / RUN_CONFIG)
    if hydra_files:
        _write_hydra_files(cfg, out)


def _write_hydra_files(cfg: DictConfig, out: Path) -> None:
    """Hydra's own record (.hydra/config.yaml, hydra.yaml, overrides.yaml), written by mtbench once the run is
    accepted: conf/train.yaml sets ``hydra.output_subdir: null`` so that Hydra does not write (or overwrite) them
    before the run directory is checked."""
    from hydra.core.hydra_config import HydraConfig

    from mtbench.utils import atomic_write_text

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    files = {"config.yaml": OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
             "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
             "overrides.yaml": hydra_cfg.overrides.task}
    for name, node in files.items():
        atomic_write_text(OmegaConf.to_yaml(node), out / ".hydra" / name)


def build_summary(runner, metrics: dict[str, float], wall: float) -> dict[str, Any]:
    """The summary.json of a run (final metrics, objective, best checkpoint, weights, time, versions, command)."""
    import shlex

    import torch

    from mtbench.utils import code_version, versions

    obj, cfg, data = runner.objective, runner.cfg, runner.data
    no_val = data.val is None
    device = runner.device
    return {
        "model": choice("model"), "method": choice("method"), "data": choice("data"),
        "seed": cfg.seed,
        "metrics": metrics,
        "primary_metric": obj.primary,
        "higher_is_better": obj.higher_is_better,
        "fid_note": obj.fid_note,
        "eval_split": str(cfg.trainer.get("eval_split", "auto")),
        "best": {"value": runner.state.best, "step": runner.state.best_step, "split": "test" if no_val else "val",
                 **({"note": "the data has no val split: best.pt is chosen on the test split"} if no_val else {})},
        "final_weights": runner.method.weights(),
        "init_from": runner.init_from,
        "steps": runner.pos.step, "epochs": runner.pos.step / runner.exp.steps_per_epoch,
        "skipped_nonfinite_steps": runner.state.skipped,
        "wall_time_s": round(wall, 3),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "amp": str(runner.exp.amp_dtype) if runner.exp.amp_dtype else None,
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "versions": versions(),
        # what reruns exactly this run (a multirun job's own overrides, not the sweep's), and the code it ran
        "command": shlex.join(["mtbench", "train", *_task_overrides()]),
        "code": code_version(),
        "overrides": _task_overrides(),
        "run_dir": str(runner.out),
    }


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    import json

    from mtbench.utils import atomic_write_text

    atomic_write_text(json.dumps(summary, indent=2) + "\n", out / SUMMARY)


def read_summary(run: Path) -> dict[str, Any]:
    """A run's summary.json, checked: ``ValueError`` naming the file when it is missing or not a run summary.

    The one reader of summary.json (report, eval): plain JSON, nothing evaluated.
    """
    import json

    f = Path(run) / SUMMARY
    try:
        summary = json.loads(f.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run}: no {SUMMARY} (an unfinished run?)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ValueError(f"{f}: cannot read it: {err}") from None
    missing = [k for k in ("model", "method", "metrics") if k not in summary] if isinstance(summary, dict) else ["all"]
    if missing or not isinstance(summary.get("metrics"), dict):
        raise ValueError(f"{f}: not an mtbench run summary (missing {', '.join(missing) or 'metrics'})")
    return summary


def run_dir_given() -> bool:
    """Whether the user named the run directory (``hydra.run.dir`` / ``hydra.sweep.*`` on the command line)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    keys = [o.lstrip("+~").split("=", 1)[0] for o in HydraConfig.get().overrides.hydra]
    return any(k in ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir") for k in keys)


def find_resumable(out: Path, checkpoint: Path, search_siblings: bool = True) -> Path | None:
    """The run dir to resume: ``out`` itself; else (``search_siblings``: the run dir was not named, so it is a
    fresh timestamped one) the newest unfinished sibling of the same seed."""
    if (out / checkpoint).is_file():
        return out
    if not search_siblings:
        return None
    parent = out.parent
    seed_tag = out.name.rpartition("_s")[2]  # runs of the same seed only (dir names end in _s<seed>)
    candidates = sorted((p for p in parent.iterdir() if p != out and (p / checkpoint).is_file()
                         and p.name.rpartition("_s")[2] == seed_tag),
                        key=lambda p: p.name, reverse=True) if parent.is_dir() else []
    for p in candidates:
        if not (p / SUMMARY).is_file():
            return p
    return None


def only_hydra_files(d: Path) -> bool:
    """Whether ``d`` holds nothing but what Hydra writes at start-up (and an unheld lock file)."""
    return all(p.name in (".hydra", "train.log", LOCK) for p in d.iterdir())


# --------------------------------------------------------------------------- one process per run dir


@contextlib.contextmanager
def lock_run_dir(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (``out/.lock``, fcntl) for the whole run.

    A second process that wants the same run directory gets one line naming the
    directory and the holder's pid. The kernel releases the lock when the
    holder exits, however it exits (SIGKILL included), so a stale ``.lock``
    file never blocks anyone.
    """
    path = out / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as err:
        raise ConfigError(f"cannot use run dir {out}: {err.strerror} ({path})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(f"run dir {out} is in use by another mtbench process (pid {holder}); wait for it "
                              f"to finish or choose another hydra.run.dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_temp_files(out: Path) -> list[Path]:
    """Delete the temp files of writes a killed process never finished (``<name>.<random>.tmp``).

    Only call with the run dir locked: then no live process is writing them.
    """
    found = [p for d in (out, out / CHECKPOINT.parent) if d.is_dir() for p in d.glob("*.*.tmp")
             if p.is_file() and not p.is_symlink()]
    for p in found:
        p.unlink()
    if found:
        log.info("removed %d unfinished temp file(s) of a killed run in %s", len(found), out)
    return found


def set_aside_dead_run(out: Path) -> Path | None:
    """Move what a run killed before its first checkpoint wrote (logs, events, run.yaml, .hydra) into
    ``out/abandoned_<time>/``, so that a fresh run in ``out`` neither appends to nor overwrites them."""
    found = [p for pattern in RUN_LOGS for p in out.glob(pattern)]
    if not found:
        return None
    stamp = f"abandoned_{dt.datetime.now():%Y-%m-%d_%H-%M-%S}"
    dest, k = out / stamp, 1
    while dest.exists():
        k += 1
        dest = out / f"{stamp}_{k}"
    dest.mkdir()
    for p in found:
        shutil.move(str(p), str(dest / p.name))
    log.warning("run dir %s held the logs of a run killed before its first checkpoint; moved them to %s",
                out, dest.name)
    return dest


# --------------------------------------------------------------------------- before Hydra creates the run dir


def _creatable(target: Path) -> str | None:
    """Why ``target`` cannot be created as a folder (None when it can, or exists as one)."""
    p = target
    while not p.exists():
        if p.is_symlink():
            return f"{p} is a dangling link"
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    if p != target and not os.access(p, os.W_OK | os.X_OK):
        return f"no permission to create folders in {p}"
    return None


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra is a dependency
    _Callback = object


#: (run dir, its top-most new ancestor) of run dirs that did not exist when this process's Hydra run started
#: (Hydra creates them, parents included, before the task)
_NEW_RUN_DIRS: list[tuple[Path, Path]] = []


def discard_untouched_run_dir() -> None:
    """Remove the run dir Hydra created for a run that was refused, when nothing but Hydra's empty log and
    the lock is in it: a refused command leaves nothing behind."""
    for d, top in _NEW_RUN_DIRS:
        try:
            entries = list(d.iterdir())
        except OSError:
            continue
        if all((p.name == LOCK and p.is_file()) or (p.suffix == ".log" and p.is_file() and p.stat().st_size == 0)
               for p in entries):
            shutil.rmtree(d, ignore_errors=True)
            while d != top and d.parent != d:  # the empty parents Hydra made for it
                d = d.parent
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty


class CheckOutputDir(_Callback):
    """Hydra callback: refuse, in one line, a run or sweep folder that cannot be created, before Hydra tries
    (its own error is a traceback-like message after a partial start)."""

    def _check(self, config: DictConfig, key: str) -> None:
        import sys

        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)
        target = Path(str(OmegaConf.select(config, key)))
        why = _creatable(target)
        if why:
            print(f"error: cannot create the output folder {target} ({key}): {why}; choose another with "
                  f"{key}=...", file=sys.stderr)
            raise SystemExit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")
        target = Path(str(OmegaConf.select(config, "hydra.run.dir"))).absolute()
        top = target
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        if not target.exists():
            _NEW_RUN_DIRS.append((target, top))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")
