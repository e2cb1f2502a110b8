"""mtbench.validate: each check accepts good values unchanged and names the key and the bad value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from mtbench import validate
from mtbench.utils import ConfigError


def _raises(fn, key, value, *args, **kw):
    with pytest.raises(ValueError) as info:
        fn(key, value, *args, **kw)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{key} must be ") and msg.endswith(f"got {value!r}"), msg
    return msg


@pytest.mark.parametrize("value", [0, -3, 1.0, "2", None, True, False, 2.5, float("nan")])
def test_positive_int_rejects(value):
    msg = _raises(validate.positive_int, "model.ngf", value)
    assert "an integer >= 1" in msg


@pytest.mark.parametrize("value", [1, 7, np.int64(3)])
def test_positive_int_accepts(value):
    assert validate.positive_int("model.ngf", value) is value


def test_int_at_least_and_none():
    assert validate.int_at_least("method.window", 2, 2) == 2
    assert "an integer >= 2" in _raises(validate.int_at_least, "method.window", 1, 2)
    assert validate.positive_int("x", None, allow_none=True) is None
    assert "null or an integer >= 1" in _raises(validate.positive_int, "x", 0, allow_none=True)
    assert validate.non_negative_int("model.pool_size", 0) == 0
    assert "an integer >= 0" in _raises(validate.non_negative_int, "model.pool_size", -1)
    _raises(validate.non_negative_int, "model.pool_size", None)


def test_error_type():
    with pytest.raises(ConfigError, match=re.escape("tune.n_trials must be an integer >= 1, got 0")):
        validate.positive_int("tune.n_trials", 0, error=ConfigError)


@pytest.mark.parametrize("value", [0, -1e-3, math.inf, math.nan, "1", None, True])
def test_positive_number_rejects(value):
    assert "a finite number > 0" in _raises(validate.positive_number, "method.lr", value)


def test_positive_number_accepts():
    for v in (1, 1e-8, np.float32(0.5)):
        assert validate.positive_number("method.lr", v) is v


def test_number_in():
    assert validate.number_in("model.lr_decay.start", 0, 0, 1) == 0
    assert validate.number_in("model.lr_decay.start", 1.0, 0, 1) == 1.0
    assert "a number in [0, 1]" in _raises(validate.number_in, "model.lr_decay.start", 1.5, 0, 1)
    assert "a number in (0, 1]" in _raises(validate.number_in, "g", 0, 0, 1, low_open=True)
    assert "a number in [0, 1)" in _raises(validate.number_in, "b", 1, 0, 1, high_open=True)
    _raises(validate.number_in, "b", float("nan"), 0, 1)
    _raises(validate.number_in, "b", True, 0, 1)
    assert validate.number_in("a", None, 0, 1, allow_none=True) is None
    assert "null or a number" in _raises(validate.number_in, "a", 2, 0, 1, allow_none=True)


def test_choice_and_boolean():
    assert validate.choice("model.norm", "batch", ("batch", "none")) == "batch"
    msg = _raises(validate.choice, "model.norm", "group", ("batch", "none"))
    assert "one of ['batch', 'none']" in msg
    assert validate.boolean("model.perceptual", False) is False
    assert "true or false" in _raises(validate.boolean, "model.perceptual", "yes")
    _raises(validate.boolean, "model.perceptual", 1)


def test_is_int_is_real():
    assert validate.is_int(3) and validate.is_int(np.int32(3)) and not validate.is_int(True)
    assert not validate.is_int(3.0)
    assert validate.is_real(3.0) and validate.is_real(2) and not validate.is_real(False) and not validate.is_real("1")
