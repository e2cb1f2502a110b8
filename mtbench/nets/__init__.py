"""GAN building blocks for the pix2pix, CycleGAN and SRGAN benchmarks.

* :mod:`mtbench.nets.pix2pix_nets` -- U-Net and ResNet generators, the PatchGAN
  discriminator, ``get_norm_layer`` and ``init_weights`` (Isola et al. 2017,
  arXiv:1611.07004; Zhu et al. 2017, arXiv:1703.10593).
* :mod:`mtbench.nets.srgan_nets` -- SRResNet and the SRGAN discriminator
  (Ledig et al. 2017, arXiv:1609.04802).
* :mod:`mtbench.nets.gan_loss` -- ``GANLoss`` (vanilla / LSGAN).
* :mod:`mtbench.nets.image_pool` -- CycleGAN's ``ImagePool`` history buffer.
* :mod:`mtbench.nets.vgg` -- the frozen VGG19 feature extractor of SRGAN's
  perceptual loss.
"""

from mtbench.nets.gan_loss import GAN_MODES, GANLoss
from mtbench.nets.image_pool import ImagePool
from mtbench.nets.pix2pix_nets import (
    NLayerDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UnetGenerator,
    UnetSkipConnectionBlock,
    get_norm_layer,
    init_weights,
    resnet_n_blocks,
    unet_num_downs,
)
from mtbench.nets.srgan_nets import SRGANDiscriminator, SRResNet
from mtbench.nets.vgg import (
    VGG19_LAYERS,
    VGG19_WEIGHTS_FILE,
    VGG19_WEIGHTS_URL,
    InvalidWeightsError,
    MissingWeightsError,
    VGGFeatureExtractor,
    vgg19_hub_checkpoint_path,
)

__all__ = [
    "GAN_MODES",
    "GANLoss",
    "ImagePool",
    "InvalidWeightsError",
    "MissingWeightsError",
    "NLayerDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "SRGANDiscriminator",
    "SRResNet",
    "UnetGenerator",
    "UnetSkipConnectionBlock",
    "VGG19_LAYERS",
    "VGG19_WEIGHTS_FILE",
    "VGG19_WEIGHTS_URL",
    "VGGFeatureExtractor",
    "get_norm_layer",
    "init_weights",
    "resnet_n_blocks",
    "unet_num_downs",
    "vgg19_hub_checkpoint_path",
]
