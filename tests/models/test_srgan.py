"""The SRGAN model (mtbench.models.srgan) through the real runner and by hand: CPU, offline, tiny nets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import compose_cfg, load_ckpt
from mtbench.cli import explain
from mtbench.models.srgan import SRGANModel
from mtbench.nets import MissingWeightsError


NETS = ["model.n_blocks=2", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16"]
# crop 32 (LR 8x8), a handful of crops, batch 4
TINY = ["model=srgan", *NETS, "model.perceptual=false", "data.crop_size=32", "data.n_train=8",
        "data.n_val=2", "data.n_test=4", "trainer.batch_size=4", "trainer.eval_batch_size=4",
        "trainer.eval_every=null", "trainer.image_every=null"]
LOGGED = ["D", "D_real", "D_fake"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one intra-op thread


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


# ----------------------------------------------------------------------------- the perceptual term
def test_perceptual_with_given_vgg_weights_trains_and_stays_out_of_the_checkpoint(run_train, vgg_file):
    summary, out = run_train([*TINY, "model.perceptual=true", f"model.vgg_weights='{vgg_file}'",
                              "method=fixed", "trainer.max_steps=2", "model.lr_decay_at=null"])
    assert math.isfinite(summary["metrics"]["psnr"])
    assert set(summary["final_weights"]) == {"content", "perceptual", "adversarial"}
    assert summary["final_weights"]["perceptual"] == pytest.approx(0.006)
    recs = [r for r in _records(out) if "loss/perceptual" in r]
    assert [r["step"] for r in recs] == [1, 2]  # the first step and the last
    assert all(r["loss/perceptual"] > 0 and math.isfinite(r["loss/perceptual"]) for r in recs)
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


def test_missing_vgg_weights_fail_before_training(run_train, tmp_path, offline_vgg):
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
        def step(self, terms, recompute=None):
            seen.append(sorted(terms))

    logs = model.training_step({"lr": torch.rand(2, 3, 8, 8) * 2 - 1, "hr": torch.rand(2, 3, 32, 32) * 2 - 1},
                               Spy())
    assert seen == [["content"]] and set(logs) == {"content"}


# ----------------------------------------------------------------------------- resume
