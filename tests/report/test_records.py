"""mtbench.report.records: one row per finished run (real tiny runs), appended atomically and idempotently."""

from __future__ import annotations

import json

import pytest
from tiny_runs import copy_run, runs, summaries  # noqa: F401 - runs is a fixture

from mtbench.report import records
from mtbench.report.runs import data_name
from mtbench.report.records import (
    COLUMNS,
    RecordError,
    append_rows,
    main,
    read_seed_csv,
    relative,
    run_row,
)


def test_a_run_as_one_flat_row(runs):
    row = run_row(runs / "softadapt_s1", "softadapt")
    s = summaries(runs, "softadapt")[1]
    assert list(row)[:len(COLUMNS)] == list(COLUMNS)
    assert row["arm"] == "softadapt" and row["seed"] == "1" and row["model"] == "mnist" and row["data"] == "mnist5k"
    assert row["method"] == "softadapt" and row["primary_metric"] == s["primary_metric"] == "acc"
    assert row["higher_is_better"] == "true"
    # the overrides that tell arms apart: not seed/method, not device.threads or trainer.progress/log_every/checkpoint_every
    assert row["settings"] == ("data.train_per_class=5;device=cpu;method.update_every=1;method.window=2;"
                               "trainer.batch_size=16;trainer.max_steps=4")
    assert float(row["metric.acc"]) == s["metrics"]["acc"] and float(row["metric.nll"]) == s["metrics"]["nll"]
    assert {k for k in row if k.startswith("weight.")} == {f"weight.term_{i}" for i in range(10)}
    assert row["steps"] == "4" and float(row["wall_time_s"]) == s["wall_time_s"]
    assert row["torch"] == s["versions"]["torch"]
    # the CPU's model and torch's kernel ISA: a long CPU run's floats can differ between machines
    assert row["device"] == f"cpu ({s['versions']['cpu']})" and "; torch " in row["device"]
    assert row["git_commit"] == (s.get("code") or {}).get("git_commit", "")
    assert row["command"] == s["command"] and row["command"].startswith("mtbench train ")
    # summary.json records the threads torch really used and whether deterministic algorithms were on
    assert row["threads"] == str(s["threads"]) and int(row["threads"]) >= 1
    assert row["deterministic"] == "false" and s["deterministic"] is False


def test_absolute_paths_are_made_relative_and_path_settings_left_out(runs, tmp_path):
    d = copy_run(runs, "fixed_s0", tmp_path / "work" / "runs" / "r")
    f = d / "summary.json"
    s = json.loads(f.read_text())
    data = tmp_path / "shared" / "data"
    s["overrides"] += [f"data.root={data}/mnist_t10k", f"data.eval_roots=[{data}/Set5,{data}/Set14]",
                       "baselines_dir=runs/x/baseline", "method.weights=baseline", "device.threads=1"]
    s["command"] = (f"mtbench train data.root={data}/mnist_t10k 'data.eval_roots=[{data}/Set5,{data}/Set14]' "
                    f"hydra.run.dir={tmp_path}/work/runs/r seed=0")
    s["threads"] = 1
    f.write_text(json.dumps(s))
    row = run_row(d, "tuned", base=tmp_path / "work")
    assert row["command"] == ("mtbench train data.root=../shared/data/mnist_t10k "
                              "'data.eval_roots=[../shared/data/Set5,../shared/data/Set14]' "
                              "hydra.run.dir=runs/r seed=0")
    assert "method.weights=baseline" in row["settings"]
    assert "data.root" not in row["settings"] and "eval_roots" not in row["settings"]
    assert "baselines_dir" not in row["settings"] and "device.threads" not in row["settings"]
    assert row["threads"] == "1"
    assert not any(str(tmp_path) in v for v in row.values())
    assert relative("a=/x/y,b=../z", tmp_path).startswith("a=../")


def test_data_names():
    assert data_name("mnist", {"config": {"data": {"subset": "t10k"}}}) == "mnist_t10k"
    assert data_name("mnist", {"config": {"data": {"subset": "full"}}}) == "mnist"
    assert data_name("facades", {"choices": {"experiment": "pix2pix_people_contours"}}) == "people_contours"
    assert data_name("sr_folder", {"choices": {"experiment": "srgan_bsd68"}}) == "bsd68"
    assert data_name("mnist5k", {}) == "mnist5k"
    assert data_name("facades", {"choices": {"experiment": "pix2pix_paper"}}) == "facades"  # the loader's own data
    assert data_name("facades", {"choices": {"experiment": "x_../etc"}}) == "facades"  # never a path in a file name
    assert data_name("facades", {}, ["seed=0", "experiment=pix2pix_people_contours"]) == "people_contours"  # trivial


def test_append_is_idempotent_and_keeps_every_row(runs, tmp_path, capsys):
    csv_path = tmp_path / "results" / "per_seed.csv"
    assert main([str(csv_path), str(runs / "fixed_s0"), "--arm", "fixed"]) == 0
    assert capsys.readouterr().out.strip() == f"{csv_path}: recorded fixed seed 0"
    first = csv_path.read_text()
    assert first.splitlines()[0].startswith(",".join(COLUMNS) + ",metric.acc,metric.nll,weight.term_0")
    # again with a new seed: the recorded one is skipped (one line), the new one appended, the first row kept
    assert main([str(csv_path), str(runs / "fixed_s0"), str(runs / "fixed_s1"), "--arm", "fixed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{csv_path}: recorded fixed seed 1", f"{csv_path}: already recorded, skipped: fixed seed 0"]
    text = csv_path.read_text()
    assert text.startswith(first) and len(text.splitlines()) == 3
    assert [(r["arm"], r["seed"]) for r in read_seed_csv(csv_path).rows] == [("fixed", "0"), ("fixed", "1")]
    # another arm label for runs of other settings
    added, skipped = append_rows(csv_path, [run_row(runs / "softadapt_s0", "softadapt")])
    assert len(added) == 1 and not skipped and len(read_seed_csv(csv_path).rows) == 3
    assert list(tmp_path.joinpath("results").iterdir()) == [csv_path]  # no temp or lock file left


def test_an_arm_is_one_setting(runs, tmp_path):
    csv_path = tmp_path / "per_seed.csv"
    append_rows(csv_path, [run_row(runs / "fixed_s0", "fixed")])
    before = csv_path.read_text()
    with pytest.raises(RecordError, match=r"per_seed.csv: arm 'fixed' is recorded with method='fixed', this run "
                                          r"has method='softadapt'"):
        append_rows(csv_path, [run_row(runs / "softadapt_s1", "fixed")])
    assert csv_path.read_text() == before


def test_a_resumed_run_whose_booleans_come_back_lowercase_is_the_same_setting(runs, tmp_path):
    """A resumed run's overrides are read back from run.yaml (true/false); a fresh one's are as typed (True)."""
    from mtbench.report.records import _same_setting

    fresh = "data.download=False;device.deterministic=True;trainer.max_steps=825"
    assert _same_setting("settings", fresh, "data.download=false;device.deterministic=true;trainer.max_steps=825")
    assert not _same_setting("settings", fresh, "data.download=false;device.deterministic=false;trainer.max_steps=825")
    assert not _same_setting("settings", fresh, "data.download=False;device.deterministic=True;trainer.max_steps=826")
    assert not _same_setting("method", "fixed", "Fixed")
    # the tables show one spelling, whichever run came first; only whole boolean values are respelled
    assert records.canonical_settings("a=True;b=FALSE;c=Truth;d=x.True;e=1") == "a=true;b=false;c=Truth;d=x.True;e=1"


def test_a_new_metric_adds_a_column_and_old_rows_stay(runs, tmp_path):
    csv_path = tmp_path / "per_seed.csv"
    append_rows(csv_path, [run_row(runs / "fixed_s0", "fixed")])
    row = run_row(runs / "fixed_s1", "fixed")
    row["metric.fid"] = "12.5"
    append_rows(csv_path, [row])
    t = read_seed_csv(csv_path)
    assert t.metrics == ["acc", "nll", "fid"] and t.rows[0]["metric.fid"] == "" and t.rows[1]["metric.fid"] == "12.5"


def test_a_foreign_csv_is_refused_in_one_line_and_left_alone(runs, tmp_path, capsys):
    bad = tmp_path / "report.csv"
    bad.write_text("model,data,method,settings\nmnist,mnist,fixed,\n")
    assert main([str(bad), str(runs / "fixed_s0"), "--arm", "fixed"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: not a per-seed CSV")
    assert bad.read_text() == "model,data,method,settings\nmnist,mnist,fixed,\n"
    assert main([str(tmp_path / "new.csv"), str(runs / "fixed_s0"), "--arm", "a b"]) == 2
    assert "arm 'a b': use letters, digits" in capsys.readouterr().err
    assert main([str(tmp_path / "new.csv"), str(tmp_path), "--arm", "x"]) == 2  # not a run
    assert "no summary.json" in capsys.readouterr().err and not (tmp_path / "new.csv").exists()


def test_a_failed_write_leaves_the_csv_whole(runs, tmp_path, monkeypatch):
    csv_path = tmp_path / "per_seed.csv"
    append_rows(csv_path, [run_row(runs / "fixed_s0", "fixed")])
    before = csv_path.read_text()

    def boom(table):
        raise OSError("disk full")

    monkeypatch.setattr(records, "_to_text", boom)
    with pytest.raises(OSError):
        append_rows(csv_path, [run_row(runs / "fixed_s1", "fixed")])
    assert csv_path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["per_seed.csv"]


def test_a_trivial_baselines_one_row_is_seed_0_and_no_other_run_without_a_seed_is_recorded(runs, tmp_path):
    # mtbench trivial writes seed "n/a" (nothing is random); scripts/reproduce_gans.sh records its row as seed 0
    from mtbench import trivial

    assert records.TRIVIAL_SEED == trivial.SEED
    import shutil

    run = tmp_path / "identity"
    shutil.copytree(runs / "fixed_s0", run)
    s = json.loads((run / "summary.json").read_text())
    s.update(method="identity", seed=trivial.SEED, steps=0, final_weights={}, trivial={"kind": "identity"})
    (run / "summary.json").write_text(json.dumps(s))
    row = run_row(run, "identity")
    assert row["seed"] == "0" and row["steps"] == "0" and row["method"] == "identity"
    for bad in ({"trivial": None}, {"steps": 4}):  # "n/a" without being a trivial baseline: refused
        (run / "summary.json").write_text(json.dumps({**s, **bad}))
        with pytest.raises(RecordError, match="'seed' must be an integer >= 0, got 'n/a'"):
            run_row(run, "identity")


def test_the_device_column_names_the_cpu_only_where_the_summary_does():
    from mtbench.report.records import device_of

    assert device_of({"device": "cpu", "versions": {"cpu": "AMD EPYC; torch AVX512"}}) == "cpu (AMD EPYC; torch AVX512)"
    assert device_of({"device": "cpu", "versions": {"torch": "2.14.1"}}) == "cpu"  # summaries before 2026-12-02
    assert device_of({"device": "cuda:0 (NVIDIA H200)", "versions": {"cpu": "x"}}) == "cuda:0 (NVIDIA H200)"
    assert device_of({"device": "cpu", "versions": {"cpu": ["not", "a", "string"]}}) == "cpu"  # untrusted file
    assert device_of({"device": 3}) == ""
