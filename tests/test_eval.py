"""mtbench eval: recompute a run's metrics from its checkpoint; each evaluation recorded under its split."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import QUICK, compose_cfg
from mtbench.errors import DataError
from mtbench.evaluate import evaluate_run
from mtbench.utils import ConfigError

TINY = ["trainer.max_steps=4", "trainer.eval_every=2", "trainer.batch_size=16", "data.train_per_class=5"]


def _eval(out, *overrides):
    return evaluate_run(compose_cfg([f"run={out}", "device=cpu", *overrides], config_name="eval"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished tiny MNIST run for the module (each test gets its own copy: tiny_run)."""
    from mtbench.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("trained") / "run"
        return train(compose_cfg([*QUICK, *TINY]), out=out), out
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def tiny_run(trained, tmp_path, one_thread):
    summary, src = trained
    out = tmp_path / "run"
    shutil.copytree(src, out)
    return summary, out


def test_eval_reproduces_the_final_metrics_and_records_them(tiny_run):
    summary, out = tiny_run
    before = json.loads((out / "summary.json").read_text())
    result = _eval(out)
    assert result["metrics"] == summary["metrics"]  # same checkpoint, same data: same numbers
    after = json.loads((out / "summary.json").read_text())
    entry = after["evaluations"]["test/last"]  # mnist5k's final metrics are on its test split
    assert entry["checkpoint"] == "last" and entry["split"] == "test" and entry["step"] == 4
    assert entry["metrics"] == summary["metrics"] and entry["command"].startswith("mtbench eval")
    assert {k: v for k, v in after.items() if k != "evaluations"} == before
    best = _eval(out, "checkpoint=best", "eval_split=val")  # best.pt is chosen on val (summary best.split)
    assert best["metrics"]["acc"] == pytest.approx(summary["best"]["value"])


def test_eval_on_val_keeps_the_runs_test_metrics_and_records_each_split(tiny_run):
    summary, out = tiny_run
    val = _eval(out, "eval_split=val")
    after = json.loads((out / "summary.json").read_text())
    assert after["metrics"] == summary["metrics"]  # the run's own (test) metrics are not overwritten
    assert after["evaluations"]["val/last"]["metrics"] == val["metrics"] != summary["metrics"]
    test = _eval(out)  # a second split adds its own entry
    again = _eval(out, "eval_split=val")  # the same split and checkpoint again replaces only its entry
    after = json.loads((out / "summary.json").read_text())
    assert sorted(after["evaluations"]) == ["test/last", "val/last"]
    assert after["evaluations"]["test/last"]["metrics"] == test["metrics"] == summary["metrics"]
    assert after["evaluations"]["val/last"]["metrics"] == again["metrics"] == val["metrics"]
    assert after["metrics"] == summary["metrics"]


def test_eval_adds_new_metrics_of_the_runs_own_split_and_never_replaces_recorded_ones(tiny_run):
    summary, out = tiny_run
    doc = json.loads((out / "summary.json").read_text())
    doc["metrics"] = {"acc": 0.123}  # as if nll were new (e.g. FID added later with eval.fid_weights)
    (out / "summary.json").write_text(json.dumps(doc))
    _eval(out, "eval_split=val")  # another split: the run's metrics untouched
    assert json.loads((out / "summary.json").read_text())["metrics"] == {"acc": 0.123}
    _eval(out, "checkpoint=best")  # another checkpoint: untouched too
    assert json.loads((out / "summary.json").read_text())["metrics"] == {"acc": 0.123}
    _eval(out)  # last.pt on the run's own split: the missing metric is added, the recorded one kept
    assert json.loads((out / "summary.json").read_text())["metrics"] == {"acc": 0.123,
                                                                         "nll": summary["metrics"]["nll"]}


def test_eval_keeps_the_entries_of_an_older_summary_list(tiny_run):
    _, out = tiny_run
    doc = json.loads((out / "summary.json").read_text())
    old = {"checkpoint": "best", "step": 2, "metrics": {"acc": 0.5}, "eval_split": "auto", "time": "t0"}
    doc["evaluations"] = [old]  # the format of earlier versions: a list
    (out / "summary.json").write_text(json.dumps(doc))
    _eval(out, "eval_split=val")
    evals = json.loads((out / "summary.json").read_text())["evaluations"]
    assert sorted(evals) == ["test/best", "val/last"]  # "auto" was the run's test split
    assert evals["test/best"]["metrics"] == {"acc": 0.5} and evals["test/best"]["time"] == "t0"


def test_eval_of_an_unfinished_run_keeps_one_entry_per_split_in_eval_json(tiny_run):
    _, out = tiny_run
    (out / "summary.json").rename(out / "summary.json.away")  # as if the run had been interrupted
    test = _eval(out)
    val = _eval(out, "eval_split=val")
    _eval(out, "eval_split=val")
    assert not (out / "summary.json").exists()  # it still counts as unfinished
    record = json.loads((out / "eval.json").read_text())
    assert sorted(record["evaluations"]) == ["test/last", "val/last"]
    assert record["evaluations"]["test/last"]["metrics"] == test["metrics"]
    assert record["evaluations"]["val/last"]["metrics"] == val["metrics"]


def test_a_corrupt_eval_json_is_named_and_kept(tiny_run):
    _, out = tiny_run
    (out / "summary.json").unlink()
    (out / "eval.json").write_text('{"evaluations": ')  # cut short
    with pytest.raises(DataError, match=r"eval\.json.*cannot read it"):
        _eval(out)
    assert (out / "eval.json").read_text() == '{"evaluations": '  # nothing lost


def test_eval_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'nope'}"], config_name="eval"))
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"no checkpoint .*last\.pt"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'r'}"], config_name="eval"))
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not an mtbench run directory"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'r'}"], config_name="eval"))
