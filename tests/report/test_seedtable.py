"""mtbench.report.seedstats and seedtable: statistics checked against values computed by hand, and the tie, bold
and "= defaults" rules, each with a case that a wrong rule would get wrong."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from mtbench.report.records import COLUMNS, RecordError
from mtbench.report.seedstats import compare, describe, holm, t_quantile
from mtbench.report.seedtable import build, main, markdown

# t_{0.975, 2}, the 95% two-sided Student t quantile with 2 degrees of freedom, in closed form: for 2 df,
# t_q = (2q - 1) / sqrt(2 q (1 - q)) = 0.95 / sqrt(0.04875) = 4.3026527297494638... (the often quoted
# 4.302652729911275 is off in the tenth digit)
T_975_2 = 4.302652729749464


def t2_p(t2: float) -> float:
    """Two-sided p of a t statistic with 2 degrees of freedom, from its closed-form CDF
    F(t) = 1/2 + t / (2 sqrt(2 + t^2)): p = 1 - |t| / sqrt(2 + t^2), written with t^2."""
    return 1 - math.sqrt(t2 / (2 + t2))


def write_csv(path: Path, arms: dict[str, dict[int, float]], weights: dict[str, dict[str, float]] | None = None,
              primary: str = "acc", hib: bool = True, extra: dict[str, dict[str, dict[int, float]]] | None = None
              ) -> Path:
    """A per-seed CSV: arms -> {seed: value of the primary metric}; extra: metric -> arm -> {seed: value}."""
    terms = sorted({t for w in (weights or {}).values() for t in w})
    metrics = [primary, *(extra or {})]
    cols = [*COLUMNS, *(f"metric.{m}" for m in metrics), *(f"weight.{t}" for t in terms)]
    rows = []
    for arm, by_seed in arms.items():
        for seed, v in by_seed.items():
            r = dict.fromkeys(cols, "")
            r.update(arm=arm, seed=str(seed), model="mnist", data="mnist5k", method="fixed", settings="",
                     primary_metric=primary, higher_is_better=str(hib).lower(), wall_time_s="1.0", threads="1")
            r[f"metric.{primary}"] = repr(v)
            for m, per in (extra or {}).items():
                r[f"metric.{m}"] = repr(per[arm][seed])
            for t, w in (weights or {}).get(arm, {}).items():
                r[f"weight.{t}"] = repr(w)
            rows.append(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


def by_seed(*values: float) -> dict[int, float]:
    return dict(enumerate(values))


# --------------------------------------------------------------------------- statistics, by hand
def test_mean_sd_and_ci_half_width_by_hand():
    d = describe([1.0, 2.0, 3.0])
    assert d.mean == 2.0 and d.sd == 1.0 and d.n == 3  # sd: sqrt(((-1)^2 + 0 + 1^2) / (3 - 1)) = 1
    assert T_975_2 == pytest.approx(0.95 / math.sqrt(2 * 0.975 * 0.025), rel=1e-15)
    assert t_quantile(3) == pytest.approx(T_975_2, rel=1e-12)
    assert d.half_width == pytest.approx(T_975_2 * 1.0 / math.sqrt(3), rel=1e-12)  # 2.4841...
    assert (d.lo, d.hi) == pytest.approx((2 - T_975_2 / math.sqrt(3), 2 + T_975_2 / math.sqrt(3)), rel=1e-12)
    one = describe([5.0])
    assert one.sd is None and one.lo is None and one.half_width is None


def test_paired_t_p_value_by_hand():
    # differences (0.5, 0.7, 0.4): mean 8/15, variance 7/300, t = (8/15) / sqrt(7/900) = 16/sqrt(7), t^2 = 256/7
    c = compare(by_seed(1.5, 2.7, 3.4), by_seed(1.0, 2.0, 3.0))
    assert c.test == "paired t"
    assert c.diff == pytest.approx(8 / 15)
    assert c.p == pytest.approx(t2_p(256 / 7), rel=1e-9)  # 0.026271...
    assert c.p == pytest.approx(0.026271008879704728, rel=1e-9)


def test_welch_when_the_seeds_differ_by_hand():
    # [1, 3] vs [4, 6]: variances 2 and 2, se = sqrt(2/2 + 2/2) = sqrt(2), t = -3/sqrt(2), t^2 = 4.5;
    # Welch-Satterthwaite df = (1 + 1)^2 / (1^2/1 + 1^2/1) = 2
    c = compare({0: 1.0, 1: 3.0}, {2: 4.0, 3: 6.0})
    assert c.test == "Welch t" and c.diff == -3.0
    assert c.p == pytest.approx(t2_p(4.5), rel=1e-9)  # 0.16795...
    assert compare({0: 1.0}, {0: 2.0, 1: 3.0}).p is None  # one value: no test


def test_degenerate_differences():
    same = compare(by_seed(1.0, 2.0), by_seed(1.0, 2.0))
    assert same.p == 1.0 and same.diff == 0.0  # identical runs (scipy gives NaN)
    shifted = compare(by_seed(2.0, 3.0), by_seed(1.0, 2.0))
    assert shifted.p == 0.0  # a constant non-zero difference


def test_holm_by_hand():
    # sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> raised to 0.06 (monotone); None is not counted
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []


# --------------------------------------------------------------------------- the table's rules
def test_tie_is_holm_adjusted_p_not_raw_p_and_not_overlapping_cis(tmp_path):
    base = by_seed(1.0, 2.0, 3.0)
    x = by_seed(1.5, 2.7, 3.4)  # raw paired p 0.0263 (t^2 = 256/7)
    y = by_seed(1.35, 2.55, 3.3)  # raw paired p 0.0346 (t^2 = 192/7)
    z = by_seed(3.0, 4.1, 4.9)  # differences (2, 2.1, 1.9): t^2 = 1200; CIs overlap the baseline's
    t = build(write_csv(tmp_path / "per_seed.csv", {"tuned": base, "x": x, "y": y, "z": z}))
    px, py, pz = t2_p(256 / 7), t2_p(192 / 7), t2_p(1200)
    assert px < 0.05 and py < 0.05  # a rule on the raw p would call x and y better
    cx, cy, cz = (t.cells[(a, "acc")] for a in "xyz")
    assert (cx.comparison.p, cy.comparison.p, cz.comparison.p) == pytest.approx((px, py, pz), rel=1e-6)
    # Holm over the table's three comparisons: z 3 pz; x max(3 pz, 2 px) = 2 px; y max(2 px, py) = 2 px
    assert (cz.p_holm, cx.p_holm, cy.p_holm) == pytest.approx((3 * pz, 2 * px, 2 * px), rel=1e-6)
    assert cx.verdict == cy.verdict == "tie"
    # z's 95% CI [4 - 2.48*0.95, ...] overlaps the baseline's [2 - 2.48, 2 + 2.48]: a CI-overlap rule says tie
    assert t.cells[("z", "acc")].described.lo < t.cells[("tuned", "acc")].described.hi
    assert cz.verdict == "better"
    md = markdown(t)
    assert "| tie |" in md and "| better |" in md


def test_direction_of_a_lower_is_better_metric(tmp_path):
    base = by_seed(1.0, 2.0, 3.0)
    t = build(write_csv(tmp_path / "per_seed.csv", {"tuned": base, "z": by_seed(3.0, 4.1, 4.9)}, primary="nll",
                        hib=False))
    assert t.cells[("z", "nll")].verdict == "worse"  # higher NLL


def test_identical_runs_are_a_tie_and_a_tuned_row_equal_to_the_defaults_says_so(tmp_path):
    runs = by_seed(0.87, 0.88, 0.86)
    w = {"term_0": 1.0, "term_1": 1.0}
    t = build(write_csv(tmp_path / "a" / "per_seed.csv", {"fixed": runs, "tuned": dict(runs)},
                        weights={"fixed": w, "tuned": dict(w)}))
    assert t.cells[("fixed", "acc")].verdict == "tie (identical runs)"
    assert next(a for a in t.arms if a.name == "tuned").equals_defaults
    assert "tuned (fixed, Hyperband) (= defaults: weights of `fixed`)" in markdown(t)
    other = build(write_csv(tmp_path / "b" / "per_seed.csv", {"fixed": runs, "tuned": dict(runs)},
                            weights={"fixed": w, "tuned": {"term_0": 1.0, "term_1": 674.0}}))
    assert not any(a.equals_defaults for a in other.arms) and "= defaults" not in markdown(other)


def test_bold_only_when_the_winners_ci_does_not_overlap_the_runner_ups(tmp_path):
    win = by_seed(10.0, 11.0, 12.0)  # mean 11, sd 1: CI 11 -+ 2.484 = [8.516, 13.484]
    # runner-up mean 8.3, sd 0.3: CI 8.3 -+ 0.745 = [7.555, 9.045]: its mean is outside the winner's CI but the
    # intervals overlap: not bold (a rule on the runner-up's mean, or on the best mean alone, would bold it)
    near = build(write_csv(tmp_path / "a" / "per_seed.csv", {"w": win, "r": by_seed(8.0, 8.3, 8.6)}))
    assert 8.3 < near.cells[("w", "acc")].described.lo < near.cells[("r", "acc")].described.hi
    assert not near.cells[("w", "acc")].bold
    # runner-up 7.9, 8.0, 8.1: CI [7.752, 8.248] below 8.516: bold
    far = build(write_csv(tmp_path / "b" / "per_seed.csv", {"w": win, "r": by_seed(7.9, 8.0, 8.1)}))
    assert far.cells[("w", "acc")].bold and not far.cells[("r", "acc")].bold
    assert "**11.00 ± 1.00**" in markdown(far)
    # lower is better: the smallest mean wins
    low = build(write_csv(tmp_path / "c" / "per_seed.csv", {"w": win, "r": by_seed(7.9, 8.0, 8.1)},
                          primary="nll", hib=False))
    assert low.cells[("r", "nll")].bold and not low.cells[("w", "nll")].bold
    # a winner with one seed has no interval: no bold
    one = build(write_csv(tmp_path / "d" / "per_seed.csv", {"w": {0: 20.0}, "r": by_seed(7.9, 8.0, 8.1)}))
    assert not any(c.bold for c in one.cells.values())


def test_holm_family_is_the_whole_table(tmp_path):
    base = by_seed(1.0, 2.0, 3.0)
    x = by_seed(1.5, 2.7, 3.4)
    # a second metric with twice the numbers (the same t and p): two comparisons in the family
    extra = {"ssim": {"tuned": {k: 2 * v for k, v in base.items()}, "x": {k: 2 * v for k, v in x.items()}}}
    t = build(write_csv(tmp_path / "per_seed.csv", {"tuned": base, "x": x}, extra=extra))
    p = t2_p(256 / 7)
    assert t.cells[("x", "acc")].p_holm == pytest.approx(2 * p, rel=1e-6)
    assert t.cells[("x", "ssim")].p_holm == pytest.approx(2 * p, rel=1e-6)


def test_a_metric_equal_to_another_in_every_run_is_named_not_tested_again(tmp_path):
    # SRGAN records its validation PSNR twice (psnr and bsd68_val/psnr): one number must not count twice in Holm
    base, x = by_seed(1.0, 2.0, 3.0), by_seed(1.5, 2.7, 3.4)
    extra = {"val/acc": {"tuned": base, "x": x}, "ssim": {"tuned": by_seed(5, 6, 7), "x": by_seed(5.1, 6.3, 7.2)}}
    t = build(write_csv(tmp_path / "per_seed.csv", {"tuned": base, "x": x}, extra=extra))
    assert t.metrics == ["acc", "ssim"] and t.aliases == {"val/acc": "acc"}
    assert t.cells[("x", "acc")].p_holm == pytest.approx(2 * t2_p(256 / 7), rel=1e-6)  # a family of 2, not 3
    assert ("x", "val/acc") not in t.cells
    assert "not tabled or tested again): val/acc = acc" in markdown(t)


def test_make_tables_writes_beside_the_csv_without_absolute_paths(tmp_path, capsys):
    write_csv(tmp_path / "mnist" / "t10k_uniform" / "per_seed.csv",
              {"tuned": by_seed(1.0, 2.0, 3.0), "mtadam": by_seed(1.5, 2.7, 3.4)})
    assert main([str(tmp_path)]) == 0
    md = (tmp_path / "mnist" / "t10k_uniform" / "table.md").read_text()
    stats = (tmp_path / "mnist" / "t10k_uniform" / "table_stats.csv").read_text()
    assert str(tmp_path) not in md and str(tmp_path) not in stats
    assert "### acc ↑ (primary)" in md and "[-0.4841, 4.4841]" in md  # 2 -+ T_975_2/sqrt(3)
    assert stats.splitlines()[0].startswith("arm,metric,n,mean,sd,ci_low,ci_high,diff_vs_baseline,test,p,p_holm")


def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    f = write_csv(tmp_path / "per_seed.csv", {"a": by_seed(1.0, 2.0)})
    text = f.read_text().splitlines()
    text[2] = text[2].replace(",acc,", ",nll,")  # a row with another primary metric
    f.write_text("\n".join(text) + "\n")
    with pytest.raises(RecordError, match=r"per_seed.csv: the rows disagree on primary_metric"):
        build(f)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert main([str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other.csv: not a per-seed CSV" in err


def test_numbers_keep_four_significant_digits_above_ten():
    from mtbench.report.seedtable import fmt

    assert [fmt(272.7358), fmt(17.2349), fmt(1234.5), fmt(-45.678)] == ["272.7", "17.23", "1234", "-45.68"]
    assert [fmt(0.98164), fmt(3.36871), fmt(0.00001234), fmt(None)] == ["0.9816", "3.3687", "1.234e-05", "n/a"]
    # a cell's sd and CI take its mean's places: 272.7 ± 16.3 [232.2, 313.3], 0.9816 ± 0.0027
    assert [fmt(16.334, like=272.7), fmt(232.16, like=272.7), fmt(0.00271, like=0.98)] == ["16.3", "232.2", "0.0027"]
    assert fmt(0.04, like=272.7) == "4.000e-02"  # would read 0.0 at the mean's one place
