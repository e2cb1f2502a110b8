"""SRGAN x4 super-resolution: the three-term generator loss of the MTAdam paper's SR benchmark.

Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", arXiv:1609.04802 (SRGAN); benchmarked with
loss balancing in Malkiel & Wolf, "MTAdam", arXiv:2006.14683.

Networks (:mod:`mtbench.nets.srgan_nets`): the SRResNet generator G (B residual
blocks, two x2 sub-pixel upsamplings, tanh output in [-1, 1]) and the SRGAN
discriminator D (eight 3x3 convolutions, two dense layers, raw logits). Batches
are ``{"lr", "hr"}`` images in [-1, 1] (:mod:`mtbench.data.sr`,
:func:`mtbench.data.embedded_images.sr_embedded`); G maps LR to SR = G(LR),
``scale`` times larger.

The generator's loss terms (``term_names``; each unweighted, the weights are
the balancing method's business):

``content``
    Pixel MSE(SR, HR) in the [-1, 1] range (SRGAN-MSE's content loss).
``perceptual``
    MSE between the frozen ImageNet VGG19 features of SR and of HR at
    ``vgg_layer`` (``conv5_4`` after its ReLU: SRGAN-VGG54), see
    :class:`mtbench.nets.VGGFeatureExtractor`.
``adversarial``
    The non-saturating GAN loss ``BCEWithLogits(D(SR), real)``
    (:class:`mtbench.nets.GANLoss`, ``gan_mode`` ``vanilla``).

Default fixed weights {content: 1, perceptual: 0.006, adversarial: 0.001}: the
adversarial weight 1e-3 is the paper's (Eq. 3); the paper rescales the VGG
feature maps by 1/12.75, which is a weight of 1/12.75^2 ~ 0.006 on the feature
MSE; keeping the pixel MSE beside the VGG term, as the MTAdam benchmark's three
terms do, follows the common PyTorch reimplementations (e.g. aitorzip/PyTorch-SRGAN).

**The balancing method weights the generator's terms only.** The runner's
method optimises G's parameters (:meth:`SRGANModel.multi_term_parameters`); D
is trained with its own plain Adam (:meth:`SRGANModel.aux_optimizers`, key
``"D"``, checkpointed by the runner) on the unweighted discriminator loss.

One training step (D first, then G with the updated D, as in pix2pix and the
SRGAN reimplementations):

1. SR = G(LR) (one forward pass, shared by both updates);
2. D step: ``D = GAN(D(HR), real) + GAN(D(SR.detach()), fake)`` -- the sum,
   **not halved**: this is the paper's min-max objective (Eq. 2) written as two
   BCE terms. pix2pix halves it to slow D down; with Adam a constant factor on
   the loss changes the updates only through ``eps``, so the choice hardly
   matters. Logged as ``D`` with its parts ``D_real`` and ``D_fake``;
3. G step: D is frozen (``set_requires_grad(D, False)``), so the generator's
   backward never computes or accumulates gradients of D's parameters (for the
   weighted-sum methods' ``backward()`` and for MTAdam's ``autograd.grad`` alike);
   ``method.step({content, perceptual, adversarial})``; D is unfrozen again.

Nothing syncs with the host in a step: the returned logs (the terms, ``D``,
``D_real``, ``D_fake``) are detached device scalars.

The frozen VGG19 (about 80 MB) is **not** part of ``state_dict()`` or
``parameters()``: it is held outside ``nn.Module``'s registries, so checkpoints
carry only G and D. ``.to()``, ``.cuda()``, ``.half()``, channels_last (anything
that goes through ``nn.Module._apply``, hence :meth:`Model.configure_runtime`)
still reach it. It is built in the constructor, so missing weights fail before
any data is trained on, with :class:`mtbench.nets.MissingWeightsError` saying
which file to fetch from where, where to put it, ``model.vgg_weights=<path>``
and ``model.perceptual=false``. There is never a silent fallback.

``perceptual=false`` **removes** the term: ``term_names`` is then ``["content",
"adversarial"]`` (an instance attribute) and a ``perceptual`` entry of
``weights`` is ignored. A constant-zero term was rejected because SoftAdapt
would still hand it a share of the K weights (its slope is 0, so in the
original variant it often gets the largest), changing the balance between the
real terms, and logs would show a weight for a term that does not exist. With
the term removed every method sees exactly the terms that train G (MTAdam's
anchor stays ``content``); a ``method.weights``/``method.ranks`` entry naming
``perceptual`` then fails with the methods' "unknown terms" error.

``adversarial=false`` likewise removes the adversarial term **and the
discriminator**: none is built (no ``discriminator.*`` in checkpoints, no
``D`` optimiser), and a training step is G(LR) and ``method.step`` on the
remaining terms only. With ``perceptual=false`` too, the only term is
``content``: the paper's SRResNet-MSE, the pre-training of SRGAN's generator
(``experiment=srresnet_bsd68``). An SRGAN run starts its generator from it with
``model.init_from=<that run dir>`` (:meth:`mtbench.models.base.Model.load_generator`:
``generator.*`` weights only; its discriminator, optimisers and method start fresh).

Evaluation (:meth:`SRGANModel.evaluate`): per-image PSNR and SSIM on the Y
channel (BT.601) with ``scale`` border pixels removed (SR papers' convention,
:func:`mtbench.metrics.image.sr_metrics`), averaged over the loader, plus the
same for the bicubic upsampling of LR (``bicubic_psnr``, ``bicubic_ssim``;
``torch.nn.functional.interpolate``, bicubic, ``antialias=False``) so a run
shows whether SR beats bicubic. ``primary_metric`` is ``psnr`` (higher is
better).

Parameters
----------
scale:
    Upscaling factor, a power of two (4 in the paper); must match the data's
    ``scale`` (checked on every batch's shapes, no host sync).
n_blocks:
    Residual blocks of SRResNet (16 in the paper).
n_features:
    Feature maps of SRResNet's body (64).
ndf:
    Filters of D's first convolution (64; 64..512 across its eight convolutions).
d_fc_features:
    Width of D's hidden dense layer (1024 in the paper).
perceptual:
    Train with the VGG term (default true, as the paper). Needs the VGG19
    ImageNet weights (``vgg19-dcbb9e9d.pth``): in torch hub's checkpoint
    folder, downloaded by torchvision, or given by ``vgg_weights``. False
    removes the term (see above).
adversarial:
    Train with the adversarial term and a discriminator (default true). False
    removes both: no discriminator is built or stepped (see above).
vgg_weights:
    Path of a torchvision vgg19 state_dict (full, or only ``features.*``);
    null looks in torch hub's checkpoint folder, then downloads.
vgg_layer:
    VGG19 layer of the perceptual loss, ``conv{i}_{j}`` (``conv5_4``:
    SRGAN-VGG54; ``conv2_2``: SRGAN-VGG22).
gan_mode:
    ``vanilla`` (BCE with logits, the paper) or ``lsgan``.
lr_decay_at:
    Fraction of the run's total steps after which the learning rates of G
    (the method's optimiser) and D are multiplied by ``lr_decay_gamma`` (the
    paper: 10^5 steps at 1e-4 then 10^5 at 1e-5, i.e. 0.5 and 0.1); null: a
    constant learning rate.
lr_decay_gamma:
    The factor of that single decay, in (0, 1].
optim:
    Adam settings (``lr`` 1e-4, ``betas`` [0.9, 0.999], the paper's); the
    method configs interpolate them for G, and D's Adam uses them.
weights:
    Default fixed weight per term (see above).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from mtbench import validate
from mtbench.methods.base import check_beta, check_positive
from mtbench.metrics.image import MeanMeter, sr_metrics, to_unit
from mtbench.models.base import Model, set_requires_grad
from mtbench.models.gan import check_step_decay, discriminator_adam, frozen, step_decay_schedulers
from mtbench.nets import GANLoss, SRGANDiscriminator, SRResNet, VGGFeatureExtractor

ALL_TERMS = ["content", "perceptual", "adversarial"]
DEFAULT_OPTIM = {"lr": 1e-4, "betas": [0.9, 0.999]}  # the paper's Adam, for G (method config) and D
DEFAULT_WEIGHTS = {"content": 1.0, "perceptual": 0.006, "adversarial": 0.001}


class SRGANModel(Model):
    """SRResNet generator + SRGAN discriminator with content/perceptual/adversarial terms (module docstring)."""

    term_names = list(ALL_TERMS)
    primary_metric = "psnr"
    higher_is_better = True
    supports_fid = True  # with the FID Inception weights, FID (SR vs HR) becomes the primary metric
    generator_modules = ("generator",)  # what model.init_from loads (the SRResNet)

    def __init__(self, scale: int = 4, n_blocks: int = 16, n_features: int = 64, ndf: int = 64,
                 d_fc_features: int = 1024, perceptual: bool = True, adversarial: bool = True,
                 vgg_weights: str | os.PathLike | None = None, vgg_layer: str = "conv5_4",
                 gan_mode: str = "vanilla", lr_decay_at: float | None = 0.5, lr_decay_gamma: float = 0.1,
                 optim: Mapping[str, Any] | None = None, weights: Mapping[str, float] | None = None,
                 init_from: str | None = None) -> None:
        validate.boolean("model.perceptual", perceptual)
        validate.boolean("model.adversarial", adversarial)
        removed = {n for n, on in (("perceptual", perceptual), ("adversarial", adversarial)) if not on}
        # instance attribute, set before Model.__init__ checks the weights against it
        self.term_names = [n for n in ALL_TERMS if n not in removed]
        weights = {**DEFAULT_WEIGHTS, **dict(weights if weights is not None else {})}
        for n in removed:
            weights.pop(n, None)
        optim = dict(optim or DEFAULT_OPTIM)
        super().__init__(optim=optim, weights=weights, init_from=init_from)
        check_positive("model.optim.lr", self.optim_cfg.get("lr", DEFAULT_OPTIM["lr"]))
        betas = list(self.optim_cfg.get("betas", DEFAULT_OPTIM["betas"]))
        if len(betas) != 2:
            raise ValueError(f"model.optim.betas must have 2 values, got {betas!r}")
        for i, b in enumerate(betas):
            check_beta(f"model.optim.betas[{i}]", b)
        self.lr_decay_at, self.lr_decay_gamma = check_step_decay(lr_decay_at, lr_decay_gamma)

        self.scale = scale
        self.perceptual = perceptual
        self.adversarial = adversarial
        self.vgg_layer = vgg_layer
        self.arch = {"n_blocks": n_blocks, "n_features": n_features, "ndf": ndf, "d_fc_features": d_fc_features}
        self.generator = SRResNet(n_features=n_features, n_blocks=n_blocks, scale=scale)
        # adversarial=false (SRResNet): no discriminator at all, so no D compute and none in checkpoints
        self.discriminator = SRGANDiscriminator(ndf=ndf, fc_features=d_fc_features) if adversarial else None
        self.gan_loss = GANLoss(gan_mode)
        self._opt_d: torch.optim.Optimizer | None = None
        # The frozen VGG lives outside nn.Module's registries (not in state_dict/parameters);
        # _apply below moves/casts it with the model. Built now: missing weights fail before training.
        vgg = VGGFeatureExtractor(vgg_layer, weights_path=vgg_weights) if perceptual else None
        object.__setattr__(self, "_vgg", vgg)

    # -- runtime -----------------------------------------------------------------
    @property
    def vgg(self) -> VGGFeatureExtractor | None:
        """The frozen VGG19 feature extractor (None with ``perceptual=false``)."""
        return self.__dict__.get("_vgg")

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        if recurse and self.vgg is not None:
            self.vgg._apply(fn)
        return self

    def _d_optimizer(self) -> torch.optim.Optimizer:
        # built lazily, i.e. after configure_runtime moved D (the runner asks only after that)
        if self._opt_d is None:
            self._opt_d = discriminator_adam(self.discriminator.parameters(), {**DEFAULT_OPTIM, **self.optim_cfg})
        return self._opt_d

    def aux_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"D": self._d_optimizer()} if self.adversarial else {}

    def multi_term_parameters(self):
        return self.generator.parameters()

    def lr_schedulers(self, method, total_steps: int) -> list:
        """One step decay of G's and D's learning rates at ``lr_decay_at * total_steps`` (none if null)."""
        if self.lr_decay_at is None or self.lr_decay_gamma == 1.0:
            return []  # (before aux_optimizers(): no D optimiser is built for nothing)
        return step_decay_schedulers([method.optimizer, *self.aux_optimizers().values()], total_steps,
                                     self.lr_decay_at, self.lr_decay_gamma)

    # -- forward -----------------------------------------------------------------
    def _check_shapes(self, lr: Tensor, hr: Tensor) -> None:
        if lr.dim() != 4 or hr.shape[-2:] != (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale):
            raise ValueError(f"model.scale={self.scale} but the batch has LR {tuple(lr.shape)} and HR "
                             f"{tuple(hr.shape)}; set data.scale to model.scale")

    def super_resolve(self, lr: Tensor) -> Tensor:
        """SR = G(LR), (N, 3, scale*h, scale*w) in [-1, 1] (under the model's autocast)."""
        with self.autocast():
            return self.generator(self.prepare_input(lr))

    def bicubic(self, lr: Tensor) -> Tensor:
        """The bicubic upsampling of LR by ``scale`` (no antialiasing), clamped to [-1, 1]."""
        up = F.interpolate(lr.float(), scale_factor=self.scale, mode="bicubic", align_corners=False,
                           antialias=False)
        return up.clamp(-1.0, 1.0)

    def generator_terms(self, sr: Tensor, hr: Tensor) -> dict[str, Tensor]:
        """The unweighted generator terms for SR vs HR (D must already be frozen by the caller)."""
        terms = {"content": F.mse_loss(sr.float(), hr.float())}
        if self.perceptual:
            with self.autocast():
                f_sr = self.vgg(sr)
                with torch.no_grad():
                    f_hr = self.vgg(hr)
            terms["perceptual"] = F.mse_loss(f_sr.float(), f_hr.float())
        if self.adversarial:
            with self.autocast():
                pred_fake = self.discriminator(sr)
            terms["adversarial"] = self.gan_loss(pred_fake, True)
        return {n: terms[n] for n in self.term_names}

    def training_step(self, batch, method) -> dict[str, Tensor]:
        lr, hr = batch["lr"], batch["hr"]
        self._check_shapes(lr, hr)
        hr = self.prepare_input(hr)
        sr = self.super_resolve(lr)

        def recompute() -> dict[str, Tensor]:  # the same batch's terms at the updated G (D frozen), for FAMO
            return self.generator_terms(self.super_resolve(lr), hr)

        if not self.adversarial:  # SRResNet: the generator's terms only, no discriminator step
            terms = self.generator_terms(sr, hr)
            method.step(terms, recompute=recompute)
            return {k: v.detach() for k, v in terms.items()}

        # D step: its own Adam on the unweighted (not halved) discriminator loss
        set_requires_grad(self.discriminator, True)
        opt_d = self._d_optimizer()
        opt_d.zero_grad(set_to_none=True)
        with self.autocast():
            pred_real = self.discriminator(hr)
            pred_fake = self.discriminator(sr.detach())
        d_real = self.gan_loss(pred_real, True)
        d_fake = self.gan_loss(pred_fake, False)
        d_loss = d_real + d_fake
        d_loss.backward()
        opt_d.step()

        # G step: D frozen, so the method's backward/autograd.grad never reaches D's parameters
        with frozen(self.discriminator):
            terms = self.generator_terms(sr, hr)
            method.step(terms, recompute=recompute)
        logs = {k: v.detach() for k, v in terms.items()}
        logs.update(D=d_loss.detach(), D_real=d_real.detach(), D_fake=d_fake.detach())
        return logs

    # -- evaluation ----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        """Mean per-image Y-channel PSNR/SSIM (border = scale) of SR and of bicubic over ``loader``."""
        meter = MeanMeter()
        for batch in loader:
            lr = batch["lr"].to(self.device, non_blocking=True)
            hr = batch["hr"].to(self.device, non_blocking=True)
            self._check_shapes(lr, hr)
            sr = self.super_resolve(lr).float()
            m = sr_metrics(sr, hr, self.scale)
            b = sr_metrics(self.bicubic(lr), hr, self.scale)
            meter.update({"psnr": m["psnr"], "ssim": m["ssim"],
                          "bicubic_psnr": b["psnr"], "bicubic_ssim": b["ssim"]})
        if meter.n == 0:
            raise ValueError("evaluation split is empty")
        return meter.compute()

    @torch.no_grad()
    def fid_pairs(self, batch) -> dict[str, tuple[Tensor, Tensor]]:
        """FID/KID of SR vs HR."""
        return {"": (self.super_resolve(batch["lr"]).float(), batch["hr"])}

    @torch.no_grad()
    def sample_images(self, batch) -> dict[str, Tensor]:
        """Up to 4 images: bicubic-upsampled LR, SR and HR, each (n, 3, H, W) in [0, 1]."""
        lr, hr = batch["lr"][:4], batch["hr"][:4]
        sr = self.super_resolve(lr).float()
        return {"bicubic": to_unit(self.bicubic(lr)), "sr": to_unit(sr), "hr": to_unit(hr)}

    def hparams(self) -> dict[str, Any]:
        return {"scale": self.scale, **self.arch, "perceptual": self.perceptual, "adversarial": self.adversarial,
                "vgg_layer": self.vgg_layer if self.perceptual else "none",
                "gan_mode": self.gan_loss.mode,
                "lr_decay_at": -1.0 if self.lr_decay_at is None else self.lr_decay_at,
                "lr_decay_gamma": self.lr_decay_gamma}

    def extra_repr(self) -> str:
        vgg = f"{self.vgg.layer} from {self.vgg.weights_source}" if self.vgg is not None else None
        return f"scale={self.scale}, terms={self.term_names}, vgg={vgg!r}"
