"""SRGAN networks: the SRResNet generator and the SRGAN discriminator.

Ledig et al. 2017, "Photo-Realistic Single Image Super-Resolution Using a
Generative Adversarial Network", arXiv:1609.04802, Sec. 2.2 and Figure 4.

Choices where the paper leaves room (documented on each class):

* SRResNet output activation: ``tanh`` by default, so the super-resolved image
  lies in [-1, 1] like the HR targets (the paper scales HR images to [-1, 1] and
  computes the MSE there) and like the input the VGG feature extractor expects;
  ``output_activation="none"`` gives the plain linear output of Figure 4.
* PReLU: channel-wise (one slope per feature map, He et al. 2015).
* Convolutions followed by BatchNorm have no bias (BatchNorm's shift replaces it).
* Discriminator: the paper's 96x96 input gives a 6x6x512 map before the dense
  layers; an adaptive average pooling to ``pooled_size`` x ``pooled_size``
  (default 6, an identity at 96x96) lets any input size through. The last dense
  layer returns raw logits (the paper's sigmoid lives in the loss, see GANLoss).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mtbench import validate

__all__ = ["SRResidualBlock", "SRUpsampleBlock", "SRResNet", "SRGANDiscriminator"]


class SRResidualBlock(nn.Module):
    """``x + BN(conv3x3(PReLU(BN(conv3x3(x)))))`` (SRGAN Figure 4, "B residual blocks")."""

    def __init__(self, n_features: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_features, n_features, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(n_features),
            nn.PReLU(n_features),
            nn.Conv2d(n_features, n_features, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(n_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRUpsampleBlock(nn.Module):
    """conv3x3 (n -> 4n) -> PixelShuffle(2) -> PReLU: a x2 sub-pixel upsampling (Shi et al. 2016)."""

    def __init__(self, n_features: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_features, n_features * 4, kernel_size=3, padding=1),
            nn.PixelShuffle(2),
            nn.PReLU(n_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class SRResNet(nn.Module):
    """The SRResNet / SRGAN generator (Ledig et al. 2017, Figure 4, top).

    ::

        conv9x9(n) - PReLU                                  -> s
        n_blocks x SRResidualBlock - conv3x3(n) - BN, + s   (global skip)
        log2(scale) x [conv3x3(4n) - PixelShuffle(2) - PReLU]
        conv9x9(out_channels) - [tanh]

    Parameters
    ----------
    in_channels, out_channels:
        Image channels of the low-resolution input and the output.
    n_features:
        Feature maps of the body (64 in the paper).
    n_blocks:
        Residual blocks (16 in the paper).
    scale:
        Upscaling factor, a power of two >= 2 (4 in the paper: two x2
        PixelShuffle blocks); anything else raises ``ValueError``.
    output_activation:
        ``"tanh"`` (default; output in [-1, 1], the range of the HR targets) or
        ``"none"`` (the linear output of the paper's figure).

    Maps ``(N, in_channels, h, w)`` to ``(N, out_channels, scale*h, scale*w)``.
    The paper feeds LR inputs scaled to [0, 1]; any fixed range works as long as
    training and evaluation agree. Weights keep PyTorch's default
    initialisation unless the caller applies ``init_weights``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_features: int = 64, n_blocks: int = 16,
                 scale: int = 4, output_activation: str = "tanh") -> None:
        super().__init__()
        validate.positive_ints(in_channels=in_channels, out_channels=out_channels, n_features=n_features)
        validate.non_negative_int("n_blocks", n_blocks)
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
            raise ValueError(f"SRResNet scale must be a power of two >= 2 (2, 4, 8...), got {scale!r}")
        if output_activation not in ("tanh", "none"):
            raise ValueError(f"unknown output_activation {output_activation!r}; expected 'tanh' or 'none'")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(in_channels, n_features, kernel_size=9, padding=4),
                                  nn.PReLU(n_features))
        self.body = nn.Sequential(*[SRResidualBlock(n_features) for _ in range(n_blocks)],
                                  nn.Conv2d(n_features, n_features, kernel_size=3, padding=1, bias=False),
                                  nn.BatchNorm2d(n_features))
        self.upsample = nn.Sequential(*[SRUpsampleBlock(n_features) for _ in range(scale.bit_length() - 1)])
        tail: list[nn.Module] = [nn.Conv2d(n_features, out_channels, kernel_size=9, padding=4)]
        if output_activation == "tanh":
            tail.append(nn.Tanh())
        self.tail = nn.Sequential(*tail)

    def forward(self, x: Tensor) -> Tensor:
        s = self.head(x)
        h = s + self.body(s)
        return self.tail(self.upsample(h))


def _pool_to(x: Tensor, size: int) -> Tensor:
    """Average-pool ``x`` to ``size`` x ``size``, preferring deterministic kernels.

    Identity when already that size, a plain average pooling when the size
    divides the input, nearest replication when the input is smaller and
    divides it, else ``adaptive_avg_pool2d`` (whose CUDA backward is not
    deterministic).
    """
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h % size == 0 and w % size == 0:
        return F.avg_pool2d(x, kernel_size=(h // size, w // size))
    if size % h == 0 and size % w == 0:
        n, c = x.shape[:2]
        rh, rw = size // h, size // w
        return x[:, :, :, None, :, None].expand(n, c, h, rh, w, rw).reshape(n, c, size, size)
    return F.adaptive_avg_pool2d(x, size)


class SRGANDiscriminator(nn.Module):
    """The SRGAN discriminator (Ledig et al. 2017, Figure 4, bottom).

    Eight 3x3 convolutions with LeakyReLU(0.2) -- ``ndf`` (stride 1, no BN),
    then ``ndf`` s2, ``2ndf`` s1, ``2ndf`` s2, ``4ndf`` s1, ``4ndf`` s2,
    ``8ndf`` s1, ``8ndf`` s2, each with BatchNorm (64..512 filters in the paper)
    -- then Dense(1024), LeakyReLU(0.2), Dense(1).

    Returns raw logits of shape ``(N, 1)`` (no sigmoid; use ``GANLoss("vanilla")``).

    Parameters
    ----------
    in_channels:
        Image channels.
    ndf:
        Filters of the first convolution (64).
    pooled_size:
        The conv features are average-pooled to ``pooled_size`` x
        ``pooled_size`` before the dense layers, so any input size works. The
        default 6 reproduces the paper exactly for 96x96 inputs (the pooling is
        then an identity); 1 gives global average pooling.
    fc_features:
        Width of the hidden dense layer (1024).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, pooled_size: int = 6, fc_features: int = 1024) -> None:
        super().__init__()
        validate.positive_ints(in_channels=in_channels, ndf=ndf, pooled_size=pooled_size, fc_features=fc_features)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, kernel_size=3, stride=1, padding=1),
                                   nn.LeakyReLU(0.2)]
        spec = [(ndf, 2), (ndf * 2, 1), (ndf * 2, 2), (ndf * 4, 1), (ndf * 4, 2), (ndf * 8, 1), (ndf * 8, 2)]
        c_in = ndf
        for c_out, stride in spec:
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pooled_size = pooled_size
        self.classifier = nn.Sequential(nn.Flatten(),
                                        nn.Linear(c_in * pooled_size * pooled_size, fc_features),
                                        nn.LeakyReLU(0.2),
                                        nn.Linear(fc_features, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = _pool_to(self.features(x), self.pooled_size)
        return self.classifier(h)
