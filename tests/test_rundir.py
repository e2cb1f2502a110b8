"""Nothing read from a run directory is instantiated: eval and resume with `_target_` payloads planted in its YAML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import compose_cfg
from mtbench.evaluate import evaluate_run
from mtbench.rundir import allowed_targets, check_targets, recorded_overrides
from mtbench.train import train
from mtbench.utils import ConfigError

RUN = ["trainer.max_steps=4", "trainer.batch_size=16", "data.train_per_class=5", "trainer.checkpoint_every=2"]


def _payload(marker: Path) -> dict:
    """A node that creates ``marker`` if anything instantiates it."""
    return {"_target_": "builtins.open", "file": str(marker), "mode": "w"}


def _plant_everywhere_but_overrides(run: Path, marker: Path) -> None:
    """Payloads in every YAML file of the run directory, except run.yaml's overrides list."""
    doc = yaml.safe_load((run / "run.yaml").read_text())
    for key in ("model", "data", "method"):
        doc["config"][key] = _payload(marker)
    (run / "run.yaml").write_text(yaml.safe_dump(doc))
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) if (run / ".hydra" / "config.yaml").exists() \
        else {}
    cfg.update(model=_payload(marker), data=_payload(marker), method=_payload(marker))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"callbacks": {"x": _payload(marker)}}}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["model._target_=builtins.open", f"+model.file={marker}", "+model.mode=w"]))


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "run"
    summary = train(compose_cfg(["trainer.progress=false", "device=cpu", *RUN]), out=out)
    return summary, out


def test_eval_rebuilds_from_conf_and_ignores_payloads_in_the_runs_yaml(finished_run, tmp_path):
    summary, out = finished_run
    marker = tmp_path / "PWNED"
    _plant_everywhere_but_overrides(out, marker)
    result = evaluate_run(compose_cfg([f"run={out}", "device=cpu"], config_name="eval"))
    assert not marker.exists()
    assert result["metrics"] == summary["metrics"]  # the safe rebuild is the same run


@pytest.mark.parametrize("where", ["run.yaml", "hydra_overrides"])
def test_eval_refuses_foreign_targets_in_the_recorded_overrides(finished_run, tmp_path, where):
    _, out = finished_run
    marker = tmp_path / "PWNED"
    _plant_everywhere_but_overrides(out, marker)
    evil = ["model._target_=builtins.open", f"+model.file={marker}", "+model.mode=w"]
    doc = yaml.safe_load((out / "run.yaml").read_text())
    if where == "run.yaml":
        doc["overrides"] = doc["overrides"] + evil
    else:  # an older run.yaml without overrides: .hydra/overrides.yaml (planted above) is read
        del doc["overrides"]
    (out / "run.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"refusing model\._target_='builtins\.open'"):
        evaluate_run(compose_cfg([f"run={out}", "device=cpu"], config_name="eval"))
    assert not marker.exists()


def test_resume_never_reads_the_runs_yaml(tmp_path):
    from conftest import train_with_signal_at
    from mtbench.models.mnist import MNISTModel

    out = tmp_path / "run"
    cfg = compose_cfg(["trainer.progress=false", "device=cpu", *RUN])
    train_with_signal_at(MNISTModel, cfg, out, stop_step=2)
    marker = tmp_path / "PWNED"
    _plant_everywhere_but_overrides(out, marker)
    doc = yaml.safe_load((out / "run.yaml").read_text())
    doc["overrides"] = ["model._target_=builtins.open", f"+model.file={marker}"]
    (out / "run.yaml").write_text(yaml.safe_dump(doc))
    s = train(compose_cfg(["trainer.progress=false", "device=cpu", *RUN, "resume=true"]), out=out)
    assert s["steps"] == 4 and not marker.exists()
    assert "builtins" not in (out / "run.yaml").read_text()  # rewritten from this command's config


def test_eval_refusal_is_one_line_on_the_command_line(finished_run, tmp_path):
    _, out = finished_run
    marker = tmp_path / "PWNED"
    doc = yaml.safe_load((out / "run.yaml").read_text())
    doc["overrides"] = doc["overrides"] + ["method._target_=builtins.open", f"+method.file={marker}"]
    (out / "run.yaml").write_text(yaml.safe_dump(doc))
    before = (out / "summary.json").read_text()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "mtbench.cli", "eval", f"run={out}", "device=cpu"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing method._target_='builtins.open'")
    assert not marker.exists() and (out / "summary.json").read_text() == before


def test_recorded_overrides_must_be_strings_and_drop_hydra_keys(tmp_path):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"overrides": ["seed=1", "hydra.run.dir=/x", "+hydra.a=1"]}))
    assert recorded_overrides(tmp_path) == ["seed=1"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"overrides": [{"_target_": "os.system"}]}))
    with pytest.raises(ConfigError, match="list of strings"):
        recorded_overrides(tmp_path)
    (tmp_path / "run.yaml").write_text("overrides: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="cannot read"):  # safe_load: no Python tags
        recorded_overrides(tmp_path)


def test_check_targets_walks_nested_nodes_and_lists():
    ok = sorted(allowed_targets())
    assert "mtbench.methods.mtadam.MTAdamMethod" in ok and "mtbench.models.pix2pix.Pix2PixModel" in ok
    check_targets(OmegaConf.create({"method": {"_target_": ok[0], "opt": {"_target_": ok[1]}}}), "test")
    for bad in ({"a": {"b": [{"_target_": "os.system"}]}}, {"m": {"_target_": "${x}"}, "x": ok[0]},
                {"m": {"_target_": 3}}):
        with pytest.raises(ConfigError, match="refusing"):
            check_targets(OmegaConf.create(bad), "test")
