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

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from mtbench.utils import ConfigError

RUN_CONFIG = "run.yaml"
HYDRA_OVERRIDES = Path(".hydra") / "overrides.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
EVAL_RECORD = "eval.json"  # `mtbench eval` of an unfinished run (no summary.json)
FAILED = "failed.json"  # a multirun job that failed (mtbench.sweep)
CHECKPOINT = Path("checkpoints") / "last.pt"
BEST = Path("checkpoints") / "best.pt"

__all__ = ["RUN_CONFIG", "SUMMARY", "METRICS", "EVAL_RECORD", "FAILED", "CHECKPOINT", "BEST", "recorded_overrides", "rebuild_config", "allowed_targets", "check_targets",
           "choice", "flat_hparams", "write_run_config", "build_summary", "write_summary", "read_summary", "find_resumable",
           "only_hydra_files"]


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


def write_run_config(cfg: DictConfig, out: Path) -> None:
    """run.yaml: the overrides (what `mtbench eval` rebuilds the run from, with conf/), choices, resolved config."""
    from mtbench.utils import atomic_write_text

    resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    choices = {g: choice(g) for g in ("model", "data", "method", "device", "trainer", "experiment")}
    text = OmegaConf.to_yaml(OmegaConf.create({"choices": choices, "overrides": _task_overrides(),
                                               "config": resolved}))
    atomic_write_text("# written by mtbench train: the resolved config of this run\n" + text, out / RUN_CONFIG)


def build_summary(runner, metrics: dict[str, float], wall: float) -> dict[str, Any]:
    """The summary.json of a run (final metrics, objective, best checkpoint, weights, time, versions, command)."""
    import sys

    import torch

    from mtbench.utils import versions

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
        "skipped_nonfinite_steps": runner.skipped_nonfinite + getattr(runner.method, "skipped_steps", 0),
        "wall_time_s": round(wall, 3),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "amp": str(runner.exp.amp_dtype) if runner.exp.amp_dtype else None,
        "versions": versions(),
        "command": " ".join(["mtbench", *sys.argv[1:]]) if sys.argv else "",
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


def find_resumable(out: Path, checkpoint: Path) -> Path | None:
    """The run dir to resume: ``out`` itself, else the newest unfinished sibling of the same seed."""
    if (out / checkpoint).is_file():
        return out
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
    """Whether ``d`` holds nothing but what Hydra writes at start-up."""
    return all(p.name in (".hydra", "train.log") for p in d.iterdir())
