"""pix2pix / CycleGAN networks: U-Net and ResNet generators, the PatchGAN discriminator.

The architectures follow the papers and the authors' reference implementation
(junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``):

* Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial
  Networks" (pix2pix), arXiv:1611.07004 -- U-Net generator (Sec. 3.2.1,
  appendix 6.1.1) and the 70x70 PatchGAN discriminator (Sec. 3.2.2, 6.1.2).
* Zhu et al. 2017, "Unpaired Image-to-Image Translation using Cycle-Consistent
  Adversarial Networks" (CycleGAN), arXiv:1703.10593 -- the ResNet generator of
  Johnson et al. 2016 with 6 blocks for 128x128 and 9 blocks for 256x256 images
  (appendix 7.2), trained with instance normalisation.

Every constructor takes the normalisation by name (``"batch"``, ``"instance"``
or ``"none"``, see :func:`get_norm_layer`) and none of them touches a device:
move the networks with ``.to(device)`` as usual. Weights are initialised by the
caller with :func:`init_weights` (the reference's ``init_net`` does the same).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import init

from mtbench import validate

__all__ = [
    "get_norm_layer",
    "init_weights",
    "unet_num_downs",
    "resnet_n_blocks",
    "UnetSkipConnectionBlock",
    "UnetGenerator",
    "ResnetBlock",
    "ResnetGenerator",
    "NLayerDiscriminator",
]

NORM_TYPES = ("batch", "instance", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
# The smallest U-Net of the reference has 5 downsamplings (the 4 outer blocks
# ngf -> ngf*8 plus the innermost one), so the smallest image it maps to a 1x1
# bottleneck is 2**5 = 32 pixels.
UNET_MIN_DOWNS = 5


# -----------------------------------------------------------------------------
# Helpers
# -----------------------------------------------------------------------------
def _check_norm(norm: str | None) -> str:
    name = "none" if norm is None else str(norm).lower()
    if name not in NORM_TYPES:
        raise ValueError(f"unknown normalization layer {norm!r}; expected one of {list(NORM_TYPES)}")
    return name


def get_norm_layer(name: str | None = "instance") -> Callable[[int], nn.Module]:
    """Return a factory ``norm_layer(num_features) -> nn.Module`` for ``name``.

    ``"batch"``
        ``nn.BatchNorm2d`` with learnable affine parameters and running
        statistics (``affine=True, track_running_stats=True``), as in pix2pix.
    ``"instance"``
        ``nn.InstanceNorm2d`` without affine parameters and without running
        statistics (``affine=False, track_running_stats=False``): every image is
        normalised by its own statistics in training and evaluation (CycleGAN,
        following Ulyanov et al. 2016).
    ``"none"`` (or ``None``)
        ``nn.Identity`` (no normalisation).

    Raises ``ValueError`` naming an unknown ``name``.
    """
    name = _check_norm(name)
    if name == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if name == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)

    def identity(num_features: int) -> nn.Module:
        return nn.Identity()

    return identity


def _conv_bias(norm: str) -> bool:
    """Whether a convolution followed by ``norm`` needs its own bias.

    BatchNorm's affine shift makes a bias redundant (the reference uses
    ``bias=False`` before BatchNorm and ``bias=True`` before the non-affine
    InstanceNorm). With ``"none"`` the reference also drops the bias, which
    leaves those layers without any offset; here they keep one.
    """
    return norm != "batch"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place as the pix2pix/CycleGAN reference does; returns ``net``.

    Convolution (incl. transposed) and linear weights are drawn from
    N(0, ``gain``) for ``"normal"`` (the papers' "Gaussian with mean 0 and
    standard deviation 0.02"), or with Xavier-normal (``gain``), Kaiming-normal
    (fan-in, ``gain`` unused) or orthogonal (``gain``) initialisation; their
    biases are set to 0. BatchNorm weights are drawn from N(1, ``gain``) and
    their biases set to 0. Other modules (InstanceNorm without affine, PReLU...)
    keep their own initialisation. Uses torch's global RNG.
    """
    if init_type not in INIT_TYPES:
        raise ValueError(f"unknown init_type {init_type!r}; expected one of {list(INIT_TYPES)}")

    @torch.no_grad()
    def init_func(m: nn.Module) -> None:
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            init.normal_(m.weight, 1.0, gain)
            init.zeros_(m.bias)

    net.apply(init_func)
    return net


def _is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def unet_num_downs(image_size: int) -> int:
    """Number of U-Net downsamplings for square images of side ``image_size``.

    ``log2(image_size)``, so that the bottleneck is 1x1 as in pix2pix
    (256 -> 8, the reference's ``unet_256``; 128 -> 7, ``unet_128``; 64 -> 6;
    32 -> 5). ``image_size`` must be a power of two >= 32 (the smallest U-Net
    has 5 downsamplings); anything else raises ``ValueError`` naming it.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not _is_power_of_two(image_size) \
            or image_size < 2 ** UNET_MIN_DOWNS:
        raise ValueError(f"U-Net image size must be a power of two >= {2 ** UNET_MIN_DOWNS} "
                         f"(e.g. 32, 64, 128, 256), got {image_size!r}")
    return image_size.bit_length() - 1


def resnet_n_blocks(image_size: int) -> int:
    """Residual blocks of the CycleGAN ResNet generator: 9 for images >= 256, else 6.

    CycleGAN appendix 7.2: "We use 6 residual blocks for 128x128 training
    images, and 9 residual blocks for 256x256 or higher-resolution training
    images."
    """
    validate.positive_int("image_size", image_size)
    return 9 if image_size >= 256 else 6


# -----------------------------------------------------------------------------
# U-Net generator (pix2pix)
# -----------------------------------------------------------------------------
class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: downsample, the inner levels, upsample, skip.

    ::

        x --LeakyReLU(0.2)--> a --conv4x4/2-[norm]--> submodule --ReLU-convT4x4/2-[norm]-[dropout]--> u
        returns cat([a, u], dim=1)                 (not outermost)
        returns tanh(u)  (no LeakyReLU, no norm)   (outermost)

    The skip connection carries the encoder activations ``a`` (after the
    LeakyReLU): the pix2pix paper concatenates "all channels at layer i with
    those at layer n-i", and the reference code yields exactly this because its
    in-place LeakyReLU overwrites ``x`` before ``torch.cat([x, model(x)])``.
    Here it is written out explicitly, without in-place operations.

    Parameters
    ----------
    outer_nc:
        Channels of the block's input (and of its upsampled output ``u``).
    inner_nc:
        Channels after this block's downsampling convolution.
    input_nc:
        Input channels if different from ``outer_nc`` (the outermost block:
        the image channels).
    submodule:
        The next inner :class:`UnetSkipConnectionBlock` (``None`` for the innermost).
    outermost / innermost:
        Position in the U-Net; the outermost block has no normalisation and
        ends with ``tanh``, the innermost has no submodule and no
        normalisation after its downsampling (the 1x1 bottleneck).
    norm:
        ``"batch"``, ``"instance"`` or ``"none"`` (:func:`get_norm_layer`).
    use_dropout:
        Dropout(0.5) after the upsampling (intermediate blocks only).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: UnetSkipConnectionBlock | None = None, outermost: bool = False,
                 innermost: bool = False, norm: str = "batch", use_dropout: bool = False) -> None:
        super().__init__()
        if outermost and innermost:
            raise ValueError("a U-Net block cannot be both outermost and innermost")
        if (submodule is None) != innermost:
            raise ValueError("the innermost U-Net block has no submodule; every other block needs one")
        norm = _check_norm(norm)
        norm_layer = get_norm_layer(norm)
        use_bias = _conv_bias(norm)
        self.outermost = outermost
        self.innermost = innermost
        if input_nc is None:
            input_nc = outer_nc

        # Outermost: the raw image enters the first convolution (no activation).
        self.down_act = nn.Identity() if outermost else nn.LeakyReLU(0.2)
        down: list[nn.Module] = [nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)]
        if not (outermost or innermost):
            down.append(norm_layer(inner_nc))
        self.down = nn.Sequential(*down)
        self.submodule = submodule

        up_in = inner_nc if innermost else inner_nc * 2  # inner blocks return cat([a, u])
        up: list[nn.Module] = [nn.ReLU()]
        if outermost:
            up += [nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1), nn.Tanh()]
        else:
            up += [nn.ConvTranspose2d(up_in, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias),
                   norm_layer(outer_nc)]
            if use_dropout and not innermost:
                up.append(nn.Dropout(0.5))
        self.up = nn.Sequential(*up)

    def forward(self, x: Tensor) -> Tensor:
        a = self.down_act(x)
        h = self.down(a)
        if self.submodule is not None:
            h = self.submodule(h)
        u = self.up(h)
        if self.outermost:
            return u
        return torch.cat([a, u], dim=1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net generator (Isola et al. 2017, arXiv:1611.07004).

    Encoder C64-C128-C256-C512-C512-C512-C512-C512 (4x4 convolutions, stride 2,
    LeakyReLU 0.2, no norm on the first layer) and a mirrored decoder of 4x4
    transposed convolutions with ReLU, with skip connections between each layer
    i and layer n-i (paper appendix 6.1.1), ending with tanh. With
    ``num_downs = log2(H)`` the bottleneck is 1x1 (``unet_256``: 8 downs for
    256x256; ``unet_128``: 7 for 128x128); see :func:`unet_num_downs`. The
    ``num_downs - 5`` innermost-but-one ngf*8 levels carry Dropout(0.5) when
    ``use_dropout`` (for 8 downs: the first three decoder layers, the paper's
    noise source "CD512-CD512-CD512").

    Parameters
    ----------
    in_channels, out_channels:
        Image channels of the input and the output.
    num_downs:
        Number of downsamplings (>= 5); H and W must be divisible by
        ``2**num_downs``.
    ngf:
        Filters of the outermost convolution (the paper's 64); deeper levels
        use 2, 4 and then 8 times as many.
    norm:
        ``"batch"`` (pix2pix), ``"instance"`` or ``"none"``.
    use_dropout:
        Dropout(0.5) in the decoder (pix2pix's noise ``z``).

    Output: ``(N, out_channels, H, W)`` in [-1, 1].
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", use_dropout: bool = True) -> None:
        super().__init__()
        validate.positive_ints(in_channels=in_channels, out_channels=out_channels, ngf=ngf, num_downs=num_downs)
        if num_downs < UNET_MIN_DOWNS:
            raise ValueError(f"UnetGenerator needs num_downs >= {UNET_MIN_DOWNS}, got {num_downs}")
        norm = _check_norm(norm)
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(out_channels, ngf, input_nc=in_channels, submodule=block,
                                             outermost=True, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        factor = 2 ** self.num_downs
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"UnetGenerator with num_downs={self.num_downs} needs H and W divisible by "
                             f"{factor}, got {tuple(x.shape[-2:])}")
        return self.model(x)


# -----------------------------------------------------------------------------
# ResNet generator (CycleGAN)
# -----------------------------------------------------------------------------
class ResnetBlock(nn.Module):
    """Residual block ``x + [pad-conv3x3-norm-ReLU-(dropout)-pad-conv3x3-norm](x)``.

    No activation after the sum (Johnson et al. 2016 / CycleGAN reference).
    ``padding_type`` is ``"reflect"`` (CycleGAN), ``"replicate"`` or ``"zero"``.
    """

    def __init__(self, dim: int, padding_type: str = "reflect", norm: str = "instance",
                 use_dropout: bool = False) -> None:
        super().__init__()
        norm = _check_norm(norm)
        norm_layer = get_norm_layer(norm)
        use_bias = _conv_bias(norm)
        pads = {"reflect": nn.ReflectionPad2d, "replicate": nn.ReplicationPad2d}
        if padding_type not in (*pads, "zero"):
            raise ValueError(f"unknown padding_type {padding_type!r}; expected 'reflect', 'replicate' or 'zero'")

        def conv() -> list[nn.Module]:
            if padding_type == "zero":
                return [nn.Conv2d(dim, dim, kernel_size=3, padding=1, bias=use_bias)]
            return [pads[padding_type](1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias)]

        layers = conv() + [norm_layer(dim), nn.ReLU()]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += conv() + [norm_layer(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator (Zhu et al. 2017, arXiv:1703.10593, appendix 7.2).

    ``c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3``: a 7x7
    convolution on a reflection-padded input, two stride-2 3x3 convolutions
    (downsampling x4), ``n_blocks`` :class:`ResnetBlock` s, two stride-2 3x3
    transposed convolutions (upsampling x4), a final reflection-padded 7x7
    convolution and tanh. Every hidden convolution is followed by ``norm`` and
    ReLU (architecture of Johnson et al. 2016).

    Parameters
    ----------
    in_channels, out_channels:
        Image channels of the input and the output.
    ngf:
        Filters of the first convolution (64 in the paper).
    n_blocks:
        Residual blocks (>= 0): 6 for 128x128, 9 for 256x256 (:func:`resnet_n_blocks`).
    norm:
        ``"instance"`` (CycleGAN), ``"batch"`` or ``"none"``.
    use_dropout:
        Dropout(0.5) inside the residual blocks (off in CycleGAN).
    padding_type:
        Padding of the residual blocks' convolutions (``"reflect"`` as in the reference).

    Input H and W must be divisible by 4. Output: ``(N, out_channels, H, W)`` in [-1, 1].
    """

    n_downsampling = 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", use_dropout: bool = False, padding_type: str = "reflect") -> None:
        super().__init__()
        validate.positive_ints(in_channels=in_channels, out_channels=out_channels, ngf=ngf)
        validate.non_negative_int("n_blocks", n_blocks)
        norm = _check_norm(norm)
        norm_layer = get_norm_layer(norm)
        use_bias = _conv_bias(norm)

        layers: list[nn.Module] = [nn.ReflectionPad2d(3),
                                   nn.Conv2d(in_channels, ngf, kernel_size=7, padding=0, bias=use_bias),
                                   norm_layer(ngf), nn.ReLU()]
        for i in range(self.n_downsampling):
            mult = 2 ** i
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                       norm_layer(ngf * mult * 2), nn.ReLU()]
        mult = 2 ** self.n_downsampling
        layers += [ResnetBlock(ngf * mult, padding_type=padding_type, norm=norm, use_dropout=use_dropout)
                   for _ in range(n_blocks)]
        for i in range(self.n_downsampling):
            mult = 2 ** (self.n_downsampling - i)
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1,
                                          output_padding=1, bias=use_bias),
                       norm_layer(ngf * mult // 2), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7, padding=0), nn.Tanh()]
        self.n_blocks = n_blocks
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        factor = 2 ** self.n_downsampling
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"ResnetGenerator needs H and W divisible by {factor}, got {tuple(x.shape[-2:])}")
        return self.model(x)


# -----------------------------------------------------------------------------
# PatchGAN discriminator (pix2pix, CycleGAN)
# -----------------------------------------------------------------------------
class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2 and appendix 6.1.2).

    ``C64-C128-C256-C512`` then a 1-channel convolution: 4x4 convolutions,
    LeakyReLU(0.2), no norm on the first layer; the first ``n_layers`` are
    stride 2, the last two stride 1 (as in the reference). With ``n_layers=3``
    each output unit sees a 70x70 patch of the input: the "70x70 PatchGAN",
    used by pix2pix and CycleGAN. A 256x256 input gives a 30x30 map, a 64x64
    input a 6x6 map.

    Returns raw logits ``(N, 1, H', W')`` (no sigmoid: use :class:`GANLoss`).

    Parameters
    ----------
    in_channels:
        Input channels (pix2pix's conditional D sees ``cat([input, output])``,
        e.g. 6; CycleGAN's D sees one image, 3).
    ndf:
        Filters of the first layer (64); doubled per layer up to 8*ndf.
    n_layers:
        Stride-2 convolutions (3 for the 70x70 PatchGAN; 1 gives the 16x16 one).
    norm:
        ``"batch"`` (pix2pix), ``"instance"`` (CycleGAN) or ``"none"``.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        validate.positive_ints(in_channels=in_channels, ndf=ndf, n_layers=n_layers)
        norm = _check_norm(norm)
        norm_layer = get_norm_layer(norm)
        use_bias = _conv_bias(norm)
        kw, padw = 4, 1
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=kw, stride=2, padding=padw),
                                   nn.LeakyReLU(0.2)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw,
                                 bias=use_bias),
                       norm_layer(ndf * nf_mult), nn.LeakyReLU(0.2)]
        nf_mult_prev, nf_mult = nf_mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw,
                             bias=use_bias),
                   norm_layer(ndf * nf_mult), nn.LeakyReLU(0.2),
                   nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
