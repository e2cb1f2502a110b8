"""The Model contract, once for every model (docs/architecture.md, Contracts: Model).

One spec per benchmark model (mnist, pix2pix, cyclegan, srgan): its tiny settings, terms, logged losses,
metrics, default weights, optimisers and schedulers. The tests below check the same contract for each:
every method trains through the runner, a GAN's generator step leaves its discriminators alone,
SIGTERM + resume ends bit for bit where an uninterrupted run ends, bf16 autocast + channels_last,
the FID switch and the presets. What only one model has stays in that model's test file.
"""

from __future__ import annotations

import json
import math
import signal
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf

from conftest import METHODS, build_from_config, compose_cfg, load_ckpt, train_with_signal_at
from mtbench.models.cyclegan import CycleGANModel
from mtbench.models.mnist import MNISTModel
from mtbench.models.pix2pix import Pix2PixModel
from mtbench.models.srgan import SRGANModel
from mtbench.train import train


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one intra-op thread


# ----------------------------------------------------------------------------- per-model extras
def _cyclegan_metrics(m: dict) -> None:
    assert m["cycle_l1"] == pytest.approx(0.5 * (m["cycle_A_l1"] + m["cycle_B_l1"]))


def _srgan_metrics(m: dict) -> None:
    assert 0 < m["bicubic_psnr"] < 100 and -1 <= m["ssim"] <= 1


def _mnist_metrics(m: dict) -> None:
    assert 0.0 <= m["acc"] <= 1.0


def _cyclegan_after_step(model) -> None:
    assert len(model.fake_A_pool) == len(model.fake_B_pool) == 2


@dataclass(frozen=True)
class Spec:
    name: str
    cls: type
    tiny: list[str]                      # tiny nets and data (the per-model tests' SMALL/TINY)
    terms: list[str]                     # term_names, in order
    extra_logged: list[str]              # other losses training_step returns (discriminators)
    primary: str                         # primary metric without FID, and its direction
    higher_is_better: bool
    metric_keys: set[str]                # metrics the final evaluation reports (at least)
    metric_keys_exact: bool              # ... and exactly these
    default_weights: dict[str, float]
    aux_optimizers: set[str]
    generators: list[str]                # attribute names of the generator(s) / discriminator(s); none: mnist
    discriminators: list[str]
    n_schedulers: int
    state_prefixes: tuple[str, ...]      # every key of the checkpoint's model state_dict starts with one
    train_steps: int                     # steps of the every-method run (logged every 2 and at the end)
    image_every: int | None              # the fixed run's sample_images interval (None: no images)
    aux_lr_after: dict[str, float] = field(default_factory=dict)  # aux optimizers' lr at the end of train_steps
    check_metrics: Callable[[dict], None] | None = None
    no_logged: list[str] = field(default_factory=list)  # loss/<name> that must not be logged
    # G step
    batch_n: int = 2
    d_step_first: bool = True            # the D step runs before the G step (D's grads exist at method.step)
    d_loss_factor: float | None = None   # D == factor * (D_real + D_fake)
    after_step: Callable[[Any], None] | None = None
    # resume after SIGTERM
    resume_methods: tuple[str, ...] = ("fixed",)
    resume: list[str] = field(default_factory=list)
    resume_steps: int = 0
    resume_log_every: int = 2
    resume_seed: int = 3
    stop_step: int = 0
    stop_epoch: int = 0
    stop_batch_in_epoch: int = 0
    # bf16 + channels_last, FID, presets (GANs)
    eval_batch_size: int = 4
    fid_keys: set[str] | None = None
    quick: tuple[str, str] | None = None  # (experiment, its data choice)
    paper: dict[str, Any] = field(default_factory=dict)      # experiment=<name>_paper: key -> value
    plain: list[tuple[list[str], str, Any]] = field(default_factory=list)  # (overrides, key, value)


_PIX2PIX_TERMS = ["G_GAN", "G_L1"]
_CYCLEGAN_TERMS = ["G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"]
_CYCLEGAN_WEIGHTS = dict(zip(_CYCLEGAN_TERMS, [1.0, 1.0, 10.0, 10.0, 5.0, 5.0]))

SPECS = {
    "mnist": Spec(
        name="mnist", cls=MNISTModel,
        tiny=["trainer.batch_size=32", "trainer.eval_batch_size=500"],
        terms=[f"term_{c}" for c in range(10)], extra_logged=[],
        primary="acc", higher_is_better=True, metric_keys={"acc", "nll"}, metric_keys_exact=True,
        default_weights={f"term_{c}": 1.0 for c in range(10)}, aux_optimizers=set(),
        generators=[], discriminators=[], n_schedulers=0, state_prefixes=("net.", "scales"),
        train_steps=6, image_every=None, check_metrics=_mnist_metrics,
        # 10 digits per class = 100 / batch 25 = 4 steps per epoch: the stop at step 6 is mid-epoch, after a boundary
        # and every method with state of its own (histories, learnt weights, generators, logits)
        resume_methods=("fixed", "softadapt_loss_weighted", "mtadam", "uncertainty", "dwa", "rlw", "relobralo",
                        "famo", "gradnorm", "pcgrad", "imtl"),
        resume=["data.train_per_class=10", "trainer.batch_size=25"], resume_steps=10, resume_log_every=3,
        resume_seed=3, stop_step=6, stop_epoch=1, stop_batch_in_epoch=2,
    ),
    "pix2pix": Spec(
        name="pix2pix", cls=Pix2PixModel,
        # 32x32 images, 8 filters, 8 train pairs of batch 2 (4 steps per epoch)
        tiny=["model=pix2pix", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
              "model.ngf=8", "model.ndf=8", "trainer.batch_size=2", "trainer.eval_batch_size=4",
              "trainer.image_every=null", "eval.fid=false"],
        terms=_PIX2PIX_TERMS, extra_logged=["D", "D_real", "D_fake"],
        primary="psnr", higher_is_better=True, metric_keys={"l1", "psnr", "ssim"}, metric_keys_exact=False,
        default_weights={"G_GAN": 1.0, "G_L1": 100.0}, aux_optimizers={"D"},
        generators=["G"], discriminators=["D"], n_schedulers=2, state_prefixes=("G.", "D."),
        train_steps=2, image_every=1, d_step_first=True, d_loss_factor=0.5,
        # the stop at step 5 is after an epoch boundary, mid-epoch; the LR decay (from step 3) runs across it;
        # dropout and BatchNorm use the restored state
        resume_steps=6, resume_log_every=2, resume_seed=3, stop_step=5, stop_epoch=1, stop_batch_in_epoch=1,
        fid_keys={"fid", "kid"},
        quick=("pix2pix_quick", "pix2pix_embedded"),
        paper={"choices.data": "facades", "data.direction": "BtoA", "model.image_size": 256, "model.ngf": 64,
               "model.ndf": 64, "model.gan_mode": "vanilla", "model.norm": "batch", "model.use_dropout": True,
               "trainer.batch_size": 1, "trainer.epochs": 200, "trainer.max_steps": None,
               "model.weights": {"G_GAN": 1.0, "G_L1": 100.0}, "method.optimizer.betas": [0.5, 0.999],
               "method.optimizer.lr": 2e-4},
        plain=[(["model=pix2pix"], "choices.data", "pix2pix_embedded"),
               (["model=pix2pix"], "trainer.batch_size", 1),
               (["model=pix2pix", "data=facades"], "model.image_size", 256)],
    ),
    "cyclegan": Spec(
        name="cyclegan", cls=CycleGANModel,
        # 32x32 images, 8 filters, 2 residual blocks, 8 train items of batch 2 (4 steps per epoch)
        tiny=["model=cyclegan", "data.image_size=32", "data.n_train=8", "data.n_val=4", "data.n_test=4",
              "model.ngf=8", "model.ndf=8", "model.n_blocks=2", "trainer.batch_size=2",
              "trainer.eval_batch_size=4", "trainer.image_every=null", "eval.fid=false"],
        terms=_CYCLEGAN_TERMS, extra_logged=["D_A", "D_B"],
        # cyclegan_embedded's test pairs are aligned: paired_eval=auto adds l1/psnr/ssim of G_A(A) vs B
        primary="cycle_l1", higher_is_better=False,
        metric_keys={"cycle_A_l1", "cycle_B_l1", "cycle_l1", "l1", "psnr", "ssim"}, metric_keys_exact=True,
        default_weights=_CYCLEGAN_WEIGHTS, aux_optimizers={"D"},
        generators=["G_A", "G_B"], discriminators=["D_A", "D_B"], n_schedulers=2,
        state_prefixes=("G_A.", "G_B.", "D_A.", "D_B.", "_extra_state"),
        train_steps=2, image_every=1, check_metrics=_cyclegan_metrics,
        d_step_first=False, after_step=_cyclegan_after_step,
        # pool_size 4: full after step 2, so the steps after the stop at 3 draw swaps from the restored RNG
        resume=["model.pool_size=4"], resume_steps=5, resume_log_every=5, resume_seed=3,
        stop_step=3, stop_epoch=0, stop_batch_in_epoch=3,
        fid_keys={"fid", "kid", "fid_AtoB", "fid_BtoA", "kid_AtoB", "kid_BtoA"},
        quick=("cyclegan_quick", "cyclegan_embedded"),
        paper={"choices.data": "cyclegan_unaligned", "model.image_size": 256, "model.ngf": 64, "model.ndf": 64,
               "model.gan_mode": "lsgan", "model.norm": "instance", "model.pool_size": 50,
               "model.paired_eval": False, "trainer.batch_size": 1, "trainer.epochs": 200,
               "trainer.max_steps": None, "model.weights": _CYCLEGAN_WEIGHTS},
        plain=[(["model=cyclegan"], "choices.data", "cyclegan_embedded"),
               (["model=cyclegan"], "trainer.batch_size", 1)],
    ),
    "srgan": Spec(
        name="srgan", cls=SRGANModel,
        # crop 32 (LR 8x8), a handful of crops, batch 4; perceptual=false removes the VGG term
        tiny=["model=srgan", "model.n_blocks=2", "model.n_features=8", "model.ndf=8", "model.d_fc_features=16",
              "model.perceptual=false", "data.crop_size=32", "data.n_train=8", "data.n_val=2", "data.n_test=4",
              "trainer.batch_size=4", "trainer.eval_batch_size=4", "trainer.eval_every=null",
              "trainer.image_every=null"],
        terms=["content", "adversarial"], extra_logged=["D", "D_real", "D_fake"],
        primary="psnr", higher_is_better=True, metric_keys={"psnr", "ssim", "bicubic_psnr", "bicubic_ssim"},
        metric_keys_exact=False, default_weights={"content": 1.0, "adversarial": 0.001}, aux_optimizers={"D"},
        generators=["generator"], discriminators=["discriminator"], n_schedulers=2,
        state_prefixes=("generator.", "discriminator."),
        # lr_decay_at 0.5 of 3 steps: G's and D's lr were decayed x0.1 at step 2
        train_steps=3, image_every=2, aux_lr_after={"D": 1e-5}, check_metrics=_srgan_metrics,
        no_logged=["perceptual"], batch_n=4, d_step_first=True, d_loss_factor=1.0,  # not halved
        # 8 crops / batch 4 = 2 steps per epoch: the stop at step 3 is mid-epoch, after an epoch boundary;
        # the lr decays x0.1 from step 2 (lr_decay_at 0.5 of 4 steps)
        resume_steps=4, resume_log_every=2, resume_seed=1, stop_step=3, stop_epoch=1, stop_batch_in_epoch=1,
    ),
}
MODELS = list(SPECS)
GANS = [n for n, s in SPECS.items() if s.discriminators]


def _records(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _first_batch(data, n: int):
    return next(iter(torch.utils.data.DataLoader(data.train, batch_size=n)))


def _params(model, names: list[str]) -> list[torch.nn.Parameter]:
    return [p for n in names for p in getattr(model, n).parameters()]


def _assert_same(a, b, where: str = "") -> None:
    """a == b, tensors bit for bit (torch.equal), recursively through dicts, lists and tuples."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_methods_are_the_method_configs():
    from mtbench.cli import config_dir

    assert METHODS == sorted(p.stem for p in (config_dir() / "method").glob("*.yaml"))
    assert {"fixed", "mtadam", "softadapt", "softadapt_loss_weighted", "softadapt_normalized"} <= set(METHODS)


# ----------------------------------------------------------------------------- every method x every model
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", MODELS)
def test_every_method_trains_through_the_runner(run_train, name, method):
    spec = SPECS[name]
    extra = ["method.update_every=1"] if method.startswith("softadapt") else []
    if method == "fixed" and spec.image_every is not None:
        extra.append(f"trainer.image_every={spec.image_every}")  # sample_images through TensorBoard once
    summary, out = run_train([*spec.tiny, f"method={method}", f"trainer.max_steps={spec.train_steps}", *extra])
    n = spec.train_steps
    assert summary["model"] == name and summary["method"] == method and summary["steps"] == n
    assert summary["primary_metric"] == spec.primary and summary["higher_is_better"] is spec.higher_is_better
    m = summary["metrics"]
    if spec.metric_keys_exact:
        assert set(m) == spec.metric_keys
    else:
        assert spec.metric_keys <= set(m)
    assert all(math.isfinite(v) for v in m.values())
    if spec.check_metrics:
        spec.check_metrics(m)
    assert json.loads((out / "summary.json").read_text())["metrics"] == m
    assert set(summary["final_weights"]) == set(spec.terms)
    lines = _records(out)
    logged = [r for r in lines if f"loss/{spec.terms[0]}" in r]
    assert [r["step"] for r in logged] == sorted({1, *range(2, n + 1, 2), n})  # log_every=2, the first and last
    for r in logged:
        for term in spec.terms:
            assert math.isfinite(r[f"loss/{term}"]) and math.isfinite(r[f"weight/{term}"]), term
        for other in spec.extra_logged:
            assert math.isfinite(r[f"loss/{other}"]), other
        for absent in spec.no_logged:
            assert f"loss/{absent}" not in r
    if method == "fixed":
        for r in logged:
            # logged as float32: exactly the defaults rounded to float32 (1.0, 100.0... exactly)
            f32 = {t: torch.tensor(w, dtype=torch.float32).item() for t, w in spec.default_weights.items()}
            assert {t: r[f"weight/{t}"] for t in spec.terms} == f32
    if method.startswith("softadapt") and name == "mnist":  # weights moved away from 1 after the first updates
        w = logged[-1]
        assert any(abs(w[f"weight/{t}"] - 1.0) > 1e-6 for t in spec.terms)
        assert sum(w[f"weight/{t}"] for t in spec.terms) == pytest.approx(len(spec.terms), rel=1e-4)
    assert any(f"eval/{spec.primary}" in r for r in lines)
    assert list(out.glob("events.out.tfevents.*"))
    ckpt = load_ckpt(out)  # weights_only=True works
    assert ckpt["finished"] and ckpt["step"] == n
    assert set(ckpt["aux_optimizers"]) == spec.aux_optimizers and len(ckpt["schedulers"]) == spec.n_schedulers
    for opt, lr in spec.aux_lr_after.items():
        assert ckpt["aux_optimizers"][opt]["param_groups"][0]["lr"] == pytest.approx(lr)
    assert ckpt["model"] and all(k.startswith(spec.state_prefixes) for k in ckpt["model"])


# ----------------------------------------------------------------------------- the GANs' G and D steps
@pytest.mark.parametrize("method", METHODS)  # every method: none may touch a discriminator
@pytest.mark.parametrize("name", GANS)
def test_generator_step_leaves_discriminator_grads_untouched(name, method):
    spec = SPECS[name]
    model, meth, data = build_from_config([*spec.tiny, f"method={method}"])
    batch = _first_batch(data, spec.batch_n)
    d_params, g_params = _params(model, spec.discriminators), _params(model, spec.generators)
    g_before = [p.detach().clone() for p in g_params]
    d_before = [p.detach().clone() for p in d_params]
    seen = {}

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def step(self, losses, recompute=None):
            seen["terms"] = sorted(losses)
            seen["d_frozen"] = all(not p.requires_grad for p in d_params)
            seen["d_step_grads"] = all(p.grad is not None for p in d_params)
            sentinels = [torch.full_like(p, 7.0) for p in d_params]
            for p, s in zip(d_params, sentinels):
                p.grad = s
            d_mid = [p.detach().clone() for p in d_params]
            seen["d_moved_before_g"] = any(not torch.equal(p, q) for p, q in zip(d_mid, d_before))
            self.inner.step(losses, recompute=recompute)
            seen["untouched"] = all(p.grad is s and bool((s == 7.0).all()) for p, s in zip(d_params, sentinels))
            seen["d_unchanged_by_g"] = all(torch.equal(p, q) for p, q in zip(d_params, d_mid))
            seen["g_moved"] = any(not torch.equal(p, q) for p, q in zip(g_params, g_before))

    logs = model.training_step(batch, Spy(meth))
    # D's step runs first (pix2pix, SRGAN: its grads exist and D moved before the G step) or after (CycleGAN)
    d_first = spec.d_step_first
    assert seen == {"terms": sorted(spec.terms), "d_frozen": True, "d_step_grads": d_first or seen["d_step_grads"],
                    "d_moved_before_g": d_first, "untouched": True, "d_unchanged_by_g": True, "g_moved": True}
    assert all(p.requires_grad for p in d_params)  # D trainable again after the step
    for d in spec.discriminators:  # the D step moved every discriminator
        before = d_before[:len(list(getattr(model, d).parameters()))]
        d_before = d_before[len(before):]
        assert any(not torch.equal(p, q) for p, q in zip(getattr(model, d).parameters(), before)), d
    assert any(not torch.equal(p, q) for p, q in zip(g_params, g_before))  # the method moved G
    assert set(logs) == {*spec.terms, *spec.extra_logged}
    for v in logs.values():
        assert v.dim() == 0 and not v.requires_grad and v.device == model.device
    if spec.d_loss_factor is not None:
        assert torch.allclose(logs["D"], spec.d_loss_factor * (logs["D_real"] + logs["D_fake"]))
    if method == "mtadam" and name == "srgan":  # autograd.grad on G's parameters only: no .grad anywhere
        assert all(p.grad is None for p in g_params)
    if spec.after_step:
        spec.after_step(model)


# ----------------------------------------------------------------------------- resume after SIGTERM
RESUME_CASES = [(n, m) for n, s in SPECS.items() for m in s.resume_methods]


@pytest.mark.parametrize(("name", "method"), RESUME_CASES)
def test_resume_after_sigterm_ends_with_identical_state(tmp_path, name, method):
    """Parameters, buffers, pools, method, aux optimizers, schedulers and the data position round-trip."""
    spec = SPECS[name]
    common = [*spec.tiny, *spec.resume, f"method={method}", f"trainer.max_steps={spec.resume_steps}",
              "trainer.progress=false", f"trainer.log_every={spec.resume_log_every}",
              "trainer.checkpoint_every=null", "device=cpu", f"seed={spec.resume_seed}"]
    if method.startswith("softadapt") or method == "dwa":  # weight updates before and after the stop
        common.append("method.update_every=2")
    full = train(compose_cfg(common), out=tmp_path / "full")
    stop = train_with_signal_at(spec.cls, compose_cfg(common), tmp_path / "part", stop_step=spec.stop_step)
    assert stop.signum == signal.SIGTERM and stop.step == spec.stop_step
    mid = load_ckpt(tmp_path / "part")
    assert (mid["step"], mid["epoch"], mid["batch_in_epoch"]) == \
        (spec.stop_step, spec.stop_epoch, spec.stop_batch_in_epoch) and not mid["finished"]
    resumed = train(compose_cfg([*common, "resume=true"]), out=tmp_path / "part")
    assert resumed["steps"] == full["steps"] == spec.resume_steps
    a, b = load_ckpt(tmp_path / "full"), load_ckpt(tmp_path / "part")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:  # cyclegan: the image pools are in _extra_state
        _assert_same(a["model"][k], b["model"][k], k)
    assert len(a["schedulers"]) == spec.n_schedulers
    _assert_same(a["schedulers"], b["schedulers"], "schedulers")
    assert set(a["aux_optimizers"]) == spec.aux_optimizers
    _assert_same(a["aux_optimizers"], b["aux_optimizers"], "aux_optimizers")
    _assert_same(a["method"], b["method"], "method")
    for k in ("step", "epoch", "batch_in_epoch", "finished"):
        assert a[k] == b[k], k
    for opt, lr in spec.aux_lr_after.items():
        assert a["aux_optimizers"][opt]["param_groups"][0]["lr"] == pytest.approx(lr)
    assert resumed["metrics"] == full["metrics"]


# ----------------------------------------------------------------------------- bf16 autocast + channels_last
@pytest.mark.parametrize("name", GANS)
def test_bf16_autocast_and_channels_last_step(name):
    spec = SPECS[name]
    model, meth, data = build_from_config([*spec.tiny, "method=fixed"])
    model.configure_runtime(torch.device("cpu"), torch.bfloat16, channels_last=True)
    batch = _first_batch(data, spec.batch_n)
    logs = model.training_step(batch, meth)
    assert set(logs) == {*spec.terms, *spec.extra_logged}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in logs.values())
    model.eval()
    metrics = model.evaluate(torch.utils.data.DataLoader(data.test, batch_size=spec.eval_batch_size))
    assert all(math.isfinite(v) for v in metrics.values())
    images = model.sample_images(batch)
    assert images and all(img.dtype == torch.float32 for img in images.values())


# ----------------------------------------------------------------------------- FID in a run
@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.fid_keys])
def test_fid_in_a_run_becomes_the_primary_metric(run_train, tmp_path, name):
    from mtbench.metrics.fid_testing import random_fid_inception_state_dict

    spec = SPECS[name]
    weights = tmp_path / "pt_inception-test-random.pth"  # random weights: exercises the code path, not FID
    torch.save(random_fid_inception_state_dict(seed=0), weights)
    summary, _ = run_train([*spec.tiny, "method=fixed", "trainer.max_steps=1", "data.n_test=2", "eval.fid=true",
                            f"eval.fid_weights={weights}", f"eval.fid_cache={tmp_path / 'fid_cache'}"])
    assert summary["primary_metric"] == "fid" and summary["higher_is_better"] is False
    m = summary["metrics"]
    assert spec.fid_keys <= set(m) and math.isfinite(m["fid"])


# ----------------------------------------------------------------------------- presets
def _get(cfg, key: str):
    if key.startswith("choices."):
        return cfg.hydra.runtime.choices[key.split(".", 1)[1]]
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


@pytest.mark.parametrize("name", [n for n, s in SPECS.items() if s.quick])
def test_presets_compose(name):
    spec = SPECS[name]
    experiment, data = spec.quick
    quick = compose_cfg([f"experiment={experiment}"])
    assert _get(quick, "choices.model") == name and _get(quick, "choices.data") == data
    assert quick.model.image_size == quick.data.image_size <= 64
    assert quick.model.ngf <= 32 and quick.trainer.max_steps <= 1000 and quick.trainer.batch_size >= 1
    paper = compose_cfg([f"experiment={name}_paper"])
    for key, value in spec.paper.items():
        got = _get(paper, key)
        assert (got is value) if isinstance(value, bool) or value is None else got == value, key
    # the model's defaults pick the data and trainer; the user's choice still wins
    for overrides, key, value in spec.plain:
        assert _get(compose_cfg(overrides), key) == value, (overrides, key)
    for method in METHODS:
        compose_cfg([f"model={name}", f"experiment={experiment}", f"method={method}"])
