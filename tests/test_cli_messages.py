"""What the command line tells the user (issue 12, items 3-7 and 9): one line for a typo, nothing left by a
refused run, a summary command that reruns the run, plain progress lines in logs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mtbench.cli import config_dir
from mtbench.overrides import check_overrides

MTBENCH = [sys.executable, "-m", "mtbench.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["data.train_per_class=5", "trainer.batch_size=25", "trainer.eval_batch_size=500", "device=cpu"]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*MTBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=240, env=ENV)


@pytest.mark.parametrize(("args", "line"), [
    (["method=mtadam", "method.betaa=0.5"],
     "method.betaa is not a setting of method=mtadam; did you mean betas? valid: amsgrad, betas, eps, lr, ranks, "
     "weight_decay"),
    (["trainer.max_stepz=3"], "trainer.max_stepz is not a setting of trainer=default; did you mean max_steps?"),
    (["model.optimm.lr=3"], "model.optimm is not a setting of model=mnist; did you mean optim?"),
    (["sed=3"], "sed is not a setting of the config; did you mean seed?"),
    (["method=softadap"], "method=softadap is not an option of method; did you mean softadapt? valid: "
                          + ", ".join(sorted(p.stem for p in (config_dir() / "method").glob("*.yaml")))),
    (["-m", "method=fixed,mtadam", "method.windw=3"], "method.windw is not a setting of method=fixed"),
])
def test_a_misspelled_key_or_option_is_one_line_with_the_valid_ones(args, line):
    got = check_overrides(config_dir(), "train", args)
    assert got is not None and got.startswith(line), got


def test_valid_overrides_and_sweeps_pass_the_check():
    assert check_overrides(config_dir(), "train", ["method=softadapt", "method.window=3", "seed=0"]) is None
    assert check_overrides(config_dir(), "train", ["-m", "method=fixed,softadapt", "seed=0,1,2"]) is None
    assert check_overrides(config_dir(), "train", ["+model.extra=1"]) is None  # an explicit append composes


def test_the_typo_on_the_command_line_writes_nothing(tmp_path):
    r = cli(["train", "method=mtadam", "method.betaa=0.5"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: method.betaa is not a setting of method=mtadam; did you mean betas? valid: amsgrad, betas, eps, "
        "lr, ranks, weight_decay"]
    assert list(tmp_path.iterdir()) == []


def test_a_refused_value_leaves_no_run_dir(tmp_path):
    (tmp_path / "runs").mkdir()
    r = cli(["train", *TINY, "trainer.batch_size=0"], tmp_path)
    assert r.returncode == 2 and "trainer.batch_size must be an integer >= 1" in r.stderr
    assert list((tmp_path / "runs").iterdir()) == []  # neither the run dir nor the parents Hydra made


def test_eval_without_run_is_one_line(tmp_path):
    r = cli(["eval"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: mtbench eval needs the run to evaluate: mtbench eval run=<run dir> (e.g. "
        "run=runs/mnist/fixed/<date>_<time>_s0, a folder with checkpoints/last.pt)"]


def test_summary_command_reruns_the_run_and_logs_go_to_train_log_and_plain_progress_lines(tmp_path):
    r = cli(["train", *TINY, "method=softadapt", "trainer.max_steps=4", "trainer.log_every=2",
             "hydra.run.dir=first"], tmp_path)
    assert r.returncode == 0, r.stderr
    # not a terminal: plain progress lines, no carriage returns; the sum of the terms, not the weighted loss
    assert "\r" not in r.stderr
    assert re.search(r"mnist-softadapt-s0: step 2/4 \| sum of terms [\d.]+ \| [\d.]+ ms/step", r.stderr), r.stderr
    summary = json.loads((tmp_path / "first" / "summary.json").read_text())
    assert summary["command"] == ("mtbench train data.train_per_class=5 trainer.batch_size=25 "
                                  "trainer.eval_batch_size=500 device=cpu method=softadapt trainer.max_steps=4 "
                                  "trainer.log_every=2")
    code = summary["code"]
    if code is not None:  # a git checkout
        assert re.fullmatch(r"[0-9a-f]{40}", code["git_commit"]) and isinstance(code["uncommitted_changes"], bool)
    assert r.stdout.strip().splitlines()[-1] in (tmp_path / "first" / "train.log").read_text()
    again = cli([*shlex.split(summary["command"])[1:], "hydra.run.dir=second"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "second" / "summary.json").read_text())["metrics"] == summary["metrics"]


def test_the_progress_shows_the_unweighted_sum_of_the_terms(tmp_path):
    import torch

    from mtbench.training.logging import RunLogger, StepLog

    logger = RunLogger(tmp_path, total_steps=2, initial_step=0, desc="x", progress=False)
    steplog = StepLog(["a", "b"], 2, torch.device("cpu"))
    steplog.add(1, {"a": torch.tensor(1.0), "b": torch.tensor(3.0)})
    steplog.add(2, {"a": torch.tensor(3.0), "b": torch.tensor(5.0)})
    logger.flush(steplog, 2, {"a": 10.0, "b": 0.1}, ["a", "b"], 1.0, tmp_path / "ckpt")
    assert logger.pbar.postfix == "sum of terms 6"  # (1+3)/2 + (3+5)/2, whatever the weights
    logger.close()


def test_tensorboard_has_one_chart_of_all_weights_and_one_of_all_losses(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    from mtbench.training.logging import RunLogger

    RunLogger(tmp_path, total_steps=1, initial_step=0, desc="x", progress=False).close()
    events = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    events.Reload()
    [tag] = events.PluginTagToContent("custom_scalars")
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors(tag)[0].tensor_proto.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts == {"weights (weight/*)": ["^weight/"], "losses (loss/*)": ["^loss/"]}


def _tensorboard_experiment(logdir: Path):
    """The HPARAMS tab's table (hparam and metric columns) as TensorBoard computes it for ``logdir``."""
    from tensorboard import context as tb_context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    ctx = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), data_provider=provider,
                                                         multiplexer=mux))
    request = tb_context.RequestContext()
    meta = ctx.hparams_metadata(request, "")
    exp = ctx.experiment_from_metadata(request, "", True, meta, ctx.hparams_from_data_provider(request, "", 0))
    return {h.name for h in exp.hparam_infos}, {m.name.tag for m in exp.metric_infos}


def test_hparams_shows_every_runs_settings_and_final_metrics(run_train, tmp_path):
    """Issue 12 item 1: runs with different settings in one log dir: no run's layout hides another's keys."""
    run_train(["trainer.max_steps=2", "method=fixed"], name="logs/fixed")
    run_train(["trainer.max_steps=2", "method=softadapt", "method.beta=0.3"], name="logs/softadapt")
    run_train(["trainer.max_steps=2", "method=mtadam"], name="logs/mtadam")
    hparams, metrics = _tensorboard_experiment(tmp_path / "logs")
    assert {"model", "method", "data", "seed", "method.beta", "method.window", "method.variant",
            "method.lr", "method.beta1"} <= hparams, hparams
    assert {"hparam/acc", "hparam/nll"} <= metrics, metrics


def test_shell_completion_registers_mtbench_once_and_completes_per_command(tmp_path):
    """Issue 12 item 8: `mtbench train -sc install=bash` used to register two commands ("mtbench" and "train")
    and a TAB then failed with "unknown command '-sc'"; here a real bash sources the script and completes."""
    import shutil

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = cli(["train", "-sc", "install=bash"], tmp_path)
    assert script.returncode == 0 and script.stdout.rstrip().endswith("-F hydra_bash_completion mtbench")
    (tmp_path / "comp.sh").write_text(script.stdout)
    shim = tmp_path / "bin" / "mtbench"  # the console script, as installed
    shim.parent.mkdir()
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m mtbench.cli \"$@\"\n")
    shim.chmod(0o755)
    probe = """source comp.sh
    complete() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMP_CWORD=$2; hydra_bash_completion; echo "${COMPREPLY[*]}"; }
    complete "mtbench train method=mt" 2
    complete "mtbench tu" 1
    complete "mtbench eval checkp" 2
    """
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                         env={**ENV, "PATH": f"{shim.parent}:{os.environ['PATH']}"})
    assert out.stdout.splitlines() == ["method=mtadam", "tune", "checkpoint="], out.stderr


def test_the_tune_hint_repeats_the_runs_data_not_its_method_or_seed():
    # a pix2pix run on people_contours (data group facades: the aligned-pairs loader): the hint must tune on the
    # same folder, not name a facades download; method, seed and run settings are not the baseline's
    from mtbench.train import tune_command

    cmd = ("mtbench train experiment=pix2pix_people_contours 'data.root=runs/x y/aligned' method=softadapt "
           "method.beta=0.5 seed=2 trainer.progress=False device.threads=1 resume=true baselines_dir=b")
    assert tune_command({"command": cmd}) == (
        "mtbench tune experiment=pix2pix_people_contours 'data.root=runs/x y/aligned' baselines_dir=b")
    assert tune_command({"command": "mtbench train model=pix2pix device=cuda"}) == (
        "mtbench tune model=pix2pix device=cuda")
    assert tune_command({"command": "mtbench train 'unclosed"}) == "mtbench tune"  # never a crash
    assert tune_command({}) == "mtbench tune"
