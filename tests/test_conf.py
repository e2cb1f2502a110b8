"""The composed configs are a contract: refactoring conf/ (inheritance, moved comments) must not change them.

Every experiment preset and every option of every config group (and the crossings that exercise
inheritance between them) is composed with Hydra's compose API, as `mtbench <command>` does, and
compared with tests/data/composed_configs.json: ``OmegaConf.to_container(cfg, resolve=False)``
without the hydra node, key order included (it is the order of `--help` and run.yaml).

A deliberate change of a composed config (a new default, a new key, a new option or preset) means
regenerating the snapshot, and reviewing its diff, in the same commit:

    .venv/bin/python tests/test_conf.py --regenerate
    git diff --stat tests/data/composed_configs.json

A one-off check of the whole model x trainer x device x method x experiment product (slow, minutes):

    .venv/bin/python tests/test_conf.py --full before.json   # before the change
    .venv/bin/python tests/test_conf.py --full after.json    # after it; the two files must be equal
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mtbench.cli import config_dir

CONF = Path(config_dir())
SNAPSHOT = Path(__file__).parent / "data" / "composed_configs.json"
GROUPS = ("model", "data", "trainer", "device", "method", "experiment")


def options(group: str) -> list[str]:
    """The options of a config group: its YAML files."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def cases() -> list[tuple[str, tuple[str, ...]]]:
    """(config name, overrides) of every composition the snapshot holds."""
    out: list[tuple[str, tuple[str, ...]]] = [("train", ()), ("tune", ()), ("eval", ())]
    for group in GROUPS:  # every option alone
        out += [("train", (f"{group}={o}",)) for o in options(group)]
    # a model picks its trainer and data; an explicit choice must still win, and inherit the same way
    out += [("train", (f"model={m}", f"trainer={t}")) for m in options("model") for t in options("trainer")]
    out += [("train", (f"model={m}", f"method={x}")) for m in options("model") for x in options("method")]
    # a preset sets keys of the model it selects; with another model chosen they land there
    out += [("train", (f"experiment={e}", f"model={m}")) for e in options("experiment") for m in options("model")]
    out += [("tune", (f"experiment={e}",)) for e in options("experiment")]
    out += [("eval", (f"device={d}",)) for d in options("device")]
    return list(dict.fromkeys(out))


def full_product() -> list[tuple[str, tuple[str, ...]]]:
    """Every model x trainer x device x method x experiment combination (for the one-off --full check)."""
    return [("train", (f"model={m}", f"trainer={t}", f"device={d}", f"method={x}", *([f"experiment={e}"] if e else [])))
            for m, t, d, x, e in itertools.product(options("model"), options("trainer"), options("device"),
                                                   options("method"), [None, *options("experiment")])]


def label(name: str, overrides: tuple[str, ...]) -> str:
    return " ".join([name, *overrides])


def compose_all(todo: list[tuple[str, tuple[str, ...]]]) -> dict[str, dict]:
    """label -> the composed config as a plain container (unresolved, no hydra node)."""
    GlobalHydra.instance().clear()
    out = {}
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            for name, overrides in todo:
                cfg = compose(config_name=name, overrides=list(overrides))
                out[label(name, overrides)] = OmegaConf.to_container(cfg, resolve=False)
    finally:
        GlobalHydra.instance().clear()
    return out


def digest(container: dict) -> str:
    return hashlib.sha256(json.dumps(container).encode()).hexdigest()[:16]


def write_snapshot(path: Path = SNAPSHOT) -> None:
    composed = compose_all(cases())
    configs: dict[str, dict] = {}
    index = {}
    for key, container in composed.items():
        h = digest(container)
        configs.setdefault(h, container)
        index[key] = h
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cases": index, "configs": configs}, indent=1) + "\n")


@pytest.fixture(scope="module")
def snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


@pytest.fixture(scope="module")
def composed() -> dict[str, dict]:
    return compose_all(cases())


def test_snapshot_covers_every_preset_and_group_option(snapshot):
    """A new option or preset needs a regenerated snapshot (see the module docstring)."""
    missing = [label(*c) for c in cases() if label(*c) not in snapshot["cases"]]
    assert not missing, f"not in the snapshot (regenerate it deliberately): {missing}"
    for group in GROUPS:
        assert options(group), group


def test_composed_configs_equal_the_snapshot(snapshot, composed):
    changed = []
    for key, container in composed.items():
        expected = snapshot["configs"][snapshot["cases"][key]]
        if json.dumps(container) != json.dumps(expected):  # key order included
            changed.append(key)
    if changed:
        key = changed[0]
        expected = snapshot["configs"][snapshot["cases"][key]]
        got = composed[key]
        diff = [f"{k}: {expected.get(k)!r} -> {got.get(k)!r}" for k in dict.fromkeys([*expected, *got])
                if json.dumps(expected.get(k)) != json.dumps(got.get(k))]
        pytest.fail(f"{len(changed)} composed configs changed, e.g. `{key}`: {'; '.join(diff)[:2000]}"
                    + ("" if diff else " (key order only)"))


def test_group_variants_inherit_their_base():
    """The variants state only what differs (conf/trainer, conf/device, conf/method)."""
    for group, variant, base in [("trainer", "pix2pix", "default"), ("trainer", "srgan", "default"),
                                 ("trainer", "cyclegan", "pix2pix"), ("device", "cpu", "auto"),
                                 ("device", "cuda", "auto"), ("method", "softadapt_normalized", "softadapt"),
                                 ("method", "softadapt_loss_weighted", "softadapt")]:
        node = OmegaConf.load(CONF / group / f"{variant}.yaml")
        assert list(node.get("defaults", [])) == [base, "_self_"], (group, variant)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--regenerate"]:
        write_snapshot()
        print(f"wrote {SNAPSHOT}")
    elif sys.argv[1:2] == ["--full"] and len(sys.argv) == 3:
        hashes = {k: digest(v) for k, v in compose_all(full_product()).items()}
        Path(sys.argv[2]).write_text(json.dumps(hashes, indent=0) + "\n")
        print(f"{len(hashes)} compositions -> {sys.argv[2]}")
    else:
        sys.exit(__doc__)
