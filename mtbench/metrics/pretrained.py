"""Pretrained weights files: where mtbench looks for them and how it reads them.

Two networks need pretrained weights: the VGG19 of SRGAN's perceptual loss
(:mod:`mtbench.nets.vgg`) and the FID Inception (:mod:`mtbench.metrics.fid`).
Both are looked up the same way (:func:`find_weights`), in order:

1. the file the config names (``model.vgg_weights``, ``eval.fid_weights``):
   it wins, and when it does not exist the caller reports that file;
2. the file's standard name in torch hub's checkpoint folder
   (:func:`hub_checkpoint_path`, ``$TORCH_HOME/hub/checkpoints``, where
   torchvision and pytorch-fid download to);
3. a file mtbench made itself in its cache (:func:`cache_dir`; the FID
   Inception that ``mtbench weights fid`` converts).

Downloading, when allowed, is the caller's last resort. Files are read with
``torch.load(weights_only=True)`` (no code is ever unpickled) by
:func:`read_state_dict`, whose errors are one line naming the file. There is never a silent
fallback to random weights.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["MissingWeightsError", "InvalidWeightsError", "hub_checkpoint_path", "cache_dir", "find_weights",
           "read_state_dict"]


class MissingWeightsError(RuntimeError):
    """Pretrained weights could not be found or downloaded (the message says which file and what to do)."""


class InvalidWeightsError(MissingWeightsError):
    """A weights file exists but cannot be read or is not the expected network's state_dict."""


def hub_checkpoint_path(filename: str) -> Path:
    """``<torch.hub.get_dir()>/checkpoints/<filename>``, where torchvision and pytorch-fid download weights.

    ``torch.hub.get_dir()`` follows ``$TORCH_HOME`` (default ``~/.cache/torch``).
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def cache_dir() -> Path:
    """mtbench's cache: ``$MTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtbench``, else ``~/.cache/mtbench``."""
    if os.environ.get("MTBENCH_CACHE_DIR"):
        return Path(os.environ["MTBENCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mtbench"


def find_weights(explicit: str | os.PathLike | None, hub_file: str | None = None,
                 cache_file: str | None = None) -> Path | None:
    """The weights file to read, or None (see the module docstring for the order).

    ``explicit`` (``~`` expanded) is returned even when it does not exist, so
    that the caller reports it; otherwise the first existing file of
    :func:`hub_checkpoint_path` (``hub_file``) and ``cache_dir() / cache_file``.
    """
    if explicit:
        return Path(os.path.expanduser(os.fspath(explicit)))
    candidates = ([hub_checkpoint_path(hub_file)] if hub_file else []) + \
                 ([cache_dir() / cache_file] if cache_file else [])
    for path in candidates:
        if path.is_file():
            return path
    return None


def read_state_dict(path: Path, what: str, expected: str, how_to_fix: str = "",
                    with_sha256: bool = False) -> dict[str, Tensor] | tuple[dict[str, Tensor], str]:
    """The state_dict in ``path``, read with ``torch.load(weights_only=True)`` on the CPU.

    A ``{"state_dict": ...}`` wrapper is unwrapped. Raises
    :class:`InvalidWeightsError` naming the file (``what``: "VGG19",
    "FID Inception"...; ``expected``: what the file should be; ``how_to_fix``
    appended) when it cannot be read or holds no mapping. A loaded
    ``OrderedDict`` is returned as it is (its ``_metadata`` steers
    ``load_state_dict``). ``with_sha256``: also the SHA-256 of the file's bytes.
    """
    try:
        if with_sha256:
            data = Path(path).read_bytes()
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, not a torch file, unreadable...
        cause = " ".join(str(err).split())  # one line: torch's own message spans several
        cause = cause if len(cause) <= 400 else cause[:400] + " ..."
        raise InvalidWeightsError(f"Could not read the {what} weights file {path}: {type(err).__name__}: {cause}. "
                                  f"Expected {expected}. " + how_to_fix) from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise InvalidWeightsError(f"The {what} weights file {path} does not hold a state_dict "
                                  f"(got {type(obj).__name__}). " + how_to_fix)
    state = obj if isinstance(obj, dict) else dict(obj)
    return (state, hashlib.sha256(data).hexdigest()) if with_sha256 else state
