"""Rates with their uncertainty, and the uncertainty of a change between two rates."""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["newcombe_interval", "wilson_interval", "z_for"]


def z_for(alpha: float) -> float:
    """The two-sided standard normal quantile for level ``alpha`` (1.96 for 0.05)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return NormalDist().inv_cdf(1.0 - alpha / 2.0)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial rate (95% by default)."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_interval(
    old: tuple[int, int], new: tuple[int, int], z: float = 1.96
) -> tuple[float, float]:
    """The interval of ``new_rate - old_rate`` for two independent binomial rates, each given
    as ``(successes, trials)``: Newcombe's hybrid score interval (his method 10), built from
    the two Wilson intervals.

    Newcombe, "Interval estimation for the difference between independent proportions:
    comparison of eleven methods", Statistics in Medicine 17(8), 1998. Unlike the Wald
    interval it keeps its coverage near 0 and 1 and with small samples, which is where
    robustness figures live. The difference is significant at the level of ``z`` when the
    interval excludes 0.
    """
    (x1, n1), (x2, n2) = old, new
    p1 = x1 / n1 if n1 > 0 else 0.0
    p2 = x2 / n2 if n2 > 0 else 0.0
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    delta = p2 - p1
    lower = delta - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    upper = delta + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return (max(-1.0, lower), min(1.0, upper))
