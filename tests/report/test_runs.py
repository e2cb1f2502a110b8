"""mtbench.report.runs: finding run directories, reading them, and refusing malformed ones in one line."""

from __future__ import annotations

import json
import shutil

import pytest
from tiny_runs import copy_run, multirun_copy, runs  # noqa: F401 - runs is a fixture

from mtbench.report import find_runs, load_run, make_report
from mtbench.report.runs import Series, read_metrics


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
    assert [r.n for r in res["rows"]] == [2, 2]
    assert [u.run_dir for u in res["unfinished"]] == [unfinished]
    assert res["unfinished"][0].last_logged_step == 4 and res["unfinished"][0].checkpoint
    assert "## Unfinished runs" in res["markdown"] and str(unfinished) in res["markdown"]


def test_truncated_last_metrics_line_is_skipped(runs, tmp_path):
    d = copy_run(runs, "softadapt_s1", tmp_path / "run")
    with open(d / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "loss/term_0": 0.12, "weight/ter')
    whole = load_run(runs / "softadapt_s1")
    cut = load_run(d)
    assert cut.bad_lines == 1 and whole.bad_lines == 0
    assert cut.series == whole.series
    assert cut.series["weight/term_3"].steps == [1, 2, 4]
    assert cut.metrics == whole.metrics and cut.run_dir == d
    res = make_report([d], tmp_path / "rep")
    assert "skipped 1 unreadable line" in res["markdown"]


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


def test_run_reads_the_summary_and_the_logged_series(runs):
    s = json.loads((runs / "fixed_s1" / "summary.json").read_text())
    run = load_run(runs / "fixed_s1")
    assert (run.model, run.data, run.method, run.seed) == ("mnist", "mnist5k", "fixed", 1)
    assert run.metrics == s["metrics"] and run.primary_metric == "acc" and run.higher_is_better is True
    assert run.wall_time_s == s["wall_time_s"] and run.overrides == s["overrides"]
    assert run.final_weights == s["final_weights"]
    assert run.terms == [f"term_{k}" for k in range(10)]
    records, bad = read_metrics(runs / "fixed_s1" / "metrics.jsonl")
    assert bad == 0 and [r["step"] for r in records if "weight/term_0" in r] == run.series["weight/term_0"].steps


def test_a_resumed_run_relogging_a_step_keeps_the_last_value(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({"model": "m", "method": "fixed", "metrics": {"acc": 1.0}}))
    (d / "metrics.jsonl").write_text('{"step": 2, "loss/a": 3.0}\n{"step": 4, "loss/a": 2.0}\n'
                                     '{"step": 2, "loss/a": 5.0}\n[1, 2]\n{"loss/a": 1.0}\n{"step": "x"}\n')
    run = load_run(d)
    assert run.series["loss/a"] == Series([2, 4], [5.0, 2.0])
    assert run.bad_lines == 3 and run.data == "?"  # no data in the summary: "?" as before


@pytest.mark.parametrize("text, match", [
    ("{not json", "summary.json: cannot read it"),
    ("[1, 2]", "summary.json: not an mtbench run summary"),
    ('{"model": "m", "method": "fixed"}', "missing metrics"),
    ('{"model": "m", "method": "fixed", "metrics": [1]}', "summary.json: not an mtbench run summary"),
    ('{"model": {"_target_": "os.system"}, "method": "fixed", "metrics": {}}', "summary.json: 'model' must be a name"),
    ('{"model": "m", "method": "fixed", "metrics": {}, "seed": [0]}', "summary.json: 'seed'"),
    ('{"model": "m", "method": "fixed", "metrics": {}, "overrides": [{"a": 1}]}', "summary.json: 'overrides'"),
])
def test_a_malformed_summary_is_one_line_naming_the_file(tmp_path, text, match):
    d = tmp_path / "run"
    d.mkdir()
    (d / "summary.json").write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_run(d)
    assert str(d / "summary.json") in str(err.value) and "\n" not in str(err.value)


def test_overrides_yaml_is_data_never_code(tmp_path):
    """A YAML payload in .hydra/overrides.yaml is refused by the safe loader, never run."""
    d = tmp_path / "run"
    (d / ".hydra").mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"model": "m", "method": "fixed", "metrics": {"acc": 0.5}}))
    marker = tmp_path / "pwned"
    (d / ".hydra" / "overrides.yaml").write_text(
        f"- !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError, match="overrides.yaml: cannot read it") as err:
        load_run(d)
    assert "\n" not in str(err.value) and not marker.exists()
    (d / ".hydra" / "overrides.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="overrides.yaml: not a list of overrides"):
        load_run(d)
    (d / ".hydra" / "overrides.yaml").write_text("- method.beta=0.5\n- seed=3\n")
    assert load_run(d).overrides == ["method.beta=0.5", "seed=3"]


def test_non_numbers_in_a_summary_are_missing_values_not_errors(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "model": "m", "method": "fixed", "metrics": {"acc": 0.5, "fid": None, "note": "x", "flag": True},
        "wall_time_s": "slow", "final_weights": {"a": 1, "b": "x"}}))
    run = load_run(d)
    assert run.metrics == {"acc": 0.5, "fid": None, "note": None, "flag": None}  # columns kept, values missing
    assert run.wall_time_s is None and run.final_weights == {"a": 1.0} and run.terms == ["a"]
