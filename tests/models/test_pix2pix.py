"""pix2pix (mtbench.models.pix2pix): every method through the runner, the G/D steps, LR decay, resume, shapes."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_from_config
from mtbench.models.pix2pix import Pix2PixModel, linear_decay

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


