"""`mtbench trivial`: the identity and mean-training-photo baselines of pix2pix / CycleGAN, as real runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from conftest import compose_cfg
from mtbench.data.embedded_images import edges_to_image
from mtbench.data.transforms import uint8_to_pm1
from mtbench.metrics.image import ssim_per_image
from mtbench.report import make_report
from mtbench.trivial import mean_image, run_trivial
from mtbench.utils import ConfigError

COMMON = ["trainer.progress=false", "device=cpu", "device.threads=1", "eval.fid=false", "trainer.image_every=null",
          "trainer.checkpoint_every=null", "trainer.log_every=1"]
# 5 test images in batches of 2: the per-image means must not depend on the batching
P2P = ["model=pix2pix", "data.image_size=32", "data.n_train=6", "data.n_val=3", "data.n_test=5", "model.ngf=4",
       "model.ndf=4", "trainer.batch_size=2", "trainer.eval_batch_size=2", *COMMON]
CYC = ["model=cyclegan", "data.image_size=32", "data.n_train=6", "data.n_val=3", "data.n_test=5", "model.ngf=4",
       "model.ndf=4", "model.n_blocks=1", "trainer.batch_size=2", "trainer.eval_batch_size=2", *COMMON]


def split_tensors(overrides: list[str], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All A and all B images of a split, built independently of the baseline's code."""
    data = instantiate(compose_cfg(overrides).data, _convert_="object")
    items = [getattr(data, split)[i] for i in range(len(getattr(data, split)))]
    return torch.stack([it["A"] for it in items]), torch.stack([it["B"] for it in items])


def by_hand(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Per-image L1 (in [-1, 1]) and PSNR (in [0, 1]) averaged over the images, written out."""
    l1 = (pred.double() - target.double()).abs().flatten(1).mean(1)
    mse = (((pred.double() + 1) / 2 - (target.double() + 1) / 2) ** 2).flatten(1).mean(1)
    return {"l1": float(l1.mean()), "psnr": float((10 * torch.log10(1.0 / mse)).mean())}


def test_pix2pix_identity_scores_the_input_itself(tmp_path):
    s = run_trivial(compose_cfg(P2P), "identity", tmp_path / "id")
    a, b = split_tensors(P2P, "test")
    assert not torch.equal(a, b)
    want = by_hand(a, b)
    m = s["metrics"]
    assert m["l1"] == pytest.approx(want["l1"], rel=1e-5)
    assert m["psnr"] == pytest.approx(want["psnr"], rel=1e-5)
    assert m["ssim"] == pytest.approx(float(ssim_per_image((a + 1) / 2, (b + 1) / 2).mean()), rel=1e-5)
    assert (s["model"], s["data"], s["method"], s["seed"], s["steps"]) == ("pix2pix", "pix2pix_embedded",
                                                                          "identity", "n/a", 0)
    assert s["primary_metric"] == "psnr" and s["final_weights"] == {}
    assert json.loads((tmp_path / "id" / "summary.json").read_text())["metrics"] == m


def test_mean_train_photo_is_the_per_pixel_mean_of_the_training_targets(tmp_path):
    cfg = compose_cfg(P2P)
    assert cfg.data.flip is True  # the training split flips at random: the mean must not see it
    data = instantiate(cfg.data, _convert_="object")
    want = uint8_to_pm1(data.train.photos).double().mean(0)
    got = mean_image(data.train, "B")
    assert got.shape == (3, 32, 32)
    assert torch.allclose(got.double(), want, atol=1e-6)
    s = run_trivial(cfg, "mean_train_photo", tmp_path / "mean")
    _, b = split_tensors(P2P, "test")
    const = want.float().unsqueeze(0).expand_as(b)
    hand = by_hand(const, b)
    assert s["metrics"]["l1"] == pytest.approx(hand["l1"], rel=1e-5)
    assert s["metrics"]["psnr"] == pytest.approx(hand["psnr"], rel=1e-5)
    assert (tmp_path / "mean" / "mean_train_B.png").is_file()


def test_mean_of_a_folder_split_uses_the_eval_preprocessing(tmp_path):
    """Aligned A|B files (the people_contours layout): no random crop or flip in the mean, B = the target half."""
    rng = np.random.default_rng(0)
    root = tmp_path / "aligned"
    for split, n in (("train", 3), ("test", 2)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 48, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
    over = ["data=facades", f"data.root={root}", "data.direction=BtoA", "data.load_size=20", "data.crop_size=16"]
    data = instantiate(compose_cfg(["model=pix2pix", *over]).data, _convert_="object")
    hands = []
    for i in range(3):  # BtoA: the target B is the left half, resized straight to crop_size (eval preprocessing)
        im = Image.open(root / "train" / f"{i}.png").convert("RGB").crop((0, 0, 24, 24))
        hands.append(data.test.transform(im, data.test.transform.get_params(im.size)))
    want = torch.stack(hands).double().mean(0)
    torch.manual_seed(1)
    got = mean_image(data.train, "B")
    assert got.shape == (3, 16, 16) and torch.allclose(got.double(), want, atol=1e-6)
    assert data.train.transform.train  # the split itself is left as it was


def test_cyclegan_baselines_per_direction(tmp_path):
    ident = run_trivial(compose_cfg(CYC), "identity", tmp_path / "id")
    a, b = split_tensors(CYC, "test")
    m = ident["metrics"]
    assert m["cycle_A_l1"] == 0 and m["cycle_B_l1"] == 0 and m["cycle_l1"] == 0  # G_B(G_A(A)) = A
    assert m["l1"] == pytest.approx(by_hand(a, b)["l1"], rel=1e-5)  # G_A(A) = A scored against B
    assert ident["primary_metric"] == "cycle_l1"

    s = run_trivial(compose_cfg(CYC), "mean_train_photo", tmp_path / "mean")
    train = instantiate(compose_cfg(CYC).data, _convert_="object").train
    mean_b = uint8_to_pm1(train.photos).double().mean(0)  # G_A: the mean training photo
    mean_a = torch.stack([edges_to_image(e) for e in train.edges]).double().mean(0)  # G_B: the mean edge map
    m = s["metrics"]
    assert m["l1"] == pytest.approx(by_hand(mean_b.float().expand_as(b), b)["l1"], rel=1e-5)
    assert m["cycle_A_l1"] == pytest.approx(by_hand(mean_a.float().expand_as(a), a)["l1"], rel=1e-5)
    assert m["cycle_B_l1"] == pytest.approx(by_hand(mean_b.float().expand_as(b), b)["l1"], rel=1e-5)
    assert {p.name for p in (tmp_path / "mean").glob("*.png")} == {"mean_train_A.png", "mean_train_B.png"}


def test_identity_fid_is_the_fid_between_the_inputs_and_the_targets(tmp_path):
    """With the random test Inception (NOT FID weights): the identity's FID/KID are those of A against B."""
    from mtbench.metrics.fid import fid_from_features, inception_features, load_inception
    from mtbench.metrics.fid_testing import random_fid_inception_state_dict

    weights = tmp_path / "pt_inception-test-random.pth"
    torch.save(random_fid_inception_state_dict(seed=0), weights)
    over = [*P2P, "eval.fid=true", f"eval.fid_weights={weights}", f"eval.fid_cache={tmp_path / 'cache'}"]
    s = run_trivial(compose_cfg(over), "identity", tmp_path / "id")
    assert s["primary_metric"] == "fid" and s["higher_is_better"] is False
    net = load_inception(weights, download=False)
    a, b = split_tensors(P2P, "test")
    want = fid_from_features(inception_features(net, b), inception_features(net, a))
    assert s["metrics"]["fid"] == pytest.approx(want, rel=1e-4)
    assert s["metrics"]["fid_images"] == 5 and "kid" in s["metrics"]


def test_trivial_runs_are_rows_of_their_own_in_the_report(tmp_path):
    from mtbench.train import train

    root = tmp_path / "runs"
    over = [*P2P, "trainer.max_steps=2"]  # the trained run's overrides (as scripts/reproduce_gans.sh passes them)
    trained = train(compose_cfg([*over, "method=fixed"]), out=root / "fixed_s0")
    ident = run_trivial(compose_cfg(over), "identity", root / "identity")
    mean = run_trivial(compose_cfg(over), "mean_train_photo", root / "mean_train_photo")
    res = make_report([root], tmp_path / "rep")
    rows = res["rows"]
    assert [r["method"] for r in rows] == ["fixed", "identity", "mean_train_photo"]
    assert [r["label"] for r in rows] == ["fixed", "identity (trivial baseline)",
                                          "mean_train_photo (trivial baseline)"]
    for row, s in zip(rows, (trained, ident, mean)):
        assert row["n"] == 1 and row["metrics"]["l1"]["mean"] == s["metrics"]["l1"]
    assert rows[1]["metrics"]["l1"]["mean"] != rows[2]["metrics"]["l1"]["mean"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| identity (trivial baseline) |" in md and "| mean_train_photo (trivial baseline) |" in md
    assert not any("trivial" in n or "identity" in n for n in res["notes"])  # no weight-figure noise for them
    assert not any("identity" in f.name or "mean_train" in f.name for f in res["files"])


def test_an_existing_run_dir_is_refused(tmp_path):
    out = tmp_path / "id"
    run_trivial(compose_cfg(P2P), "identity", out)
    before = (out / "summary.json").read_text()
    for kind in ("identity", "mean_train_photo"):
        with pytest.raises(ConfigError, match="already holds a run"):
            run_trivial(compose_cfg(P2P), kind, out)
    assert (out / "summary.json").read_text() == before
    assert not (out / "mean_train_B.png").exists()
    with pytest.raises(ConfigError, match="pix2pix and cyclegan"):
        run_trivial(compose_cfg(["model=srgan", "experiment=srgan_quick", *COMMON]), "identity", tmp_path / "sr")


def test_the_command_line_writes_a_run_and_refuses_to_overwrite_it(tmp_path, capsys):
    from mtbench.cli import main

    out = tmp_path / "cli"
    args = ["trivial", "identity", *P2P, f"hydra.run.dir={out}"]
    assert main(args) == 0
    assert "pix2pix/identity (trivial baseline)" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "identity" and s["command"].startswith("mtbench trivial identity model=pix2pix")
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and "already holds a run" in capsys.readouterr().err
    assert main(["trivial", "median"]) == 2
