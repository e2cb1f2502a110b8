"""Corrupt baseline files and bad baseline values: one line naming the file (and key) where a baseline is
required; a note, never a crash or "no tuned baseline yet", where it is only informative."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mtbench.baseline import (
    baseline_weights,
    compare_to_baseline,
    format_comparison,
    load_baseline,
    load_baselines,
)
from mtbench.errors import DataError
from mtbench.train import format_summary

SUMMARY = {"model": "m", "data": "d", "primary_metric": "acc", "metrics": {"acc": 0.9}}

BAD_FILES = [
    ("weights: {a: 1\n", "cannot read it"),                            # bad YAML
    ("- 1\n- 2\n", "has no 'weights' mapping"),                          # not a mapping
    ("just text\n", "has no 'weights' mapping"),
    ("", "has no 'weights' mapping"),                                    # empty file
    ("val_score: 0.9\n", "has no 'weights' mapping"),                    # missing weights
    ("weights: {}\n", "'weights' is empty"),
    ("weights: {a: one}\n", "weights 'a' must be a number"),             # non-numeric
    ("weights: {a: true}\n", "weights 'a' must be a number"),
    ("weights: {a: -1.0, b: 2}\n", "weights 'a' must be a finite number >= 0, got -1.0"),   # negative
    ("weights: {a: .nan}\n", "weights 'a' must be a finite number >= 0, got nan"),           # NaN
    ("weights: {a: 1, b: .inf}\n", "weights 'b' must be a finite number >= 0, got inf"),     # inf
    ("weights: {a: 0, b: 0.0}\n", "weights are all zero"),                                   # all zero
    ("weights: {a: 1}\nval_score: .nan\n", "'score' must be a finite number"),
    ("weights: {1: 2}\n", "weights key 1 must be a term name"),
]


@pytest.mark.parametrize("text, match", BAD_FILES, ids=[t for t, _ in BAD_FILES])
def test_a_bad_baseline_file_is_one_line_naming_it_where_required(tmp_path, text, match):
    f = tmp_path / "m-d.yaml"
    f.write_text(text)
    with pytest.raises(DataError, match=match) as err:  # method.weights=baseline
        baseline_weights(f)
    assert isinstance(err.value, ValueError)  # still what callers catching ValueError expect
    assert str(f) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, match", BAD_FILES, ids=[t for t, _ in BAD_FILES])
def test_a_bad_baseline_file_is_a_note_at_the_end_of_training(tmp_path, text, match):
    (tmp_path / "m-d.yaml").write_text(text)
    cmp = compare_to_baseline(SUMMARY, {"baselines_dir": str(tmp_path)})
    line = format_comparison(cmp)
    assert "unreadable" in line and str(tmp_path / "m-d.yaml") in line and "\n" not in line
    assert "acc 0.9" in line and "no tuned baseline" not in line and "mtbench tune" not in cmp.get("hint", "")
    assert cmp["error"] and cmp["exists"]  # train's final line prints format_comparison when exists


def test_compare_never_raises(tmp_path, monkeypatch):
    """The comparison runs after the run is saved: nothing in it may crash the finished run."""
    (tmp_path / "m-d.yaml").write_text("weights: {a: 1}\ntest_metrics: {acc: 0.8}\n")

    def broken(path):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("mtbench.baseline.load_baseline", broken)
    cmp = compare_to_baseline(SUMMARY, {"baselines_dir": str(tmp_path)})
    assert "unreadable" in format_comparison(cmp) and "RecursionError" in format_comparison(cmp)


def test_good_values_still_load(tmp_path):
    f = tmp_path / "m-d.yaml"
    f.write_text("weights: {a: 0, b: 2}\nval_score: 0.5\ntest_metrics: {acc: 0.8, fid: .nan, kid: null}\n")
    b = load_baseline(f)
    assert b.weights == {"a": 0.0, "b": 2.0} and b.score == 0.5
    assert b.metrics == {"acc": 0.8}  # NaN and null: not measured (a diverged final run must not hide the weights)
    assert load_baselines(f)[0].metrics == {"acc": 0.8}


TINY = ["trainer.max_steps=2", "data.train_per_class=5", "data.val_per_class=10", "trainer.batch_size=10"]


def test_a_finished_run_is_saved_and_notes_an_unreadable_baseline(run_train, tmp_path, one_thread):
    bl = tmp_path / "bl"
    bl.mkdir()
    (bl / "mnist-mnist5k.yaml").write_text("weights: {term_0: 1\n")
    summary, out = run_train([f"baselines_dir={bl}", *TINY])
    assert (out / "summary.json").is_file() and summary["steps"] == 2
    line = format_summary(summary)
    assert "baseline unreadable, not compared: baseline file " in line and "cannot read it" in line
    assert "no tuned baseline yet" not in line and "\n" not in line


def test_method_weights_baseline_with_a_bad_file_is_one_error_line(tmp_path):
    bl = tmp_path / "bl"
    bl.mkdir()
    (bl / "mnist-mnist5k.yaml").write_text("weights: {term_0: 0, term_1: 0}\n")
    args = ["train", "method.weights=baseline", f"baselines_dir={bl}", f"hydra.run.dir={tmp_path / 'run'}", *TINY,
            "device=cpu"]
    res = subprocess.run([sys.executable, "-m", "mtbench.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=240, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and str(bl / "mnist-mnist5k.yaml") in err[-1] and "all zero" in err[-1]
    assert "Traceback" not in res.stderr
