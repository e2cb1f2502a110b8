"""mtbench.report.figures: the PNGs of a report and the total loss they plot."""

from __future__ import annotations

import json

import pytest

from tiny_runs import PNG_MAGIC, runs  # noqa: F401 - runs is a fixture

from mtbench.report import load_run, make_report
from mtbench.report.figures import log_scale, mean_over_runs, total_loss


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
    steps, totals = total_loss(run)
    assert steps == [x["step"] for x in train_lines] == [1, 2, 4]  # the first step is always logged
    for x, total in zip(train_lines, totals):
        assert total == pytest.approx(sum(x[f"loss/term_{k}"] for k in range(10)))
    assert run.terms == [f"term_{k}" for k in range(10)]
    assert log_scale([1e-3, 1.0]) and not log_scale([0.5, 1.0, 10.0])


def test_curves_are_averaged_on_aligned_steps():
    steps, mean, lo, hi = mean_over_runs([([1, 2], [1.0, 4.0]), ([2, 3], [2.0, float("nan")])])
    assert steps == [1, 2, 3] and mean[:2] == [1.0, 3.0] and lo[1] == 2.0 and hi[1] == 4.0
    assert mean[2] != mean[2]  # only a NaN at that step: NaN, not a crash


def test_a_run_with_too_few_logged_steps_says_so_instead_of_constant_weights(runs, tmp_path, monkeypatch):
    """Issue 12 item 11: one logged point used to be titled "(constant weights)"."""
    import matplotlib.axes

    from tiny_runs import copy_run

    short = copy_run(runs, "softadapt_s0", tmp_path / "short")
    lines = (short / "metrics.jsonl").read_text().splitlines()
    (short / "metrics.jsonl").write_text("\n".join(ln for ln in lines if '"step": 4' in ln) + "\n")
    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, label, *a, **k: titles.append(label) or real(self, label, *a, **k))
    make_report([tmp_path / "short"], tmp_path / "rep")
    weights = [t for t in titles if "loss-term weights" in t]
    assert weights and all("only 1 logged step: too few to show a trend" in t for t in weights), weights
    assert not any("constant weights" in t for t in weights)
