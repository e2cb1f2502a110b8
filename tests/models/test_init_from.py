"""model.init_from: a run's generator starts from another run's generator weights (CPU, offline, tiny nets).

The source is the SRResNet pre-training (experiment=srresnet_bsd68's model: content term only, no
discriminator); the target an SRGAN run, as scripts/reproduce_gans.sh chains them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import compose_cfg, load_ckpt
from mtbench.train import Runner, train
from mtbench.utils import ConfigError

NETS = ["model.n_blocks=2", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16"]
TINY = ["model=srgan", *NETS, "model.perceptual=false", "data.crop_size=32", "data.n_train=8",
        "data.n_val=2", "data.n_test=2", "trainer.batch_size=4", "trainer.eval_batch_size=4",
        "trainer.eval_every=null", "trainer.image_every=null", "method=fixed", "model.lr_decay_at=null"]
SRRESNET = [*TINY, "model.adversarial=false"]  # the pre-training's model: content only, no D


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one intra-op thread


@pytest.fixture
def srresnet_run(run_train):
    """A finished 3-step SRResNet run (content only): its run dir."""
    summary, out = run_train([*SRRESNET, "trainer.max_steps=3"], name="srresnet")
    assert summary["final_weights"] == {"content": 1.0}
    return out


def _built_runner(monkeypatch, overrides, out):
    """train() up to the first training step: the Runner it built (fit() is not run)."""
    seen = {}

    def fit(self):
        seen["runner"] = self
        return {}

    monkeypatch.setattr(Runner, "fit", fit)
    train(compose_cfg(["trainer.progress=false", "device=cpu", *overrides]), out=out)
    monkeypatch.undo()
    return seen["runner"]


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _nothing_written(out):
    return not out.exists() or not any(p.name in ("run.yaml", "checkpoints", "summary.json", "metrics.jsonl")
                                       for p in out.iterdir())


# ----------------------------------------------------------------------------- what is loaded
@pytest.mark.parametrize("source", ["srresnet", "srgan_checkpoint_file"])
def test_init_from_loads_exactly_the_generator_and_leaves_the_rest_fresh(srresnet_run, run_train, tmp_path,
                                                                         monkeypatch, source):
    if source == "srresnet":  # a run dir: its checkpoints/last.pt, generator.* only
        path = srresnet_run
        ckpt_file = srresnet_run / "checkpoints" / "last.pt"
    else:  # an SRGAN checkpoint file, whose trained discriminator must NOT be loaded
        _, other = run_train([*TINY, "trainer.max_steps=3", "seed=5"], name="srgan_src")
        path = ckpt_file = other / "checkpoints" / "last.pt"
    src = torch.load(ckpt_file, map_location="cpu", weights_only=True)["model"]
    has_d = any(k.startswith("discriminator.") for k in src)
    assert has_d == (source != "srresnet")
    fresh = _built_runner(monkeypatch, TINY, tmp_path / "fresh")
    runner = _built_runner(monkeypatch, [*TINY, f"model.init_from='{path}'"], tmp_path / "init")

    g = _state(runner.model.generator)
    assert set(g) == {k.removeprefix("generator.") for k in src if k.startswith("generator.")}
    for k, v in g.items():  # weights and BN buffers, exactly
        assert torch.equal(v, src[f"generator.{k}"]), k
    assert any(not torch.equal(v, fresh.model.generator.state_dict()[k]) for k, v in g.items())
    # the discriminator is the fresh initialisation of the same seed, untouched
    d, d0 = _state(runner.model.discriminator), _state(fresh.model.discriminator)
    assert set(d) == set(d0) and all(torch.equal(d[k], d0[k]) for k in d)
    if has_d:  # (the source's D was trained, so loading it would have shown)
        assert any(not torch.equal(d[k], src[f"discriminator.{k}"]) for k in d)
    # method, optimisers and step counter start fresh
    assert runner.pos.step == 0 and runner.method.optimizer.state_dict()["state"] == {}
    assert runner.model.aux_optimizers()["D"].state_dict()["state"] == {}
    assert runner.init_from["checkpoint"] == str(ckpt_file) and runner.init_from["path"] == str(path)
    assert runner.init_from["step"] == 3 and runner.init_from["modules"] == ["generator"]
    assert fresh.init_from is None


def test_srgan_run_from_srresnet_records_it_and_resume_keeps_its_own_checkpoint(srresnet_run, run_train,
                                                                                  tmp_path, monkeypatch):
    init = [*TINY, f"model.init_from='{srresnet_run}'"]
    summary, out = run_train([*init, "trainer.max_steps=2"], name="srgan")
    assert summary["steps"] == 2  # the step counter started at 0, not at the SRResNet's 3
    assert summary["init_from"]["path"] == str(srresnet_run) and summary["init_from"]["step"] == 3
    assert set(summary["final_weights"]) == {"content", "adversarial"}
    assert "init_from: " + str(srresnet_run) in (out / "run.yaml").read_text()
    ckpt = load_ckpt(out)
    assert ckpt["init_from"]["path"] == str(srresnet_run) and set(ckpt["aux_optimizers"]) == {"D"}
    trained = {k: v.clone() for k, v in ckpt["model"].items()}

    # resume: the run's own checkpoint wins; init_from is not re-applied (its source may even be gone)
    shutil.rmtree(srresnet_run)
    from mtbench.models.base import Model

    def refuse(self, init_from):
        raise AssertionError("init_from re-applied on resume")

    monkeypatch.setattr(Model, "load_generator", refuse)
    loaded = {}
    original_load = Runner.load

    def load(self, path):
        state = original_load(self, path)
        loaded.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return state

    monkeypatch.setattr(Runner, "load", load)
    resumed = train(compose_cfg(["trainer.progress=false", "trainer.log_every=2", "device=cpu", *init,
                                 "trainer.max_steps=3", "resume=true"]), out=out)
    assert set(loaded) == set(trained) and all(torch.equal(loaded[k], trained[k]) for k in trained)
    assert resumed["steps"] == 3 and resumed["init_from"]["path"] == str(srresnet_run)


# ----------------------------------------------------------------------------- clear errors, nothing written
@pytest.mark.parametrize("change, expect", [
    ("model.n_blocks=3", r"\d+ missing \(generator\.body\.2\.body\."),            # more blocks than the source
    ("model.n_features=12", r"shape \(generator\.head\.0\.weight \(8, 3, 9, 9\) vs \(12, 3, 9, 9\) here"),
])
def test_generator_mismatch_is_one_clear_error_and_writes_nothing(srresnet_run, tmp_path, change, expect):
    out = tmp_path / "target"
    cfg = compose_cfg(["trainer.progress=false", "device=cpu", *TINY, change,
                       f"model.init_from='{srresnet_run}'", "trainer.max_steps=2"])
    with pytest.raises(ConfigError, match=expect) as info:
        train(cfg, out=out)
    msg = str(info.value)
    assert "\n" not in msg and str(srresnet_run / "checkpoints" / "last.pt") in msg and "does not match" in msg
    assert _nothing_written(out)


def test_missing_empty_and_unreadable_sources_fail_clearly(tmp_path):
    (tmp_path / "empty_run").mkdir()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    not_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_state)
    cases = [(tmp_path / "nope", "no such run directory or checkpoint file"),
             (tmp_path / "empty_run", r"the run directory has no checkpoints/last\.pt"),
             (garbage, "cannot read checkpoint " + str(garbage)),
             (not_state, "holds no model state_dict")]
    for i, (source, expect) in enumerate(cases):
        out = tmp_path / f"target{i}"
        cfg = compose_cfg(["trainer.progress=false", "device=cpu", *TINY, f"model.init_from='{source}'",
                           "trainer.max_steps=1"])
        with pytest.raises(ConfigError, match=expect) as info:
            train(cfg, out=out)
        assert "\n" not in str(info.value) and str(source) in str(info.value)
        assert _nothing_written(out)


def test_models_without_a_generator_refuse_init_from(srresnet_run, tmp_path):
    cfg = compose_cfg(["trainer.progress=false", "device=cpu", "model=mnist", "data.train_per_class=2",
                       f"model.init_from='{srresnet_run}'", "trainer.max_steps=1"])
    with pytest.raises(ConfigError, match="MNISTModel declares no generator"):
        train(cfg, out=tmp_path / "mnist")


def test_cli_missing_source_is_one_line_nonzero_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "mtbench.cli", "train", *TINY, "device=cpu", "trainer.progress=false",
            f"model.init_from={tmp_path / 'no_such_run'}", f"hydra.run.dir={run_dir}"]
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "model.init_from=" in lines[0] and "no_such_run" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and _nothing_written(run_dir)


# ----------------------------------------------------------------------------- the content-only model
def test_content_only_model_has_one_term_no_discriminator_and_never_steps_d(run_train, monkeypatch):
    from mtbench.nets import SRGANDiscriminator

    def forbidden(self, x):
        raise AssertionError("the discriminator ran in a content-only run")

    monkeypatch.setattr(SRGANDiscriminator, "forward", forbidden)
    summary, out = run_train([*SRRESNET, "trainer.max_steps=2", "model.lr_decay_at=0.5"])
    assert summary["final_weights"] == {"content": 1.0}
    ckpt = load_ckpt(out)
    assert ckpt["aux_optimizers"] == {} and len(ckpt["schedulers"]) == 1  # G's lr decay only, no D optimiser
    assert all(k.startswith("generator.") for k in ckpt["model"])
    logged = [line for line in (out / "metrics.jsonl").read_text().splitlines() if "loss/" in line]
    assert logged and all("loss/D" not in line and "loss/adversarial" not in line for line in logged)


@pytest.mark.parametrize("model,gens,extra", [
    ("pix2pix", ("G",), []),
    ("cyclegan", ("G_A", "G_B"), ["model.n_blocks=1"]),
])
def test_image_translation_gans_start_their_generators_from_a_run(tmp_path, model, gens, extra):
    common = ["trainer.progress=false", "device=cpu", f"model={model}", "data.image_size=32", "data.n_train=4",
              "data.n_val=2", "data.n_test=2", "model.ngf=4", "model.ndf=4", "trainer.batch_size=2",
              "trainer.eval_batch_size=2", "trainer.image_every=null", "eval.fid=false", "trainer.max_steps=2",
              *extra]
    train(compose_cfg(common), out=tmp_path / "src")
    src = torch.load(tmp_path / "src" / "checkpoints" / "last.pt", weights_only=True)["model"]
    seen = {}
    original = Runner.fit

    def fit(self):  # the model as the loop starts: generators loaded, the rest fresh
        seen.update({k: v.clone() for k, v in self.model.state_dict().items() if torch.is_tensor(v)})
        return original(self)

    import unittest.mock as mock

    with mock.patch.object(Runner, "fit", fit):
        train(compose_cfg([*common, "seed=1", f"model.init_from='{tmp_path / 'src'}'"]), out=tmp_path / "dst")
    src = {k: v for k, v in src.items() if torch.is_tensor(v)}
    g_keys = [k for k in src if k.split(".")[0] in gens]
    other = [k for k in src if k.split(".")[0] not in gens and src[k].is_floating_point() and src[k].numel() > 1]
    assert g_keys and all(torch.equal(seen[k], src[k]) for k in g_keys)
    assert other and not all(torch.equal(seen[k], src[k]) for k in other)  # discriminators start fresh
