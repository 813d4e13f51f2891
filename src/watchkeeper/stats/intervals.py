"""Confidence intervals for proportions and differences of proportions.

Wilson's score interval stays inside [0, 1] and keeps close to nominal coverage for
small n and rates near 0 or 1, where the Wald interval fails (Brown, Cai & DasGupta 2001,
"Interval Estimation for a Binomial Proportion", Statistical Science 16(2)).
Newcombe's hybrid score interval (method 10 of Newcombe 1998, "Interval estimation for
the difference between independent proportions", Statistics in Medicine 17(8)) combines
two Wilson intervals into one for p1 - p2.

Example:
    >>> low, high = wilson_interval(8, 10)
    >>> round(low, 4), round(high, 4)
    (0.4902, 0.9433)
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["z_value", "wilson_interval", "newcombe_interval"]


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile for `confidence` (0.95 -> 1.95996...)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r}: expected a number strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes / n.

    centre = (p + z²/2n) / (1 + z²/n), half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
    Returns (0, 1) when n == 0: no evidence means no bound.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"successes={successes!r}, n={n!r}: expected 0 <= successes <= n")
    if n == 0:
        return 0.0, 1.0
    z = z_value(confidence)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(
    successes_1: float, n_1: float, successes_2: float, n_2: float, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (independent samples).

    With Wilson bounds (l1, u1), (l2, u2) and d = p1 - p2:
    low = d - sqrt((p1-l1)² + (u2-p2)²), high = d + sqrt((u1-p1)² + (p2-l2)²).
    A side with n == 0 contributes the full [0, 1] uncertainty.
    """
    l1, u1 = wilson_interval(successes_1, n_1, confidence)
    l2, u2 = wilson_interval(successes_2, n_2, confidence)
    p1 = successes_1 / n_1 if n_1 else 0.5
    p2 = successes_2 / n_2 if n_2 else 0.5
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)
