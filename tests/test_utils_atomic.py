"""mtbench.utils atomic writes: all or nothing, never through a link, a full disk is one line naming the file."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mtbench.errors import DataError
from mtbench.utils import (
    DiskFullError,
    atomic_torch_save,
    atomic_write_text,
    atomic_writer,
)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left on device"),
                                         (errno.EDQUOT, "no space left on device (disk quota exceeded)"),
                                         (errno.EFBIG, "file size limit exceeded")])
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_file(tmp_path, monkeypatch, code, words):
    target = tmp_path / "summary.json"
    target.write_text("old")
    real_fsync = os.fsync

    def full_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", full_fsync)
    with pytest.raises(DataError) as err:
        atomic_write_text("new", target)
    msg = str(err.value)
    assert f"{words} while writing {target}" in msg and "\n" not in msg
    assert isinstance(err.value, DiskFullError) and err.value.errno == code
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    atomic_write_text("new", target)
    assert target.read_text() == "new"


def test_torch_save_on_a_full_disk(tmp_path, monkeypatch):
    """torch.save reports a failed write as a RuntimeError whose context is the OSError."""
    target = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, target)

    def full_save(obj, f):
        f.write(b"partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    monkeypatch.setattr(torch, "save", full_save)
    with pytest.raises(DiskFullError, match=f"no space left on device while writing {target}"):
        atomic_torch_save({"step": 2}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"step": 1} and leftovers(tmp_path) == []


def test_other_errors_are_unchanged_and_leave_nothing(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(ValueError, match="boom"), atomic_writer(target) as f:
        f.write(b"half")
        raise ValueError("boom")
    assert not target.exists() and leftovers(tmp_path) == []


def test_a_link_is_replaced_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").symlink_to(victim)
    (out / "b.txt").symlink_to(tmp_path / "dangling")
    atomic_write_text("report", out / "a.txt")
    atomic_write_text("report", out / "b.txt")
    assert victim.read_text() == "precious" and not (tmp_path / "dangling").exists()
    for name in ("a.txt", "b.txt"):
        assert not (out / name).is_symlink() and (out / name).read_text() == "report"


def test_the_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text("x", tmp_path / "a.txt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640


def test_a_file_size_limit_in_a_real_process(tmp_path):
    """RLIMIT_FSIZE with SIGXFSZ ignored: real writes fail with EFBIG; the old files stay whole."""
    script = textwrap.dedent("""
        import json, resource, signal, sys
        from pathlib import Path
        import torch
        from mtbench.errors import DataError
        from mtbench.utils import atomic_torch_save, atomic_write_text
        folder = Path(sys.argv[1])
        atomic_write_text("old text", folder / "a.txt")
        atomic_torch_save({"w": torch.ones(3)}, folder / "a.pt")
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        out = {}
        for name, write in [("a.txt", lambda p: atomic_write_text("x" * 100_000, p)),
                            ("a.pt", lambda p: atomic_torch_save({"w": torch.zeros(100_000)}, p))]:
            try:
                write(folder / name)
                out[name] = "written"
            except DataError as err:
                out[name] = str(err)
        print(json.dumps(out))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                         check=False, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("a.txt", "a.pt"):
        assert out[name].startswith(f"file size limit exceeded while writing {tmp_path / name}"), out
    assert (tmp_path / "a.txt").read_text() == "old text"
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], torch.ones(3))
    assert leftovers(tmp_path) == []
