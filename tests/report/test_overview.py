"""mtbench.report.overview (scripts/summarize_results.py): one page over the benchmarks from the per-seed CSVs, its
cells checked against values computed by hand."""

from __future__ import annotations

from pathlib import Path

from mtbench.report.overview import main
from tests.report.test_seedtable import T_975_2, write_csv


def _row(text: str, arm: str) -> list[str]:
    line = next(x for x in text.splitlines() if x.startswith((f"| {arm} |", f"| {arm} (")))
    return [c.strip() for c in line.strip("|").split("|")]


def test_one_row_per_arm_one_column_per_benchmark_with_ci_and_verdict(tmp_path, capsys):
    results = tmp_path / "results"
    # benchmark a: tuned 0.80/0.82/0.84; mtadam 0.900/0.925/0.935, paired differences 0.100/0.105/0.095
    # (t = 0.1 / (0.005 / sqrt 3) = 34.6, p = 0.0008, x3 by Holm: better)
    write_csv(results / "mnist" / "a" / "per_seed.csv", {
        "tuned": {0: 0.80, 1: 0.82, 2: 0.84}, "mtadam": {0: 0.90, 1: 0.925, 2: 0.935},
        "softadapt": {0: 0.81, 1: 0.80, 2: 0.85}})
    # benchmark b (lower is better): no softadapt arm, one seed of dwa
    write_csv(results / "gans" / "b" / "per_seed.csv", {"tuned": {0: 50.0, 1: 52.0}, "mtadam": {0: 49.0, 1: 55.0},
                                                         "dwa": {0: 60.0}}, primary="fid", hib=False)
    assert main([str(results)]) == 0
    text = (results / "summary.md").read_text()
    assert "| arm | gans/b (fid ↓) | mnist/a (acc ↑) |" in text  # the benchmarks relative to results/, sorted
    # mtadam on a: mean 0.92, sd sqrt(0.00065 / 2); its CI [0.8752, 0.9648] clears tuned's [0.7703, 0.8697]
    half = T_975_2 * (0.00065 / 2) ** 0.5 / 3 ** 0.5
    mt = _row(text, "mtadam")
    assert mt[2] == f"**0.9200 [{0.92 - half:.4f}, {0.92 + half:.4f}]** better"
    # on b: mean 52, sd 4.2426 (n = 2, t_{.975,1} = 12.706): a tie with tuned's 51
    assert mt[1].startswith("52.00 [") and mt[1].endswith(" tie")  # a FID to 4 significant digits
    tuned = _row(text, "tuned (fixed, Hyperband)")
    assert tuned[1].endswith("baseline") and tuned[2].endswith("baseline")
    assert _row(text, "softadapt")[1] == "—"  # not in benchmark b
    assert _row(text, "dwa")[1] == "60.00 (n = 1)"  # one seed: no interval, no test
    order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert order[1:] == ["tuned (fixed, Hyperband)", "softadapt", "mtadam", "dwa"]  # papers' arms first
    assert "[mnist/a](mnist/a/table.md)" in text and str(tmp_path) not in text
    assert "summary.md: 2 benchmarks" in capsys.readouterr().out


def test_a_bad_csv_is_one_line_and_nothing_is_written(tmp_path, capsys):
    bad = tmp_path / "results" / "x" / "per_seed.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("arm,seed\n")
    assert main([str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert not (tmp_path / "results" / "summary.md").exists()
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err


def test_the_default_reads_results_below_the_working_folder(tmp_path, monkeypatch):
    write_csv(tmp_path / "results" / "m" / "per_seed.csv", {"tuned": {0: 0.5, 1: 0.6}})
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert Path("results/summary.md").is_file()
