"""The statistics of the per-seed tables: mean, sd, 95% CI, paired or Welch t-tests, Holm's correction.

* :func:`describe`: mean, sample standard deviation (n-1) and the 95% confidence
  interval of the mean, ``mean ± t_{0.975, n-1} · sd / sqrt(n)`` (Student t; none with
  one value).
* :func:`compare`: an arm against the baseline arm on one metric. When both have the
  same seeds (two or more), a paired t-test over the per-seed differences
  (``scipy.stats.ttest_rel``); otherwise Welch's t-test (``ttest_ind(equal_var=False)``),
  which needs two values on each side. Two-sided. Degenerate cases, where scipy
  gives NaN: differences that are all zero (identical runs; paired), or two
  constant samples, have p = 1 when the means are equal and p = 0 when they differ.
* :func:`holm`: Holm's step-down adjustment of a family of p-values
  (``p_(i)`` sorted ascending, adjusted ``max_{j<=i} min(1, (m-j+1) p_(j))``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as st

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Described:
    """Mean, sd (None with n < 2), n, and the 95% CI of the mean (None with n < 2)."""

    mean: float
    sd: float | None
    n: int
    lo: float | None
    hi: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None else (self.hi - self.lo) / 2


def t_quantile(n: int) -> float:
    """``t_{0.975, n-1}``: the two-sided 95% Student t quantile for a mean of n values."""
    return float(st.t.ppf(0.5 + CONFIDENCE / 2, n - 1))


def describe(values: Sequence[float]) -> Described:
    """Mean, sample sd and 95% CI of ``values`` (at least one)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if n < 2:
        return Described(mean, None, 1, None, None)
    sd = statistics.stdev(values)
    half = t_quantile(n) * sd / math.sqrt(n)
    return Described(mean, sd, n, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """An arm minus the baseline on one metric: the difference of the means, the test and its p-value."""

    diff: float
    test: str  # "paired t", "Welch t", or "" (not enough values: p is None)
    p: float | None


def _degenerate(diff: float) -> float:
    return 1.0 if diff == 0 else 0.0


def compare(arm: Mapping[int, float], base: Mapping[int, float]) -> Comparison:
    """``arm`` vs ``base`` (values by seed): paired t when the seeds are the same (n >= 2), else Welch t."""
    a, b = list(arm.values()), list(base.values())
    diff = statistics.fmean(a) - statistics.fmean(b)
    if set(arm) == set(base) and len(arm) >= 2:
        seeds = sorted(arm)
        d = [arm[s] - base[s] for s in seeds]
        if all(x == d[0] for x in d):  # no spread in the differences: t is 0/0 or infinite
            return Comparison(diff, "paired t", _degenerate(d[0]))
        return Comparison(diff, "paired t", float(st.ttest_rel([arm[s] for s in seeds], [base[s] for s in seeds]).pvalue))
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, "", None)
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return Comparison(diff, "Welch t", _degenerate(diff))
    return Comparison(diff, "Welch t", float(st.ttest_ind(a, b, equal_var=False).pvalue))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the order given; None stays None and is not counted in the family."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
