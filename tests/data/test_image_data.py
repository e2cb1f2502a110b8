"""Image datasets: aligned (pix2pix), unaligned (CycleGAN), SR folders, embedded photos (the downloader:
test_download.py).

All offline and on CPU: folders are built in tmp_path with PIL; the embedded sets
read scikit-image's bundled photos.
"""

from __future__ import annotations

import inspect
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from mtbench.cli import config_dir
from mtbench.data.aligned import aligned_splits
from mtbench.data.base import DataError, DataSplits
from mtbench.data.embedded_images import (
    EMBEDDED_PHOTOS, build_crops, build_edges, build_sr_crops, cyclegan_embedded, edges_to_image,
    pix2pix_embedded, sr_embedded,
)
from mtbench.data.sr import sr_folder_splits
from mtbench.data.transforms import to_tensor
from mtbench.data.unaligned import unaligned_splits

CONF_DATA = config_dir() / "data"


# -- helpers ------------------------------------------------------------------------
def noise(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A random RGB pattern (every crop position and flip gives a different image)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def solid(w: int, h: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def save(arr: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.concatenate([a, b], axis=1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """A [-1, 1] (3, H, W) tensor made from uint8 back to an (H, W, 3) uint8 array (exact)."""
    return ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def in_range(x: torch.Tensor) -> bool:
    return x.dtype == torch.float32 and float(x.min()) >= -1.0 and float(x.max()) <= 1.0


def find_window(big: np.ndarray, small: np.ndarray) -> tuple[int, int, bool] | None:
    """(top, left, flipped) where ``small`` (or its mirror) sits in ``big``, else None."""
    h, w = small.shape[:2]
    for flipped, s in ((False, small), (True, small[:, ::-1])):
        for top in range(big.shape[0] - h + 1):
            for left in range(big.shape[1] - w + 1):
                if np.array_equal(big[top:top + h, left:left + w], s):
                    return top, left, flipped
    return None


@pytest.fixture
def facades(tmp_path) -> Path:
    """ROOT/{train,val}: 64x32 A|B images, A = red, B = blue; plus same-pattern pairs (identical halves)."""
    root = tmp_path / "facades"
    for i in range(3):
        save(side_by_side(solid(32, 32, (200, 0, 0)), solid(32, 32, (0, 0, 200))), root / "train" / f"{i}.png")
    for i in range(2):
        save(side_by_side(solid(32, 32, (200, 0, 0)), solid(32, 32, (0, 0, 200))), root / "val" / f"{i}.jpg")
    return root


@pytest.fixture
def same_halves(tmp_path) -> tuple[Path, np.ndarray]:
    """An aligned folder whose only image has the same noise pattern on both halves."""
    pattern = noise(32, 32, seed=1)
    root = tmp_path / "same"
    save(side_by_side(pattern, pattern), root / "train" / "pair.png")
    return root, pattern


# -- aligned (pix2pix) ----------------------------------------------------------------
def test_aligned_shapes_range_and_splits(facades):
    splits = aligned_splits(facades, load_size=20, crop_size=16)
    assert isinstance(splits, DataSplits) and splits.name == "pix2pix/facades"
    assert len(splits.train) == 3 and len(splits.val) == 2 and splits.test is None
    for ds in (splits.train, splits.val):
        item = ds[0]
        assert set(item) == {"A", "B"}
        for x in item.values():
            assert x.shape == (3, 16, 16) and in_range(x)
    batch = next(iter(DataLoader(splits.train, batch_size=2)))
    assert batch["A"].shape == (2, 3, 16, 16)
    assert len(aligned_splits(facades, load_size=20, crop_size=16, max_items=2).train) == 2


def test_aligned_direction_swap(facades):
    ab = aligned_splits(facades, direction="AtoB", load_size=20, crop_size=16).val[0]
    ba = aligned_splits(facades, direction="BtoA", load_size=20, crop_size=16).val[0]
    red, blue = ab["A"].mean(dim=(1, 2)), ab["B"].mean(dim=(1, 2))
    assert red[0] > 0.3 and red[2] < -0.9 and blue[2] > 0.3 and blue[0] < -0.9
    assert torch.equal(ba["A"], ab["B"]) and torch.equal(ba["B"], ab["A"])
    with pytest.raises(ValueError, match="direction"):
        aligned_splits(facades, direction="AB")


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "scale_width_and_crop"])
def test_aligned_pairs_stay_aligned_under_random_crop_and_flip(same_halves, preprocess):
    root, _ = same_halves
    train = aligned_splits(root, load_size=40, crop_size=24, preprocess=preprocess).train
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        item = train[0]
        assert torch.equal(item["A"], item["B"])  # same crop position and flip on both halves
        assert item["A"].shape == (3, 24, 24)
        seen.add(item["A"].numpy().tobytes())
    assert len(seen) > 5  # the crop (and flip) really vary


def test_aligned_crop_is_a_window_of_the_half_and_flips(same_halves):
    root, pattern = same_halves
    train = aligned_splits(root, crop_size=24, preprocess="crop").train
    torch.manual_seed(1)
    found = [find_window(pattern, to_uint8(train[0]["A"])) for _ in range(12)]
    assert all(f is not None for f in found)
    assert len({(t, l) for t, l, _ in found}) > 1 and {f for _, _, f in found} == {False, True}


def test_aligned_eval_is_deterministic_and_unflipped(same_halves, tmp_path):
    root, pattern = same_halves
    save(side_by_side(pattern, pattern), root / "test" / "t.png")
    test = aligned_splits(root, crop_size=24, preprocess="crop").test
    assert torch.equal(test[0]["A"], test[0]["A"])
    assert find_window(pattern, to_uint8(test[0]["A"])) == (4, 4, False)  # the center crop
    resized = aligned_splits(root, load_size=40, crop_size=24).test[0]["B"]  # resize straight to crop_size
    expected = to_tensor(Image.fromarray(pattern).resize((24, 24), Image.BICUBIC))
    assert torch.allclose(resized, expected, atol=1e-6)


def test_aligned_missing_root_names_layout_and_download(tmp_path):
    with pytest.raises(DataError) as err:
        aligned_splits(tmp_path / "facades")
    msg = str(err.value)
    assert str(tmp_path / "facades") in msg and "{train,val,test}" in msg and "\n" not in msg
    assert f"python -m mtbench.data.download pix2pix facades --root {tmp_path}" in msg
    assert "data=pix2pix_embedded" in msg
    (tmp_path / "facades").mkdir()
    with pytest.raises(DataError, match="train folder not found") as err:
        aligned_splits(tmp_path / "facades")
    assert str(tmp_path / "facades" / "train") in str(err.value)


def test_aligned_empty_folder(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="empty") as err:
        aligned_splits(tmp_path / "d")
    assert str(tmp_path / "d" / "train") in str(err.value)


def test_aligned_corrupt_image_at_construction_and_load(facades):
    bad = facades / "train" / "x.jpg"
    bad.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(DataError, match="corrupt") as err:
        aligned_splits(facades)
    assert str(bad) in str(err.value)
    bad.unlink()
    train = aligned_splits(facades, load_size=20, crop_size=16).train
    train.paths[0].write_bytes(b"garbage")  # broken after construction: caught at load time
    with pytest.raises(DataError, match="corrupt") as err:
        train[0]
    assert str(train.paths[0]) in str(err.value)


def test_aligned_width_not_twice_height(facades):
    save(noise(30, 20), facades / "train" / "odd.png")
    with pytest.raises(DataError) as err:
        aligned_splits(facades)
    assert str(facades / "train" / "odd.png") in str(err.value) and "30x20" in str(err.value)
    assert "data.strict_aspect=false" in str(err.value)


def test_aligned_non_strict_aspect_splits_at_half_width(facades):
    # a cropped pair (as in real datasets): 64x20, left half red, right half blue
    save(side_by_side(solid(32, 20, (200, 0, 0)), solid(32, 20, (0, 0, 200))), facades / "val" / "short.png")
    splits = aligned_splits(facades, load_size=16, crop_size=16, strict_aspect=False)
    item = splits.val[[p.name for p in splits.val.paths].index("short.png")]
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    assert item["A"][0].mean() > 0.5 and item["A"][2].mean() < -0.5  # A is the red half
    assert item["B"][2].mean() > 0.5 and item["B"][0].mean() < -0.5  # B is the blue half
    save(noise(31, 20), facades / "train" / "odd.png")
    with pytest.raises(DataError, match="even width"):
        aligned_splits(facades, strict_aspect=False)


# -- unaligned (CycleGAN) -------------------------------------------------------------
COLOURS = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250)]


@pytest.fixture
def h2z(tmp_path) -> Path:
    """trainA: 2 noise images; trainB: 5 solid colours (identifiable after any crop); testA 2, testB 3."""
    root = tmp_path / "horse2zebra"
    for i in range(2):
        save(noise(20, 24, seed=i), root / "trainA" / f"a{i}.png")
        save(noise(20, 24, seed=10 + i), root / "testA" / f"a{i}.png")
    for i in range(3):
        save(solid(24, 20, COLOURS[i]), root / "testB" / f"b{i}.png")
    for i, c in enumerate(COLOURS):
        save(solid(24, 20, c), root / "trainB" / f"b{i}.png")
    return root


def colour_index(x: torch.Tensor) -> int:
    rgb = tuple(to_uint8(x)[0, 0])
    return COLOURS.index(rgb)


def test_unaligned_shapes_len_and_splits(h2z):
    splits = unaligned_splits(h2z, load_size=18, crop_size=16)
    assert splits.val is None and len(splits.train) == 5 and len(splits.test) == 3  # max(len A, len B)
    item = splits.train[3]
    for x in item.values():
        assert x.shape == (3, 16, 16) and in_range(x)
    test = splits.test  # eval: deterministic resize, serial B, A[i % len(A)]
    assert torch.equal(test[2]["A"], test[0]["A"]) and not torch.equal(test[1]["A"], test[0]["A"])
    assert [colour_index(test[i]["B"]) for i in range(3)] == [0, 1, 2]
    assert test[0]["A"].shape == (3, 16, 16)


def test_unaligned_random_b_is_reproducible_under_torch_seed(h2z):
    train = unaligned_splits(h2z, load_size=18, crop_size=16).train

    def draw():
        return [colour_index(train[i % len(train)]["B"]) for i in range(30)]

    torch.manual_seed(123)
    first = draw()
    torch.manual_seed(123)
    assert draw() == first
    assert len(set(first)) >= 3  # B really is random
    serial = unaligned_splits(h2z, load_size=18, crop_size=16, serial_batches=True).train
    assert [colour_index(serial[i]["B"]) for i in range(5)] == [0, 1, 2, 3, 4]


def test_unaligned_errors(h2z, tmp_path):
    with pytest.raises(DataError) as err:
        unaligned_splits(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "trainA" in msg
    assert "python -m mtbench.data.download cyclegan" in msg and "data=cyclegan_embedded" in msg
    for f in (h2z / "testB").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="empty") as err:
        unaligned_splits(h2z)
    assert str(h2z / "testB") in str(err.value)
    (h2z / "testB").rmdir()
    with pytest.raises(DataError, match="not found") as err:
        unaligned_splits(h2z)
    assert str(h2z / "testB") in str(err.value)
    (h2z / "trainA" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError) as err:
        unaligned_splits(h2z)
    assert str(h2z / "trainA" / "broken.png") in str(err.value)


# -- super-resolution folders ---------------------------------------------------------
@pytest.fixture
def sr_dirs(tmp_path) -> tuple[Path, list[Path], np.ndarray, np.ndarray]:
    src = noise(40, 36, seed=3)
    train = tmp_path / "DIV2K"
    save(src, train / "0001.png")
    save(noise(48, 48, seed=4), train / "0002.png")
    set5 = tmp_path / "Set5"
    odd = noise(70, 53, seed=5)
    save(odd, set5 / "baby.png")
    save(noise(32, 32, seed=6), set5 / "bird.png")
    set14 = tmp_path / "Set14"
    save(noise(20, 24, seed=7), set14 / "zebra.png")
    return train, [set5, set14], src, odd


def test_sr_train_lr_is_bicubic_of_hr_crop(sr_dirs):
    train_root, eval_roots, src, _ = sr_dirs
    splits = sr_folder_splits(train_root, eval_roots, scale=4, crop_size=16)
    torch.manual_seed(0)
    windows = set()
    for _ in range(12):
        item = splits.train[0]
        assert item["hr"].shape == (3, 16, 16) and item["lr"].shape == (3, 4, 4)
        assert in_range(item["hr"]) and in_range(item["lr"])
        hr = to_uint8(item["hr"])
        expected = to_tensor(Image.fromarray(hr).resize((4, 4), Image.BICUBIC))
        assert torch.allclose(item["lr"], expected, atol=1e-6)
        windows.add(find_window(src, hr))
    assert None not in windows and len(windows) > 3  # random crops (and flips) of the HR image


def test_sr_eval_mod_crop_and_extra_eval(sr_dirs):
    train_root, eval_roots, _, odd = sr_dirs
    splits = sr_folder_splits(train_root, [str(p) for p in eval_roots], scale=4, crop_size=16)
    assert list(splits.extra_eval) == ["Set5", "Set14"] and splits.test is None
    assert splits.val is splits.extra_eval["Set5"] and len(splits.extra_eval["Set14"]) == 1
    item = splits.val[0]  # baby.png, 70x53 -> mod crop 68x52
    assert item["hr"].shape == (3, 52, 68) and item["lr"].shape == (3, 13, 17)
    assert np.array_equal(to_uint8(item["hr"]), odd[:52, :68])
    expected = to_tensor(Image.fromarray(odd[:52, :68]).resize((17, 13), Image.BICUBIC))
    assert torch.allclose(item["lr"], expected, atol=1e-6)
    alone = sr_folder_splits(train_root, eval_roots[1], scale=2, crop_size=16)
    assert list(alone.extra_eval) == ["Set14"] and alone.val[0]["lr"].shape == (3, 12, 10)
    assert sr_folder_splits(train_root, scale=4, crop_size=16).val is None


def test_sr_errors(sr_dirs, tmp_path):
    train_root, eval_roots, _, _ = sr_dirs
    with pytest.raises(DataError, match="not found") as err:
        sr_folder_splits(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(err.value) and "sr_embedded" in str(err.value)
    with pytest.raises(DataError, match="not found") as err:
        sr_folder_splits(train_root, [tmp_path / "Set99"], crop_size=16)
    assert str(tmp_path / "Set99") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        sr_folder_splits(train_root, [tmp_path / "empty"], crop_size=16)
    with pytest.raises(DataError) as err:
        sr_folder_splits(train_root, crop_size=44)  # 0001.png is 40x36
    msg = str(err.value)
    assert str(train_root / "0001.png") in msg and "40x36" in msg and "44x44" in msg
    (eval_roots[0] / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="corrupt") as err:
        sr_folder_splits(train_root, eval_roots, crop_size=16)
    assert str(eval_roots[0] / "bad.png") in str(err.value)
    with pytest.raises(ValueError, match="multiple of scale"):
        sr_folder_splits(train_root, crop_size=18, scale=4)


# -- embedded (scikit-image photos) ---------------------------------------------------
SMALL = dict(n_train=24, n_val=6, n_test=6)


@pytest.mark.parametrize("size", [32, 64])
def test_embedded_shapes_and_range(size):
    p2p = pix2pix_embedded(image_size=size, **SMALL)
    cg = cyclegan_embedded(image_size=size, **SMALL)
    sr = sr_embedded(crop_size=size, scale=4, **SMALL)
    for splits in (p2p, cg):
        assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 6)
        for ds in (splits.train, splits.val, splits.test):
            item = ds[0]
            assert set(item) == {"A", "B"}
            assert all(x.shape == (3, size, size) and in_range(x) for x in item.values())
    for ds in (sr.train, sr.val, sr.test):
        item = ds[0]
        assert item["hr"].shape == (3, size, size) and item["lr"].shape == (3, size // 4, size // 4)
        assert in_range(item["hr"]) and in_range(item["lr"])
    assert sr.extra_eval == {} and sr.val is not None and sr.test is not None
    batch = next(iter(DataLoader(p2p.train, batch_size=8, shuffle=True)))
    assert batch["A"].shape == (8, 3, size, size)


def test_embedded_deterministic_across_calls_and_cache_clears():
    a = pix2pix_embedded(image_size=32, **SMALL)
    crops = build_crops("train", 24, 32, 0, 0).clone()
    build_crops.cache_clear()
    build_edges.cache_clear()
    b = pix2pix_embedded(image_size=32, **SMALL)
    assert torch.equal(crops, build_crops("train", 24, 32, 0, 0))
    for i in range(6):
        assert torch.equal(a.val[i]["A"], b.val[i]["A"]) and torch.equal(a.val[i]["B"], b.val[i]["B"])
    other = build_crops("train", 24, 32, 1, 0)
    assert not torch.equal(crops, other)  # the seed matters


def test_embedded_builds_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    build_crops.cache_clear()
    build_edges.cache_clear()
    build_sr_crops.cache_clear()
    assert len(pix2pix_embedded(image_size=32, **SMALL).train) == 24
    assert len(sr_embedded(crop_size=32, **SMALL).train) == 24


def test_embedded_edges_binary_and_nontrivial():
    splits = pix2pix_embedded(image_size=64, **SMALL)
    a = torch.stack([splits.val[i]["A"] for i in range(6)] + [splits.train[i]["A"] for i in range(24)])
    assert set(a.unique().tolist()) == {-1.0, 1.0}  # black edges (-1) on white (+1)
    assert torch.equal(a[:, 0], a[:, 1]) and torch.equal(a[:, 0], a[:, 2])
    frac = float((a < 0).float().mean())
    assert 0.02 < frac < 0.4
    per_image = (a[:, 0] < 0).float().mean(dim=(1, 2))
    assert (per_image < 0.9).all() and (per_image > 0).float().mean() > 0.8
    fewer = pix2pix_embedded(image_size=64, sigma=3.0, **SMALL).val
    frac3 = float(torch.stack([fewer[i]["A"] for i in range(6)]).lt(0).float().mean())
    assert frac3 < float((a[:6] < 0).float().mean())  # sigma is honoured


def test_embedded_splits_disjoint():
    names = {k: set(v) for k, v in EMBEDDED_PHOTOS.items()}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    assert not (names["val"] & names["test"])
    train, val = build_crops("train", 24, 32), build_crops("val", 6, 32)
    assert not any(torch.equal(v, t) for v in val for t in train)


def test_pix2pix_embedded_flip_is_shared():
    splits = pix2pix_embedded(image_size=32, **SMALL)
    edges = edges_to_image(build_edges("train", 24, 32)[5])
    photo = build_crops("train", 24, 32)[5].float() / 127.5 - 1
    torch.manual_seed(0)
    flips = []
    for _ in range(20):
        item = splits.train[5]
        flipped = not torch.equal(item["B"], photo)
        assert torch.allclose(item["B"], photo.flip(-1) if flipped else photo)
        assert torch.equal(item["A"], edges.flip(-1) if flipped else edges)
        flips.append(flipped)
    assert any(flips) and not all(flips)
    assert all(torch.equal(splits.val[0]["B"], splits.val[0]["B"]) for _ in range(3))


def test_cyclegan_embedded_unpaired_train_paired_eval():
    splits = cyclegan_embedded(image_size=32, **SMALL)
    train_a_src = build_crops("train", 24, 32, 0, 1)
    train_b = build_crops("train", 24, 32, 0, 2)
    assert not any(torch.equal(x, y) for x in train_a_src for y in train_b)  # disjoint crop sets
    torch.manual_seed(7)
    first = [splits.train[0]["B"] for _ in range(10)]
    torch.manual_seed(7)
    again = [splits.train[0]["B"] for _ in range(10)]
    assert all(torch.equal(x, y) for x, y in zip(first, again))
    assert len({x.numpy().tobytes() for x in first}) > 3
    val_edges, val_photos = build_edges("val", 6, 32), build_crops("val", 6, 32)
    for i in range(6):  # eval: serial and paired (A = edges of B)
        item = splits.val[i]
        assert torch.equal(item["A"], edges_to_image(val_edges[i]))
        assert torch.allclose(item["B"], val_photos[i].float() / 127.5 - 1)


def test_sr_embedded_lr_is_bicubic_of_hr_also_flipped():
    splits = sr_embedded(crop_size=32, scale=4, **SMALL)
    torch.manual_seed(0)
    for i in range(24):
        item = splits.train[i]
        expected = to_tensor(Image.fromarray(to_uint8(item["hr"])).resize((8, 8), Image.BICUBIC))
        assert torch.allclose(item["lr"], expected, atol=1e-6)


def test_embedded_rejects_bad_arguments():
    with pytest.raises(ValueError, match="image_size"):
        pix2pix_embedded(image_size=400, **SMALL)
    with pytest.raises(ValueError, match="multiple of scale"):
        sr_embedded(crop_size=30, scale=4)
    with pytest.raises(ValueError, match="n_val"):
        cyclegan_embedded(image_size=32, n_val=0)


def test_embedded_default_build_is_fast():
    import time

    build_crops.cache_clear()
    build_edges.cache_clear()
    start = time.perf_counter()
    splits = pix2pix_embedded()
    assert len(splits.train) == 400
    assert time.perf_counter() - start < 5.0


# -- configs --------------------------------------------------------------------------
IMAGE_CONFIGS = ["facades", "pix2pix_embedded", "cyclegan_unaligned", "cyclegan_embedded", "sr_folder", "sr_embedded"]


@pytest.mark.parametrize("name", IMAGE_CONFIGS)
def test_configs_match_their_targets(name):
    import importlib

    text = (CONF_DATA / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DATA / f"{name}.yaml"))
    module, func = cfg.pop("_target_").rsplit(".", 1)
    target = getattr(importlib.import_module(module), func)
    inspect.signature(target).bind(**cfg)  # every key is a parameter
    assert "???" not in text


def test_configs_instantiate(facades, h2z, sr_dirs):
    from hydra.utils import instantiate

    def load(name, **overrides):
        cfg = OmegaConf.load(CONF_DATA / f"{name}.yaml")
        return instantiate(OmegaConf.merge(cfg, overrides))

    assert isinstance(load("pix2pix_embedded", n_train=8, n_val=2, n_test=2), DataSplits)
    assert isinstance(load("cyclegan_embedded", n_train=8, n_val=2, n_test=2), DataSplits)
    assert load("sr_embedded", n_train=8, n_val=2, n_test=2).train[0]["lr"].shape == (3, 16, 16)
    assert load("facades", root=str(facades)).train[0]["A"].shape == (3, 256, 256)
    assert len(load("cyclegan_unaligned", root=str(h2z)).test) == 3
    train_root, eval_roots, _, _ = sr_dirs
    sr = load("sr_folder", train_root=str(train_root), eval_roots=[str(p) for p in eval_roots], crop_size=16)
    assert list(sr.extra_eval) == ["Set5", "Set14"]
