"""The reproduction's data preparation and its real-data presets, on small synthetic folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_script



def _prepare_module():
    return load_script("prepare_people_contours")


def _pair(path: Path, height: int = 64) -> None:
    """A 128 x height A|B pair: left half (the photo) red, right half (the contour) blue."""
    img = np.zeros((height, 128, 3), np.uint8)
    img[:, :64, 0] = 200
    img[:, 64:, 2] = 200
    Image.fromarray(img).save(path)


@pytest.fixture()
def people(tmp_path):
    src = tmp_path / "people_contours"
    for split, names in (("train", ["1", "2", "3"]), ("val", ["10", "2", "1", "11"])):
        (src / split).mkdir(parents=True)
        for n in names:
            _pair(src / split / f"{n}.jpg", height=50 if n == "3" else 64)  # "3": a cropped pair, as in the data
    return src


def test_prepare_people_contours_layout_halves_and_no_overwrite(people, tmp_path, capsys):
    prep = _prepare_module()
    out = tmp_path / "prepared"
    assert prep.main([str(people), str(out), "--n-val", "2"]) == 0
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    # val/test split by number, not by name: val = 1, 2; test = 10, 11
    assert names(out / "aligned" / "val") == ["1.jpg", "2.jpg"]
    assert names(out / "aligned" / "test") == ["10.jpg", "11.jpg"]
    assert names(out / "aligned" / "train") == ["1.jpg", "2.jpg", "3.jpg"]
    assert (out / "aligned" / "train" / "1.jpg").resolve() == (people / "train" / "1.jpg").resolve()
    assert names(out / "unpaired" / "testA") == names(out / "unpaired" / "testB") == ["10.png", "11.png"]
    # A = the contour (right half, blue), B = the photo (left half, red), each half the width
    a = np.asarray(Image.open(out / "unpaired" / "trainA" / "3.png"))
    b = np.asarray(Image.open(out / "unpaired" / "trainB" / "3.png"))
    assert a.shape == b.shape == (50, 64, 3)
    assert a[..., 2].mean() > 150 and a[..., 0].mean() < 50
    assert b[..., 0].mean() > 150 and b[..., 2].mean() < 50
    # the same arguments again: nothing to do; other arguments: refused, nothing changed
    before = sorted(str(p) for p in out.rglob("*"))
    assert prep.main([str(people), str(out), "--n-val", "2"]) == 0
    assert prep.main([str(people), str(out), "--n-val", "3"]) == 2
    assert "prepared from other arguments" in capsys.readouterr().err
    assert sorted(str(p) for p in out.rglob("*")) == before
    assert prep.main([str(people), str(tmp_path / "x"), "--n-val", "4"]) == 2  # no test pair would be left


TINY_GAN = ["trainer.max_steps=2", "trainer.eval_every=null", "trainer.image_every=null", "trainer.eval_batch_size=4",
            "model.ngf=4", "model.ndf=4", "trainer.batch_size=2"]


def test_pix2pix_and_cyclegan_people_contours_presets_train_and_score_the_held_out_pairs(people, tmp_path,
                                                                                         run_train):
    out = tmp_path / "prepared"
    assert _prepare_module().main([str(people), str(out), "--n-val", "2"]) == 0
    summary, _ = run_train(["experiment=pix2pix_people_contours", f"data.root={out / 'aligned'}", *TINY_GAN],
                           name="p2p")
    assert summary["primary_metric"] == "psnr" and summary["steps"] == 2
    assert {"psnr", "ssim", "l1"} <= set(summary["metrics"])
    summary, _ = run_train(["experiment=cyclegan_people_contours", f"data.root={out / 'unpaired'}",
                            "model.n_blocks=1", *TINY_GAN], name="cyc")
    assert summary["primary_metric"] == "psnr" and summary["higher_is_better"] is True
    assert {"psnr", "ssim", "l1", "cycle_l1"} <= set(summary["metrics"])


def test_srgan_bsd68_preset_validates_on_the_first_folder_and_reports_every_folder(tmp_path, run_train):
    rng = np.random.default_rng(0)
    folders = {}
    for name, n in (("train", 3), ("val", 1), ("Set5", 2)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folders[name] / f"{i}.png")
    summary, _ = run_train(["experiment=srgan_bsd68", f"data.train_root={folders['train']}",
                            f"data.eval_roots=[{folders['val']},{folders['Set5']}]", "trainer.max_steps=2",
                            "trainer.eval_every=null", "trainer.image_every=null", "model.n_blocks=1",
                            "model.n_features=4", "model.ndf=4", "model.d_fc_features=8", "trainer.batch_size=2"])
    m = summary["metrics"]
    assert summary["primary_metric"] == "psnr" and m["psnr"] == m["val/psnr"]
    assert {"Set5/psnr", "Set5/ssim", "Set5/bicubic_psnr"} <= set(m) and m["Set5/psnr"] != m["psnr"]
