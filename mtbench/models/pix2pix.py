"""pix2pix: conditional GAN image-to-image translation, a GAN benchmark of the MTAdam paper.

Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017, arXiv:1611.07004, and the authors' reference
implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/pix2pix_model.py``).
The MTAdam paper (Malkiel & Wolf, arXiv:2006.14683, Sec. 4) balances the
generator's two terms.

Networks (:mod:`mtbench.nets`): a U-Net generator ``G: A -> B`` with
``unet_num_downs(image_size)`` downsamplings (1x1 bottleneck; 8 for 256x256,
the reference's ``unet_256``) and a conditional 70x70 PatchGAN ``D`` that sees
``cat([A, B or G(A)], dim=1)``; both initialised from N(0, 0.02) (BatchNorm
weights from N(1, 0.02)).

Loss terms balanced by the method (the generator's objective, paper eq. 4):

* ``G_GAN`` = ``GAN(D(cat(A, G(A))), real)`` -- the non-saturating adversarial term;
* ``G_L1`` = ``mean |G(A) - B|`` -- **unweighted** L1 (the reference multiplies
  it by ``lambda_L1 = 100``; here the balancing method applies the weights,
  and ``fixed`` uses the default weights ``G_GAN: 1, G_L1: 100``).

The balancing method weights the generator's terms only. The discriminator is
trained by its own Adam (:meth:`Pix2PixModel.aux_optimizers`) on
``D = 0.5 * (GAN(D(cat(A, G(A).detach())), fake) + GAN(D(cat(A, B)), real))``,
exactly as the reference.

One training step (the reference's ``optimize_parameters``): ``fake_B = G(A)``;
D step (``D`` trainable, ``fake_B`` detached, D's Adam); G step (``D`` frozen
with :func:`set_requires_grad`, so the generator's backward pass leaves the
discriminator's ``.grad`` untouched) through ``method.step({"G_GAN", "G_L1"})``.
Logged: both terms, ``D``, ``D_real`` and ``D_fake`` (detached, on the device:
no host sync in the step). No image pool (the reference's pix2pix uses
``pool_size=0``).

Learning rate: constant for the first ``lr_decay.start`` fraction of the
training steps, then linearly decayed to 0 (the reference's ``linear`` policy,
``n_epochs`` constant + ``n_epochs_decay`` decaying epochs, 100 + 100 in the
paper's facades run), for the method's optimiser and D's alike; applied per
step instead of per epoch: the factor at step ``s`` (0-based) is
``1 - max(0, s + 1 - start) / (total - start + 1)``.

Evaluation: on the runner's evaluation split. By default (``eval_mode:
eval``) the generator is in eval mode as the runner sets it (``model.eval()``):
BatchNorm uses its running statistics and dropout is off. The reference's
``test.py`` instead keeps the train-mode behaviour unless ``--eval`` is given
(batch statistics of its batch of 1, active dropout); ``eval_mode: train``
reproduces that (with ``trainer.eval_batch_size=1`` for the same statistics)
without updating the running statistics or consuming the training RNG. With
short runs the running statistics can lag far behind the weights, so the two
modes may differ by a few dB. Metrics are per-image means over the split of
``l1`` (in the [-1, 1] range, as the loss), ``psnr`` and ``ssim`` (RGB in
[0, 1], :func:`mtbench.metrics.image.paired_metrics`); ``psnr`` ranks runs for
now. With the FID Inception weights available (``eval.fid``), the runner
adds ``fid``/``kid`` of ``G(A)`` against the split's real B images
(:meth:`Pix2PixModel.fid_pairs`) and ranks runs by ``fid``. Sample images and
FID use the same mode.

Parameters
----------
image_size:
    Side of the (square) training images; sets the U-Net depth
    (``unet_num_downs``: a power of two >= 32). The config takes it from the
    data (``data.image_size`` of the embedded data, else ``data.crop_size`` of
    the folder data, else 256), so changing the data size changes the model.
    It must be the size of the images the model is trained on (with
    ``preprocess`` modes that crop to ``crop_size``; not ``scale_width``/``none``).
in_channels, out_channels:
    Image channels of A and B (3).
ngf, ndf:
    Filters of the first generator / discriminator layer (64 in the paper).
n_layers_D:
    Stride-2 layers of the PatchGAN (3: the 70x70 PatchGAN).
norm:
    ``"batch"`` (the paper), ``"instance"`` or ``"none"``, for G and D.
use_dropout:
    Dropout(0.5) in the U-Net decoder (the paper's noise ``z``; true).
gan_mode:
    ``"vanilla"`` (the paper: BCE on logits) or ``"lsgan"``.
init_type, init_gain:
    Weight initialisation (:func:`mtbench.nets.init_weights`; normal, 0.02).
optim:
    ``lr`` and ``betas`` of the paper's Adam (2e-4, (0.5, 0.999)); the
    method's optimiser takes them through the method config, D's Adam here.
lr_decay:
    ``{enabled: true, start: 0.5}``: the linear decay above (``enabled:
    false`` keeps the learning rate constant); ``start`` in [0, 1] is the
    fraction of the steps before the decay begins.
eval_mode:
    ``"eval"`` (default: running statistics, no dropout) or ``"train"`` (the
    reference's test-time behaviour: batch statistics, dropout); see above.
weights:
    Default fixed weight per term (``G_GAN: 1``, ``G_L1: 100``, the paper's lambda).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from mtbench.metrics.image import MeanMeter, paired_metrics, to_unit
from mtbench.models.base import Model, set_requires_grad
from mtbench.models.gan import (DEFAULT_LR_DECAY, DEFAULT_OPTIM, N_SAMPLE_IMAGES, NORMS, check_choice,  # noqa: F401
                                check_lr_decay, check_positive_int, decay_schedulers, discriminator_adam, frozen,
                                linear_decay)
from mtbench.nets import GAN_MODES, GANLoss, NLayerDiscriminator, UnetGenerator, init_weights, unet_num_downs

EVAL_MODES = ("eval", "train")
EVAL_DROPOUT_SEED = 0  # dropout masks of eval_mode=train (drawn in a forked RNG)


# --------------------------------------------------------------------------- the model
class Pix2PixModel(Model):
    """pix2pix (U-Net G, conditional PatchGAN D); see the module docstring."""

    term_names = ["G_GAN", "G_L1"]
    primary_metric = "psnr"
    higher_is_better = True
    supports_fid = True  # with the FID Inception weights, FID of G(A) vs B is the runner's primary metric
    generator_modules = ("G",)  # what model.init_from loads
    default_term_weights = {"G_GAN": 1.0, "G_L1": 100.0}

    def __init__(self, image_size: int = 256, in_channels: int = 3, out_channels: int = 3, ngf: int = 64,
                 ndf: int = 64, n_layers_D: int = 3, norm: str = "batch", use_dropout: bool = True,
                 gan_mode: str = "vanilla", init_type: str = "normal", init_gain: float = 0.02,
                 optim: Mapping[str, Any] | None = None, lr_decay: Mapping[str, Any] | None = None,
                 eval_mode: str = "eval", weights: Mapping[str, float] | None = None,
                 init_from: str | None = None) -> None:
        optim = {**DEFAULT_OPTIM, **dict(optim or {})}
        super().__init__(optim=optim, weights={**self.default_term_weights, **dict(weights or {})},
                         init_from=init_from)
        check_positive_int("image_size", image_size)
        try:
            self.num_downs = unet_num_downs(image_size)
        except ValueError as err:
            raise ValueError(f"model.image_size: {err}") from None
        for key, value in (("in_channels", in_channels), ("out_channels", out_channels), ("ngf", ngf),
                           ("ndf", ndf), ("n_layers_D", n_layers_D)):
            check_positive_int(key, value)
        check_choice("gan_mode", gan_mode, GAN_MODES)
        check_choice("norm", norm, NORMS)
        self.image_size, self.ngf, self.ndf, self.n_layers_D = image_size, ngf, ndf, n_layers_D
        self.norm, self.use_dropout, self.gan_mode = norm, bool(use_dropout), gan_mode
        self.lr_decay = check_lr_decay(lr_decay)
        check_choice("eval_mode", eval_mode, EVAL_MODES)
        self.eval_mode = eval_mode

        self.G = init_weights(UnetGenerator(in_channels, out_channels, self.num_downs, ngf, norm, self.use_dropout),
                              init_type, init_gain)
        self.D = init_weights(NLayerDiscriminator(in_channels + out_channels, ndf, n_layers_D, norm),
                              init_type, init_gain)
        self.criterion_gan = GANLoss(gan_mode)
        self.opt_D = discriminator_adam(self.D.parameters(), self.optim_cfg)

    # -- the contract -----------------------------------------------------------------
    def multi_term_parameters(self):
        return self.G.parameters()

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"D": self.opt_D}

    def lr_schedulers(self, method, total_steps: int) -> list:
        return decay_schedulers([method.optimizer, self.opt_D], total_steps, self.lr_decay)

    def _check_size(self, x: Tensor) -> None:
        factor = 2 ** self.num_downs
        if x.dim() != 4 or x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"pix2pix with image_size={self.image_size} ({self.num_downs} U-Net downsamplings) "
                             f"needs (N, C, H, W) images with H and W divisible by {factor}, got {tuple(x.shape)}; "
                             f"set model.image_size to the data's image size")

    def _generate(self, real_a: Tensor) -> Tensor:
        with self.autocast():
            return self.G(real_a)

    def _generator_terms(self, real_a: Tensor, real_b: Tensor, fake_b: Tensor) -> dict[str, Tensor]:
        """The generator's unweighted terms for G(A) = ``fake_b`` (D must already be frozen by the caller)."""
        with self.autocast():
            pred_fake_g = self.D(torch.cat([real_a, fake_b], 1))
        return {"G_GAN": self.criterion_gan(pred_fake_g, True),
                "G_L1": F.l1_loss(fake_b.float(), real_b.float())}

    def training_step(self, batch, method) -> dict[str, Tensor]:
        real_a, real_b = self.prepare_input(batch["A"]), self.prepare_input(batch["B"])
        self._check_size(real_a)
        fake_b = self._generate(real_a)

        # D step: D(A, B) -> real, D(A, G(A)) -> fake, with G(A) detached
        set_requires_grad(self.D, True)
        self.opt_D.zero_grad(set_to_none=True)
        with self.autocast():
            pred_fake = self.D(torch.cat([real_a, fake_b.detach()], 1))
            pred_real = self.D(torch.cat([real_a, real_b], 1))
        loss_d_fake = self.criterion_gan(pred_fake, False)
        loss_d_real = self.criterion_gan(pred_real, True)
        loss_d = (loss_d_fake + loss_d_real) * 0.5
        loss_d.backward()
        self.opt_D.step()

        # G step: D frozen, so the method's backward touches no D gradient
        with frozen(self.D):
            terms = self._generator_terms(real_a, real_b, fake_b)
            # recompute: the same batch's terms at the updated G (D still frozen), for methods that need them (FAMO)
            method.step(terms, recompute=lambda: self._generator_terms(real_a, real_b, self._generate(real_a)))

        logs = {k: v.detach() for k, v in terms.items()}
        logs.update(D=loss_d.detach(), D_real=loss_d_real.detach(), D_fake=loss_d_fake.detach())
        return logs

    @torch.no_grad()
    def translate(self, a: Tensor) -> Tensor:
        """G(A) in float32, [-1, 1] (in the networks' current train/eval mode)."""
        a = self.prepare_input(a.to(self.device, non_blocking=True))
        self._check_size(a)
        with self.autocast():
            return self.G(a).float()

    @contextlib.contextmanager
    def test_mode(self):
        """The generator's behaviour for evaluation and sample images (see ``eval_mode``).

        ``"eval"``: as the runner set it (``model.eval()``). ``"train"``: the
        reference ``test.py`` without ``--eval``: normalisation layers use the
        batch's statistics and dropout is active, while the running statistics
        stay untouched and the dropout masks come from a fixed seed inside a
        forked RNG (the training RNG stream is not consumed).
        """
        if self.eval_mode == "eval":
            yield
            return
        saved = [(m, m.running_mean, m.running_var, m.num_batches_tracked) for m in self.G.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        was_training = self.G.training
        try:
            for m, *_ in saved:  # without running buffers BatchNorm normalises by the batch and updates nothing
                m.running_mean = m.running_var = m.num_batches_tracked = None
            self.G.train()
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                torch.manual_seed(EVAL_DROPOUT_SEED)
                yield
        finally:
            for m, mean, var, count in saved:
                m.running_mean, m.running_var, m.num_batches_tracked = mean, var, count
            self.G.train(was_training)

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        meter = MeanMeter()
        with self.test_mode():
            for batch in loader:
                fake_b = self.translate(batch["A"])
                meter.update(paired_metrics(fake_b, batch["B"].to(self.device, non_blocking=True)))
        return meter.compute()

    @torch.no_grad()
    def fid_pairs(self, batch) -> dict[str, tuple[Tensor, Tensor]]:
        """FID/KID of G(A) against the real B images."""
        with self.test_mode():
            return {"": (self.translate(batch["A"]), batch["B"])}

    @torch.no_grad()
    def sample_images(self, batch) -> dict[str, Tensor]:
        a, b = batch["A"][:N_SAMPLE_IMAGES], batch["B"][:N_SAMPLE_IMAGES]
        with self.test_mode():
            fake_b = self.translate(a)
        return {"input": to_unit(a), "fake": to_unit(fake_b), "target": to_unit(b)}

    def hparams(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "num_downs": self.num_downs, "ngf": self.ngf, "ndf": self.ndf,
                "n_layers_D": self.n_layers_D, "norm": self.norm, "use_dropout": self.use_dropout,
                "gan_mode": self.gan_mode, "eval_mode": self.eval_mode, "lr": float(self.optim_cfg["lr"]),
                "lr_decay": self.lr_decay["start"] if self.lr_decay["enabled"] else "off"}
