"""Tests of the GAN building blocks (mtbench.nets): CPU, offline, small widths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from mtbench.nets import (
    GANLoss,
    ImagePool,
    InvalidWeightsError,
    MissingWeightsError,
    NLayerDiscriminator,
    ResnetGenerator,
    SRGANDiscriminator,
    SRResNet,
    UnetGenerator,
    UnetSkipConnectionBlock,
    VGGFeatureExtractor,
    get_norm_layer,
    init_weights,
    resnet_n_blocks,
    unet_num_downs,
)
from mtbench.nets import vgg as vgg_module


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _in_tanh_range(y: torch.Tensor) -> bool:
    return bool(torch.isfinite(y).all() and y.min() >= -1 and y.max() <= 1)


# -----------------------------------------------------------------------------
# helpers: norm layers, init, sizes
# -----------------------------------------------------------------------------
def test_get_norm_layer():
    bn = get_norm_layer("batch")(8)
    assert isinstance(bn, nn.BatchNorm2d) and bn.affine and bn.track_running_stats
    inorm = get_norm_layer("instance")(8)
    assert isinstance(inorm, nn.InstanceNorm2d) and not inorm.affine and not inorm.track_running_stats
    assert isinstance(get_norm_layer("none")(8), nn.Identity)
    with pytest.raises(ValueError, match="layer_norm"):
        get_norm_layer("layer_norm")


def test_init_weights_statistics():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(256), nn.ConvTranspose2d(64, 32, 4),
                        nn.Linear(100, 100), nn.InstanceNorm2d(4))
    assert init_weights(net, "normal", gain=0.02) is net
    conv, bn, convt, lin = net[0], net[1], net[2], net[3]
    for m in (conv, convt, lin):
        assert abs(m.weight.std().item() - 0.02) < 0.002
        assert abs(m.weight.mean().item()) < 0.002
        assert torch.count_nonzero(m.bias) == 0
    assert abs(bn.weight.mean().item() - 1.0) < 0.01
    assert abs(bn.weight.std().item() - 0.02) < 0.01
    assert torch.count_nonzero(bn.bias) == 0
    with pytest.raises(ValueError, match="uniformish"):
        init_weights(net, "uniformish")


def test_size_helpers():
    assert [unet_num_downs(s) for s in (32, 64, 128, 256, 512)] == [5, 6, 7, 8, 9]
    for bad in (100, 16, 0, -32, 2.0, True):
        with pytest.raises(ValueError, match=str(bad)):
            unet_num_downs(bad)
    assert resnet_n_blocks(256) == 9 and resnet_n_blocks(512) == 9
    assert resnet_n_blocks(128) == 6 and resnet_n_blocks(32) == 6
    with pytest.raises(ValueError):
        resnet_n_blocks(0)


# -----------------------------------------------------------------------------
# U-Net
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64, 128])
def test_unet_shapes_and_range(size):
    g = init_weights(UnetGenerator(3, 2, num_downs=unet_num_downs(size), ngf=8))
    x = torch.randn(2, 3, size, size)
    y = g(x)
    assert y.shape == (2, 2, size, size)
    assert _in_tanh_range(y)
    n_blocks = sum(isinstance(m, UnetSkipConnectionBlock) for m in g.modules())
    assert n_blocks == unet_num_downs(size)


def test_unet_skip_connections_and_dropout():
    g = UnetGenerator(3, 3, num_downs=6, ngf=4, norm="batch", use_dropout=True)
    blocks = [m for m in g.modules() if isinstance(m, UnetSkipConnectionBlock)]
    assert blocks[0].outermost and blocks[-1].innermost
    # dropout only in the num_downs - 5 ngf*8 levels between the innermost and the outer four
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 1
    assert sum(isinstance(m, nn.Dropout) for m in UnetGenerator(num_downs=8, ngf=2).modules()) == 3
    seen = []

    def hook(block, inputs, output):
        (x,) = inputs
        seen.append((x.shape, output.shape))
        if not block.outermost:
            # concat([LeakyReLU(x), up(...)]): the skip half is the block's activated input
            assert output.shape[1] == 2 * x.shape[1] and output.shape[-2:] == x.shape[-2:]
            torch.testing.assert_close(output[:, : x.shape[1]], F.leaky_relu(x, 0.2))

    handles = [b.register_forward_hook(hook) for b in blocks]
    g(torch.randn(2, 3, 64, 64))
    for h in handles:
        h.remove()
    assert len(seen) == 6
    # spatial sizes halve level by level down to a 1x1 bottleneck at the innermost block's output
    assert [s[0][-1] for s in seen] == [2, 4, 8, 16, 32, 64]


def test_unet_input_corner_reaches_whole_output():
    g = UnetGenerator(1, 1, num_downs=5, ngf=4, norm="instance", use_dropout=False).eval()
    x = torch.randn(1, 1, 32, 32)
    x2 = x.clone()
    x2[..., :2, :2] += 1.0
    diff = (g(x2) - g(x)).abs()[0, 0]
    assert diff[:2, :2].max() > 0  # through the outer skip path
    assert diff[-4:, -4:].max() > 0  # the opposite corner: through the 1x1 bottleneck


def test_unet_validation():
    with pytest.raises(ValueError, match="num_downs"):
        UnetGenerator(num_downs=4)
    with pytest.raises(ValueError, match="divisible by 32"):
        UnetGenerator(num_downs=5, ngf=2)(torch.randn(1, 3, 48, 40))
    with pytest.raises(ValueError, match="groupnorm"):
        UnetGenerator(num_downs=5, ngf=2, norm="groupnorm")


# -----------------------------------------------------------------------------
# ResNet generator and PatchGAN
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_resnet_generator_shapes(size):
    g = init_weights(ResnetGenerator(3, 3, ngf=8, n_blocks=resnet_n_blocks(size)))
    assert g.n_blocks == 6
    assert any(isinstance(m, nn.ReflectionPad2d) for m in g.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in g.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in g.modules())
    y = g(torch.randn(2, 3, size, size))
    assert y.shape == (2, 3, size, size) and _in_tanh_range(y)


def test_resnet_generator_validation():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(ngf=2, n_blocks=1)(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="n_blocks"):
        ResnetGenerator(n_blocks=-1)
    with pytest.raises(ValueError, match="circular"):
        ResnetGenerator(ngf=2, n_blocks=1, padding_type="circular")


@pytest.mark.parametrize("size,out", [(64, 6), (256, 30)])
def test_patchgan_output_shape(size, out):
    d = init_weights(NLayerDiscriminator(6, ndf=8, n_layers=3, norm="batch"))
    y = d(torch.randn(2, 6, size, size))
    assert y.shape == (2, 1, out, out)
    assert y.min() < 0 < y.max()  # raw logits, no sigmoid


def test_patchgan_receptive_field_is_70():
    d = NLayerDiscriminator(1, ndf=2, n_layers=3, norm="none")
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    y = d(x)
    y[0, 0, y.shape[-2] // 2, y.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


# -----------------------------------------------------------------------------
# SRGAN
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("scale,n_up", [(4, 2), (2, 1)])
def test_srresnet_shapes(scale, n_up):
    g = SRResNet(3, 3, n_features=8, n_blocks=2, scale=scale)
    assert sum(isinstance(m, nn.PixelShuffle) for m in g.modules()) == n_up
    y = g(torch.randn(2, 3, 8, 8))
    assert y.shape == (2, 3, 8 * scale, 8 * scale) and _in_tanh_range(y)


def test_srresnet_paper_structure_and_validation():
    g = SRResNet()
    assert sum(isinstance(m, nn.PixelShuffle) for m in g.modules()) == 2
    assert len([m for m in g.body if m.__class__.__name__ == "SRResidualBlock"]) == 16
    assert not any(isinstance(m, nn.Tanh) for m in SRResNet(n_features=4, n_blocks=1,
                                                             output_activation="none").modules())
    for bad in (3, 6, 1, 0, 2.0):
        with pytest.raises(ValueError, match="power of two"):
            SRResNet(n_features=4, n_blocks=1, scale=bad)


@pytest.mark.parametrize("size", [32, 96])
def test_srgan_discriminator_logits(size):
    d = SRGANDiscriminator(3, ndf=8)
    assert sum(isinstance(m, nn.Conv2d) for m in d.modules()) == 8
    y = d(torch.randn(3, 3, size, size))
    assert y.shape == (3, 1)
    assert SRGANDiscriminator(3, ndf=4, pooled_size=1)(torch.randn(2, 3, size, size)).shape == (2, 1)


@pytest.mark.parametrize("size", [1, 2, 3, 6, 12, 7])
def test_srgan_discriminator_pooling_equals_adaptive_avg_pool(size):
    from mtbench.nets.srgan_nets import _pool_to

    x = torch.randn(2, 4, size, size)
    for target in (6, 1):
        torch.testing.assert_close(_pool_to(x, target), F.adaptive_avg_pool2d(x, target))


# -----------------------------------------------------------------------------
# GANLoss
# -----------------------------------------------------------------------------
def test_gan_loss_vanilla_matches_hand_computed_bce():
    pred = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    crit = GANLoss("vanilla")
    sig = torch.sigmoid(pred)
    torch.testing.assert_close(crit(pred, True), (-torch.log(sig)).mean())
    torch.testing.assert_close(crit.loss(pred, False), (-torch.log(1 - sig)).mean())
    smooth = GANLoss("vanilla", target_real=0.9)
    torch.testing.assert_close(smooth(pred, True), -(0.9 * torch.log(sig) + 0.1 * torch.log(1 - sig)).mean())


def test_gan_loss_lsgan_matches_hand_computed_mse():
    pred = torch.tensor([0.5, -1.0, 2.0, 0.0])
    crit = GANLoss("lsgan")
    assert crit(pred, True).item() == pytest.approx(((0.5 - 1) ** 2 + 4 + 1 + 1) / 4)
    assert crit(pred, False).item() == pytest.approx((0.25 + 1 + 4 + 0) / 4)
    crit2 = GANLoss("lsgan", target_real=0.5, target_fake=-0.5)
    assert crit2(pred, False).item() == pytest.approx((1 + 0.25 + 6.25 + 0.25) / 4)


def test_gan_loss_dtype_grad_and_validation():
    pred = torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = GANLoss("lsgan")(pred, True)
    assert loss.dtype == torch.float64 and loss.shape == ()
    loss.backward()
    assert pred.grad is not None
    assert GANLoss("vanilla")(torch.randn(3, dtype=torch.bfloat16), False).dtype == torch.float32
    with pytest.raises(ValueError, match="wgan"):
        GANLoss("wgan")
    with pytest.raises(TypeError):
        GANLoss()(torch.zeros(2), torch.tensor(True))


# -----------------------------------------------------------------------------
# ImagePool
# -----------------------------------------------------------------------------
def test_image_pool_passthrough():
    pool = ImagePool(0)
    x = torch.randn(4, 3, 2, 2)
    assert pool.query(x) is x
    assert len(pool) == 0
    with pytest.raises(ValueError):
        ImagePool(-1)


def test_image_pool_fills_then_swaps():
    pool = ImagePool(5)
    batches = [torch.full((2, 1, 2, 2), float(i)) for i in range(3)]
    # while filling, images come back unchanged
    torch.testing.assert_close(pool.query(batches[0]), batches[0])
    torch.testing.assert_close(pool.query(batches[1]), batches[1])
    assert pool.num_imgs == 4
    out = pool.query(batches[2])  # first image fills the pool, the second may swap
    assert out.shape == batches[2].shape and pool.num_imgs == 5
    torch.testing.assert_close(out[0], batches[2][0])
    # from now on: each image is either itself or one of the stored ones, and the pool stays full
    returned_old = 0
    for i in range(3, 40):
        x = torch.full((3, 1, 2, 2), float(i))
        y = pool.query(x)
        assert y.shape == x.shape and pool.num_imgs == 5
        for img in y:
            v = img.flatten()[0].item()
            assert v <= i
            returned_old += v < i
    assert 20 < returned_old < 90  # ~half of 111 draws
    stored = {img.flatten()[0].item() for img in pool.images}
    assert len(pool.images) == 5 and max(stored) <= 39


def test_image_pool_returns_detached_copies():
    pool = ImagePool(2)
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    y = pool.query(x * 2)
    assert not y.requires_grad
    y.zero_()
    assert all(img.abs().sum() > 0 for img in pool.images)


def _run_pool(seed, pool, n=20):
    torch.manual_seed(seed)
    return torch.cat([pool.query(torch.randn(2, 1, 2, 2)) for _ in range(n)])


def test_image_pool_reproducible_under_torch_seed():
    a = _run_pool(3, ImagePool(4))
    b = _run_pool(3, ImagePool(4))
    c = _run_pool(4, ImagePool(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_image_pool_state_round_trip(tmp_path):
    torch.manual_seed(5)
    pool = ImagePool(4)
    for _ in range(3):
        pool.query(torch.randn(2, 3, 4, 4))
    state = pool.state_dict()
    assert state["images"].shape == (4, 3, 4, 4)
    torch.save({"pool": state, "rng": torch.get_rng_state()}, tmp_path / "ckpt.pt")
    # continue the original run
    x_next = [torch.randn(2, 3, 4, 4) for _ in range(5)]
    expected = [pool.query(x) for x in x_next]
    # resume from the checkpoint
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    resumed = ImagePool(4)
    resumed.load_state_dict(ckpt["pool"])
    torch.set_rng_state(ckpt["rng"])  # replay the same order: the inputs, then the queries
    x_again = [torch.randn(2, 3, 4, 4) for _ in range(5)]
    for a, b in zip(x_again, x_next):
        torch.testing.assert_close(a, b)
    got = [resumed.query(x) for x in x_again]
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    # empty pool and list form
    empty = ImagePool(3)
    assert empty.state_dict()["images"] is None
    empty.load_state_dict({"pool_size": 3, "images": [torch.zeros(1, 2, 2)]})
    assert empty.num_imgs == 1
    with pytest.raises(ValueError, match="pool_size"):
        ImagePool(2).load_state_dict(state)


# -----------------------------------------------------------------------------
# VGG feature extractor
# -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A random torchvision vgg19 state_dict (features only, plus one unused classifier entry)."""
    torch.manual_seed(0)
    state = torchvision.models.vgg19(weights=None).features.state_dict()
    state = {f"features.{k}": v for k, v in state.items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return path, state


def _meta_vgg19_features() -> nn.Sequential:
    with torch.device("meta"):  # structure only, no (slow) random init
        return torchvision.models.vgg19(weights=None).features


def test_vgg_layer_index_matches_torchvision():
    feats = _meta_vgg19_features()
    assert vgg_module.VGG19_LAYERS["conv5_4"] == 34 and isinstance(feats[34], nn.Conv2d)
    assert isinstance(feats[35], nn.ReLU) and isinstance(feats[36], nn.MaxPool2d)
    assert vgg_module.VGG19_LAYERS["conv2_2"] == 7
    assert sum(isinstance(m, nn.Conv2d) for m in feats[:35]) == 16


def test_vgg_extractor_shape_frozen_and_matches_torchvision(vgg_weights):
    path, state = vgg_weights
    ext = VGGFeatureExtractor("conv5_4", weights_path=path)
    assert len(ext.features) == 36 and isinstance(ext.features[-1], nn.ReLU)
    assert all(not p.requires_grad for p in ext.parameters())
    ext.train()
    assert not ext.training and not ext.features.training
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    x.requires_grad_(True)
    y = ext(x)
    assert y.shape == (2, 512, 2, 2) and y.min() >= 0  # after ReLU
    y.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in ext.parameters())
    # same numbers as torchvision's vgg19 features[:36] on ImageNet-normalised [0, 1] input
    ref = _meta_vgg19_features()[:36]
    ref.load_state_dict({k[len("features."):]: v for k, v in state.items()
                         if k.startswith("features.") and int(k.split(".")[1]) < 36}, assign=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(ext(x), ref(((x + 1) / 2 - mean) / std))
    assert "mean" not in ext.state_dict()
    pre = VGGFeatureExtractor("conv2_2", weights_path=str(path), after_activation=False)
    assert len(pre.features) == 8 and isinstance(pre.features[-1], nn.Conv2d)


def test_vgg_uses_hub_checkpoint_dir(vgg_weights, tmp_path, monkeypatch):
    path, _ = vgg_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    target = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg_module.vgg19_hub_checkpoint_path() == target
    target.parent.mkdir(parents=True)
    target.write_bytes(path.read_bytes())

    def no_download():
        raise AssertionError("must not download when the checkpoint exists")

    monkeypatch.setattr(vgg_module, "_download_vgg19_state_dict", no_download)
    ext = VGGFeatureExtractor("conv1_2")
    assert ext.weights_source == str(target)


def test_vgg_missing_weights_message(tmp_path, offline_vgg):
    with pytest.raises(MissingWeightsError) as info:
        VGGFeatureExtractor()
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "vgg19-dcbb9e9d.pth" in msg
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth") in msg
    assert "model.vgg_weights=" in msg and "model.perceptual=false" in msg
    assert "network is unreachable" in msg
    # a weights_path that does not exist
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        VGGFeatureExtractor(weights_path=tmp_path / "nope.pth")


def test_vgg_corrupt_or_wrong_weights_file(tmp_path, vgg_weights):
    bad = tmp_path / "corrupt.pth"
    bad.write_bytes(b"this is not a torch file")
    with pytest.raises(InvalidWeightsError, match="corrupt.pth") as info:
        VGGFeatureExtractor(weights_path=bad)
    assert "model.perceptual=false" in str(info.value)
    _, state = vgg_weights
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("features.34.")}, partial)
    with pytest.raises(InvalidWeightsError, match="features.34.weight"):
        VGGFeatureExtractor(weights_path=partial)
    VGGFeatureExtractor("conv4_4", weights_path=partial)  # conv5_4 not needed there
    with pytest.raises(ValueError, match="conv6_1"):
        VGGFeatureExtractor("conv6_1", weights_path=partial)


# -----------------------------------------------------------------------------
# channels_last and bfloat16 autocast
# -----------------------------------------------------------------------------
def _nets():
    return [
        (UnetGenerator(3, 3, num_downs=5, ngf=4), (2, 3, 32, 32), (2, 3, 32, 32)),
        (ResnetGenerator(3, 3, ngf=4, n_blocks=1), (2, 3, 32, 32), (2, 3, 32, 32)),
        (NLayerDiscriminator(3, ndf=4, norm="instance"), (2, 3, 64, 64), (2, 1, 6, 6)),
        (SRResNet(n_features=4, n_blocks=1, scale=4), (2, 3, 8, 8), (2, 3, 32, 32)),
        (SRGANDiscriminator(ndf=4), (2, 3, 32, 32), (2, 1)),
    ]


@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_and_bf16_autocast(channels_last, vgg_weights):
    nets = _nets() + [(VGGFeatureExtractor("conv5_4", weights_path=vgg_weights[0]), (2, 3, 32, 32),
                       (2, 512, 2, 2))]
    for net, in_shape, out_shape in nets:
        x = torch.rand(in_shape) * 2 - 1
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        ref = net(x)
        assert ref.shape == out_shape and torch.isfinite(ref).all()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = net(x)
            loss = GANLoss("lsgan")(y, True)
        assert y.shape == out_shape and torch.isfinite(y.float()).all()
        if any(p.requires_grad for p in net.parameters()):
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_no_hard_coded_devices():
    import inspect

    import mtbench.nets.gan_loss as m1
    import mtbench.nets.image_pool as m2
    import mtbench.nets.pix2pix_nets as m3
    import mtbench.nets.srgan_nets as m4

    for mod in (m1, m2, m3, m4, vgg_module):
        src = inspect.getsource(mod)
        for literal in ('"cuda', "'cuda", '.to("cpu")', ".cuda(", ".cpu()"):
            assert literal not in src, (mod.__name__, literal)
