"""Real tiny MNIST runs shared by the tests of mtbench.report (trained once per session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import QUICK, compose_cfg

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["trainer.max_steps=4", "trainer.batch_size=16", "data.train_per_class=5"]
# softadapt updates its weights every step here, so its results differ from fixed's within 4 steps
METHODS = {"fixed": [], "softadapt": ["method.update_every=1", "method.window=2"]}
SOFTADAPT_LABEL = "softadapt [method.update_every=1, method.window=2]"
_MADE: dict[str, Path] = {}


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Path:
    """2 methods x 2 seeds of real tiny MNIST runs (what conftest's run_train makes), made once per session."""
    if "root" not in _MADE:  # one copy even when several test modules import this fixture
        from mtbench.train import train

        torch.set_num_threads(1)
        root = tmp_path_factory.mktemp("runs")
        for method, extra in METHODS.items():
            for seed in (0, 1):
                cfg = compose_cfg([*QUICK, f"method={method}", f"seed={seed}", *TINY, *extra])
                train(cfg, out=root / f"{method}_s{seed}")
        _MADE["root"] = root
    return _MADE["root"]


def multirun_copy(runs: Path, dest: Path, checkpoints: bool = False) -> Path:
    """The runs laid out as `mtbench train -m` does: <dest>/multirun/<date>/<n>_<model>_<method>_s<seed>/."""
    day = dest / "multirun" / "2026-01-01"
    ignore = None if checkpoints else shutil.ignore_patterns("checkpoints")
    for n, src in enumerate(sorted(runs.iterdir())):
        method, seed = src.name.rsplit("_s", 1)
        shutil.copytree(src, day / f"{n}_mnist_{method}_s{seed}", ignore=ignore)
    return dest / "multirun"


def summaries(runs: Path, method: str) -> list[dict]:
    return [json.loads((runs / f"{method}_s{s}" / "summary.json").read_text()) for s in (0, 1)]


def copy_run(runs: Path, name: str, dest: Path) -> Path:
    """A copy of one run without its checkpoints (to modify)."""
    shutil.copytree(runs / name, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest
