"""Shared fixtures: compose the real Hydra configs and run the real runner in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from mtbench.cli import config_dir

CONF = config_dir()


def compose_cfg(overrides: list[str], config_name: str = "train"):
    """Compose conf/<config_name>.yaml with overrides, as `mtbench <cmd>` does (hydra node included)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


# quick settings: a few steps, no progress bar, logs every 2 steps
QUICK = ["trainer.progress=false", "trainer.log_every=2", "trainer.checkpoint_every=null", "device=cpu"]


@pytest.fixture
def run_train(tmp_path):
    """run_train(overrides, name="run") -> (summary, run_dir): a real training run in tmp_path."""
    from mtbench.train import train

    def _run(overrides: list[str], name: str = "run"):
        cfg = compose_cfg([*QUICK, *overrides])
        out = tmp_path / name
        return train(cfg, out=out), out

    return _run


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(2)
    yield
    GlobalHydra.instance().clear()


def load_ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
