"""Trivial baselines of the image-translation GANs, evaluated as real runs: ``mtbench trivial KIND [overrides]``.

A trained GAN should beat outputs that need no training at all. For a pix2pix
or CycleGAN config (the same overrides as ``mtbench train``: data, eval split,
``eval.fid``...) this builds the run as the runner does (:class:`mtbench.train.Runner`),
replaces the generator(s) by a fixed function and evaluates it with the model's
own ``evaluate()`` and the runner's FID/KID code, on the same split:

``identity``
    the output is the input image itself (people_contours: the contour drawing).
``mean_train_photo``
    the output is the per-pixel mean of the training split's target images, the
    same image for every input. The training images are read with the
    evaluation preprocessing (resized straight to ``crop_size``, no random crop
    or flip), so the mean has the geometry of the evaluated images. Of all
    constant outputs it has the lowest per-pixel squared error on the training
    targets, so it is a strong PSNR baseline.

pix2pix: ``G`` (A -> B) is replaced. CycleGAN: both generators, each with the
baseline of its own direction: ``G_A`` (A -> B; people_contours: contour ->
photo) by the identity or the mean training B image, ``G_B`` (B -> A) by the
identity or the mean training A image. So the CycleGAN rows' cycle errors are
those of these functions: 0 for ``identity`` (G_B(G_A(A)) = A), and the
distance of each image to its domain's mean for ``mean_train_photo``; the
cycle error is not a translation-quality measure, the paired metrics and FID are.

The result is a run directory with a ``summary.json`` in the format of
``mtbench train`` (``method`` = the kind, ``seed`` = ``"n/a"``: nothing is
random, ``steps`` = 0, no weights, ``trivial`` describes what was done), so
``mtbench report`` lists it as a row of its own (after the trained methods);
``mean_train_photo`` also writes the mean image(s) as PNG. A run directory
that already holds a run is refused. Default directory:
``runs/<model>/<kind>/<date>_<time>``.

    mtbench trivial identity experiment=pix2pix_people_contours data.root=OUT/aligned
    mtbench trivial mean_train_photo experiment=pix2pix_people_contours data.root=OUT/aligned hydra.run.dir=runs/x
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.data import Dataset

from mtbench.report import TRIVIAL_METHODS
from mtbench.rundir import write_summary
from mtbench.utils import ConfigError

KINDS = TRIVIAL_METHODS  # ("identity", "mean_train_photo")
SEED = "n/a"  # the summaries' seed: a trivial baseline draws nothing at random


class IdentityGenerator(nn.Module):
    """Returns its input: the ``identity`` baseline."""

    def forward(self, x: Tensor) -> Tensor:
        return x


class ConstantGenerator(nn.Module):
    """Returns the same image (C, H, W) for every input: the ``mean_train_photo`` baseline."""

    def __init__(self, image: Tensor) -> None:
        super().__init__()
        self.register_buffer("image", image.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != tuple(self.image.shape[-2:]):
            raise ValueError(f"mean_train_photo: the mean image is {tuple(self.image.shape[-2:])} but an input is "
                             f"{tuple(x.shape[-2:])}; the baseline needs images of one size (a crop_size)")
        return self.image.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1, -1)


def generator_slots(model: nn.Module) -> dict[str, tuple[str, str]]:
    """The model's generators to replace: {attribute: (input key, output key)} of the batch."""
    from mtbench.models.cyclegan import CycleGANModel
    from mtbench.models.pix2pix import Pix2PixModel

    if isinstance(model, Pix2PixModel):
        return {"G": ("A", "B")}
    if isinstance(model, CycleGANModel):
        return {"G_A": ("A", "B"), "G_B": ("B", "A")}
    raise ConfigError(f"trivial baselines are defined for pix2pix and cyclegan (image-to-image translation), "
                      f"not for {type(model).__name__}")


def deterministic_view(ds: Dataset) -> Dataset:
    """A shallow copy of a training split with the evaluation preprocessing: no random crop, flip or B draw."""
    from mtbench.data.transforms import PairedTransform

    view = copy.copy(ds)
    tf = getattr(view, "transform", None)
    if isinstance(tf, PairedTransform) and tf.train:
        view.transform = PairedTransform(tf.load_size, tf.crop_size, tf.preprocess, flip=False, train=False)
    if hasattr(view, "flip"):
        view.flip = False
    if hasattr(view, "serial_batches"):
        view.serial_batches = True  # item i holds A[i % n_A] and B[i % n_B]
    return view


def _domain_size(ds: Dataset, key: str) -> int:
    """How many distinct ``key`` images the split holds (unpaired splits: each domain its own count)."""
    attrs = {"A": ("paths_a", "edges"), "B": ("paths_b", "photos")}[key]
    if hasattr(ds, "serial_batches"):  # unpaired: items 0..n_key-1 visit every image of the domain once
        for attr in attrs:
            items = getattr(ds, attr, None)
            if items is not None:
                return len(items)
    return len(ds)


@torch.no_grad()
def mean_image(ds: Dataset, key: str) -> Tensor:
    """Per-pixel mean (float64 sum, returned as float32 (C, H, W)) of every ``key`` image of a training split."""
    view = deterministic_view(ds)
    n = _domain_size(view, key)
    if n == 0:
        raise ConfigError("mean_train_photo: the training split is empty")
    total = None
    for i in range(n):
        img = view[i][key].double()
        if total is not None and img.shape != total.shape:
            raise ConfigError(f"mean_train_photo: training images of different sizes ({tuple(total.shape)} and "
                              f"{tuple(img.shape)}); use a preprocessing that gives one size (a crop_size)")
        total = img if total is None else total + img
    return (total / n).float()


def _refuse_existing(out: Path) -> None:
    """A run directory is never overwritten: anything but Hydra's own files means a run is there."""
    if out.exists():
        there = sorted(p.name for p in out.iterdir() if p.name not in (".hydra",) and not p.name.endswith(".log"))
        if there:
            raise ConfigError(f"run dir {out} already holds a run ({', '.join(there[:3])}); choose another "
                              f"hydra.run.dir")


def run_trivial(cfg: DictConfig, kind: str, out: Path | str) -> dict[str, Any]:
    """Evaluate the ``kind`` baseline of the model of ``cfg``; writes and returns ``out/summary.json``."""
    from mtbench.train import Runner

    if kind not in KINDS:
        raise ConfigError(f"unknown trivial baseline {kind!r}; choose one of {', '.join(KINDS)}")
    target = str(cfg.model.get("_target_", ""))
    if not target.endswith((".Pix2PixModel", ".CycleGANModel")):
        raise ConfigError(f"trivial baselines are defined for pix2pix and cyclegan (image-to-image translation), "
                          f"not for {target or 'this model'}")
    out = Path(out)
    _refuse_existing(out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(cfg, out)  # the run's data, model, device, eval split and FID settings, as `mtbench train`
    model = runner.model
    slots = generator_slots(model)
    start = time.perf_counter()
    described = {}
    for attr, (src, dst) in slots.items():
        if kind == "identity":
            gen: nn.Module = IdentityGenerator()
            described[attr] = f"{src} -> {dst}: the input {src} image itself"
        else:
            img = mean_image(runner.data.train, dst)
            gen = ConstantGenerator(img)
            name = f"mean_train_{dst}.png"
            _save_png(img, out / name)
            described[attr] = (f"{src} -> {dst}: the per-pixel mean of the {_domain_size(runner.data.train, dst)} "
                               f"training {dst} images ({name})")
        setattr(model, attr, gen.to(runner.device))
    metrics = runner.evaluate()
    wall = time.perf_counter() - start
    summary = runner.summary(metrics, wall)
    summary.update(method=kind, seed=SEED, final_weights={}, steps=0, epochs=0.0,
                   best={"value": None, "step": None}, baseline=None,
                   trivial={"kind": kind, "generators": described,
                            "note": "a trivial baseline: no training; the seed is n/a (nothing is random)"})
    summary["command"] = " ".join(["mtbench", "trivial", kind, *summary.get("overrides", [])])
    if runner.fid_error is not None:
        summary["fid_note"] = f"FID not computed: {runner.fid_error}"
    write_summary(out, summary)
    if runner.fid_error is not None:
        raise runner.fid_error
    return summary


def _save_png(img: Tensor, path: Path) -> None:
    """Write the PNG all or nothing (a link at ``path`` is replaced, never written through; a full disk is one
    line and leaves no partial file)."""
    from torchvision.utils import save_image

    from mtbench.utils import atomic_writer

    with atomic_writer(path, "wb") as f:
        save_image(((img.float() + 1) / 2).clamp(0, 1), f, format="png")


def format_trivial(summary: dict[str, Any]) -> str:
    m = summary["metrics"]
    key = summary["primary_metric"]
    others = " ".join(f"{k} {v:.4g}" for k, v in m.items() if k != key)
    return (f"done: {summary['model']}/{summary['method']} (trivial baseline) | {key} {m.get(key, float('nan')):.4g} "
            f"| {others} | {summary['wall_time_s']:.1f}s on {summary['device']} | run dir {summary['run_dir']}")


USAGE = f"""usage: mtbench trivial KIND [key=value ...]

Evaluate a trivial baseline of pix2pix / CycleGAN as a run of its own (summary.json for mtbench report).
KIND: {' | '.join(KINDS)}; the overrides are those of `mtbench train` (experiment, data.root, eval.fid, ...).
Run directory: hydra.run.dir=DIR (default runs/<model>/<KIND>/<date>_<time>); an existing run is refused.

  mtbench trivial identity experiment=pix2pix_people_contours data.root=OUT/aligned
  mtbench trivial mean_train_photo experiment=cyclegan_people_contours data.root=OUT/unpaired
"""


def main(argv: list[str]) -> int:
    """``mtbench trivial KIND [overrides]``: a Hydra app over conf/train.yaml (one run, no multirun)."""
    import hydra

    from mtbench.cli import _guarded, config_dir

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    kind, overrides = argv[0], argv[1:]
    if kind not in KINDS:
        print(f"error: unknown trivial baseline {kind!r}; choose one of: {', '.join(KINDS)} (mtbench trivial --help)",
              file=sys.stderr)
        return 2
    if any(a in ("-m", "--multirun") for a in overrides):
        print("error: mtbench trivial runs one evaluation; no multirun (-m)", file=sys.stderr)
        return 2
    if not any(a.startswith("hydra.run.dir=") for a in overrides):
        overrides.append(f"hydra.run.dir=runs/${{hydra:runtime.choices.model}}/{kind}/${{now:%Y-%m-%d_%H-%M-%S}}")

    def task(cfg: DictConfig) -> None:
        from hydra.core.hydra_config import HydraConfig

        summary = _guarded(lambda c: run_trivial(c, kind, Path(HydraConfig.get().runtime.output_dir)), cfg)
        print(format_trivial(summary))

    sys.argv = [f"mtbench trivial {kind}", *overrides]
    hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(task)()
    return 0
