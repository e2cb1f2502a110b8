"""The package's argument checks: each raises one line naming the key and the bad value.

Every helper takes the key as the user writes it (``"model.ngf"``,
``"method.window"``, ``"tune.n_trials"``...), the value, and optionally the
exception type to raise (``ValueError`` by default; :class:`mtbench.utils.ConfigError`,
a ``ValueError``, where the caller reports config errors). Messages read
``<key> must be <what>, got <value!r>``. The helpers return the value
unchanged (no conversion), so a check never changes what a caller computes.

Integers are ``numbers.Integral`` (Python and NumPy integers) but never
``bool``; numbers are ``numbers.Real`` but never ``bool`` unless said otherwise.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

__all__ = ["is_int", "is_real", "int_at_least", "positive_int", "positive_ints", "non_negative_int", "positive_number",
           "number_in", "choice", "boolean"]


def is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number (int, float, NumPy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_at_least(name: str, value: Any, minimum: int, *, allow_none: bool = False,
                 error: type[Exception] = ValueError) -> Any:
    """``value`` if it is an integer >= ``minimum`` (or None with ``allow_none``), else raise ``error``."""
    if allow_none and value is None:
        return None
    if not is_int(value) or value < minimum:
        null = "null or " if allow_none else ""
        raise error(f"{name} must be {null}an integer >= {minimum}, got {value!r}")
    return value


def positive_int(name: str, value: Any, *, allow_none: bool = False, error: type[Exception] = ValueError) -> Any:
    """``value`` if it is an integer >= 1 (or None with ``allow_none``), else raise ``error``."""
    return int_at_least(name, value, 1, allow_none=allow_none, error=error)


def positive_ints(*, error: type[Exception] = ValueError, **values: Any) -> None:
    """:func:`positive_int` for each ``key=value`` (``positive_ints(in_channels=3, ngf=64)``)."""
    for name, value in values.items():
        positive_int(name, value, error=error)


def non_negative_int(name: str, value: Any, *, allow_none: bool = False,
                     error: type[Exception] = ValueError) -> Any:
    """``value`` if it is an integer >= 0 (or None with ``allow_none``), else raise ``error``."""
    return int_at_least(name, value, 0, allow_none=allow_none, error=error)


def positive_number(name: str, value: Any, *, error: type[Exception] = ValueError) -> Any:
    """``value`` if it is a finite number > 0, else raise ``error``."""
    if not is_real(value) or not math.isfinite(value) or value <= 0:
        raise error(f"{name} must be a finite number > 0, got {value!r}")
    return value


def number_in(name: str, value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False,
              allow_none: bool = False, error: type[Exception] = ValueError) -> Any:
    """``value`` if it is a number in the interval from ``low`` to ``high`` (ends closed unless ``*_open``).

    The message writes the interval as ``[0, 1)``, ``(0, 1]``...; NaN is never inside.
    """
    if allow_none and value is None:
        return None
    inside = is_real(value) and (low < value if low_open else low <= value) \
        and (value < high if high_open else value <= high)
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        null = "null or " if allow_none else ""
        raise error(f"{name} must be {null}a number in {interval}, got {value!r}")
    return value


def choice(name: str, value: Any, choices: Iterable[Any], *, error: type[Exception] = ValueError) -> Any:
    """``value`` if it is one of ``choices``, else raise ``error`` listing them."""
    choices = list(choices)
    if value not in choices:
        raise error(f"{name} must be one of {choices}, got {value!r}")
    return value


def boolean(name: str, value: Any, *, error: type[Exception] = ValueError) -> bool:
    """``value`` if it is a bool, else raise ``error``."""
    if not isinstance(value, bool):
        raise error(f"{name} must be true or false, got {value!r}")
    return value
