"""mtbench.report.leaderboard: the ranks it plots (by hand, for a tiny input) and the PNG it writes."""

from __future__ import annotations

import pytest
from test_seedtable import by_seed, write_csv

from mtbench.report.leaderboard import main, ranks, read_ratios
from mtbench.report.records import RecordError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RATIOS = """Step time ...

| method | step (ms) | ratio to fixed |
|---|---:|---:|
| fixed | 25.10 | 1.000 |
| softadapt | 24.78 | 0.987 |
| mtadam | 176.62 | 7.037 |

| MTAdam | ms |
|---|---:|
| full MTAdam step | 176.62 |
"""


@pytest.fixture
def benchmarks(tmp_path):
    # benchmark a (acc, higher is better): mtadam 0.9 > tuned 0.8 = fixed 0.8 > softadapt 0.5; balanced is not a
    # method of the board. benchmark b (nll, lower is better): softadapt 0.1 < fixed 0.2 < mtadam 0.3 < tuned 0.4
    write_csv(tmp_path / "res" / "a" / "per_seed.csv",
              {"fixed": by_seed(0.79, 0.81), "tuned": by_seed(0.8, 0.8), "softadapt": by_seed(0.5, 0.5),
               "mtadam": by_seed(0.9, 0.9), "balanced": by_seed(0.99, 0.99)})
    write_csv(tmp_path / "res" / "b" / "per_seed.csv",
              {"fixed": by_seed(0.2, 0.2), "tuned": by_seed(0.4, 0.4), "softadapt": by_seed(0.05, 0.15),
               "mtadam": by_seed(0.3, 0.3)}, primary="nll", hib=False)
    (tmp_path / "bench_methods.md").write_text(RATIOS)
    return tmp_path


def test_ratios_from_bench_methods_md_or_a_csv(benchmarks, tmp_path):
    assert read_ratios(benchmarks / "bench_methods.md") == {"fixed": 1.0, "softadapt": 0.987, "mtadam": 7.037}
    (tmp_path / "r.csv").write_text("method,ratio_to_fixed\nfixed,1\nmtadam,7.5\n")
    assert read_ratios(tmp_path / "r.csv") == {"fixed": 1.0, "mtadam": 7.5}
    (tmp_path / "bad.md").write_text("no table\n")
    with pytest.raises(RecordError, match="bad.md: no step-time ratios"):
        read_ratios(tmp_path / "bad.md")


def test_mean_ranks_by_hand(benchmarks):
    csvs = sorted((benchmarks / "res").rglob("per_seed.csv"))
    df = ranks(csvs, read_ratios(benchmarks / "bench_methods.md")).set_index("arm")
    # a: mtadam 1, fixed and tuned share 2 and 3 -> 2.5 each, softadapt 4; b: softadapt 1, fixed 2, mtadam 3, tuned 4
    assert df.loc[:, "rank:a"].to_dict() == {"mtadam": 1.0, "fixed": 2.5, "tuned": 2.5, "softadapt": 4.0}
    assert df.loc[:, "rank:b"].to_dict() == {"softadapt": 1.0, "fixed": 2.0, "mtadam": 3.0, "tuned": 4.0}
    assert df["mean_rank"].to_dict() == {"mtadam": 2.0, "fixed": 2.25, "softadapt": 2.5, "tuned": 3.25}
    assert df["ratio"].to_dict() == {"mtadam": 7.037, "fixed": 1.0, "softadapt": 0.987, "tuned": 1.0}  # tuned: fixed's
    assert "balanced" not in df.index and list(df.index) == ["mtadam", "fixed", "softadapt", "tuned"]
    only = ranks(csvs, read_ratios(benchmarks / "bench_methods.md"), arms=["fixed", "mtadam"]).set_index("arm")
    assert only["mean_rank"].to_dict() == {"mtadam": 1.5, "fixed": 1.5}  # ranked among the chosen arms only


def test_writes_the_png_and_csv_without_absolute_paths(benchmarks, capsys):
    out = benchmarks / "out"
    assert main([str(benchmarks / "res"), "--ratios", str(benchmarks / "bench_methods.md"), "--out", str(out)]) == 0
    assert (out / "leaderboard.png").read_bytes()[:8] == PNG_MAGIC
    text = (out / "leaderboard.csv").read_text()
    assert text.splitlines()[0] == "arm,label,ratio,mean_rank,benchmarks,rank:a,rank:b"
    assert str(benchmarks) not in text and "MTAdam" in text


def test_an_arm_without_a_ratio_is_one_line(benchmarks, capsys):
    (benchmarks / "r.csv").write_text("method,ratio_to_fixed\nmtadam,7\n")
    assert main([str(benchmarks / "res"), "--ratios", str(benchmarks / "r.csv"), "--out", str(benchmarks / "out"),
                 "--arms", "mtadam,tuned"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "per_seed.csv: arm 'tuned' (method 'fixed') has no step-time ratio" in err
    assert not (benchmarks / "out").exists()


def test_a_benchmark_with_one_arm_so_far_is_not_ranked(benchmarks, capsys):
    # c has begun with fixed alone: a rank of 1 among 1 would lift fixed's mean rank from 2.25 to 1.83
    write_csv(benchmarks / "res" / "c" / "per_seed.csv", {"fixed": by_seed(30.0, 31.0)}, primary="fid", hib=False)
    csvs = sorted((benchmarks / "res").rglob("per_seed.csv"))
    df = ranks(csvs, read_ratios(benchmarks / "bench_methods.md")).set_index("arm")
    assert df.attrs["benchmarks"] == ["a", "b"] and "rank:c" not in df.columns
    assert df.loc["fixed", "mean_rank"] == 2.25 and df.loc["fixed", "benchmarks"] == 2
    assert "c: only fixed on the board so far: not ranked" in capsys.readouterr().err


def test_point_names_do_not_overlap_where_the_points_crowd(tmp_path):
    # six arms at nearly the same rank and step time (as many methods cost what fixed costs)
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mtbench.report.leaderboard import _place_labels

    df = pd.DataFrame({"label": ["SoftAdapt", "RLW", "DWA", "ReLoBRaLo", "GradNorm", "fixed (tuned)"],
                       "ratio": [0.916, 0.922, 0.942, 0.874, 0.994, 1.0],
                       "mean_rank": [11.0, 11.0, 11.5, 11.5, 5.0, 5.25]})
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(df["ratio"], df["mean_rank"])
    ax.set_xscale("log")
    ax.set_xlim(0.5, 2.0)
    ax.set_ylim(18, 0.5)
    _place_labels(fig, ax, df)
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts]
    assert [t.get_text() for t in ax.texts] == list(df["label"])  # one name per point, in order
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_a_benchmark_with_fewer_arms_is_stretched_to_the_full_range(benchmarks):
    # c ranks two arms (as SRGAN ranks the papers' arms only): mtadam 1st, fixed 2nd = last of 2. Stretched onto
    # 1..4 (a and b rank four arms) fixed's last place counts 4, not 2: (2.5 + 2 + 4) / 3, mtadam (1 + 3 + 1) / 3
    write_csv(benchmarks / "res" / "c" / "per_seed.csv", {"fixed": by_seed(30.0, 31.0), "mtadam": by_seed(20.0, 20.0)},
              primary="fid", hib=False)
    csvs = sorted((benchmarks / "res").rglob("per_seed.csv"))
    df = ranks(csvs, read_ratios(benchmarks / "bench_methods.md")).set_index("arm")
    assert df.loc[:, "rank:c"].dropna().to_dict() == {"mtadam": 1.0, "fixed": 4.0}
    assert df.loc["fixed", "mean_rank"] == pytest.approx(8.5 / 3)
    assert df.loc["mtadam", "mean_rank"] == pytest.approx(5 / 3)
    assert df.loc["softadapt", "mean_rank"] == 2.5 and df.loc["softadapt", "benchmarks"] == 2  # not in c
    assert df.attrs["n_max"] == 4
    assert ranks(csvs[:2], read_ratios(benchmarks / "bench_methods.md")).attrs["n_max"] is None  # nothing stretched
