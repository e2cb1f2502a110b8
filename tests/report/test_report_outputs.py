"""mtbench report's outputs: never written through a symbolic link, never left half-written on a full disk."""

from __future__ import annotations

import errno

import pytest
from tiny_runs import PNG_MAGIC, runs  # noqa: F401 - runs is a fixture

from mtbench.report import figures, main, make_report


def test_a_dangling_link_in_out_is_refused_and_never_followed(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    outside = tmp_path / "elsewhere" / "planted.md"
    outside.parent.mkdir()
    (out / "report.md").symlink_to(outside)
    assert main([str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "report.md" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert not outside.exists() and (out / "report.md").is_symlink()
    assert main([str(runs), "--out", str(out), "--overwrite"]) == 0  # the link is replaced, not followed
    assert not outside.exists() and not (out / "report.md").is_symlink()
    assert (out / "report.md").read_text().startswith("#")


@pytest.mark.parametrize("name", ["report.md", "report.csv", "mnist_mnist5k_loss.png"])
def test_overwrite_replaces_a_link_and_leaves_its_target_alone(runs, tmp_path, name):
    out = tmp_path / "rep"
    make_report([runs], out)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / name).unlink()
    (out / name).symlink_to(victim)
    with pytest.raises(FileExistsError, match=name):
        make_report([runs], out)
    res = make_report([runs], out, overwrite=True)
    assert victim.read_text() == "precious"
    assert not (out / name).is_symlink() and (out / name) in res["files"]
    if name.endswith(".png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)


def test_a_full_disk_leaves_no_partial_figure(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"

    def full(self, fname, *args, **kwargs):
        fname.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", full)
    assert main([str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no space left on device while writing ") and len(err.splitlines()) == 1
    assert [p.name for p in out.iterdir()] == []  # no 0-byte or partial PNG, no temp file, no report
    assert figures.plan_figures  # the module is the one patched above


def test_a_full_disk_keeps_the_old_report(runs, tmp_path, monkeypatch):
    out = tmp_path / "rep"
    make_report([runs], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_replace = __import__("os").replace

    def full_replace(src, dst):
        if str(dst).endswith("report.md"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr("os.replace", full_replace)
    with pytest.raises(RuntimeError, match="no space left on device while writing .*report.md"):
        make_report([runs], out, overwrite=True)
    monkeypatch.undo()
    assert (out / "report.md").read_bytes() == before["report.md"]
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temp file left
