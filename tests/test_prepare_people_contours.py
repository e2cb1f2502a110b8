"""scripts/prepare_people_contours.py never deletes a folder it did not make (an existing OUT.partial is refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from conftest import load_script



def _prepare_module():
    return load_script("prepare_people_contours")


def _source(tmp_path: Path, width: int = 128) -> Path:
    src = tmp_path / "people_contours"
    for split, names in (("train", ["1", "2"]), ("val", ["1", "2", "3"])):
        (src / split).mkdir(parents=True)
        for n in names:
            Image.fromarray(np.full((32, width if n == "2" else 128, 3), 100, np.uint8)).save(src / split / f"{n}.png")
    return src


def test_an_existing_partial_folder_is_refused_and_kept(tmp_path, capsys):
    src = _source(tmp_path)
    out = tmp_path / "prepared"
    partial = tmp_path / "prepared.partial"
    (partial / "aligned").mkdir(parents=True)
    (partial / "aligned" / "mine.txt").write_text("someone else's")
    assert _prepare_module().main([str(src), str(out), "--n-val", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(partial) in err and "another prepare" in err and "\n" not in err
    assert (partial / "aligned" / "mine.txt").read_text() == "someone else's" and not out.exists()
    partial.joinpath("aligned", "mine.txt").unlink()
    partial.joinpath("aligned").rmdir()
    partial.rmdir()
    assert _prepare_module().main([str(src), str(out), "--n-val", "1"]) == 0
    assert (out / "prepared.json").is_file() and not partial.exists()


def test_a_failed_prepare_removes_only_its_own_partial_folder(tmp_path, capsys):
    src = _source(tmp_path, width=127)  # an odd-width pair: refused midway
    out = tmp_path / "prepared"
    assert _prepare_module().main([str(src), str(out), "--n-val", "1"]) == 2
    assert "even width" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people_contours"]  # no partial folder left behind
