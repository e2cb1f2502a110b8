"""Reading image files: 16-bit images scaled to 8 bits (never clipped), unreadable sub-folders an error."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtbench.data.base import DataError
from mtbench.data.transforms import list_images, load_rgb


def ramp16(width: int = 256) -> np.ndarray:
    """A horizontal ramp 0..65535 over ``width`` columns, 4 rows, uint16."""
    return np.tile(np.round(np.linspace(0, 65535, width)).astype(np.uint16), (4, 1))


def write_png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand (PIL cannot write one)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def expected8(ramp: np.ndarray) -> np.ndarray:
    return np.round(ramp.astype(np.float64) / 257.0).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_grey_ramp_becomes_an_8_bit_ramp(tmp_path, suffix):
    path = tmp_path / f"ramp{suffix}"
    Image.fromarray(ramp16()).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # PIL reads it as 16-bit (or 32-bit) integers
    got = np.asarray(load_rgb(path))
    assert got.dtype == np.uint8 and got.shape == (4, 256, 3)
    assert np.array_equal(got[..., 0], expected8(ramp16())) and np.array_equal(got[..., 0], got[..., 2])
    assert got[0, 0, 0] == 0 and got[0, -1, 0] == 255 and np.all(np.diff(got[0, :, 0].astype(int)) >= 0)
    assert len(np.unique(got)) == 256  # not all white


def test_a_16_bit_big_endian_and_a_32_bit_image(tmp_path):
    im = Image.frombytes("I;16B", (256, 4), ramp16().astype(">u2").tobytes())
    got = np.asarray(load_rgb_from(im, tmp_path / "big.tif"))
    assert np.array_equal(got[..., 1], expected8(ramp16()))
    small = Image.fromarray(np.tile(np.arange(256, dtype=np.int32), (4, 1)), "I")  # values <= 255: 8-bit data
    assert np.array_equal(np.asarray(load_rgb_from(small, tmp_path / "small.tif"))[0, :, 0], np.arange(256))
    wide = Image.fromarray(np.full((4, 4), 70000, np.int32), "I")
    with pytest.raises(DataError, match="outside 0..65535") as err:
        load_rgb_from(wide, tmp_path / "wide.tif")
    assert "wide.tif" in str(err.value) and "\n" not in str(err.value)


def load_rgb_from(im: Image.Image, path: Path) -> Image.Image:
    im.save(path)
    return load_rgb(path)


def test_a_16_bit_rgb_png_keeps_its_colours(tmp_path):
    rgb = np.stack([ramp16(), ramp16()[:, ::-1], np.full((4, 256), 32896, np.uint16)], axis=-1)
    write_png16_rgb(tmp_path / "rgb16.png", rgb)
    got = np.asarray(load_rgb(tmp_path / "rgb16.png")).astype(int)
    assert np.abs(got[..., 0] - expected8(ramp16())).max() <= 1
    assert np.abs(got[..., 1] - expected8(ramp16()[:, ::-1])).max() <= 1 and np.all(got[..., 2] == 128)


def test_a_float_image_is_refused_naming_it(tmp_path):
    Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), "F").save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="floating-point") as err:
        load_rgb(tmp_path / "f.tif")
    assert "f.tif" in str(err.value)


# -- unreadable sub-folders --------------------------------------------------------------------------------------
def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "train"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / sub / "1.png")
    return root


def test_an_unreadable_sub_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real = os.scandir

    def scandir(path="."):
        if Path(path) == root / "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError) as err:
        list_images(root, "pix2pix train folder")
    msg = str(err.value)
    assert str(root / "b") in msg and "Permission denied" in msg and "pix2pix train folder" in msg
    assert "\n" not in msg


def test_a_chmod_000_sub_folder_is_an_error_naming_it(tmp_path):
    root = _tree(tmp_path)
    (root / "b").chmod(0)
    try:
        if os.geteuid() == 0 and os.access(root / "b", os.R_OK):  # root without CAP_DAC_OVERRIDE dropped
            pytest.skip("root reads a chmod 000 folder anyway (the scandir test above covers it)")
        with pytest.raises(DataError, match=str(root / "b")):
            list_images(root, "pix2pix train folder")
    finally:
        (root / "b").chmod(0o755)
