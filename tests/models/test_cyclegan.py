"""CycleGAN (mtbench.models.cyclegan): every method through the runner, G/D steps, pools, LR decay, resume, shapes."""

from __future__ import annotations


import pytest
import torch
from hydra.utils import instantiate

from conftest import build_from_config, compose_cfg, load_ckpt
from mtbench.models.cyclegan import CycleGANModel, is_paired

# 32x32 images, 8 filters, 2 residual blocks, 8 train items of batch 2 (4 steps per epoch)
SMALL = ["model=cyclegan", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
         "model.ngf=8", "model.ndf=8", "model.n_blocks=2", "trainer.batch_size=2", "trainer.eval_batch_size=4",
         "trainer.image_every=null", "eval.fid=false"]  # FID: see test_fid_in_a_run
TERMS = ["G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"]
LOGGED = [*TERMS, "D_A", "D_B"]


def build(method: str = "fixed", *overrides: str):
    """(model, method, data) built from the real configs, as the runner does (CPU)."""
    return build_from_config([*SMALL, f"method={method}", *overrides])


def first_batch(data, n: int = 2) -> dict[str, torch.Tensor]:
    return next(iter(torch.utils.data.DataLoader(data.train, batch_size=n)))


def test_zero_identity_weight_still_computes_the_term():
    model, meth, data = build("fixed", "method.weights={idt_A: 0.0, idt_B: 0.0}")
    assert meth.fixed["idt_A"] == 0.0 and model.default_weights["idt_A"] == 5.0
    logs = model.training_step(first_batch(data), meth)
    assert logs["idt_A"].item() > 0 and logs["idt_B"].item() > 0


def test_image_pool_state_survives_a_checkpoint(run_train):
    # pool_size 3 < 6 generated images per domain: the pools are full and have swapped images
    _, out = run_train([*SMALL, "method=fixed", "trainer.max_steps=3", "model.pool_size=3"])
    state = load_ckpt(out)["model"]  # weights_only=True
    extra = state["_extra_state"]
    for name in ("fake_A_pool", "fake_B_pool"):
        assert extra[name]["pool_size"] == 3 and extra[name]["images"].shape == (3, 3, 32, 32)
    cfg = compose_cfg([*SMALL, "model.pool_size=3"])
    fresh = instantiate(cfg.model, _convert_="object")
    assert len(fresh.fake_A_pool) == 0
    fresh.load_state_dict(state)
    for name in ("fake_A_pool", "fake_B_pool"):
        pool = getattr(fresh, name)
        assert len(pool) == 3
        assert torch.equal(torch.stack(pool.images), extra[name]["images"])
    assert torch.equal(fresh.get_extra_state()["fake_B_pool"]["images"], extra["fake_B_pool"]["images"])


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_lr_decay_schedule_for_generators_and_discriminators():
    model, meth, _ = build("fixed", "model.lr_decay.start=0.25")
    total = 8  # start = 2: factors 1, 1, 6/7, 5/7, ..., 1/7, then 0
    scheds = model.lr_schedulers(meth, total)
    opts = [meth.optimizer, model.opt_D]
    assert {id(p) for g in model.opt_D.param_groups for p in g["params"]} == \
        {id(p) for p in [*model.D_A.parameters(), *model.D_B.parameters()]}
    lrs = []
    for _ in range(total):
        lrs.append([o.param_groups[0]["lr"] for o in opts])
        for s in scheds:
            s.step()
    expected = [2e-4 * f for f in [1, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7]]
    for step, (g, d) in enumerate(lrs):
        assert g == pytest.approx(expected[step]) and d == pytest.approx(expected[step]), step
    assert [o.param_groups[0]["lr"] for o in opts] == [0.0, 0.0]
    off, meth_off, _ = build("fixed", "model.lr_decay.enabled=false")
    assert off.lr_schedulers(meth_off, total) == []


@pytest.mark.parametrize("size,blocks", [(32, 6), (64, 6), (256, 9)])
def test_network_shapes_follow_the_image_size(size, blocks):
    torch.manual_seed(0)
    model = CycleGANModel(image_size=size, ngf=2, ndf=2)
    assert model.n_blocks == blocks and model.hparams()["n_blocks"] == blocks
    model.eval()
    x = torch.rand(1, 3, size, size) * 2 - 1
    out = model.translate(x, x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, 3, size, size) for k in
                                                          ("fake_B", "rec_A", "fake_A", "rec_B")}
    with torch.no_grad():
        assert model.D_A(out["fake_B"]).shape == (1, 1, size // 8 - 2, size // 8 - 2)
    images = model.sample_images({"A": x, "B": x})
    assert set(images) == {"real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B"}
    assert all(img.min() >= 0 and img.max() <= 1 for img in images.values())
    assert CycleGANModel(image_size=size, ngf=2, ndf=2, n_blocks=1).n_blocks == 1


def test_paired_eval_auto_and_explicit():
    model, _, data = build("fixed")
    assert is_paired(data.test) and is_paired(data.val) and not is_paired(data.train)
    model.eval()
    loader = torch.utils.data.DataLoader(data.test, batch_size=4)
    assert {"l1", "psnr", "ssim"} <= set(model.evaluate(loader))
    model.paired_eval = False
    assert set(model.evaluate(loader)) == {"cycle_A_l1", "cycle_B_l1", "cycle_l1"}
    with pytest.raises(ValueError, match="paired_eval"):
        CycleGANModel(image_size=32, ngf=2, ndf=2, paired_eval="yes")


def test_metric_selects_the_primary_metric_and_needs_pairs():
    model, _, data = build("fixed")
    assert (model.primary_metric, model.higher_is_better) == ("cycle_l1", False)
    psnr = CycleGANModel(image_size=32, ngf=2, ndf=2, n_blocks=1, metric="psnr")
    assert (psnr.primary_metric, psnr.higher_is_better) == ("psnr", True)
    assert CycleGANModel(image_size=32, ngf=2, ndf=2, n_blocks=1, metric="l1").higher_is_better is False
    psnr.eval()
    assert "psnr" in psnr.evaluate(torch.utils.data.DataLoader(data.test, batch_size=4))
    with pytest.raises(ValueError, match="not known to hold aligned pairs"):
        psnr.evaluate(torch.utils.data.DataLoader(data.train, batch_size=4))
    with pytest.raises(ValueError, match="model.metric must be one of"):
        CycleGANModel(image_size=32, ngf=2, ndf=2, metric="fid")
    with pytest.raises(ValueError, match="paired_eval is false"):
        CycleGANModel(image_size=32, ngf=2, ndf=2, metric="ssim", paired_eval=False)
