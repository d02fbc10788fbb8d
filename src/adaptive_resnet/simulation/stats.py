"""Means with confidence intervals over independent seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its two-sided ``level`` confidence interval
    by Student's t (independent seeds, an unknown variance). One value: an interval of width 0
    (nothing to estimate a spread from); none: NaNs."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, mean, mean
    from scipy.stats import t

    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
