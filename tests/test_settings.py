"""mtbench.settings: every preset's trainer/device node parses; bad values and unknown keys fail in one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
import torch
from omegaconf import OmegaConf

from mtbench.cli import config_dir
from mtbench.settings import DeviceSettings, TrainerSettings
from mtbench.utils import ConfigError

CONF = Path(config_dir())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def presets() -> dict[str, object]:
    """Every experiment preset and every trainer / device / model option, composed (train and tune)."""
    todo = [("train", [])] + [("train", [f"{g}={o}"]) for g in ("experiment", "trainer", "device", "model")
                              for o in _options(g)]
    todo += [("tune", [f"experiment={e}"]) for e in _options("experiment")] + [("eval", [])]
    GlobalHydra.instance().clear()
    out = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name, overrides in todo:
            out[" ".join([name, *overrides])] = compose(config_name=name, overrides=overrides)
    GlobalHydra.instance().clear()
    return out


def test_every_preset_parses(presets):
    for label, cfg in presets.items():
        if "trainer" in cfg:
            t = TrainerSettings.from_config(cfg.trainer)
            assert dataclasses.asdict(t) | {"keep_best": True} == OmegaConf.to_container(cfg.trainer) | {
                "keep_best": True}, label
        d = DeviceSettings.from_config(cfg.device)
        assert dataclasses.asdict(d) == OmegaConf.to_container(cfg.device), label


def test_the_attributes_are_the_config_keys_and_the_defaults_their_yaml():
    """Every key of conf/trainer/*.yaml and conf/device/*.yaml is an attribute (and nothing else but keep_best)."""
    names = {f.name for f in dataclasses.fields(TrainerSettings)}
    for o in _options("trainer"):
        assert set(OmegaConf.to_container(_load("trainer", o))) == names - {"keep_best"}, o
    assert set(OmegaConf.to_container(_load("device", "auto"))) == {f.name for f in dataclasses.fields(DeviceSettings)}
    assert dataclasses.asdict(TrainerSettings()) == {**OmegaConf.to_container(_load("trainer", "default")),
                                                     "keep_best": True}
    assert dataclasses.asdict(DeviceSettings()) == OmegaConf.to_container(_load("device", "auto"))
    assert TrainerSettings.from_config({}) == TrainerSettings()


def _load(group: str, option: str):
    """A group option as composed alone (its defaults list applied)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"{group}={option}"])
    GlobalHydra.instance().clear()
    return cfg[group]


TRAINER_BAD = [
    ("eval_split", "vall", "'auto', 'val' or 'test'"),
    ("eval_split", None, "'auto', 'val' or 'test'"),
    ("nan_policy", "ignore", "'raise' or 'skip'"),
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", None, "an integer >= 1"),
    ("batch_size", 4.0, "an integer >= 1"),
    ("batch_size", True, "an integer >= 1"),
    ("eval_batch_size", -3, "an integer >= 1"),
    ("epochs", 0, "an integer >= 1 or null"),
    ("max_steps", "100", "an integer >= 1 or null"),
    ("log_every", None, "an integer >= 1"),
    ("eval_every", 0, "an integer >= 1 or null"),
    ("checkpoint_every", -1, "an integer >= 1 or null"),
    ("image_every", 2.5, "an integer >= 1 or null"),
    ("num_workers", -1, "'auto' or an integer >= 0"),
    ("num_workers", "four", "'auto' or an integer >= 0"),
    ("shuffle", "yes", "true or false"),
    ("progress", 1, "true or false"),
    ("keep_best", None, "true or false"),
]

DEVICE_BAD = [
    ("type", "gpu", "auto, cpu, cuda or cuda:<index>"),
    ("type", "cuda:x", "auto, cpu, cuda or cuda:<index>"),
    ("type", None, "auto, cpu, cuda or cuda:<index>"),
    ("amp", "fp16", "false or bf16"),
    ("amp", 1, "false or bf16"),
    ("channels_last", "true", "true or false"),
    ("threads", 0, "an integer >= 1 or null"),
    ("threads", "auto", "an integer >= 1 or null"),
]


@pytest.mark.parametrize(("cls", "group", "key", "value", "allowed"),
                         [(TrainerSettings, "trainer", *b) for b in TRAINER_BAD]
                         + [(DeviceSettings, "device", *b) for b in DEVICE_BAD])
@pytest.mark.parametrize("as_dictconfig", [False, True])
def test_a_bad_value_is_one_line_naming_key_value_and_allowed(cls, group, key, value, allowed, as_dictconfig):
    node = {**dataclasses.asdict(cls()), key: value}
    with pytest.raises(ConfigError) as info:
        cls.from_config(OmegaConf.create(node) if as_dictconfig else node)
    assert str(info.value) == f"{group}.{key} must be {allowed}, got {value!r}"
    assert "\n" not in str(info.value)


def test_the_messages_the_runner_gave_are_kept():
    """The builder will check with these classes first: the one-line errors users and tests know stay."""
    with pytest.raises(ConfigError, match=r"^trainer\.batch_size must be an integer >= 1, got 0$"):
        TrainerSettings.from_config({"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^trainer\.nan_policy must be 'raise' or 'skip', got 'ignore'$"):
        TrainerSettings.from_config({"nan_policy": "ignore"})
    with pytest.raises(ConfigError, match=r"^device\.amp must be false or bf16, got 'fp16'$"):
        DeviceSettings.from_config({"amp": "fp16"})
    with pytest.raises(ConfigError, match=r"^device\.threads must be an integer >= 1 or null, got 0$"):
        DeviceSettings.from_config({"threads": 0})


def test_epochs_may_be_null_only_with_max_steps():
    assert TrainerSettings.from_config({"epochs": None, "max_steps": 10}).max_steps == 10
    with pytest.raises(ConfigError, match=r"^trainer\.epochs must be an integer >= 1 \(null only with "
                                          r"trainer\.max_steps set\), got None$"):
        TrainerSettings.from_config({"epochs": None})


@pytest.mark.parametrize(("cls", "typo", "message"), [
    (TrainerSettings, "eval_splt", "trainer.eval_splt is not a trainer setting; did you mean eval_split?"),
    (TrainerSettings, "nan_polcy", "trainer.nan_polcy is not a trainer setting; did you mean nan_policy?"),
    (TrainerSettings, "max_step", "trainer.max_step is not a trainer setting; did you mean max_steps?"),
    (TrainerSettings, "checkpoint_evry", "trainer.checkpoint_evry is not a trainer setting; "
                                         "did you mean checkpoint_every?"),
    (DeviceSettings, "thread", "device.thread is not a device setting; did you mean threads?"),
    (DeviceSettings, "channel_last", "device.channel_last is not a device setting; did you mean channels_last?"),
])
def test_an_unknown_key_suggests_the_right_one(cls, typo, message):
    for node in ({typo: 1}, OmegaConf.create({**dataclasses.asdict(cls()), typo: 1})):
        with pytest.raises(ConfigError) as info:
            cls.from_config(node)
        assert str(info.value) == message


def test_an_unknown_key_without_a_close_match_lists_the_settings():
    with pytest.raises(ConfigError) as info:
        DeviceSettings.from_config({"zzz": 1})
    assert str(info.value) == "device.zzz is not a device setting; the settings are type, amp, channels_last, threads, deterministic"


def test_composed_overrides_are_checked(presets):
    """What a command line produces (overrides on a composed preset) parses or fails by key."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=srgan_quick", "trainer.eval_split=val",
                                                      "trainer.num_workers=2", "device=cuda", "device.amp=bf16",
                                                      "device.threads=3", "+trainer.keep_best=false"])
        bad = compose(config_name="train", overrides=["trainer.eval_split=tets"])
        typo = compose(config_name="train", overrides=["+trainer.eval_splt=val"])
    GlobalHydra.instance().clear()
    t, d = TrainerSettings.from_config(cfg.trainer), DeviceSettings.from_config(cfg.device)
    assert (t.eval_split, t.num_workers, t.max_steps, t.keep_best) == ("val", 2, 300, False)
    assert (d.type, d.amp, d.threads, d.channels_last) == ("cuda", "bf16", 3, False)
    with pytest.raises(ConfigError, match=r"^trainer\.eval_split must be 'auto', 'val' or 'test', got 'tets'$"):
        TrainerSettings.from_config(bad.trainer)
    with pytest.raises(ConfigError, match=r"did you mean eval_split\?$"):
        TrainerSettings.from_config(typo.trainer)


def test_aliases_the_runner_accepted_are_normalised():
    assert DeviceSettings.from_config({"amp": True}).amp == "bf16"
    assert DeviceSettings.from_config({"amp": "bfloat16"}).amp == "bf16"
    assert DeviceSettings.from_config({"amp": None}).amp is False
    assert TrainerSettings.from_config({"num_workers": None}).num_workers == "auto"
    assert DeviceSettings.from_config({"type": "cuda:1"}).type == "cuda:1"


def test_interpolations_resolve_and_missing_values_name_the_key():
    cfg = OmegaConf.create({"n": 7, "trainer": {"batch_size": "${n}"}})
    assert TrainerSettings.from_config(cfg.trainer).batch_size == 7
    with pytest.raises(ConfigError, match=r"^trainer\.max_steps is missing"):
        TrainerSettings.from_config(OmegaConf.create({"max_steps": "???"}))
    with pytest.raises(ConfigError, match=r"^trainer must be a mapping"):
        TrainerSettings.from_config(["batch_size"])


def test_settings_are_immutable():
    t, d = TrainerSettings(), DeviceSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.eval_split = "val"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.type = "cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.extra = 1
    assert not hasattr(t, "get") and not hasattr(d, "get")
    assert dataclasses.replace(t, eval_split="val").eval_split == "val"
    with pytest.raises(ConfigError, match=r"^trainer\.eval_split must be"):
        dataclasses.replace(t, eval_split="nope")
    assert hash(t) == hash(TrainerSettings())


def test_device_deterministic_switches_deterministic_algorithms_on_and_off_again():
    from mtbench.experiment import configure_device

    before = torch.are_deterministic_algorithms_enabled()
    try:
        configure_device(OmegaConf.create({"type": "cpu", "deterministic": True}))
        assert torch.are_deterministic_algorithms_enabled()
        configure_device(OmegaConf.create({"type": "cpu"}))  # the default turns it off: nothing leaks into a later run
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)
