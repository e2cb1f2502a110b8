"""Small runtime helpers shared by the commands: seeding, devices, RNG state, atomic writes."""

from __future__ import annotations

import errno
import os
import platform
import random
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch


from mtbench.errors import ConfigError  # noqa: F401 - re-exported: most modules import it from here
from mtbench.errors import DataError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(kind: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; ``cuda`` without a GPU is an error."""
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device.type={kind} but no CUDA device is available "
                              f"(torch {torch.__version__}); use device=cpu or device=auto")
        return torch.device(kind)
    raise ConfigError(f"device.type must be auto, cpu or cuda, got {kind!r}")


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device`` (non-blocking)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def rng_state() -> dict[str, Any]:
    """All global RNG states, as plain tensors/ints (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "python": _to_plain(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, tuple) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


#: errno -> what a write that failed with it says: the disk (or quota, or file size limit) is full
_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "no space left on device (disk quota exceeded)",
                errno.EFBIG: "file size limit exceeded"}


class DiskFullError(DataError):
    """A write failed for want of space (ENOSPC, EDQUOT) or a file size limit (EFBIG); one line naming the file.

    The file it was writing is untouched (writes go through :func:`atomic_writer`); ``errno`` is the cause's.
    """

    def __init__(self, path: str | os.PathLike, errno_: int) -> None:
        self.path, self.errno = Path(path), errno_
        super().__init__(f"{_FULL_ERRNOS[errno_]} while writing {path}; nothing was written there "
                         f"(free some space or raise the limit, then run again)")


def disk_full_error(exc: BaseException, path: str | os.PathLike) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``path`` when ``exc`` or an exception it chains from is an OSError of a full
    disk, quota or file size limit (torch.save reports one as a RuntimeError whose context is the OSError)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DiskFullError):
            return exc
        if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
            return DiskFullError(path, exc.errno)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _umask() -> int:
    """The process umask (read from /proc where there is one: changing it to read it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write ``path`` all or nothing: yields a file open on a temp file in the same folder
    (``<name>.<random>.tmp``), synced and renamed over ``path`` when the block ends without error.

    ``os.replace`` replaces ``path`` itself: a symbolic link there is replaced, never written through.
    On any error the temp file is removed and ``path`` is untouched; a full disk, quota or file size
    limit becomes one :class:`DiskFullError` line naming ``path``. The file gets the mode a plain
    ``open`` would give (0o666 less the umask), not mkstemp's 0o600; text is UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full_error(exc, path)
        if full is not None and full is not exc:
            raise full from exc
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename over ``path`` (:func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_text(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` all or nothing (:func:`atomic_writer`)."""
    with atomic_writer(path, "w") as f:
        f.write(text)


def code_version() -> dict[str, Any] | None:
    """The git commit of the mtbench code that runs (and whether it has uncommitted changes), when it runs
    from a git checkout; None otherwise (an installed package)."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"git_commit": commit, "uncommitted_changes": dirty}


def versions() -> dict[str, str]:
    import hydra
    import torchvision

    import mtbench

    return {"mtbench": mtbench.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "torchvision": torchvision.__version__, "hydra": hydra.__version__,
            "cuda": str(torch.version.cuda), "platform": platform.platform(), "cpu": cpu_description()}


def cpu_description() -> str:
    """The CPU's model name and the vector instructions torch's CPU kernels use here (``AMD EPYC; torch AVX512``):
    float results of a long run can differ between machines whose kernels differ (results/spot_checks.md)."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return f"{model}; torch {capability}"
