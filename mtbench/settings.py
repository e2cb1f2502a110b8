"""Typed, validated ``trainer`` and ``device`` settings, checked before anything is built or trained.

``TrainerSettings.from_config(cfg.trainer)`` and ``DeviceSettings.from_config(cfg.device)`` turn the
composed config nodes (conf/trainer/*.yaml, conf/device/*.yaml, plus command-line overrides) into
frozen dataclasses whose attribute names are the config keys. A bad value raises
:class:`mtbench.utils.ConfigError` with one line naming the key, the value and what is allowed, e.g.

    trainer.eval_split must be 'auto', 'val' or 'test', got 'vall'
    trainer.eval_splt is not a trainer setting; did you mean eval_split?

A key missing from the node takes the default below (the values of conf/trainer/default.yaml and
conf/device/auto.yaml). Whether the data has the chosen eval split, or CUDA is present for
``device.type=cuda``, is checked where the data and the device are built, not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from mtbench.utils import ConfigError

if TYPE_CHECKING:  # typing.Self is Python 3.11+; only annotations use it
    from typing_extensions import Self

__all__ = ["DeviceSettings", "TrainerSettings"]


class _Bad(Exception):
    """A checker's verdict: ``args[0]`` says what is allowed."""


# --------------------------------------------------------------------------- checkers: value -> value or _Bad
def _int_at_least(low: int, *, none: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None and none:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise _Bad(f"an integer >= {low}" + (" or null" if none else ""))
        return v
    return check


def _one_of(*allowed: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or v not in allowed:
            raise _Bad(", ".join(repr(a) for a in allowed[:-1]) + f" or {allowed[-1]!r}")
        return v
    return check


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _num_workers(v: Any) -> int | str:
    if v is None or v == "auto":  # null has always meant auto to the runner
        return "auto"
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _Bad("'auto' or an integer >= 0")
    return v


def _device_type(v: Any) -> str:
    if not isinstance(v, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", v):
        raise _Bad("auto, cpu, cuda or cuda:<index>")
    return v


def _amp(v: Any) -> bool | str:
    if v is None or v is False:
        return False
    if v is True or v in ("bf16", "bfloat16"):  # aliases the runner has always accepted
        return "bf16"
    raise _Bad("false or bf16")


def _fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise _Bad("a number in [0, 1]")
    return float(v)


def _setting(default: Any, check: Callable[[Any], Any]) -> Any:
    return field(default=default, metadata={"check": check})


def _plain(v: Any) -> Any:
    return OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig)) else v


class _Settings:
    """from_config and the checks shared by the settings dataclasses below."""

    _group: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                checked = f.metadata["check"](value)
            except _Bad as bad:
                raise ConfigError(f"{self._group}.{f.name} must be {bad.args[0]}, got {_plain(value)!r}") from None
            object.__setattr__(self, f.name, checked)
        self._check_together()

    def _check_together(self) -> None:
        """Checks across keys (none by default)."""

    @classmethod
    def from_config(cls, node: Mapping[str, Any] | DictConfig) -> Self:
        """The settings of a config node (cfg.trainer / cfg.device); ConfigError on a bad or unknown key."""
        group = cls._group
        if not isinstance(node, (Mapping, DictConfig)):
            raise ConfigError(f"{group} must be a mapping of settings, got {_plain(node)!r}")
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key in node:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else "the settings are " + ", ".join(names)
                raise ConfigError(f"{group}.{key} is not a {group} setting; {hint}")
            try:
                values[key] = _plain(node[key])
            except MissingMandatoryValue:
                raise ConfigError(f"{group}.{key} is missing (???): set it with {group}.{key}=...") from None
            except OmegaConfBaseException as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ConfigError(f"{group}.{key} cannot be read: {first}") from None
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class TrainerSettings(_Settings):
    """The training loop (conf/trainer/*.yaml); defaults = conf/trainer/default.yaml."""

    _group: ClassVar[str] = "trainer"

    #: passes over the training split; null only with max_steps set (which overrides it)
    epochs: int | None = _setting(15, _int_at_least(1, none=True))
    #: optimisation steps; overrides epochs
    max_steps: int | None = _setting(None, _int_at_least(1, none=True))
    batch_size: int = _setting(64, _int_at_least(1))
    eval_batch_size: int = _setting(1000, _int_at_least(1))
    shuffle: bool = _setting(True, _boolean)
    #: DataLoader workers; "auto": 0 on CPU, 4 on CUDA (null reads as "auto")
    num_workers: int | Literal["auto"] = _setting("auto", _num_workers)
    #: steps between host syncs (TensorBoard, metrics.jsonl, progress bar)
    log_every: int = _setting(20, _int_at_least(1))
    #: steps between evaluations; null: only at the end
    eval_every: int | None = _setting(None, _int_at_least(1, none=True))
    #: auto: test if the data has one, else val
    eval_split: Literal["auto", "val", "test"] = _setting("auto", _one_of("auto", "val", "test"))
    #: steps between checkpoints; null: only at the end and on SIGINT/SIGTERM
    checkpoint_every: int | None = _setting(200, _int_at_least(1, none=True))
    #: steps between sample images in TensorBoard; null: none
    image_every: int | None = _setting(None, _int_at_least(1, none=True))
    #: raise: stop at a NaN/inf term; skip: skip such steps
    nan_policy: Literal["raise", "skip"] = _setting("raise", _one_of("raise", "skip"))
    #: nan_policy=skip: the run fails once more than this fraction of its steps were skipped
    max_skipped: float = _setting(0.1, _fraction)
    progress: bool = _setting(True, _boolean)
    #: keep checkpoints/best.pt (chosen on the val split); not in the YAML: mtbench tune's trials set it false
    keep_best: bool = _setting(True, _boolean)
    # -- debugging (conf/debug/*.yaml set these; see README "Debugging runs")
    #: false: no checkpoint at all (periodic, final, best.pt, on SIGINT/SIGTERM): the run cannot be resumed
    save_checkpoints: bool = _setting(True, _boolean)
    #: evaluations read at most this many batches of each eval split (null: all); needs FID off (eval.fid=false)
    eval_limit_batches: int | None = _setting(None, _int_at_least(1, none=True))
    #: N >= 1: train on the first N batches of the first epoch, the same tensors every epoch (0: off)
    overfit_batches: int = _setting(0, _int_at_least(0))
    #: torch.autograd anomaly detection during training: a NaN in backward raises, naming the forward op
    detect_anomaly: bool = _setting(False, _boolean)
    #: N: the torch profiler records N steps after 1 wait and 1 warmup step; trace in <run dir>/profile/ (null: off)
    profile_steps: int | None = _setting(None, _int_at_least(1, none=True))

    def _check_together(self) -> None:
        if self.epochs is None and self.max_steps is None:
            raise ConfigError("trainer.epochs must be an integer >= 1 (null only with trainer.max_steps set), "
                              "got None")


@dataclass(frozen=True, kw_only=True)
class DeviceSettings(_Settings):
    """Where and how to train (conf/device/*.yaml); defaults = conf/device/auto.yaml."""

    _group: ClassVar[str] = "device"

    #: auto: cuda when available, else cpu; cuda[:<index>] requires a GPU (checked when the device is built)
    type: str = _setting("auto", _device_type)
    #: bf16: forward passes under torch.autocast(bfloat16) (true and bfloat16 read as bf16, null as false)
    amp: Literal[False, "bf16"] = _setting(False, _amp)
    #: image models: channels_last memory format
    channels_last: bool = _setting(False, _boolean)
    #: CPU threads for torch; null: torch's default (all cores)
    threads: int | None = _setting(None, _int_at_least(1, none=True))
    #: torch.use_deterministic_algorithms (and cuDNN without autotuning): the same run gives the same numbers
    deterministic: bool = _setting(False, _boolean)
