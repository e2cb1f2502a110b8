"""mtbench.baseline, the one reader of baseline files: for method.weights=baseline, train summaries and reports."""

from __future__ import annotations

import pytest

from mtbench.baseline import Baseline, baseline_weights, compare_to_baseline, format_comparison, load_baseline, \
    load_baselines

TUNE_FILE = ("model: mnist\ndata: mnist5k\nmetric: acc\nweights: {term_0: 1.0, term_1: 0.25}\n"
             "val_score: 0.9\ntest_metrics: {acc: 0.95, nll: 0.2, fid: null}\n")


def test_a_tune_file_serves_the_weights_the_summary_and_the_report(tmp_path):
    f = tmp_path / "mnist-mnist5k.yaml"
    f.write_text(TUNE_FILE)
    assert baseline_weights(f) == {"term_0": 1.0, "term_1": 0.25}
    b = load_baseline(f)
    assert b == Baseline(metrics={"acc": 0.95, "nll": 0.2}, score=0.9, model="mnist", data="mnist5k",
                         weights={"term_0": 1.0, "term_1": 0.25}, source=f"baseline file {f}")
    assert load_baselines(f) == [b] and load_baselines(str(f))[0].label == "hyperband-tuned fixed"
    cfg = {"baselines_dir": str(tmp_path)}
    summary = {"model": "mnist", "data": "mnist5k", "primary_metric": "acc", "metrics": {"acc": 0.96}}
    cmp = compare_to_baseline(summary, cfg)
    assert cmp["exists"] and cmp["baseline"] == 0.95 and cmp["delta"] == pytest.approx(0.01)
    assert cmp["baseline_weights"] == {"term_0": 1.0, "term_1": 0.25}
    assert "better" in format_comparison(cmp) and "not better" not in format_comparison(cmp)
    assert compare_to_baseline({**summary, "eval_split": "val"}, cfg)["baseline"] == 0.9  # val: the val score


def test_mappings_and_lists_for_the_report():
    got = load_baselines([{"method": "a", "metrics": {"acc": 1}}, {"name": "b", "score": 2, "model": "m"}])
    assert [(b.label, b.metrics, b.score, b.model) for b in got] == [("a", {"acc": 1.0}, None, None),
                                                                     ("b", {}, 2.0, "m")]
    assert load_baselines(None) == []


@pytest.mark.parametrize("text, match", [
    ("weights: !!python/object/apply:os.system ['echo hi']\n", "cannot read it"),
    ("weights: {term_0: one}\n", "weights 'term_0' must be a number"),
    ("weights: [1, 2]\n", "'weights' must be a mapping"),
    ("val_score: 0.9\n", "has no 'weights' mapping"),
    ("weights: {a: 1}\ntest_metrics: {acc: [0.9]}\n", "metrics 'acc' must be a number"),
    ("weights: {a: 1}\nval_score: high\n", "'score' must be a number"),
    ("weights: {a: 1}\nmodel: {x: 1}\n", "'model' must be a name"),
    ("weights: {a: 1\n", "cannot read it"),
])
def test_a_malformed_tune_file_is_one_line_naming_it(tmp_path, text, match):
    f = tmp_path / "m-d.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        baseline_weights(f)
    assert str(f) in str(err.value) and "\n" not in str(err.value)
    cmp = compare_to_baseline({"model": "m", "data": "d", "primary_metric": "acc", "metrics": {"acc": 1.0}},
                              {"baselines_dir": str(tmp_path)})
    assert cmp["error"] and str(f) in cmp["error"]  # a train run reports it, it does not crash


def test_a_missing_tune_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ValueError, match="mtbench tune model=mnist data=mnist5k"):
        baseline_weights(tmp_path / "mnist-mnist5k.yaml")
    with pytest.raises(ValueError, match="no such file"):
        load_baselines(tmp_path / "nope.yaml")
