"""mtbench.report.table over real tiny runs: statistics, method order, markdown, CSV, baseline and GAN rows."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from tiny_runs import SOFTADAPT_LABEL, runs, summaries  # noqa: F401 - runs is a fixture

from mtbench.report import make_report
from mtbench.report.table import method_rank


def test_table_mean_and_std_equal_the_summaries_statistics(runs, tmp_path):
    res = make_report([runs], tmp_path / "rep")
    rows = res["rows"]
    assert [r.method for r in rows] == ["fixed", "softadapt"]  # the stable method order
    assert [r.label for r in rows] == ["fixed", SOFTADAPT_LABEL]  # differing settings are shown, not pooled
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| method | acc ↑ | nll | seeds | wall time (s) |" in md  # primary metric first, higher is better
    assert "## mnist / mnist5k" in md
    for row in rows:
        sums = summaries(runs, row.method)
        assert row.n == 2 and sorted(row.seeds) == [0, 1]
        assert row.wall_time_s == pytest.approx(statistics.mean(s["wall_time_s"] for s in sums))
        for metric in ("acc", "nll"):
            vals = [s["metrics"][metric] for s in sums]
            got = row.metrics[metric]
            assert got.mean == pytest.approx(statistics.mean(vals), rel=1e-12)
            assert got.std == pytest.approx(statistics.stdev(vals), rel=1e-12)
            assert f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}" in md
    assert rows[0].metrics["nll"].mean != rows[1].metrics["nll"].mean
    assert rows[0]["metrics"]["acc"]["mean"] == rows[0].metrics["acc"].mean  # the former dict access still reads


def test_csv_has_one_row_per_method_with_full_precision(runs, tmp_path):
    res = make_report([runs], tmp_path / "rep")
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["model", "data", "method", "settings", "baseline", "n_seeds", "seeds",
                              "wall_time_s_mean", "primary_metric", "higher_is_better", "acc_mean", "acc_std",
                              "nll_mean", "nll_std"]
    assert [r["method"] for r in table] == ["fixed", "softadapt"]
    for r in table:
        vals = [s["metrics"]["acc"] for s in summaries(runs, r["method"])]
        assert float(r["acc_mean"]) == pytest.approx(statistics.mean(vals), rel=1e-12)
        assert float(r["acc_std"]) == pytest.approx(statistics.stdev(vals), rel=1e-12)
        assert r["n_seeds"] == "2" and r["baseline"] == "false" and r["primary_metric"] == "acc"
        assert r["seeds"] == "0;1" and r["higher_is_better"] == "true"
    assert tmp_path / "rep" / "report.csv" in res["files"]


def test_one_seed_has_no_std(runs, tmp_path):
    res = make_report([runs / "fixed_s0"], tmp_path / "rep")
    [row] = res["rows"]
    assert row.n == 1 and row.metrics["acc"].std is None
    assert "± n/a" in res["markdown"]
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        [line] = list(csv.DictReader(f))
    assert line["acc_std"] == "n/a"


def test_baseline_row_from_a_mapping_and_from_a_tune_file(runs, tmp_path):
    res = make_report([runs], tmp_path / "a", baseline={"method": "hyperband-tuned fixed",
                                                         "metrics": {"acc": 0.97, "nll": 0.1}})
    row = res["rows"][-1]
    assert row.baseline and row.label == "hyperband-tuned fixed (baseline)"
    assert row.metrics["acc"].mean == 0.97
    assert "| *hyperband-tuned fixed* (baseline) | 0.9700 | 0.1000 | — | — |" in res["markdown"]
    with open(tmp_path / "a" / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[-1]["baseline"] == "true" and float(table[-1]["acc_mean"]) == 0.97

    # the file `mtbench tune` writes: test_metrics / val_score, model and data
    f = tmp_path / "mnist-mnist5k.yaml"
    f.write_text("model: mnist\ndata: mnist5k\nweights: {term_0: 1.0}\nval_score: 0.9\ntest_metrics: {acc: 0.95}\n")
    res = make_report([runs], tmp_path / "b", baseline=f)
    assert res["rows"][-1].metrics["acc"].mean == 0.95 and "nll" not in res["rows"][-1].metrics
    g = tmp_path / "score.json"
    g.write_text(json.dumps({"method": "tuned", "score": 0.5}))
    res = make_report([runs], tmp_path / "c", baseline=g)
    assert res["rows"][-1].metrics["acc"].mean == 0.5 and "| *tuned* (baseline) | 0.5000 | — |" in res["markdown"]

    with pytest.raises(ValueError, match="metrics.*score"):
        make_report([runs], tmp_path / "d", baseline={"method": "x"})
    with pytest.raises(ValueError, match="matches no table"):
        make_report([runs], tmp_path / "e", baseline={"model": "srgan", "score": 1.0})


def test_trivial_baselines_sort_after_every_trained_method():
    got = sorted(["mean_train_photo", "zeta_method", "identity", "mtadam", "fixed", "alpha_method"],
                 key=method_rank)
    assert got == ["fixed", "mtadam", "alpha_method", "zeta_method", "identity", "mean_train_photo"]


def _gan_summary(d: Path, method: str, metrics: dict, seed=0) -> None:
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "model": "cyclegan", "data": "people", "method": method, "seed": seed, "metrics": metrics,
        "primary_metric": "fid", "higher_is_better": False, "wall_time_s": 1.0, "overrides": []}))


def test_gan_tables_put_fid_and_kid_first_then_the_task_metrics(tmp_path):
    """Metrics as the runner logs them (task metrics first, FID after): the table shows FID, KID, then the rest."""
    logged = {"cycle_A_l1": 0.1, "cycle_B_l1": 0.2, "l1": 0.3, "psnr": 12.0, "ssim": 0.5, "cycle_l1": 0.15,
              "fid_AtoB": 90.0, "kid_AtoB": 0.05, "kid_std_AtoB": 0.01, "fid_images_AtoB": 100,
              "fid_BtoA": 70.0, "kid_BtoA": 0.03, "kid_std_BtoA": 0.02, "fid_images_BtoA": 100,
              "fid": 80.0, "kid": 0.04}
    _gan_summary(tmp_path / "runs" / "fixed", "fixed", logged)
    _gan_summary(tmp_path / "runs" / "identity", "identity", {**logged, "fid": 300.0}, seed="n/a")
    res = make_report([tmp_path / "runs"], tmp_path / "rep")
    names = res["rows"][0].metric_names
    assert names == ["fid", "kid", "fid_AtoB", "kid_AtoB", "fid_BtoA", "kid_BtoA", "kid_std_AtoB", "kid_std_BtoA",
                     "cycle_A_l1", "cycle_B_l1", "l1", "psnr", "ssim", "cycle_l1", "fid_images_AtoB",
                     "fid_images_BtoA"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| method | fid ↓ | kid | fid_AtoB | kid_AtoB |" in md
    assert [r.label for r in res["rows"]] == ["fixed", "identity (trivial baseline)"]
    assert "| identity (trivial baseline) | 300.0000 ± n/a | 0.0400 ± n/a |" in md


def test_variants_of_a_method_are_rows_of_their_own_and_neutral_overrides_pool(tmp_path):
    """Runs differing only in seed or logging settings pool; a differing method setting splits the row."""
    for name, seed, over, acc in [("a", 0, ["seed=0", "trainer.log_every=5"], 0.5),
                                  ("b", 1, ["seed=1", "trainer.log_every=7"], 0.7),
                                  ("c", 0, ["seed=0", "method.beta=0.5"], 0.9)]:
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"model": "m", "data": "d", "method": "mtadam", "seed": seed,
                                                    "metrics": {"acc": acc}, "overrides": over}))
    rows = make_report([tmp_path / "runs"], tmp_path / "rep")["rows"]
    assert [(r.label, r.n) for r in rows] == [("mtadam", 2), ("mtadam [method.beta=0.5]", 1)]
    assert rows[0].metrics["acc"].mean == pytest.approx(0.6) and rows[0].metrics["acc"].std == pytest.approx(
        statistics.stdev([0.5, 0.7]))


def test_a_boolean_spelled_true_or_True_is_one_setting(tmp_path):
    """A resumed run reads its overrides back from run.yaml (true); its fresh seeds were typed True: one row."""
    for name, seed, over in [("a", 0, ["seed=0", "data.download=False"]), ("b", 1, ["seed=1", "data.download=false"]),
                             ("c", 2, ["seed=2", "data.download=True"]), ("d", 3, ["seed=3", "data.root=False_x"])]:
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"model": "m", "data": "d", "method": "famo", "seed": seed,
                                                    "metrics": {"acc": 0.5}, "overrides": over}))
    rows = make_report([tmp_path / "runs"], tmp_path / "rep")["rows"]
    assert sorted((r.label, r.n) for r in rows) == [
        ("famo [data.download=false]", 2), ("famo [data.download=true]", 1), ("famo [data.root=False_x]", 1)]


def test_figures_name_rows_by_rule_or_by_what_tells_them_from_the_same_methods_rows(tmp_path, capsys):
    """Short labels (legends, titles): a --label rule's name; else the method plus only the settings that differ
    from its other rows, keys and paths shortened. The tables keep the full labels."""
    unb = ["experiment=mnist_unbalanced", "model.scales.kind=uniform"]
    for name, method, over in [
            ("t", "fixed", [*unb, "method.weights=baseline", "baselines_dir=runs/x/baseline"]),
            ("b", "fixed", ["experiment=mnist_balanced"]), ("f", "fixed", unb), ("m", "mtadam", unb),
            ("s", "softadapt", unb), ("d", "softadapt", [*unb, "method.on_default_weights=true"]),
            ("r", "softadapt", [*unb, "data.root=runs/data/people/aligned/"])]:
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"model": "m", "data": "d", "method": method, "seed": 0,
                                                    "metrics": {"acc": 0.5}, "overrides": over}))
    rows = make_report([tmp_path / "runs"], tmp_path / "rep", labels=["tuned:method.weights=baseline",
                                                                       "balanced:experiment=mnist_balanced"])["rows"]
    short = sorted(r.short_label for r in rows)
    assert short == ["balanced", "fixed", "mtadam", "softadapt", "softadapt [on_default_weights=true]",
                     "softadapt [root=aligned]", "tuned"]
    assert any(r.label.startswith("fixed [baselines_dir=runs/x/baseline, ") for r in rows)  # the table: exact
    # without rules: the three fixed rows differ in experiment (and the tuned one in two more settings)
    rows = make_report([tmp_path / "runs"], tmp_path / "rep2")["rows"]
    fixed = sorted(r.short_label for r in rows if r.method == "fixed")
    assert fixed == ["fixed [baselines_dir=baseline, experiment=mnist_unbalanced, weights=baseline, kind=uniform]",
                     "fixed [experiment=mnist_balanced]", "fixed [experiment=mnist_unbalanced, kind=uniform]"]
    from mtbench.report import main

    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep3"), "--label", "tuned=method.weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --label 'tuned=method.weights': expected NAME:KEY=VALUE, e.g. "
                   "tuned:method.weights=baseline")
    assert not (tmp_path / "rep3").exists()


def test_a_folder_loader_table_is_named_by_its_dataset_and_keeps_its_tune_baseline(tmp_path):
    """Runs of the generic cyclegan_unaligned loader are tabled under the experiment's dataset (people_contours),
    apart from runs of the same loader on another dataset; a tune file naming the loader still joins the table."""
    for name, experiment, fid in (("pc0", "cyclegan_people_contours", 80.0), ("pc1", "cyclegan_people_contours", 90.0),
                                  ("paper", "cyclegan_paper", 50.0)):
        d = tmp_path / "runs" / name
        _gan_summary(d, "fixed", {"fid": fid}, seed=int(name[-1]) if name[-1].isdigit() else 0)
        s = json.loads((d / "summary.json").read_text())
        (d / "summary.json").write_text(json.dumps({**s, "data": "cyclegan_unaligned"}))
        (d / "run.yaml").write_text(f"choices:\n  experiment: {experiment}\n  data: cyclegan_unaligned\n")
    res = make_report([tmp_path / "runs"], tmp_path / "rep", baseline={
        "method": "tuned", "model": "cyclegan", "data": "cyclegan_unaligned", "score": 70.0})
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## cyclegan / people_contours" in md and "## cyclegan / cyclegan_unaligned" in md
    assert "facades" not in md and "## cyclegan / paper" not in md
    by_table = {(r.data, r.label): r for r in res["rows"]}
    assert by_table[("people_contours", "fixed")].metrics["fid"].mean == 85.0  # the two seeds, not the paper run
    assert by_table[("cyclegan_unaligned", "fixed")].metrics["fid"].mean == 50.0
    assert by_table[("people_contours", "tuned (baseline)")].metrics["fid"].mean == 70.0
