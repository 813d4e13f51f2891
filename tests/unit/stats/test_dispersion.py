"""Over-dispersion of a proportion across windows: Pearson's χ² equals scipy's homogeneity
test, independent windows leave intervals alone, clustered rows give their design effect."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from watchkeeper.stats import dispersion as dispersion_module
from watchkeeper.stats.dispersion import Overdispersion


def test_doctests() -> None:
    assert doctest.testmod(dispersion_module).failed == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 400)), min_size=2, max_size=48))
def test_statistic_is_scipys_chi2_test_of_homogeneity(pairs: list[tuple[int, int]]) -> None:
    windows = [(min(x, n), n) for x, n in pairs]
    d = Overdispersion(windows=windows)
    successes = sum(x for x, _ in windows)
    trials = sum(n for _, n in windows)
    found = d.statistic
    if successes in (0, trials):
        assert found is None  # p̄ at 0 or 1: nothing varies
        return
    table = np.array([[x for x, _ in windows], [n - x for x, n in windows]])
    expected = chi2_contingency(table, correction=False)
    assert found is not None
    assert found[0] == pytest.approx(expected.statistic, rel=1e-9, abs=1e-9)
    assert found[1] == expected.dof


def test_independent_rows_keep_their_binomial_intervals() -> None:
    """With independent trials the factor is 1 in all but about `significance` of histories."""
    rng = np.random.default_rng(7)
    widened = 0
    runs = 2000
    for _ in range(runs):
        n = rng.integers(30, 500, size=48)
        x = rng.binomial(n, 0.3)
        d = Overdispersion(windows=list(zip(x.tolist(), n.tolist(), strict=True)))
        widened += d.factor > 1.0
    assert widened / runs < 0.02  # the test's level is 0.01


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
