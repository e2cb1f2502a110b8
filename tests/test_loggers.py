"""logger=tensorboard|csv|mlflow (conf/logger/, issue 12 item 13): what each backend holds, read back."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose_cfg, train_with_signal_at
from mtbench.errors import ConfigError
from mtbench.models.mnist import MNISTModel
from mtbench.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = ["device=cpu", "trainer.progress=false", "data.train_per_class=10", "trainer.batch_size=25",
        "trainer.eval_batch_size=500", "trainer.log_every=2", "trainer.checkpoint_every=null"]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _by_step(records: list[dict]) -> list[dict]:
    """metrics.jsonl's records merged per step, in order: what metrics.csv's rows hold."""
    rows: list[dict] = []
    for r in records:
        if rows and rows[-1]["step"] == r["step"]:
            rows[-1].update(r)
        else:
            rows.append(dict(r))
    return rows


def _csv(out: Path) -> tuple[list[str], list[dict]]:
    with open(out / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k: float(v) if k != "step" else int(v) for k, v in r.items() if v != ""} for r in reader]
        return list(reader.fieldnames), rows


def test_csv_has_one_row_per_logged_step_and_one_column_per_key_as_metrics_jsonl(tmp_path):
    out = tmp_path / "r"
    train(compose_cfg([*BASE, "logger=csv", "trainer.max_steps=6", "trainer.eval_every=4"]), out=out)
    records = _records(out)
    columns, rows = _csv(out)
    keys = list(dict.fromkeys(k for r in records for k in r))  # in the order they first appear
    assert columns == keys and columns[0] == "step" and {"val/acc", "eval/acc", "loss/term_0"} <= set(columns)
    assert rows == _by_step(records)
    assert [r["step"] for r in rows] == [1, 2, 4, 6]  # step 4: the interval and the evaluation, one row
    assert not list(out.glob("events.out.tfevents.*"))  # logger=csv alone: no TensorBoard


def test_csv_of_a_resumed_run_continues_its_rows(tmp_path):
    base = [*BASE, "logger=[tensorboard,csv]", "trainer.max_steps=6"]
    train(compose_cfg(base), out=tmp_path / "full")
    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "cut", stop_step=3)  # flush + checkpoint at 3
    train(compose_cfg([*base, "resume=true"]), out=tmp_path / "cut")
    (cols_a, full), (cols_b, cut) = _csv(tmp_path / "full"), _csv(tmp_path / "cut")
    assert cols_a == cols_b and [r["step"] for r in full] == [1, 2, 4, 6] and [r["step"] for r in cut] == [
        1, 2, 3, 4, 6]
    for a, b in zip([full[i] for i in (0, 1, 3)], [cut[i] for i in (0, 1, 4)]):  # the same training; the timings
        assert {k: v for k, v in a.items() if k != "time/step_ms"} == {k: v for k, v in b.items()
                                                                       if k != "time/step_ms"}
    assert cut == _by_step(_records(tmp_path / "cut"))
    assert list((tmp_path / "cut").glob("events.out.tfevents.*"))  # both backends


def test_csv_keeps_the_rows_a_resumed_run_s_checkpoint_covers_and_a_fresh_run_starts_anew(tmp_path):
    from mtbench.training.loggers.csv import CSVLogger

    first = CSVLogger()
    first.open(tmp_path, 0, "x", {})
    for step in range(1, 7):  # steps 5 and 6 were logged after the checkpoint of step 4, then the run died
        first.log_metrics(step, {"loss/a": float(step)})
    first.close("KILLED")
    resumed = CSVLogger()
    resumed.open(tmp_path, 4, "x", {})
    resumed.log_metrics(5, {"loss/a": 50.0, "eval/acc": 0.5})
    resumed.close("FINISHED")
    assert _csv(tmp_path) == (["step", "loss/a", "eval/acc"], [{"step": s, "loss/a": float(s)} for s in range(1, 5)]
                              + [{"step": 5, "loss/a": 50.0, "eval/acc": 0.5}])
    fresh = CSVLogger()
    fresh.open(tmp_path, 0, "x", {})
    fresh.close("FINISHED")
    assert (tmp_path / "metrics.csv").read_text() == "step\n"


def test_no_logger_writes_metrics_jsonl_only(tmp_path):
    out = tmp_path / "r"
    train(compose_cfg([*BASE, "~logger", "trainer.max_steps=2"]), out=out)
    assert _records(out) and not list(out.glob("events.out.tfevents.*")) and not (out / "metrics.csv").exists()


def _mlflow_client(tmp_path: Path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")
    return mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_mlflow_logs_params_terms_weights_eval_and_final_metrics_and_finishes(tmp_path, monkeypatch):
    client = _mlflow_client(tmp_path)
    monkeypatch.chdir(tmp_path)  # nothing of MLflow's lands in the checkout
    out = tmp_path / "r"
    summary = train(compose_cfg([*BASE, "logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                                 "method=softadapt", "method.beta=0.3", "trainer.max_steps=6"]), out=out)
    [run] = client.search_runs([client.get_experiment_by_name("mtbench-mnist").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "mnist-softadapt-s0"
    assert run.data.tags["mtbench.run_dir"] == str(out.resolve())
    params = run.data.params
    assert {"model": "mnist", "method": "softadapt", "data": "mnist5k", "seed": "0", "method.beta": "0.3",
            "trainer.max_steps": "6", "trainer.log_every": "2", "trainer.batch_size": "25"}.items() <= params.items()
    assert any(k.startswith("model.") for k in params) and "trainer.save_checkpoints" in params
    records = _records(out)
    for key in ("loss/term_3", "weight/term_3"):  # the history of a loss and a weight: each flush, as logged
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["step"], r[key]) for r in records if key in r]
        assert [s for s, _ in history] == [1, 2, 4, 6]  # only at the log_every flush (and step 1, the last)
    final = {k.removeprefix("final/"): v for k, v in run.data.metrics.items() if k.startswith("final/")}
    assert final == pytest.approx(summary["metrics"]) and set(final) == {"acc", "nll"}
    assert run.data.metrics["eval/acc"] == pytest.approx(summary["metrics"]["acc"])
    assert not (tmp_path / "mlruns").exists()


def test_mlflow_run_of_an_interrupted_run_is_killed_then_resumed_and_a_failure_is_failed(tmp_path, monkeypatch):
    client = _mlflow_client(tmp_path)
    monkeypatch.chdir(tmp_path)
    base = [*BASE, "logger=mlflow", f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            "logger.mlflow.experiment_name=t", "trainer.max_steps=6"]
    train_with_signal_at(MNISTModel, compose_cfg(base), tmp_path / "cut", stop_step=3)
    exp = client.get_experiment_by_name("t").experiment_id
    [run] = client.search_runs([exp])
    assert run.info.status == "KILLED"
    train(compose_cfg([*base, "resume=true"]), out=tmp_path / "cut")
    [resumed] = client.search_runs([exp])  # the same MLflow run, continued
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss/term_0")]
    assert sorted(set(steps)) == [1, 2, 3, 4, 6]

    original = MNISTModel.terms

    def nan_terms(self, x, y):
        t = original(self, x, y)
        t["term_0"] = t["term_0"] * float("nan")
        return t

    monkeypatch.setattr(MNISTModel, "terms", nan_terms)
    with pytest.raises(Exception, match="is nan at step"):
        train(compose_cfg(base), out=tmp_path / "nan")
    statuses = {r.data.tags["mtbench.run_dir"]: r.info.status for r in client.search_runs([exp])}
    assert statuses[str((tmp_path / "nan").resolve())] == "FAILED"


def test_logger_mlflow_without_mlflow_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(ConfigError) as err:
        train(compose_cfg([*BASE, "logger=mlflow"]), out=tmp_path / "r")
    assert str(err.value) == "logger=mlflow needs the mlflow extra: pip install -e '.[mlflow]'"
    assert not (tmp_path / "r" / "metrics.jsonl").exists() and not (tmp_path / "r" / "run.yaml").exists()
    # the console script: one line, exit status 2, no run dir left behind
    code = ("import sys; sys.modules['mlflow'] = None; from mtbench.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "train", "logger=mlflow", "device=cpu"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: logger=mlflow needs the mlflow extra: pip install -e '.[mlflow]'"], r.stderr
    assert not (tmp_path / "runs").exists()  # the run dir Hydra made is removed, and its parents
