"""How much more a proportion varies from window to window than independent trials allow.

A binomial interval (Wilson, Newcombe) assumes every row is an independent trial. When
rows come in clusters that share their outcome — a repeat customer's sessions, a batch
of claims from one branch — a window's rate varies more than p(1−p)/n: by a factor, the
design effect (Kish 1965, *Survey Sampling*, §8.2), of about 1 + (m − 1)ρ for clusters of
mean size m and intra-cluster correlation ρ. Intervals that ignore it are too narrow and
raise false alarms in exactly the small groups fairness monitoring cares about.

:class:`Overdispersion` estimates that factor for one proportion from its recent windows,
robustly, so that a real change in the last windows is not taken for noise (which would
widen the intervals that should detect it). It compares each window with the one before:
with rates p_w = x_w/n_w and p̄ the pair's pooled rate,
d_w = (p_w − p_{w−1}) / √(p̄(1 − p̄)(1/n_w + 1/n_{w−1})) is N(0, 1) for independent trials and
N(0, φ) with design effect φ. φ̂ is the mean of the d_w² without their largest tenth, over
the same trimmed mean for χ²₁ (with a the kept fraction and q the a-quantile of χ²₁,
E[χ²₁ | χ²₁ ≤ q] = F_χ²₃(q) / a). A level shift, however large and long, makes one pair
large, and the trimming drops it, as it drops a few outliers.

This is the quasi-binomial dispersion (McCullagh & Nelder 1989, *Generalized Linear Models*,
2nd ed., §4.5.1; Williams 1982, *Applied Statistics* 31(2)) estimated from successive
differences, as von Neumann's (1941, *Ann. Math. Statist.* 12(4)) mean square successive
difference estimates a variance under a drifting mean, trimmed. As in quasi-likelihood
practice the estimate is used as it is, floored at 1 (no pre-test); with independent rows
it stays near 1. A binomial interval then takes the effective counts x/φ, n/φ.

>>> d = Overdispersion(min_windows=10)
>>> for x in [30, 55, 38, 62, 41, 25, 58, 47, 33, 60, 44, 52]:  # of 100: far more spread than binomial
...     d.update(x, 100)
>>> round(d.factor, 1)
13.7
>>> d = Overdispersion(min_windows=10)
>>> for x in [24, 26, 23, 25, 24, 27, 25, 23, 45, 44, 46, 45]:  # a real change, not noise
...     d.update(x, 100)
>>> d.factor
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

__all__ = ["HISTORY", "MIN_WINDOWS", "Overdispersion"]

HISTORY = 48  # windows kept by default
MIN_WINDOWS = 24  # windows known before the factor is used
TRIMMED = 0.1  # the largest tenth of the squared differences is left out


def _chi2_3_cdf(x: float) -> float:
    """P(χ²₃ <= x) = erf(√(x/2)) − √(2x/π)·e^(−x/2)."""
    return math.erf(math.sqrt(x / 2.0)) - math.sqrt(2.0 * x / math.pi) * math.exp(-x / 2.0)


def _trimmed_chi2_1_mean(kept: float) -> float:
    """E[χ²₁ | χ²₁ <= q] with q the ``kept``-quantile of χ²₁ (= Z², so q = Φ⁻¹((1 + kept)/2)²)."""
    if kept >= 1.0:
        return 1.0
    q = NormalDist().inv_cdf((1.0 + kept) / 2.0) ** 2
    return _chi2_3_cdf(q) / kept


class Overdispersion:
    """The dispersion of one proportion over its last ``history`` windows, from successive differences.

    ``update(successes, n)`` adds a window (windows with ``n == 0`` are skipped);
    ``factor`` is φ̂ (never below 1) once at least ``min_windows`` windows are kept, else 1.
    """

    def __init__(
        self,
        history: int = HISTORY,
        min_windows: int = MIN_WINDOWS,
        windows: Sequence[Sequence[int]] = (),
    ) -> None:
        if history < 2 or not 2 <= min_windows <= history:
            raise ValueError(f"history={history}, min_windows={min_windows}: expected 2 <= min_windows <= history")
        self.history = history
        self.min_windows = min_windows
        self.windows: list[tuple[int, int]] = [(int(x), int(n)) for x, n in windows][-history:]

    def update(self, successes: int, n: int) -> None:
        if not 0 <= successes <= n:
            raise ValueError(f"successes={successes!r}, n={n!r}: expected 0 <= successes <= n")
        if n > 0:
            self.windows = [*self.windows, (int(successes), int(n))][-self.history :]

    def _squared_differences(self) -> list[float]:
        """d_w² of each window against the one before (0 when both rates are 0 or both 1)."""
        out = []
        for (x0, n0), (x1, n1) in zip(self.windows, self.windows[1:], strict=False):
            pooled = (x0 + x1) / (n0 + n1)
            variance = pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1)
            out.append((x1 / n1 - x0 / n0) ** 2 / variance if variance > 0.0 else 0.0)
        return out

    @property
    def factor(self) -> float:
        """The design effect to divide counts by: φ̂ (the trimmed mean of d² over that of χ²₁)
        floored at 1, and 1 before ``min_windows`` windows."""
        if len(self.windows) < self.min_windows:
            return 1.0
        squares = sorted(self._squared_differences())
        kept = len(squares) - math.ceil(TRIMMED * len(squares))
        return max(1.0, sum(squares[:kept]) / kept / _trimmed_chi2_1_mean(kept / len(squares)))

    def to_list(self) -> list[list[int]]:
        return [[x, n] for x, n in self.windows]
