"""Over-dispersion of a proportion across windows: independent windows leave intervals alone,
clustered rows give their design effect, a real change is not taken for noise."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.stats import dispersion as dispersion_module
from watchkeeper.stats.dispersion import Overdispersion


def test_doctests() -> None:
    assert doctest.testmod(dispersion_module).failed == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=24, max_value=48), st.integers(min_value=0, max_value=2**32 - 1))
def test_a_real_change_in_the_last_windows_is_not_taken_for_noise(windows: int, seed: int) -> None:
    """A group whose FPR jumps from 0.24 to 0.45 in the last third of the history gets the
    factor it would have had without the jump (the same noise), so the intervals that should
    detect the change are not widened by it."""
    rng = np.random.default_rng(seed)
    noise, n = rng.normal(size=windows), rng.integers(300, 500, size=windows)
    factors = []
    for jump in (False, True):
        d = Overdispersion()
        for k in range(windows):
            p = 0.45 if jump and k >= windows - windows // 3 else 0.24
            x = round(n[k] * p + noise[k] * np.sqrt(n[k] * p * (1 - p)))
            d.update(int(np.clip(x, 0, n[k])), int(n[k]))
        factors.append(d.factor)
    assert factors[1] - factors[0] < 0.6  # 99th percentile 0.35 (the jump pair is trimmed)


@pytest.mark.parametrize(("windows", "p95"), [(24, 2.1), (48, 1.7)])
def test_independent_rows_keep_their_binomial_intervals(windows: int, p95: float) -> None:
    """With independent trials the factor stays near 1: median 1.02, 95th percentile 1.9 / 1.55."""
    rng = np.random.default_rng(7)
    factors = []
    for _ in range(2000):
        n = rng.integers(30, 500, size=windows)
        x = rng.binomial(n, 0.3)
        factors.append(Overdispersion(windows=list(zip(x.tolist(), n.tolist(), strict=True))).factor)
    assert np.median(factors) < 1.1
    assert np.quantile(factors, 0.95) < p95


@pytest.mark.parametrize("cluster", [3, 5, 10])
def test_clusters_sharing_an_outcome_give_their_size_as_design_effect(cluster: int) -> None:
    """Clusters of m rows that share one outcome make a window's rate vary m times more."""
    rng = np.random.default_rng(cluster)
    d = Overdispersion()
    for _ in range(48):
        clusters = int(rng.integers(40, 80))
        outcomes = rng.random(clusters) < 0.25
        d.update(int(outcomes.sum()) * cluster, clusters * cluster)
    assert d.factor == pytest.approx(cluster, rel=0.35)


def test_history_is_bounded_and_empty_windows_are_skipped() -> None:
    d = Overdispersion(history=12, min_windows=10)
    for k in range(30):
        d.update(k % 7, 10)
    d.update(0, 0)
    assert len(d.windows) == 12
    assert d.windows[-1] == (29 % 7, 10)


def test_too_few_windows_never_widen() -> None:
    d = Overdispersion(min_windows=10)
    for x in [0, 100] * 4:  # as over-dispersed as can be, but only 8 windows
        d.update(x, 100)
    assert d.factor == 1.0


@pytest.mark.parametrize(("successes", "n"), [(-1, 10), (11, 10)])
def test_impossible_counts_are_refused(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="expected 0 <= successes <= n"):
        Overdispersion().update(successes, n)
