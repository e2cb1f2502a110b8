"""CycleGAN: unpaired image-to-image translation, a GAN benchmark of the MTAdam paper.

Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017, arXiv:1703.10593, and the
authors' reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix,
``models/cycle_gan_model.py``). The MTAdam paper (Malkiel & Wolf,
arXiv:2006.14683, Sec. 4) balances the generators' six terms.

Networks (:mod:`mtbench.nets`), named as in the reference (paper names in
brackets): ResNet generators ``G_A: A -> B`` (G) and ``G_B: B -> A`` (F) with
``resnet_n_blocks(image_size)`` residual blocks (9 for 256x256, 6 below),
70x70 PatchGAN discriminators ``D_A`` (D_Y: judges domain B, real B against
``G_A(A)``) and ``D_B`` (D_X: real A against ``G_B(B)``), instance
normalisation, weights from N(0, 0.02).

Loss terms balanced by the method, each **unweighted** (the reference
multiplies them by lambda_A = lambda_B = 10 and 0.5 * lambda for identity; here
the balancing method applies weights, and ``fixed`` uses the defaults
``G_A: 1, G_B: 1, cycle_A: 10, cycle_B: 10, idt_A: 5, idt_B: 5``):

* ``G_A`` = ``GAN(D_A(G_A(A)), real)``, ``G_B`` = ``GAN(D_B(G_B(B)), real)``;
* ``cycle_A`` = ``mean |G_B(G_A(A)) - A|``, ``cycle_B`` = ``mean |G_A(G_B(B)) - B|``;
* ``idt_A`` = ``mean |G_A(B) - B|``, ``idt_B`` = ``mean |G_B(A) - A|`` (always
  computed, also when their weight is 0: the method weights them).

The balancing method weights the generators' terms only. The discriminators
are trained by one Adam over ``D_A`` and ``D_B`` (as the reference;
:meth:`CycleGANModel.aux_optimizers`) on ``D_A = 0.5 * (GAN(D_A(B), real) +
GAN(D_A(pool_B(G_A(A))), fake))`` and ``D_B`` likewise, where the image pools
(:class:`mtbench.nets.ImagePool`, 50 images each) return a history of
generated images (Shrivastava et al.'s strategy, paper Sec. 4).

One training step (the reference's ``optimize_parameters``): forward
(``fake_B, rec_A, fake_A, rec_B`` and the identity images); G step first, with
``D_A, D_B`` frozen by :func:`mtbench.models.gan.frozen` (their ``.grad`` stay
untouched), through ``method.step`` with the six terms; then the D step. Logged:
the six terms, ``D_A`` and ``D_B`` (detached, on the device: no host sync).

The pools are part of the model's ``state_dict`` (``get_extra_state``), so a
resumed run continues with the same history; their random draws use torch's
global CPU generator, which the runner checkpoints.

Learning rate: as pix2pix (:func:`mtbench.models.gan.linear_decay`):
constant for the first half of the steps, then linear to 0 (the paper: 100
epochs at 2e-4, then 100 decaying), for the method's optimiser and D's.

Evaluation (networks in eval mode; instance norm has no running statistics, so
it behaves as in training): per-image means over the split of ``cycle_A_l1`` =
``|G_B(G_A(A)) - A|``, ``cycle_B_l1`` = ``|G_A(G_B(B)) - B|`` and their mean
``cycle_l1`` (the model's primary metric, lower is better). When the
evaluation pairs are aligned (``paired_eval``), also ``l1``, ``psnr`` and
``ssim`` of ``G_A(A)`` against ``B`` (:func:`~mtbench.metrics.image.paired_metrics`).
With the FID Inception weights available (``eval.fid``), the runner adds
``fid_AtoB``/``kid_AtoB`` (``G_A(A)`` against the split's real B images),
``fid_BtoA``/``kid_BtoA`` (``G_B(B)`` against real A; FID needs no pairing)
and their means ``fid``/``kid``, and ranks runs by ``fid``
(:meth:`CycleGANModel.fid_pairs`).

Parameters
----------
image_size:
    Side of the (square) training images; picks the default ``n_blocks``. The
    config takes it from the data (``data.image_size``, else
    ``data.crop_size``, else 256). H and W must be divisible by 4.
in_channels, out_channels:
    Channels of domain A and domain B (3; identity terms need them equal).
ngf, ndf:
    Filters of the first generator / discriminator layer (64 in the paper).
n_blocks:
    Residual blocks per generator; ``null`` = ``resnet_n_blocks(image_size)``.
n_layers_D:
    Stride-2 layers of the PatchGAN (3: 70x70).
norm:
    ``"instance"`` (the paper), ``"batch"`` or ``"none"``.
use_dropout:
    Dropout in the residual blocks (off in CycleGAN).
gan_mode:
    ``"lsgan"`` (the paper: least squares) or ``"vanilla"``.
pool_size:
    Images kept by each pool (50; 0 disables the pools).
init_type, init_gain:
    Weight initialisation (normal, 0.02).
optim:
    Adam of the paper (lr 2e-4, betas (0.5, 0.999)), for the method (through
    its config) and the discriminators.
lr_decay:
    ``{enabled: true, start: 0.5}``, as pix2pix.
paired_eval:
    ``"auto"``, ``true`` or ``false``: whether :meth:`evaluate` also scores
    ``G_A(A)`` against ``B`` (meaningful only when the split's A and B are
    aligned pairs). ``auto``: true when the dataset says so (an attribute
    ``paired``), or when it is the val/test split of ``data=cyclegan_embedded``
    (serial, A = the edge map of B); false otherwise (e.g. horse2zebra).
    Set it to true for unaligned folders whose test pairs match
    (CycleGAN's facades, maps, cityscapes).
metric:
    The primary metric (the runner's best checkpoint, the tuning objective
    when FID is off): ``"cycle_l1"`` (default; lower is better) needs no
    pairs. With aligned eval pairs (``paired_eval``) ``"psnr"`` or ``"ssim"``
    (higher is better) or ``"l1"`` of ``G_A(A)`` vs ``B`` score the
    translation itself; prefer them for tuning, since the cycle error alone
    rewards simply raising the cycle weights.
weights:
    Default fixed weight per term (see above).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mtbench import validate
from mtbench.metrics.image import MeanMeter, paired_metrics, to_unit
from mtbench.models.base import Model
from mtbench.models.gan import (DEFAULT_OPTIM, N_SAMPLE_IMAGES, NORMS, check_choice, check_lr_decay,
                                check_positive_int, decay_schedulers, discriminator_adam, frozen)
from mtbench.nets import GAN_MODES, GANLoss, ImagePool, NLayerDiscriminator, ResnetGenerator, init_weights, \
    resnet_n_blocks

# primary metrics a CycleGAN run may select (model.metric) and whether higher is better
METRIC_HIGHER_IS_BETTER = {"cycle_l1": False, "l1": False, "psnr": True, "ssim": True}


def is_paired(dataset: Dataset) -> bool:
    """Whether item i of ``dataset`` holds an aligned pair (A, B) (see ``paired_eval``)."""
    flag = getattr(dataset, "paired", None)
    if flag is not None:
        return bool(flag)
    from mtbench.data.embedded_images import UnpairedEdgesPhotoDataset

    # cyclegan_embedded's val/test: serial, built from the same crops (A = edges of B)
    return (isinstance(dataset, UnpairedEdgesPhotoDataset) and dataset.serial_batches
            and not dataset.flip and len(dataset.edges) == len(dataset.photos))


class CycleGANModel(Model):
    """CycleGAN (two ResNet generators, two PatchGANs, image pools); see the module docstring."""

    term_names = ["G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"]
    primary_metric = "cycle_l1"
    higher_is_better = False
    supports_fid = True  # with the FID Inception weights, FID (mean of both directions) is the primary metric
    generator_modules = ("G_A", "G_B")  # what model.init_from loads
    default_term_weights = {"G_A": 1.0, "G_B": 1.0, "cycle_A": 10.0, "cycle_B": 10.0, "idt_A": 5.0, "idt_B": 5.0}

    def __init__(self, image_size: int = 256, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 ndf: int = 64, n_blocks: int | None = None, n_layers_D: int = 3, norm: str = "instance",
                 use_dropout: bool = False, gan_mode: str = "lsgan", pool_size: int = 50,
                 init_type: str = "normal", init_gain: float = 0.02, optim: Mapping[str, Any] | None = None,
                 lr_decay: Mapping[str, Any] | None = None, paired_eval: str | bool = "auto",
                 weights: Mapping[str, float] | None = None, metric: str = "cycle_l1",
                 init_from: str | None = None) -> None:
        optim = {**DEFAULT_OPTIM, **dict(optim or {})}
        super().__init__(optim=optim, weights={**self.default_term_weights, **dict(weights or {})},
                         init_from=init_from)
        check_positive_int("image_size", image_size)
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels), ("ngf", ngf),
                           ("ndf", ndf), ("n_layers_D", n_layers_D)):
            check_positive_int(key, value)
        if in_channels != out_channels:
            raise ValueError(f"CycleGAN's identity terms need in_channels == out_channels, got "
                             f"{in_channels} and {out_channels}")
        if n_blocks is None:
            n_blocks = resnet_n_blocks(image_size)
        else:
            validate.non_negative_int("model.n_blocks", n_blocks, allow_none=True)
        validate.non_negative_int("model.pool_size", pool_size)
        check_choice("gan_mode", gan_mode, GAN_MODES)
        check_choice("norm", norm, NORMS)
        if not (paired_eval == "auto" or isinstance(paired_eval, bool)):
            raise ValueError(f"model.paired_eval must be 'auto', true or false, got {paired_eval!r}")
        check_choice("metric", metric, tuple(METRIC_HIGHER_IS_BETTER))
        if metric != "cycle_l1" and paired_eval is False:
            raise ValueError(f"model.metric={metric} scores G_A(A) against B: it needs aligned eval pairs, "
                             f"but model.paired_eval is false")
        self.primary_metric, self.higher_is_better = metric, METRIC_HIGHER_IS_BETTER[metric]
        self.image_size, self.ngf, self.ndf, self.n_blocks = image_size, ngf, ndf, n_blocks
        self.n_layers_D, self.norm, self.use_dropout = n_layers_D, norm, bool(use_dropout)
        self.gan_mode, self.pool_size, self.paired_eval = gan_mode, pool_size, paired_eval
        self.lr_decay = check_lr_decay(lr_decay)

        def generator(cin: int, cout: int) -> ResnetGenerator:
            return init_weights(ResnetGenerator(cin, cout, ngf, n_blocks, norm, self.use_dropout),
                                init_type, init_gain)

        def discriminator(cin: int) -> NLayerDiscriminator:
            return init_weights(NLayerDiscriminator(cin, ndf, n_layers_D, norm), init_type, init_gain)

        self.G_A = generator(in_channels, out_channels)   # A -> B
        self.G_B = generator(out_channels, in_channels)   # B -> A
        self.D_A = discriminator(out_channels)            # domain B: real B vs G_A(A)
        self.D_B = discriminator(in_channels)             # domain A: real A vs G_B(B)
        self.criterion_gan = GANLoss(gan_mode)
        self.fake_A_pool = ImagePool(pool_size)
        self.fake_B_pool = ImagePool(pool_size)
        self.opt_D = discriminator_adam(itertools.chain(self.D_A.parameters(), self.D_B.parameters()),
                                        self.optim_cfg)

    # -- state beyond parameters: the image pools ------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"fake_A_pool": self.fake_A_pool.state_dict(), "fake_B_pool": self.fake_B_pool.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.fake_A_pool.load_state_dict(state["fake_A_pool"])
        self.fake_B_pool.load_state_dict(state["fake_B_pool"])

    # -- the contract -----------------------------------------------------------------------
    def multi_term_parameters(self):
        return itertools.chain(self.G_A.parameters(), self.G_B.parameters())

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"D": self.opt_D}

    def lr_schedulers(self, method, total_steps: int) -> list:
        return decay_schedulers([method.optimizer, self.opt_D], total_steps, self.lr_decay)

    def _d_loss(self, net, real: Tensor, fake: Tensor) -> Tensor:
        with self.autocast():
            pred_real, pred_fake = net(real), net(fake.detach())
        return (self.criterion_gan(pred_real, True) + self.criterion_gan(pred_fake, False)) * 0.5

    def _generate(self, real_a: Tensor, real_b: Tensor) -> dict[str, Tensor]:
        """Both generators' outputs for the batch: fakes, reconstructions and identity mappings."""
        with self.autocast():
            fake_b = self.G_A(real_a)
            rec_a = self.G_B(fake_b)
            fake_a = self.G_B(real_b)
            rec_b = self.G_A(fake_a)
            idt_a = self.G_A(real_b)
            idt_b = self.G_B(real_a)
        return {"fake_B": fake_b, "rec_A": rec_a, "fake_A": fake_a, "rec_B": rec_b, "idt_A": idt_a, "idt_B": idt_b}

    def _generator_terms(self, real_a: Tensor, real_b: Tensor, out: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The six unweighted generator terms (both discriminators must already be frozen by the caller)."""
        with self.autocast():
            pred_a, pred_b = self.D_A(out["fake_B"]), self.D_B(out["fake_A"])
        return {
            "G_A": self.criterion_gan(pred_a, True),
            "G_B": self.criterion_gan(pred_b, True),
            "cycle_A": F.l1_loss(out["rec_A"].float(), real_a.float()),
            "cycle_B": F.l1_loss(out["rec_B"].float(), real_b.float()),
            "idt_A": F.l1_loss(out["idt_A"].float(), real_b.float()),
            "idt_B": F.l1_loss(out["idt_B"].float(), real_a.float()),
        }

    def training_step(self, batch, method) -> dict[str, Tensor]:
        real_a, real_b = self.prepare_input(batch["A"]), self.prepare_input(batch["B"])
        out = self._generate(real_a, real_b)
        fake_b, fake_a = out["fake_B"], out["fake_A"]

        # G step: both discriminators frozen, so the method touches none of their gradients
        with frozen([self.D_A, self.D_B]):
            terms = self._generator_terms(real_a, real_b, out)
            # recompute: the same batch's terms at the updated generators (D frozen, the pools not queried), for
            # methods that need them (FAMO)
            method.step(terms, recompute=lambda: self._generator_terms(real_a, real_b,
                                                                       self._generate(real_a, real_b)))

        # D step (unfrozen): on a history of generated images
        self.opt_D.zero_grad(set_to_none=True)
        loss_d_a = self._d_loss(self.D_A, real_b, self.fake_B_pool.query(fake_b))
        loss_d_b = self._d_loss(self.D_B, real_a, self.fake_A_pool.query(fake_a))
        (loss_d_a + loss_d_b).backward()
        self.opt_D.step()

        logs = {k: v.detach() for k, v in terms.items()}
        logs.update(D_A=loss_d_a.detach(), D_B=loss_d_b.detach())
        return logs

    @torch.no_grad()
    def translate(self, a: Tensor | None = None, b: Tensor | None = None) -> dict[str, Tensor]:
        """``fake_B, rec_A`` from ``a`` and ``fake_A, rec_B`` from ``b`` (float32, [-1, 1])."""
        out: dict[str, Tensor] = {}
        with self.autocast():
            if a is not None:
                a = self.prepare_input(a.to(self.device, non_blocking=True))
                fake_b = self.G_A(a)
                out.update(fake_B=fake_b, rec_A=self.G_B(fake_b))
            if b is not None:
                b = self.prepare_input(b.to(self.device, non_blocking=True))
                fake_a = self.G_B(b)
                out.update(fake_A=fake_a, rec_B=self.G_A(fake_a))
        return {k: v.float() for k, v in out.items()}

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        paired = is_paired(loader.dataset) if self.paired_eval == "auto" else self.paired_eval
        if self.primary_metric != "cycle_l1" and not paired:
            raise ValueError(f"model.metric={self.primary_metric} scores G_A(A) against B, but this split is not "
                             f"known to hold aligned pairs; set model.paired_eval=true if its A and B match")
        meter = MeanMeter()
        for batch in loader:
            a = batch["A"].to(self.device, non_blocking=True)
            b = batch["B"].to(self.device, non_blocking=True)
            out = self.translate(a, b)
            values = {"cycle_A_l1": (out["rec_A"] - a.float()).abs().flatten(1).mean(1),
                      "cycle_B_l1": (out["rec_B"] - b.float()).abs().flatten(1).mean(1)}
            if paired:
                values.update(paired_metrics(out["fake_B"], b))
            meter.update(values)
        metrics = meter.compute()
        metrics["cycle_l1"] = 0.5 * (metrics["cycle_A_l1"] + metrics["cycle_B_l1"])
        return metrics

    @torch.no_grad()
    def fid_pairs(self, batch) -> dict[str, tuple[Tensor, Tensor]]:
        """FID/KID per direction: G_A(A) vs real B (``_AtoB``), G_B(B) vs real A (``_BtoA``)."""
        out = self.translate(batch["A"], batch["B"])
        return {"_AtoB": (out["fake_B"], batch["B"]), "_BtoA": (out["fake_A"], batch["A"])}

    @torch.no_grad()
    def sample_images(self, batch) -> dict[str, Tensor]:
        a, b = batch["A"][:N_SAMPLE_IMAGES], batch["B"][:N_SAMPLE_IMAGES]
        out = self.translate(a, b)
        return {"real_A": to_unit(a), "fake_B": to_unit(out["fake_B"]), "rec_A": to_unit(out["rec_A"]),
                "real_B": to_unit(b), "fake_A": to_unit(out["fake_A"]), "rec_B": to_unit(out["rec_B"])}

    def hparams(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "n_blocks": self.n_blocks, "ngf": self.ngf, "ndf": self.ndf,
                "n_layers_D": self.n_layers_D, "norm": self.norm, "gan_mode": self.gan_mode,
                "pool_size": self.pool_size, "lr": float(self.optim_cfg["lr"]),
                "lr_decay": self.lr_decay["start"] if self.lr_decay["enabled"] else "off"}
