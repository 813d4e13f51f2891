"""How much more a proportion varies from window to window than independent trials allow.

A binomial interval (Wilson, Newcombe) assumes every row is an independent trial. When
rows come in clusters that share their outcome — a repeat customer's sessions, a batch
of claims from one branch — a window's rate varies more than p(1−p)/n: by a factor, the
design effect (Kish 1965, *Survey Sampling*, §8.2), of about 1 + (m − 1)ρ for clusters of
mean size m and intra-cluster correlation ρ. Intervals that ignore it are too narrow and
raise false alarms in exactly the small groups fairness monitoring cares about.

:class:`Overdispersion` estimates that factor for one proportion from its recent windows:
Pearson's dispersion statistic φ̂ = X² / (W − 1), with
X² = Σ_w (x_w − n_w p̄)² / (n_w p̄ (1 − p̄)) and p̄ = Σx / Σn over the W windows
(the quasi-binomial dispersion, McCullagh & Nelder 1989, *Generalized Linear Models*,
2nd ed., §4.5.1; Williams 1982, *Applied Statistics* 31(2)). X² is also the statistic of
the χ² test of homogeneity across the windows, so the factor is applied only when that
test rejects at ``significance`` (with independent trials it is 1 and intervals are not
widened by noise in φ̂). A binomial interval then takes the effective counts x/φ, n/φ.

>>> d = Overdispersion()
>>> for x in [10, 90] * 6:  # rates of 0.1 and 0.9 in windows of 100: far from binomial
...     d.update(x, 100)
>>> round(d.factor, 1)
69.8
>>> d = Overdispersion()
>>> for x in [48, 52, 50, 47, 53, 51, 49, 50, 52, 48, 50, 51]:
...     d.update(x, 100)
>>> d.factor
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

from watchkeeper.stats.hypothesis_tests import chi2_sf

__all__ = ["Overdispersion"]


class Overdispersion:
    """Pearson's dispersion of one proportion over its last ``history`` windows.

    ``update(successes, n)`` adds a window (windows with ``n == 0`` are skipped);
    ``factor`` is φ̂ when at least ``min_windows`` windows are kept and the homogeneity
    test rejects at ``significance``, else 1 (never below 1).
    """

    def __init__(
        self,
        history: int = 48,
        min_windows: int = 10,
        significance: float = 0.01,
        windows: Sequence[Sequence[int]] = (),
    ) -> None:
        if history < 2 or not 2 <= min_windows <= history:
            raise ValueError(f"history={history}, min_windows={min_windows}: expected 2 <= min_windows <= history")
        if not 0.0 < significance < 1.0:
            raise ValueError(f"significance={significance!r}: expected a level in (0, 1)")
        self.history = history
        self.min_windows = min_windows
        self.significance = significance
        self.windows: list[tuple[int, int]] = [(int(x), int(n)) for x, n in windows][-history:]

    def update(self, successes: int, n: int) -> None:
        if not 0 <= successes <= n:
            raise ValueError(f"successes={successes!r}, n={n!r}: expected 0 <= successes <= n")
        if n > 0:
            self.windows = [*self.windows, (int(successes), int(n))][-self.history :]

    @property
    def statistic(self) -> tuple[float, int] | None:
        """(X², degrees of freedom), or None with fewer than two windows or p̄ at 0 or 1."""
        if len(self.windows) < 2:
            return None
        total = sum(n for _, n in self.windows)
        p = sum(x for x, _ in self.windows) / total
        if p <= 0.0 or p >= 1.0:
            return None
        chi2 = sum((x - n * p) ** 2 / (n * p * (1.0 - p)) for x, n in self.windows)
        return chi2, len(self.windows) - 1

    @property
    def factor(self) -> float:
        """The design effect to divide counts by: φ̂ when over-dispersion is evident, else 1."""
        found = self.statistic
        if found is None or len(self.windows) < self.min_windows:
            return 1.0
        chi2, dof = found
        if chi2_sf(chi2, dof) >= self.significance:
            return 1.0
        return max(1.0, chi2 / dof)

    def to_list(self) -> list[list[int]]:
        return [[x, n] for x, n in self.windows]
