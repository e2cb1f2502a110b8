"""The SRGAN model (mtbench.models.srgan) through the real runner and by hand: CPU, offline, tiny nets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image
from torch import nn

from conftest import compose_cfg, load_ckpt
from mtbench.cli import explain
from mtbench.experiment import build_method
from mtbench.models.srgan import SRGANModel
from mtbench.nets import MissingWeightsError
from mtbench.nets import vgg as vgg_module

METHODS = ["fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam"]

NETS = ["model.n_blocks=2", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16"]
# crop 32 (LR 8x8), a handful of crops, batch 4
TINY = ["model=srgan", *NETS, "model.perceptual=false", "data.crop_size=32", "data.n_train=8",
        "data.n_val=2", "data.n_test=4", "trainer.batch_size=4", "trainer.eval_batch_size=4",
        "trainer.eval_every=null", "trainer.image_every=null"]
LOGGED = ["D", "D_real", "D_fake"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these nets are tiny, and 2 threads on 2 shared cores only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)




def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _tiny_model(**kw) -> SRGANModel:
    args = dict(n_blocks=2, n_features=8, ndf=8, d_fc_features=16, perceptual=False)
    return SRGANModel(**{**args, **kw})


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random VGG19 ``features.*`` weights (no download; built without the 400 MB classifier)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    for m in features.modules():
        if isinstance(m, nn.Conv2d):  # torchvision's VGG init: keeps deep activations alive
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


# ----------------------------------------------------------------------------- the runner, every method
@pytest.mark.parametrize("method", [m for m in METHODS])
def test_every_method_trains_logs_and_evaluates(run_train, method):
    extra = ["method.update_every=1"] if method.startswith("softadapt") else []
    images = ["trainer.image_every=2"] if method == "fixed" else []  # sample_images through TensorBoard once
    summary, out = run_train([*TINY, f"method={method}", "trainer.max_steps=3", *images, *extra])
    assert summary["steps"] == 3 and summary["model"] == "srgan" and summary["method"] == method
    assert summary["primary_metric"] == "psnr" and summary["higher_is_better"] is True
    m = summary["metrics"]
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"} <= set(m)
    assert all(math.isfinite(v) for v in m.values())
    assert 0 < m["bicubic_psnr"] < 100 and -1 <= m["ssim"] <= 1
    terms = ["content", "adversarial"]  # perceptual=false removes the VGG term
    assert set(summary["final_weights"]) == set(terms)
    logged = [r for r in _records(out) if "loss/content" in r]
    assert [r["step"] for r in logged] == [2, 3]
    for r in logged:
        for name in terms:
            assert math.isfinite(r[f"loss/{name}"]) and math.isfinite(r[f"weight/{name}"])
        for name in LOGGED:
            assert math.isfinite(r[f"loss/{name}"])
        assert "loss/perceptual" not in r
    ckpt = load_ckpt(out)  # weights_only=True
    assert ckpt["finished"] and set(ckpt["aux_optimizers"]) == {"D"}
    assert all(k.startswith(("generator.", "discriminator.")) for k in ckpt["model"])
    # lr_decay_at 0.5 of 3 steps: G's and D's lr were decayed x0.1 at step 2
    assert len(ckpt["schedulers"]) == 2
    assert ckpt["aux_optimizers"]["D"]["param_groups"][0]["lr"] == pytest.approx(1e-5)


# ----------------------------------------------------------------------------- the perceptual term
def test_perceptual_with_given_vgg_weights_trains_and_stays_out_of_the_checkpoint(run_train, vgg_file):
    summary, out = run_train([*TINY, "model.perceptual=true", f"model.vgg_weights='{vgg_file}'",
                              "method=fixed", "trainer.max_steps=2", "model.lr_decay_at=null"])
    assert math.isfinite(summary["metrics"]["psnr"])
    assert set(summary["final_weights"]) == {"content", "perceptual", "adversarial"}
    assert summary["final_weights"]["perceptual"] == pytest.approx(0.006)
    [rec] = [r for r in _records(out) if "loss/perceptual" in r]
    assert rec["loss/perceptual"] > 0 and math.isfinite(rec["loss/perceptual"])
    ckpt = load_ckpt(out)
    assert ckpt["schedulers"] == []
    keys = list(ckpt["model"])
    assert keys and all(k.startswith(("generator.", "discriminator.")) for k in keys), \
        [k for k in keys if not k.startswith(("generator.", "discriminator."))]
    assert not any("vgg" in k or k.startswith("_") for k in keys)


def test_vgg_is_outside_state_dict_but_follows_the_model(vgg_file):
    model = _tiny_model(perceptual=True, vgg_weights=str(vgg_file))
    assert model.term_names == ["content", "perceptual", "adversarial"]
    assert model.vgg is not None and model.vgg.layer == "conv5_4"
    vgg_params = {id(p) for p in model.vgg.parameters()}
    assert not vgg_params & {id(p) for p in model.parameters()}
    assert not any(k.startswith("_vgg") or "features." in k and not k.startswith("discriminator.")
                   for k in model.state_dict())
    model.configure_runtime(torch.device("cpu"), channels_last=True)
    w = model.vgg.features[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.requires_grad
    model.to(torch.float64)
    assert model.vgg.features[0].weight.dtype == torch.float64
    # the perceptual term's gradient reaches SR, never the frozen VGG
    model.to(torch.float32)
    sr = torch.zeros(1, 3, 32, 32, requires_grad=True)
    terms = model.generator_terms(sr, torch.rand(1, 3, 32, 32) * 2 - 1)
    terms["perceptual"].backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.vgg.parameters())


def test_missing_vgg_weights_fail_before_training(run_train, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(vgg_module, "_download_vgg19_state_dict", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(Exception) as info:  # noqa: PT011 - Hydra wraps it; the cause is checked below
        run_train([*TINY, "model.perceptual=true", "trainer.max_steps=2"], name="novgg")
    err, chain = info.value, []
    while err is not None:
        chain.append(err)
        err = err.__cause__
    [missing] = [e for e in chain if isinstance(e, MissingWeightsError)]
    msg = str(missing)
    assert "vgg19-dcbb9e9d.pth" in msg and "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "model.vgg_weights=" in msg and "model.perceptual=false" in msg
    assert explain(info.value) == msg  # the CLI prints it as one line
    run_dir = tmp_path / "novgg"
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "summary.json").exists()
    assert not (run_dir / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- one training step by hand
class SpyMethod:
    """Wraps a method: records D's grads and requires_grad around the G step."""

    def __init__(self, method, model):
        self.method, self.model = method, model
        self.seen = {}

    def step(self, losses):
        d = list(self.model.discriminator.parameters())
        self.seen["requires_grad"] = [p.requires_grad for p in d]
        before = [None if p.grad is None else p.grad.clone() for p in d]
        self.method.step(losses)
        after = [None if p.grad is None else p.grad.clone() for p in d]
        self.seen["before"], self.seen["after"] = before, after


@pytest.mark.parametrize("method", ["fixed", "mtadam"])
def test_g_step_leaves_d_grads_untouched_and_d_step_updates_d(method):
    torch.manual_seed(0)
    cfg = compose_cfg([*TINY, f"method={method}"])
    model = instantiate(cfg.model, _convert_="object")
    model.configure_runtime(torch.device("cpu"))
    model.train()
    m = build_method(cfg.method, model)
    spy = SpyMethod(m, model)
    batch = {"lr": torch.rand(4, 3, 8, 8) * 2 - 1, "hr": torch.rand(4, 3, 32, 32) * 2 - 1}
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    logs = model.training_step(batch, spy)

    assert set(logs) == {"content", "adversarial", "D", "D_real", "D_fake"}
    assert all(v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert torch.allclose(logs["D"], logs["D_real"] + logs["D_fake"])  # not halved
    assert not any(spy.seen["requires_grad"])  # D frozen during the G step...
    assert all(p.requires_grad for p in model.discriminator.parameters())  # ...and unfrozen after it
    before, after = spy.seen["before"], spy.seen["after"]
    assert all(b is not None for b in before)  # the D step filled them
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    # the D step changed D, the method changed G
    assert any(not torch.equal(a, p) for a, p in zip(d0, model.discriminator.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(g0, model.generator.parameters()))
    if method == "mtadam":  # autograd.grad on G's parameters only: no .grad anywhere
        assert all(p.grad is None for p in model.generator.parameters())


def test_sr_shape_terms_and_samples():
    torch.manual_seed(0)
    model = _tiny_model(weights={"content": 1.0, "perceptual": 0.5, "adversarial": 0.01})
    assert model.term_names == ["content", "adversarial"]  # perceptual removed, its weight ignored
    assert model.default_weights == {"content": 1.0, "adversarial": 0.01}
    assert SRGANModel.term_names == ["content", "perceptual", "adversarial"]
    model.eval()
    lr = torch.rand(2, 3, 5, 7) * 2 - 1
    sr = model.super_resolve(lr)
    assert sr.shape == (2, 3, 20, 28) and sr.min() >= -1 and sr.max() <= 1
    assert model.bicubic(lr).shape == (2, 3, 20, 28)
    batch = {"lr": torch.rand(6, 3, 4, 4) * 2 - 1, "hr": torch.rand(6, 3, 16, 16) * 2 - 1}
    images = model.sample_images(batch)
    assert set(images) == {"bicubic", "sr", "hr"}
    for img in images.values():
        assert img.shape == (4, 3, 16, 16) and img.min() >= 0 and img.max() <= 1
    with pytest.raises(ValueError, match="data.scale"):
        model.training_step({"lr": batch["lr"], "hr": batch["hr"][..., :8, :8]}, None)
    with pytest.raises(ValueError, match="unknown terms"):
        SRGANModel(n_blocks=1, n_features=8, ndf=8, d_fc_features=8, perceptual=False, weights={"vgg": 1.0})


# ----------------------------------------------------------------------------- sr_folder evaluation
def _write_images(folder, sizes, seed):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        # smooth random images (bicubic then beats a barely trained SRResNet, as on real photos)
        small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(folder / f"img{i}.png")


def test_sr_folder_eval_with_odd_sizes_and_per_set_metrics(run_train, tmp_path):
    _write_images(tmp_path / "train", [(40, 36), (33, 45)], 0)
    _write_images(tmp_path / "Set5", [(37, 29), (45, 31)], 1)   # odd sizes: mod-cropped to multiples of 4
    _write_images(tmp_path / "Set14", [(26, 34)], 2)
    summary, _ = run_train(["model=srgan", *NETS, "model.perceptual=false", "data=sr_folder",
                            f"data.train_root='{tmp_path / 'train'}'",
                            f"data.eval_roots=['{tmp_path / 'Set5'}','{tmp_path / 'Set14'}']",
                            "data.crop_size=32", "data.repeats=2", "trainer.batch_size=2",
                            "method=fixed", "trainer.max_steps=2"])
    m = summary["metrics"]
    # The runner reports the eval split (val = the first set, Set5) unprefixed and every other
    # extra_eval set with its name; a "Set5/" copy of the first set is accepted but not required.
    for prefix in ("", "Set14/"):
        for key in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
            assert math.isfinite(m[f"{prefix}{key}"]), f"{prefix}{key}"
    if "Set5/psnr" in m:
        assert m["Set5/psnr"] == m["psnr"]
    assert m["Set14/psnr"] != m["psnr"]
    assert m["bicubic_psnr"] > m["psnr"]  # 2 steps from scratch do not beat bicubic


# ----------------------------------------------------------------------------- SRResNet pre-training preset
def test_srresnet_preset_trains_the_content_term_only_and_never_steps_d(run_train, tmp_path, monkeypatch):
    """experiment=srresnet_bsd68 (shrunk): fixed weights, the one content term, no discriminator at all."""
    from mtbench.nets import SRGANDiscriminator

    cfg = compose_cfg(["experiment=srresnet_bsd68"])
    assert cfg.model.adversarial is False and cfg.model.perceptual is False
    assert cfg.method._target_.endswith("fixed.Fixed") and cfg.model.init_from is None
    d_calls = {"n": 0}
    d_forward = SRGANDiscriminator.forward

    def counted(self, x):
        d_calls["n"] += 1
        return d_forward(self, x)

    monkeypatch.setattr(SRGANDiscriminator, "forward", counted)
    _write_images(tmp_path / "train", [(40, 36), (33, 45)], 0)
    _write_images(tmp_path / "val", [(37, 29)], 1)
    summary, out = run_train(["experiment=srresnet_bsd68", "model.n_blocks=1", "model.n_features=8",
                              f"data.train_root='{tmp_path / 'train'}'", f"data.eval_roots=['{tmp_path / 'val'}']",
                              "data.crop_size=32", "data.repeats=2", "trainer.batch_size=2",
                              "trainer.max_steps=3", "trainer.eval_every=null"])
    assert d_calls["n"] == 0
    assert summary["final_weights"] == {"content": 1.0} and summary["steps"] == 3
    assert summary["init_from"] is None
    assert math.isfinite(summary["metrics"]["psnr"]) and math.isfinite(summary["metrics"]["bicubic_psnr"])
    logged = [r for r in _records(out) if "loss/content" in r]
    assert logged and all(set(k for k in r if k.startswith("loss/")) == {"loss/content"} for r in logged)
    ckpt = load_ckpt(out)
    assert ckpt["aux_optimizers"] == {} and all(k.startswith("generator.") for k in ckpt["model"])
    # the same step by hand: no discriminator exists and the method sees {content} only
    model = _tiny_model(adversarial=False)
    assert model.term_names == ["content"] and model.discriminator is None and model.aux_optimizers() == {}
    seen = []

    class Spy:
        def step(self, terms):
            seen.append(sorted(terms))

    logs = model.training_step({"lr": torch.rand(2, 3, 8, 8) * 2 - 1, "hr": torch.rand(2, 3, 32, 32) * 2 - 1},
                               Spy())
    assert seen == [["content"]] and set(logs) == {"content"}


# ----------------------------------------------------------------------------- resume
def test_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    """G, D, D's Adam (an aux optimizer), both LR schedulers and the data position round-trip."""
    import os
    import signal

    from mtbench.train import RunInterrupted, train

    # 8 crops / batch 4 = 2 steps per epoch: the stop at step 3 is mid-epoch, after an epoch boundary;
    # the lr decays x0.1 from step 2 (lr_decay_at 0.5 of 4 steps)
    common = [*TINY, "method=fixed", "trainer.max_steps=4", "trainer.progress=false", "trainer.log_every=2",
              "trainer.checkpoint_every=null", "device=cpu", "seed=1"]
    train(compose_cfg(common), out=tmp_path / "full")
    original = SRGANModel.training_step
    count = {"n": 0}

    def step(self, batch, method):
        logs = original(self, batch, method)
        count["n"] += 1
        if count["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return logs

    monkeypatch.setattr(SRGANModel, "training_step", step)
    with pytest.raises(RunInterrupted):
        train(compose_cfg(common), out=tmp_path / "part")
    monkeypatch.setattr(SRGANModel, "training_step", original)
    assert load_ckpt(tmp_path / "part")["step"] == 3
    summary = train(compose_cfg([*common, "resume=true"]), out=tmp_path / "part")
    assert summary["steps"] == 4
    a, b = load_ckpt(tmp_path / "full"), load_ckpt(tmp_path / "part")
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    da, db = a["aux_optimizers"]["D"], b["aux_optimizers"]["D"]
    assert da["param_groups"][0]["lr"] == db["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert all(torch.equal(da["state"][i]["exp_avg_sq"], db["state"][i]["exp_avg_sq"]) for i in da["state"])
