"""mtbench.report: make_report's output folder and the `mtbench report` command."""

from __future__ import annotations

import pytest
from tiny_runs import runs  # noqa: F401 - runs is a fixture

from mtbench.report import main, make_report


def test_existing_report_is_not_overwritten(runs, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    make_report([runs], out)
    first = (out / "report.md").read_text()
    (out / "report.md").write_text("edited")
    with pytest.raises(FileExistsError, match="overwrite"):
        make_report([runs], out)
    assert (out / "report.md").read_text() == "edited"
    res = make_report([runs], out, overwrite=True)
    assert (out / "report.md").read_text().split("\n")[4:] == first.split("\n")[4:]  # all but the time line
    assert (out / "notes.txt").read_text() == "mine"  # never deletes other files
    assert set(res["files"]) <= set(out.iterdir())


def test_main_exit_codes_and_output(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main([str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fixed |" in printed and str(out) in printed
    assert (out / "report.md").is_file()

    assert main([str(runs), "--out", str(out)]) == 2  # refuses to overwrite
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main([str(runs), "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()

    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1

    assert main([]) == 2  # no path: argparse's error, in the same one-line form
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["--help"]) == 0 and "--baseline" in capsys.readouterr().out


def test_a_malicious_baseline_file_is_one_error_line_and_runs_nothing(runs, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = tmp_path / "base.yaml"
    bad.write_text(f"metrics: !!python/object/apply:os.system ['touch {marker}']\n")
    assert main([str(runs), "--out", str(tmp_path / "rep"), "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: baseline file ") and str(bad) in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "rep").exists()
