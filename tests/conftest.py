"""Shared fixtures: compose the real Hydra configs and run the real runner in a temp dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

from mtbench.cli import config_dir

CONF = config_dir()

#: every method config (conf/method/*.yaml): a new method file is picked up by the tests automatically
METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))

# Hermetic caches: no test sees the user's FID/VGG weights (which would switch FID on in every GAN run)
# or writes into the user's cache; tests that need a cache make their own with monkeypatch.
_CACHES = tempfile.mkdtemp(prefix="mtbench-test-caches-")
os.environ["TORCH_HOME"] = os.path.join(_CACHES, "torch")
os.environ["MTBENCH_CACHE_DIR"] = os.path.join(_CACHES, "mtbench")


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


@pytest.fixture
def one_thread():
    """One intra-op thread (tiny nets: 2 threads on 2 shared cores only add contention); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline_vgg(tmp_path, monkeypatch):
    """No VGG19 weights anywhere and no network: an empty torch hub folder, downloads raise OSError."""
    from mtbench.nets import vgg as vgg_module

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(vgg_module, "_download_vgg19_state_dict", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    return tmp_path / "torch_home"


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(2)
    yield
    GlobalHydra.instance().clear()


def train_with_signal_at(model_cls, cfg, out: Path, stop_step: int, signum=None, raises=None):
    """Train cfg; right after training step ``stop_step`` send ourselves ``signum`` (default SIGTERM: the real
    handler path).

    Returns the exception the runner raises after writing its checkpoint (``raises``, default RunInterrupted).
    """
    import os
    import signal

    from mtbench.train import RunInterrupted, train

    signum = signal.SIGTERM if signum is None else signum

    original = model_cls.training_step
    count = {"n": 0}

    def step(self, batch, method):
        logs = original(self, batch, method)
        count["n"] += 1
        if count["n"] == stop_step:
            os.kill(os.getpid(), signum)
        return logs

    model_cls.training_step = step
    try:
        with pytest.raises(raises or RunInterrupted) as info:
            train(cfg, out=out)
    finally:
        model_cls.training_step = original
    return info.value


def build_from_config(overrides: list[str]):
    """(model, method, data) built from the real configs as the runner does (CPU, seed 0)."""
    from hydra.utils import instantiate

    from mtbench.experiment import build_method

    cfg = compose_cfg([*overrides, "device=cpu"])
    torch.manual_seed(0)
    data = instantiate(cfg.data, _convert_="object")
    model = instantiate(cfg.model, _convert_="object")
    meth = build_method(cfg.method, model)
    model.train()
    return model, meth, data


def load_ckpt(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, CONF.parent / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
