"""pix2pix (mtbench.models.pix2pix): every method through the runner, the G/D steps, LR decay, resume, shapes."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch

from conftest import build_from_config, train_with_signal_at, compose_cfg, load_ckpt
from mtbench.models.pix2pix import Pix2PixModel, linear_decay
from mtbench.train import train

METHODS = ["fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam"]
# 32x32 images, 8 filters, 8 train pairs of batch 2 (4 steps per epoch)
SMALL = ["model=pix2pix", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
         "model.ngf=8", "model.ndf=8", "trainer.batch_size=2", "trainer.eval_batch_size=4",
         "trainer.image_every=null", "eval.fid=false"]  # FID: see test_fid_in_a_run
TERMS = ["G_GAN", "G_L1"]
LOGGED = [*TERMS, "D", "D_real", "D_fake"]




def build(method: str = "fixed", *overrides: str):
    """(model, method, data) built from the real configs, as the runner does (CPU)."""
    return build_from_config([*SMALL, f"method={method}", *overrides])


def first_batch(data, n: int = 2) -> dict[str, torch.Tensor]:
    return next(iter(torch.utils.data.DataLoader(data.train, batch_size=n)))


@pytest.mark.parametrize("method", [m for m in METHODS])
def test_every_method_trains_through_the_runner(run_train, method):
    extra = ["method.update_every=1"] if method.startswith("softadapt") else []
    if method == "fixed":
        extra.append("trainer.image_every=1")  # sample_images through the runner's TensorBoard logging
    summary, out = run_train([*SMALL, f"method={method}", "trainer.max_steps=2", *extra])
    assert summary["model"] == "pix2pix" and summary["steps"] == 2
    assert summary["primary_metric"] == "psnr" and summary["higher_is_better"] is True
    m = summary["metrics"]
    assert {"l1", "psnr", "ssim"} <= set(m)
    assert all(math.isfinite(v) for v in m.values())
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in lines if "loss/G_GAN" in r]
    assert logged and [r["step"] for r in logged] == [2]
    for name in LOGGED:
        assert f"loss/{name}" in logged[-1] and math.isfinite(logged[-1][f"loss/{name}"])
    for name in TERMS:
        assert f"weight/{name}" in logged[-1]
    if method == "fixed":
        assert logged[-1]["weight/G_GAN"] == 1.0 and logged[-1]["weight/G_L1"] == 100.0
    assert any("eval/psnr" in r for r in lines)
    ckpt = load_ckpt(out)
    assert ckpt["finished"] and set(ckpt["aux_optimizers"]) == {"D"} and len(ckpt["schedulers"]) == 2


@pytest.mark.parametrize("method", ["fixed", "mtadam"])
def test_generator_step_leaves_discriminator_grads_untouched(method):
    model, meth, data = build(method)
    batch = first_batch(data)
    d_params = list(model.D.parameters())
    g_before = [p.detach().clone() for p in model.G.parameters()]
    d_before = [p.detach().clone() for p in d_params]
    seen = {}

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def step(self, losses):
            seen["terms"] = sorted(losses)
            seen["d_frozen"] = all(not p.requires_grad for p in d_params)
            seen["d_step_grads"] = all(p.grad is not None for p in d_params)  # the D step ran first
            sentinels = [torch.full_like(p, 7.0) for p in d_params]
            for p, s in zip(d_params, sentinels):
                p.grad = s
            d_mid = [p.detach().clone() for p in d_params]
            self.inner.step(losses)
            seen["untouched"] = all(p.grad is s and bool((s == 7.0).all()) for p, s in zip(d_params, sentinels))
            seen["d_unchanged_by_g"] = all(torch.equal(p, q) for p, q in zip(d_params, d_mid))

    logs = model.training_step(batch, Spy(meth))
    assert seen == {"terms": TERMS, "d_frozen": True, "d_step_grads": True, "untouched": True,
                    "d_unchanged_by_g": True}
    assert all(p.requires_grad for p in d_params)  # D trainable again after the step
    assert any(not torch.equal(p, q) for p, q in zip(d_params, d_before))  # the D step moved D
    assert any(not torch.equal(p, q) for p, q in zip(model.G.parameters(), g_before))  # the method moved G
    assert set(logs) == set(LOGGED)
    for v in logs.values():
        assert v.dim() == 0 and not v.requires_grad and v.device == model.device


def test_terms_are_unweighted_and_defaults_are_the_papers():
    model, meth, data = build("fixed")
    assert model.default_weights == {"G_GAN": 1.0, "G_L1": 100.0}
    assert meth.fixed == {"G_GAN": 1.0, "G_L1": 100.0}
    batch = first_batch(data)
    torch.manual_seed(1)
    g_state = {k: v.clone() for k, v in model.G.state_dict().items()}
    logs = model.training_step(batch, meth)
    # G_L1 is the plain mean |G(A) - B| of the step's forward pass (G in train mode, same dropout draw)
    model.G.load_state_dict(g_state)
    torch.manual_seed(1)
    with torch.no_grad():
        fake = model.G(batch["A"])
    assert logs["G_L1"].item() == pytest.approx((fake - batch["B"]).abs().mean().item(), rel=1e-5)
    assert 0.0 < logs["G_L1"].item() <= 2.0
    assert logs["D"].item() == pytest.approx(0.5 * (logs["D_real"].item() + logs["D_fake"].item()), rel=1e-6)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_lr_decay_schedule_for_generator_and_discriminator():
    model, meth, _ = build("fixed")
    total = 10  # start = 5: constant for 5 steps, then 5/6, 4/6, ..., 1/6, and 0 after the last step
    scheds = model.lr_schedulers(meth, total)
    assert len(scheds) == 2
    opts = [meth.optimizer, model.opt_D]
    lrs = []
    for _ in range(total):
        lrs.append([o.param_groups[0]["lr"] for o in opts])
        for s in scheds:
            s.step()
    expected = [2e-4 * f for f in [1, 1, 1, 1, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]]
    for step, (g, d) in enumerate(lrs):
        assert g == pytest.approx(expected[step]) and d == pytest.approx(expected[step]), step
    assert lrs[0] == [2e-4, 2e-4] and lrs[total // 2 - 1] == [2e-4, 2e-4]  # step 0 and the middle
    assert [o.param_groups[0]["lr"] for o in opts] == [0.0, 0.0]  # the end
    # the reference's linear policy per epoch (100 constant + 100 decaying): 1 - max(0, e + 1 - 100) / 101
    f = linear_decay(200, 0.5)
    assert [f(e) for e in (0, 99, 100, 199)] == pytest.approx([1.0, 1.0, 1 - 1 / 101, 1 / 101])
    off, meth_off, _ = build("fixed", "model.lr_decay.enabled=false")
    assert off.lr_schedulers(meth_off, total) == []


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_lr_decay_schedule_with_mtadam():
    model, meth, _ = build("mtadam", "model.lr_decay.start=0.0")
    scheds = model.lr_schedulers(meth, 4)
    for s in scheds:
        s.step()
    assert meth.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 3 / 5)
    assert model.opt_D.param_groups[0]["lr"] == pytest.approx(2e-4 * 3 / 5)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_network_shapes_follow_the_image_size(size):
    torch.manual_seed(0)
    model = Pix2PixModel(image_size=size, ngf=4, ndf=4)
    assert model.num_downs == int(math.log2(size))
    model.eval()
    x = torch.rand(2, 3, size, size) * 2 - 1
    fake = model.translate(x)
    assert fake.shape == (2, 3, size, size) and fake.abs().max() <= 1
    with torch.no_grad():
        patches = model.D(torch.cat([x, fake], 1))
    assert patches.shape == (2, 1, size // 8 - 2, size // 8 - 2)  # 70x70 PatchGAN: 256 -> 30x30
    images = model.sample_images({"A": x, "B": x})
    assert set(images) == {"input", "fake", "target"}
    for img in images.values():
        assert img.shape == (2, 3, size, size) and img.min() >= 0 and img.max() <= 1


def test_bad_sizes_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="model.image_size"):
        Pix2PixModel(image_size=48, ngf=4, ndf=4)
    with pytest.raises(ValueError, match="gan_mode"):
        Pix2PixModel(image_size=32, ngf=4, ndf=4, gan_mode="wgan")
    with pytest.raises(ValueError, match="lr_decay.start"):
        Pix2PixModel(image_size=32, ngf=4, ndf=4, lr_decay={"start": 2})
    model = Pix2PixModel(image_size=64, ngf=4, ndf=4)
    with pytest.raises(ValueError, match="divisible by 64"):
        model.translate(torch.zeros(1, 3, 32, 32))


def test_lsgan_and_instance_norm_variant_trains():
    model, meth, data = build("fixed", "model.gan_mode=lsgan", "model.norm=instance", "model.use_dropout=false")
    logs = model.training_step(first_batch(data), meth)
    assert all(torch.isfinite(v) for v in logs.values())
    assert model.hparams()["gan_mode"] == "lsgan"


def test_bf16_autocast_and_channels_last_step():
    model, meth, data = build("fixed")
    model.configure_runtime(torch.device("cpu"), torch.bfloat16, channels_last=True)
    batch = first_batch(data)
    logs = model.training_step(batch, meth)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in logs.values())
    model.eval()
    metrics = model.evaluate(torch.utils.data.DataLoader(data.test, batch_size=4))
    assert all(math.isfinite(v) for v in metrics.values())
    assert all(img.dtype == torch.float32 for img in model.sample_images(batch).values())


def test_eval_mode_train_is_the_reference_test_behaviour_without_side_effects():
    model, meth, data = build("fixed", "model.eval_mode=train")
    model.training_step(first_batch(data), meth)
    model.eval()  # as the runner does
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    loader = torch.utils.data.DataLoader(data.test, batch_size=2)
    first, second = model.evaluate(loader), model.evaluate(loader)
    assert first == second  # dropout masks from a fixed seed
    assert torch.equal(torch.get_rng_state(), rng)  # the training RNG stream is not consumed
    for k, v in model.state_dict().items():  # running statistics and counters untouched
        assert torch.equal(v, state[k]), k
    assert not model.G.training and model.G.model.submodule.down[1].running_mean is not None
    model.eval_mode = "eval"
    assert model.evaluate(loader) != first


def test_fid_in_a_run_becomes_the_primary_metric(run_train, tmp_path):
    from mtbench.metrics.fid_testing import random_fid_inception_state_dict

    weights = tmp_path / "pt_inception-test-random.pth"  # random weights: exercises the code path, not FID
    torch.save(random_fid_inception_state_dict(seed=0), weights)
    summary, _ = run_train([*SMALL, "method=fixed", "trainer.max_steps=1", "data.n_test=2", "eval.fid=true",
                            f"eval.fid_weights={weights}", f"eval.fid_cache={tmp_path / 'fid_cache'}"])
    assert summary["primary_metric"] == "fid" and summary["higher_is_better"] is False
    m = summary["metrics"]
    assert {"fid", "kid"} <= set(m) and math.isfinite(m["fid"])




def test_resume_after_sigterm_ends_with_identical_parameters(tmp_path):
    # 8 pairs / batch 2 = 4 steps per epoch; the stop at step 5 is after an epoch boundary, mid-epoch;
    # the LR decay (start at step 3) runs across the stop; dropout and BatchNorm use the restored state
    common = [*SMALL, "method=fixed", "trainer.max_steps=6", "trainer.progress=false", "trainer.log_every=2",
              "trainer.checkpoint_every=null", "device=cpu", "seed=3"]
    full = train(compose_cfg(common), out=tmp_path / "full")
    stop = train_with_signal_at(Pix2PixModel, compose_cfg(common), tmp_path / "part", stop_step=5)
    assert stop.signum == signal.SIGTERM and stop.step == 5
    mid = load_ckpt(tmp_path / "part")
    assert mid["step"] == 5 and mid["epoch"] == 1 and mid["batch_in_epoch"] == 1 and not mid["finished"]
    resumed = train(compose_cfg([*common, "resume=true"]), out=tmp_path / "part")
    a, b = load_ckpt(tmp_path / "full"), load_ckpt(tmp_path / "part")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["schedulers"] == b["schedulers"]
    assert resumed["metrics"] == full["metrics"] and resumed["steps"] == 6


def test_presets_compose():
    quick = compose_cfg(["experiment=pix2pix_quick"])
    assert quick.hydra.runtime.choices.model == "pix2pix"
    assert quick.hydra.runtime.choices.data == "pix2pix_embedded"
    assert quick.model.image_size == quick.data.image_size <= 64
    assert quick.model.ngf <= 32 and quick.trainer.max_steps <= 1000 and quick.trainer.batch_size >= 1
    paper = compose_cfg(["experiment=pix2pix_paper"])
    assert paper.hydra.runtime.choices.data == "facades" and paper.data.direction == "BtoA"
    assert paper.model.image_size == 256 and paper.model.ngf == 64 and paper.model.ndf == 64
    assert paper.model.gan_mode == "vanilla" and paper.model.norm == "batch" and paper.model.use_dropout
    assert paper.trainer.batch_size == 1 and paper.trainer.epochs == 200 and paper.trainer.max_steps is None
    assert dict(paper.model.weights) == {"G_GAN": 1.0, "G_L1": 100.0}
    assert list(paper.method.optimizer.betas) == [0.5, 0.999] and paper.method.optimizer.lr == 2e-4
    # the model's defaults pick the data and trainer; the user's choice still wins
    plain = compose_cfg(["model=pix2pix"])
    assert plain.hydra.runtime.choices.data == "pix2pix_embedded" and plain.trainer.batch_size == 1
    assert compose_cfg(["model=pix2pix", "data=facades"]).model.image_size == 256
    for method in METHODS:
        compose_cfg(["model=pix2pix", "experiment=pix2pix_quick", f"method={method}"])
