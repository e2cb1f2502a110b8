"""`mtbench report` over real tiny runs: statistics, CSV, figures, run discovery, errors, the command."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from conftest import QUICK, compose_cfg
from mtbench import report
from mtbench.report import find_runs, load_run, main, make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["trainer.max_steps=4", "trainer.batch_size=16", "data.train_per_class=5"]
# softadapt updates its weights every step here, so its results differ from fixed's within 4 steps
METHODS = {"fixed": [], "softadapt": ["method.update_every=1", "method.window=2"]}
SOFTADAPT_LABEL = "softadapt [method.update_every=1, method.window=2]"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """2 methods x 2 seeds of real tiny MNIST runs (what conftest's run_train makes, shared by the module)."""
    from mtbench.train import train

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("runs")
    for method, extra in METHODS.items():
        for seed in (0, 1):
            cfg = compose_cfg([*QUICK, f"method={method}", f"seed={seed}", *TINY, *extra])
            train(cfg, out=root / f"{method}_s{seed}")
    return root


def multirun_copy(runs: Path, dest: Path, checkpoints: bool = False) -> Path:
    """The runs laid out as `mtbench train -m` does: <dest>/multirun/<date>/<n>_<model>_<method>_s<seed>/."""
    day = dest / "multirun" / "2026-01-01"
    ignore = None if checkpoints else shutil.ignore_patterns("checkpoints")
    for n, src in enumerate(sorted(runs.iterdir())):
        method, seed = src.name.rsplit("_s", 1)
        shutil.copytree(src, day / f"{n}_mnist_{method}_s{seed}", ignore=ignore)
    return dest / "multirun"


def summaries(runs: Path, method: str) -> list[dict]:
    return [json.loads((runs / f"{method}_s{s}" / "summary.json").read_text()) for s in (0, 1)]


def test_table_mean_and_std_equal_the_summaries_statistics(runs, tmp_path):
    res = make_report([runs], tmp_path / "rep")
    rows = res["rows"]
    assert [r["method"] for r in rows] == ["fixed", "softadapt"]  # the stable method order
    assert [r["label"] for r in rows] == ["fixed", SOFTADAPT_LABEL]  # differing settings are shown, not pooled
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| method | acc ↑ | nll | seeds | wall time (s) |" in md  # primary metric first, higher is better
    assert "## mnist / mnist5k" in md
    for row in rows:
        sums = summaries(runs, row["method"])
        assert row["n"] == 2 and sorted(row["seeds"]) == [0, 1]
        assert row["wall_time_s"] == pytest.approx(statistics.mean(s["wall_time_s"] for s in sums))
        for metric in ("acc", "nll"):
            vals = [s["metrics"][metric] for s in sums]
            got = row["metrics"][metric]
            assert got["mean"] == pytest.approx(statistics.mean(vals), rel=1e-12)
            assert got["std"] == pytest.approx(statistics.stdev(vals), rel=1e-12)
            assert f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}" in md
    assert rows[0]["metrics"]["nll"]["mean"] != rows[1]["metrics"]["nll"]["mean"]


def test_csv_has_one_row_per_method_with_full_precision(runs, tmp_path):
    res = make_report([runs], tmp_path / "rep")
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == ["fixed", "softadapt"]
    for r in table:
        vals = [s["metrics"]["acc"] for s in summaries(runs, r["method"])]
        assert float(r["acc_mean"]) == pytest.approx(statistics.mean(vals), rel=1e-12)
        assert float(r["acc_std"]) == pytest.approx(statistics.stdev(vals), rel=1e-12)
        assert r["n_seeds"] == "2" and r["baseline"] == "false" and r["primary_metric"] == "acc"
    assert tmp_path / "rep" / "report.csv" in res["files"]


def test_figures_are_valid_pngs(runs, tmp_path):
    res = make_report([runs], tmp_path / "rep")
    pngs = sorted(p.name for p in res["files"] if p.suffix == ".png")
    assert pngs == ["mnist_mnist5k_loss.png", "mnist_mnist5k_weights_fixed.png",
                    "mnist_mnist5k_weights_softadapt-method.update_every-1-method.window-2.png"]
    for name in pngs:
        data = (tmp_path / "rep" / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, name  # a drawn figure, not an empty canvas
        assert f"]({name})" in res["markdown"]
    assert "unweighted sum of the logged loss terms" in res["markdown"]


def test_total_loss_is_the_sum_of_the_logged_terms(runs):
    run = load_run(runs / "fixed_s0")
    lines = [json.loads(x) for x in (runs / "fixed_s0" / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "weight/term_0" in x]
    steps, totals = report.total_loss(run)
    assert steps == [x["step"] for x in train_lines] == [2, 4]
    for x, total in zip(train_lines, totals):
        assert total == pytest.approx(sum(x[f"loss/term_{k}"] for k in range(10)))
    assert run["terms"] == [f"term_{k}" for k in range(10)]
    assert report._log_scale([1e-3, 1.0]) and not report._log_scale([0.5, 1.0, 10.0])


def test_multirun_layout_found_recursively_and_unfinished_reported(runs, tmp_path):
    multirun = multirun_copy(runs, tmp_path / "runs")
    unfinished = multirun / "2026-01-01" / "4_mnist_fixed_s2"
    shutil.copytree(runs / "fixed_s0", unfinished)  # checkpoint and metrics, no summary: interrupted
    (unfinished / "summary.json").unlink()
    found = find_runs([tmp_path / "runs"])
    assert [p.name for p in found] == ["0_mnist_fixed_s0", "1_mnist_fixed_s1", "2_mnist_softadapt_s0",
                                       "3_mnist_softadapt_s1"]
    assert found.unfinished == [unfinished]
    assert find_runs(multirun / "2026-01-01" / "0_mnist_fixed_s0") == [multirun / "2026-01-01" / "0_mnist_fixed_s0"]
    # overlapping arguments count each run once
    assert len(find_runs([multirun, multirun / "2026-01-01" / "0_mnist_fixed_s0"])) == 4

    res = make_report([multirun], tmp_path / "rep")
    assert [r["n"] for r in res["rows"]] == [2, 2]
    assert [u["run_dir"] for u in res["unfinished"]] == [unfinished]
    assert res["unfinished"][0]["last_logged_step"] == 4 and res["unfinished"][0]["checkpoint"]
    assert "## Unfinished runs" in res["markdown"] and str(unfinished) in res["markdown"]


def test_truncated_last_metrics_line_is_skipped(runs, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(runs / "softadapt_s1", d, ignore=shutil.ignore_patterns("checkpoints"))
    with open(d / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss/term_0": 0.12, "weight/ter')
    whole = load_run(runs / "softadapt_s1")
    cut = load_run(d)
    assert cut["bad_lines"] == 1 and whole["bad_lines"] == 0
    assert cut["series"] == whole["series"]
    assert cut["series"]["weight/term_3"]["steps"] == [2, 4]
    assert cut["metrics"] == whole["metrics"] and cut["run_dir"] == d
    res = make_report([d], tmp_path / "rep")
    assert "skipped 1 unreadable line" in res["markdown"]


def test_one_seed_has_no_std(runs, tmp_path):
    res = make_report([runs / "fixed_s0"], tmp_path / "rep")
    [row] = res["rows"]
    assert row["n"] == 1 and row["metrics"]["acc"]["std"] is None
    assert "± n/a" in res["markdown"]
    with open(tmp_path / "rep" / "report.csv", newline="") as f:
        [line] = list(csv.DictReader(f))
    assert line["acc_std"] == "n/a"


def test_missing_or_empty_path_is_a_value_error_naming_it(runs, tmp_path):
    with pytest.raises(ValueError, match="no-such-dir"):
        find_runs([runs, tmp_path / "no-such-dir"])
    empty = tmp_path / "empty-folder"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty-folder.*holds no run"):
        find_runs([empty])
    with pytest.raises(ValueError, match="no-such-dir"):
        make_report([tmp_path / "no-such-dir"], tmp_path / "rep")
    assert not (tmp_path / "rep").exists()


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


def test_baseline_row_from_a_mapping_and_from_a_tune_file(runs, tmp_path):
    res = make_report([runs], tmp_path / "a", baseline={"method": "hyperband-tuned fixed",
                                                         "metrics": {"acc": 0.97, "nll": 0.1}})
    row = res["rows"][-1]
    assert row["baseline"] and row["label"] == "hyperband-tuned fixed (baseline)"
    assert row["metrics"]["acc"]["mean"] == 0.97
    assert "| *hyperband-tuned fixed* (baseline) | 0.9700 | 0.1000 | — | — |" in res["markdown"]
    with open(tmp_path / "a" / "report.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[-1]["baseline"] == "true" and float(table[-1]["acc_mean"]) == 0.97

    # the file `mtbench tune` writes: test_metrics / val_score, model and data
    f = tmp_path / "mnist-mnist5k.yaml"
    f.write_text("model: mnist\ndata: mnist5k\nweights: {term_0: 1.0}\nval_score: 0.9\ntest_metrics: {acc: 0.95}\n")
    res = make_report([runs], tmp_path / "b", baseline=f)
    assert res["rows"][-1]["metrics"]["acc"]["mean"] == 0.95 and "nll" not in res["rows"][-1]["metrics"]
    g = tmp_path / "score.json"
    g.write_text(json.dumps({"method": "tuned", "score": 0.5}))
    res = make_report([runs], tmp_path / "c", baseline=g)
    assert res["rows"][-1]["metrics"]["acc"]["mean"] == 0.5 and "| *tuned* (baseline) | 0.5000 | — |" in res["markdown"]

    with pytest.raises(ValueError, match="metrics.*score"):
        make_report([runs], tmp_path / "d", baseline={"method": "x"})
    with pytest.raises(ValueError, match="matches no table"):
        make_report([runs], tmp_path / "e", baseline={"model": "srgan", "score": 1.0})


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


def test_trivial_baselines_sort_after_every_trained_method():
    got = sorted(["mean_train_photo", "zeta_method", "identity", "mtadam", "fixed", "alpha_method"],
                 key=report.method_rank)
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
    names = res["rows"][0]["metric_names"]
    assert names == ["fid", "kid", "fid_AtoB", "kid_AtoB", "fid_BtoA", "kid_BtoA", "kid_std_AtoB", "kid_std_BtoA",
                     "cycle_A_l1", "cycle_B_l1", "l1", "psnr", "ssim", "cycle_l1", "fid_images_AtoB",
                     "fid_images_BtoA"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| method | fid ↓ | kid | fid_AtoB | kid_AtoB |" in md
    assert [r["label"] for r in res["rows"]] == ["fixed", "identity (trivial baseline)"]
    assert "| identity (trivial baseline) | 300.0000 ± n/a | 0.0400 ± n/a |" in md
