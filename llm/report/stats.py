"""The statistics of a sweep report: mean and sample standard deviation over seeds, Welch's t-test."""

from __future__ import annotations

import math
import statistics


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the deviation is nan for fewer than two values."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) that `a` and `b` share a mean; nan when it is
    undefined (fewer than two values on a side, or no variance on either)."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    from scipy.stats import ttest_ind

    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return p if math.isfinite(p) else math.nan
