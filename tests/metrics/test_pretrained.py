"""mtbench.metrics.pretrained: the lookup order of weights files, the cache folder and safe reading."""

from __future__ import annotations

import collections
import pickle

import pytest
import torch

from mtbench.metrics import pretrained
from mtbench.metrics.pretrained import (InvalidWeightsError, MissingWeightsError, cache_dir, find_weights,
                                        hub_checkpoint_path, read_state_dict)

HUB_FILE = "net-hub.pth"
CACHE_FILE = "net-converted.pth"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """TORCH_HOME and MTBENCH_CACHE_DIR in tmp_path: (hub checkpoint file, cache file), neither existing yet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "cache"))
    hub, cache = hub_checkpoint_path(HUB_FILE), cache_dir() / CACHE_FILE
    for p in (hub, cache):
        p.parent.mkdir(parents=True, exist_ok=True)
    return hub, cache


def test_hub_checkpoint_path_follows_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert hub_checkpoint_path("x.pth") == tmp_path / "th" / "hub" / "checkpoints" / "x.pth"


def test_cache_dir_env_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MTBENCH_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MTBENCH_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "mtbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "mtbench"


def test_lookup_order_explicit_then_hub_then_cache(dirs, tmp_path):
    hub, cache = dirs
    assert find_weights(None, HUB_FILE, CACHE_FILE) is None  # nothing anywhere
    cache.write_bytes(b"c")
    assert find_weights(None, HUB_FILE, CACHE_FILE) == cache
    hub.write_bytes(b"h")
    assert find_weights(None, HUB_FILE, CACHE_FILE) == hub  # the hub file wins over mtbench's own
    explicit = tmp_path / "given.pth"
    explicit.write_bytes(b"e")
    assert find_weights(explicit, HUB_FILE, CACHE_FILE) == explicit  # the explicit file wins over both
    assert find_weights(str(explicit), HUB_FILE) == explicit
    # an explicit file is returned even when missing: the caller reports that file, never another one
    assert find_weights(tmp_path / "missing.pth", HUB_FILE, CACHE_FILE) == tmp_path / "missing.pth"
    # only the candidates asked for are looked at
    assert find_weights(None, None, CACHE_FILE) == cache
    assert find_weights(None, HUB_FILE, None) == hub
    assert find_weights(None) is None


def test_explicit_path_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_weights("~/w.pth") == tmp_path / "w.pth"


def test_fid_and_vgg_use_the_same_lookup(dirs):
    from mtbench.metrics.fid import fid_weights_hub_path
    from mtbench.metrics.fid_weights import converted_weights_path, find_fid_weights
    from mtbench.nets.vgg import vgg19_hub_checkpoint_path

    assert fid_weights_hub_path().parent == vgg19_hub_checkpoint_path().parent == dirs[0].parent
    assert converted_weights_path().parent == cache_dir()
    converted_weights_path().write_bytes(b"c")
    assert find_fid_weights() == converted_weights_path()
    fid_weights_hub_path().write_bytes(b"h")
    assert find_fid_weights() == fid_weights_hub_path()


def test_read_state_dict(tmp_path):
    state = collections.OrderedDict(w=torch.arange(3.0))
    plain, wrapped = tmp_path / "plain.pth", tmp_path / "wrapped.pth"
    torch.save(state, plain)
    torch.save({"state_dict": state, "source": "x"}, wrapped)
    for path in (plain, wrapped):
        out = read_state_dict(path, "Net", "a state_dict")
        assert list(out) == ["w"] and torch.equal(out["w"], state["w"])
    out, sha = read_state_dict(plain, "Net", "a state_dict", with_sha256=True)
    assert isinstance(out, collections.OrderedDict) and len(sha) == 64


def test_read_state_dict_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InvalidWeightsError, match=r"Could not read the Net weights file .*junk\.pth.*Expected a "
                                                  r"state_dict\. fix it") as info:
        read_state_dict(junk, "Net", "a state_dict", "fix it")
    assert "\n" not in str(info.value)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(InvalidWeightsError, match=r"tensor\.pth does not hold a state_dict \(got Tensor\)"):
        read_state_dict(tensor, "Net", "a state_dict")
    assert issubclass(InvalidWeightsError, MissingWeightsError)


class _Payload:
    def __reduce__(self):
        return (pytest.fail, ("unpickled code from a weights file",))


def test_read_state_dict_never_unpickles_code(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, evil, pickle_module=pickle)
    with pytest.raises(InvalidWeightsError, match="evil.pth"):
        read_state_dict(evil, "Net", "a state_dict")


def test_error_types_are_shared():
    from mtbench.metrics import fid
    from mtbench.nets import vgg

    assert vgg.MissingWeightsError is fid.MissingWeightsError is pretrained.MissingWeightsError
    assert vgg.InvalidWeightsError is fid.InvalidWeightsError is pretrained.InvalidWeightsError
