"""Frozen VGG19 features for the SRGAN perceptual ("VGG") loss.

Ledig et al. 2017 (SRGAN, arXiv:1609.04802, Sec. 2.2.1) define the VGG loss on
phi_{i,j}, "the feature map obtained by the j-th convolution (after activation)
before the i-th maxpooling layer within the VGG19 network" (Simonyan &
Zisserman 2014, ImageNet-pretrained); SRGAN-VGG54 uses phi_{5,4}. Layers are
named here ``conv{i}_{j}`` and, like the paper, taken after their ReLU by default:
``conv5_4`` is ``torchvision.models.vgg19().features[34]`` and the extractor is
``features[:36]`` (the convolution and its ReLU, before the 5th max-pooling).

The ImageNet weights are torchvision's ``VGG19_Weights.IMAGENET1K_V1``
(``vgg19-dcbb9e9d.pth``). They are looked up, in order, in ``weights_path``,
in torch hub's checkpoint directory, then downloaded by torchvision; when none of
this works a :class:`MissingWeightsError` says what to do. There is never a
silent fallback to random weights.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import VGG19_Weights

from mtbench.metrics.pretrained import InvalidWeightsError, MissingWeightsError, find_weights, hub_checkpoint_path, \
    read_state_dict

__all__ = [
    "MissingWeightsError",
    "InvalidWeightsError",
    "VGGFeatureExtractor",
    "VGG19_LAYERS",
    "VGG19_WEIGHTS_URL",
    "VGG19_WEIGHTS_FILE",
    "vgg19_hub_checkpoint_path",
]

VGG19_WEIGHTS_URL: str = VGG19_Weights.IMAGENET1K_V1.url
VGG19_WEIGHTS_FILE: str = VGG19_WEIGHTS_URL.rsplit("/", 1)[-1]  # vgg19-dcbb9e9d.pth

# torchvision's configuration "E" (VGG19): conv widths, "M" = 2x2 max-pooling.
_VGG19_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]

# "convI_J" -> index of that convolution in torchvision's vgg19().features.
VGG19_LAYERS: dict[str, int] = {}


def _index_layers() -> None:
    idx, block, conv = 0, 1, 0
    for v in _VGG19_CFG:
        if v == "M":
            idx += 1
            block, conv = block + 1, 0
        else:
            conv += 1
            VGG19_LAYERS[f"conv{block}_{conv}"] = idx
            idx += 2  # the convolution and its ReLU


_index_layers()


def vgg19_hub_checkpoint_path() -> Path:
    """Where torchvision caches the VGG19 weights: ``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth``.

    ``torch.hub.get_dir()`` follows ``$TORCH_HOME`` (default ``~/.cache/torch``).
    """
    return hub_checkpoint_path(VGG19_WEIGHTS_FILE)


def _how_to_fix() -> str:
    return (f"Download {VGG19_WEIGHTS_FILE} from {VGG19_WEIGHTS_URL} and either put it at "
            f"{vgg19_hub_checkpoint_path()} or pass its location with model.vgg_weights=<path>; "
            f"or set model.perceptual=false to train without the perceptual (VGG) loss term.")


def _download_vgg19_state_dict() -> dict[str, Tensor]:
    """torchvision's standard download of VGG19_Weights.IMAGENET1K_V1 into the hub checkpoint dir."""
    return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    return read_state_dict(path, "VGG19", f"a torchvision vgg19 state_dict ({VGG19_WEIGHTS_FILE})", _how_to_fix())


def _vgg19_features(n_layers: int) -> nn.Sequential:
    """The first ``n_layers`` modules of torchvision's vgg19().features (same indices)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = int(v)
    return nn.Sequential(*layers[:n_layers])


class VGGFeatureExtractor(nn.Module):
    """Frozen ImageNet VGG19 truncated at a named layer (SRGAN's phi_{i,j}).

    Parameters
    ----------
    layer:
        ``"conv{i}_{j}"`` -- the j-th convolution of block i: ``"conv5_4"``
        (SRGAN-VGG54, ``features[34]``, default) or ``"conv2_2"``
        (SRGAN-VGG22, ``features[7]``), any of :data:`VGG19_LAYERS`.
    weights_path:
        A torchvision vgg19 state_dict (``.pth``; a full one, or one holding
        only the ``features.*`` entries). ``None``: use
        :func:`vgg19_hub_checkpoint_path`, else download it with torchvision
        (when ``download``), else raise :class:`MissingWeightsError`.
    use_input_norm:
        Inputs are images in [-1, 1]; they are mapped to [0, 1] and normalised
        with the ImageNet mean/std the VGG was trained with. ``False`` feeds
        the input to the VGG unchanged.
    after_activation:
        Take the features after the layer's ReLU, as in the paper (default),
        or directly after the convolution.
    download:
        Allow torchvision's download when no local file is found.

    The parameters never require gradients and the module stays in eval mode
    (``train()`` is a no-op for it); gradients still flow to the input, which
    is what the perceptual loss needs. Output: ``(N, C_layer, H/2^k, W/2^k)``
    with k the number of max-poolings before the layer (4 for conv5_4, 512
    channels).

    Raises :class:`MissingWeightsError` when no weights can be found and
    :class:`InvalidWeightsError` (a subclass) when the file is unreadable or
    lacks VGG19 entries; both messages name the file and how to fix it.
    """

    def __init__(self, layer: str = "conv5_4", weights_path: str | os.PathLike | None = None,
                 use_input_norm: bool = True, after_activation: bool = True, download: bool = True) -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer {layer!r}; expected one of {list(VGG19_LAYERS)}")
        self.layer = layer
        self.use_input_norm = use_input_norm
        self.after_activation = after_activation
        n_layers = VGG19_LAYERS[layer] + (2 if after_activation else 1)

        state, source = self._find_state_dict(weights_path, download)
        features = _vgg19_features(n_layers)
        self._load(features, state, source)
        features.requires_grad_(False)
        self.features = features.eval()
        self.weights_source = source

        # ImageNet statistics (torchvision's transforms for VGG19_Weights); not saved in state_dict.
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _find_state_dict(weights_path, download: bool) -> tuple[dict[str, Tensor], str]:
        # model.vgg_weights, else torch hub's checkpoint folder (mtbench.metrics.pretrained.find_weights)
        path = find_weights(weights_path, hub_file=VGG19_WEIGHTS_FILE)
        if weights_path and not path.is_file():
            raise MissingWeightsError(f"The VGG19 weights file {path} (model.vgg_weights) does not exist. "
                                      + _how_to_fix())
        if path is not None:
            return _read_state_dict(path), str(path)
        hub_path = vgg19_hub_checkpoint_path()
        if download:
            try:
                return _download_vgg19_state_dict(), VGG19_WEIGHTS_URL
            except Exception as err:  # offline, proxy, hash mismatch...
                cause = f"the download failed ({type(err).__name__}: {err})"
        else:
            cause = "downloading is disabled"
        raise MissingWeightsError(f"The pretrained VGG19 weights for the perceptual loss were not found at "
                                  f"{hub_path} and {cause}. " + _how_to_fix())

    @staticmethod
    def _load(features: nn.Sequential, state: dict[str, Tensor], source: str) -> None:
        # Accept torchvision's full vgg19 state_dict ("features.N.weight", "classifier...")
        # or the state_dict of the features Sequential alone ("N.weight").
        if any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        wanted = features.state_dict().keys()
        sub = OrderedDict((k, state[k]) for k in wanted if k in state)
        missing = [k for k in wanted if k not in state]
        if missing:
            raise InvalidWeightsError(f"The VGG19 weights from {source} lack the entries "
                                      f"{['features.' + k for k in missing][:6]}{'...' if len(missing) > 6 else ''}; "
                                      f"expected a torchvision vgg19 state_dict ({VGG19_WEIGHTS_FILE}). "
                                      + _how_to_fix())
        try:
            features.load_state_dict(sub, strict=True)
        except RuntimeError as err:  # shape mismatch (e.g. a VGG16 or a BN variant)
            raise InvalidWeightsError(f"The VGG19 weights from {source} do not fit VGG19: {err}. "
                                      + _how_to_fix()) from err

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        """Keep the extractor frozen in eval mode whatever the parent module does."""
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        if self.use_input_norm:
            mean = self.mean.to(dtype=x.dtype)
            std = self.std.to(dtype=x.dtype)
            x = ((x + 1) * 0.5 - mean) / std
        return self.features(x)

    def extra_repr(self) -> str:
        return (f"layer={self.layer!r}, after_activation={self.after_activation}, "
                f"use_input_norm={self.use_input_norm}, weights={self.weights_source!r}")

