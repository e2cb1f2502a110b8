"""CycleGAN (mtbench.models.cyclegan): every method through the runner, G/D steps, pools, LR decay, resume, shapes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hydra.utils import instantiate

from conftest import build_from_config, train_with_signal_at, compose_cfg, load_ckpt
from mtbench.models.cyclegan import CycleGANModel, is_paired
from mtbench.train import train

METHODS = ["fixed", "softadapt", "softadapt_normalized", "softadapt_loss_weighted", "mtadam"]
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


@pytest.mark.parametrize("method", [m for m in METHODS])
def test_every_method_trains_through_the_runner(run_train, method):
    extra = ["method.update_every=1"] if method.startswith("softadapt") else []
    if method == "fixed":
        extra.append("trainer.image_every=1")  # sample_images through the runner's TensorBoard logging
    summary, out = run_train([*SMALL, f"method={method}", "trainer.max_steps=2", *extra])
    assert summary["model"] == "cyclegan" and summary["steps"] == 2
    assert summary["primary_metric"] == "cycle_l1" and summary["higher_is_better"] is False
    m = summary["metrics"]
    # cyclegan_embedded's test pairs are aligned: paired_eval=auto adds l1/psnr/ssim of G_A(A) vs B
    assert set(m) == {"cycle_A_l1", "cycle_B_l1", "cycle_l1", "l1", "psnr", "ssim"}
    assert all(math.isfinite(v) for v in m.values())
    assert m["cycle_l1"] == pytest.approx(0.5 * (m["cycle_A_l1"] + m["cycle_B_l1"]))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in lines if "loss/G_A" in r]
    assert logged and [r["step"] for r in logged] == [2]
    for name in LOGGED:
        assert f"loss/{name}" in logged[-1] and math.isfinite(logged[-1][f"loss/{name}"])
    for name in TERMS:
        assert f"weight/{name}" in logged[-1]
    if method == "fixed":
        assert [logged[-1][f"weight/{n}"] for n in TERMS] == [1.0, 1.0, 10.0, 10.0, 5.0, 5.0]
    assert any("eval/cycle_l1" in r for r in lines)
    ckpt = load_ckpt(out)
    assert ckpt["finished"] and set(ckpt["aux_optimizers"]) == {"D"} and len(ckpt["schedulers"]) == 2


@pytest.mark.parametrize("method", ["fixed", "mtadam"])
def test_generator_step_leaves_discriminator_grads_untouched(method):
    model, meth, data = build(method)
    batch = first_batch(data)
    d_params = [*model.D_A.parameters(), *model.D_B.parameters()]
    g_params = [*model.G_A.parameters(), *model.G_B.parameters()]
    g_before = [p.detach().clone() for p in g_params]
    d_before = [p.detach().clone() for p in d_params]
    seen = {}

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def step(self, losses):
            seen["terms"] = sorted(losses)
            seen["d_frozen"] = all(not p.requires_grad for p in d_params)
            sentinels = [torch.full_like(p, 7.0) for p in d_params]
            for p, s in zip(d_params, sentinels):
                p.grad = s
            self.inner.step(losses)
            seen["untouched"] = all(p.grad is s and bool((s == 7.0).all()) for p, s in zip(d_params, sentinels))
            seen["d_unchanged_by_g"] = all(torch.equal(p, q) for p, q in zip(d_params, d_before))
            seen["g_moved"] = any(not torch.equal(p, q) for p, q in zip(g_params, g_before))

    logs = model.training_step(batch, Spy(meth))
    assert seen == {"terms": sorted(TERMS), "d_frozen": True, "untouched": True, "d_unchanged_by_g": True,
                    "g_moved": True}
    assert all(p.requires_grad for p in d_params)
    # the D step (after the G step) moved both discriminators
    n_a = len(list(model.D_A.parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(model.D_A.parameters(), d_before[:n_a]))
    assert any(not torch.equal(p, q) for p, q in zip(model.D_B.parameters(), d_before[n_a:]))
    assert set(logs) == set(LOGGED)
    for v in logs.values():
        assert v.dim() == 0 and not v.requires_grad and v.device == model.device
    assert len(model.fake_A_pool) == len(model.fake_B_pool) == 2


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


def test_fid_in_a_run_becomes_the_primary_metric(run_train, tmp_path):
    from mtbench.metrics.fid_testing import random_fid_inception_state_dict

    weights = tmp_path / "pt_inception-test-random.pth"  # random weights: exercises the code path, not FID
    torch.save(random_fid_inception_state_dict(seed=0), weights)
    summary, _ = run_train([*SMALL, "method=fixed", "trainer.max_steps=1", "data.n_test=2", "eval.fid=true",
                            f"eval.fid_weights={weights}", f"eval.fid_cache={tmp_path / 'fid_cache'}"])
    assert summary["primary_metric"] == "fid" and summary["higher_is_better"] is False
    m = summary["metrics"]
    assert {"fid", "kid", "fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA"} <= set(m) and math.isfinite(m["fid"])




def test_resume_continues_with_the_same_pools_and_parameters(tmp_path):
    # pool_size 4: full after step 2, so the steps after the stop at 3 draw swaps from the restored RNG
    common = [*SMALL, "method=fixed", "model.pool_size=4", "trainer.max_steps=5", "trainer.progress=false",
              "trainer.log_every=5", "trainer.checkpoint_every=null", "device=cpu", "seed=3"]
    full = train(compose_cfg(common), out=tmp_path / "full")
    stop = train_with_signal_at(CycleGANModel, compose_cfg(common), tmp_path / "part", stop_step=3)
    assert stop.step == 3
    resumed = train(compose_cfg([*common, "resume=true"]), out=tmp_path / "part")
    a, b = load_ckpt(tmp_path / "full")["model"], load_ckpt(tmp_path / "part")["model"]
    assert a.keys() == b.keys()
    for k in a:
        if k == "_extra_state":
            for pool in ("fake_A_pool", "fake_B_pool"):
                assert torch.equal(a[k][pool]["images"], b[k][pool]["images"]), pool
        else:
            assert torch.equal(a[k], b[k]), k
    assert resumed["metrics"] == full["metrics"]


def test_presets_compose():
    quick = compose_cfg(["experiment=cyclegan_quick"])
    assert quick.hydra.runtime.choices.model == "cyclegan"
    assert quick.hydra.runtime.choices.data == "cyclegan_embedded"
    assert quick.model.image_size == quick.data.image_size <= 64
    assert quick.model.ngf <= 32 and quick.trainer.max_steps <= 1000
    paper = compose_cfg(["experiment=cyclegan_paper"])
    assert paper.hydra.runtime.choices.data == "cyclegan_unaligned"
    assert paper.model.image_size == 256 and paper.model.ngf == 64 and paper.model.ndf == 64
    assert paper.model.gan_mode == "lsgan" and paper.model.norm == "instance" and paper.model.pool_size == 50
    assert paper.model.paired_eval is False
    assert paper.trainer.batch_size == 1 and paper.trainer.epochs == 200 and paper.trainer.max_steps is None
    assert dict(paper.model.weights) == dict(zip(TERMS, [1.0, 1.0, 10.0, 10.0, 5.0, 5.0]))
    plain = compose_cfg(["model=cyclegan"])
    assert plain.hydra.runtime.choices.data == "cyclegan_embedded" and plain.trainer.batch_size == 1
    for method in METHODS:
        compose_cfg(["model=cyclegan", "experiment=cyclegan_quick", f"method={method}"])


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
