"""Effect sizes on count vectors, checked against scipy where scipy has the same quantity."""

from __future__ import annotations

import doctest
import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from watchkeeper.stats import distance
from watchkeeper.stats.distance import (
    hellinger_distance,
    jensen_shannon_distance,
    ks_p_value,
    ks_statistic_binned,
    normalised_wasserstein,
    psi,
    wasserstein_binned,
)
from watchkeeper.stats.histogram import bin_counts


@st.composite
def count_pairs(draw: st.DrawFn, min_size: int = 1, max_size: int = 20) -> tuple[np.ndarray, np.ndarray]:
    size = draw(st.integers(min_size, max_size))
    counts = st.lists(st.integers(0, 1000), min_size=size, max_size=size)
    ref, cur = np.array(draw(counts)), np.array(draw(counts))
    assume(ref.sum() > 0 and cur.sum() > 0)
    return ref, cur


def test_doctests() -> None:
    assert doctest.testmod(distance).failed == 0


@given(count_pairs())
def test_jensen_shannon_equals_scipy_base_2(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    value = jensen_shannon_distance(ref, cur)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(jensenshannon(ref, cur, base=2), abs=1e-12)


def test_jensen_shannon_of_disjoint_supports_is_one() -> None:
    assert jensen_shannon_distance([5, 0], [0, 7]) == pytest.approx(1.0, abs=1e-15)


@given(count_pairs())
def test_hellinger_matches_bhattacharyya_identity(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    p, q = ref / ref.sum(), cur / cur.sum()
    expected = math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q)))))  # H² = 1 − BC
    value = hellinger_distance(ref, cur)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(expected, abs=1e-7)


def test_hellinger_known_values() -> None:
    assert hellinger_distance([1, 1], [1, 1]) == 0.0
    assert hellinger_distance([1, 0], [0, 1]) == pytest.approx(1.0)


@given(count_pairs())
def test_psi_is_symmetric_kl_when_no_bin_is_below_epsilon(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = pair
    assume(np.all(ref > 0) and np.all(cur > 0))
    p, q = ref / ref.sum(), cur / cur.sum()
    assume(p.min() >= 1e-4 and q.min() >= 1e-4)
    expected = float(np.sum(special.rel_entr(p, q) + special.rel_entr(q, p)))  # J-divergence
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert psi(cur, ref) == pytest.approx(psi(ref, cur), rel=1e-12, abs=1e-15)


def test_psi_floors_empty_bins_at_epsilon() -> None:
    # A bin empty in the current window gives a large but finite contribution.
    value = psi([50, 50], [100, 0], epsilon=1e-4)
    expected = (1.0 - 0.5) * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert value == pytest.approx(expected, rel=1e-12)
    assert psi([10, 0, 10], [5, 0, 5]) == 0.0  # a bin empty on both sides contributes 0


def test_psi_textbook_example() -> None:
    # p = (0.5, 0.3, 0.2), q = (0.3, 0.3, 0.4): −0.2·ln(0.6) + 0.2·ln(2)
    expected = -0.2 * math.log(0.6) + 0.2 * math.log(2.0)
    assert psi([50, 30, 20], [30, 30, 40]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("epsilon", [0.0, -1e-4, 1.0, float("nan")])
def test_psi_rejects_bad_epsilon(epsilon: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        psi([1, 2], [2, 1], epsilon=epsilon)


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [
        ([1, 2], [1, 2, 3], "same bin layout"),
        ([1, -1], [1, 1], "reference_counts.*>= 0"),
        ([1, 1], [0, 0], "current_counts.*positive total"),
        ([], [], "non-empty"),
        ([1, np.nan], [1, 1], "finite"),
    ],
)
def test_invalid_counts_are_rejected(ref: list[float], cur: list[float], message: str) -> None:
    for function in (psi, jensen_shannon_distance, hellinger_distance, ks_statistic_binned):
        with pytest.raises(ValueError, match=message):
            function(ref, cur)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own p-value for tiny samples
@settings(deadline=None)
@given(
    ref=st.lists(st.integers(0, 15), min_size=1, max_size=60),
    cur=st.lists(st.integers(0, 15), min_size=1, max_size=60),
)
def test_binned_ks_equals_ks_2samp_when_each_value_has_its_own_bin(ref: list[int], cur: list[int]) -> None:
    edges = np.arange(-1.0, 18.0)  # one bin per integer; the extra edge keeps 15 alone
    d = ks_statistic_binned(bin_counts(ref, edges)[0], bin_counts(cur, edges)[0])
    assert d == pytest.approx(stats.ks_2samp(ref, cur, method="asymp").statistic, abs=1e-12)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bins=st.integers(1, 12))
def test_binned_ks_is_a_lower_bound_of_the_exact_statistic(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(size=200), rng.normal(0.3, 1.2, size=150)
    edges = np.linspace(-2.0, 2.0, n_bins + 1)
    d = ks_statistic_binned(bin_counts(ref, edges)[0], bin_counts(cur, edges)[0])
    assert d <= stats.ks_2samp(ref, cur).statistic + 1e-12


@pytest.mark.parametrize(("n_ref", "n_cur"), [(40, 20), (50, 30), (100, 100), (1000, 500), (20000, 5000)])
def test_ks_p_value_tracks_scipy_asymptotic(n_ref: int, n_cur: int) -> None:
    effective = n_ref * n_cur / (n_ref + n_cur)
    for d in np.linspace(0.0, 1.0, 401):
        ours = ks_p_value(float(d), n_ref, n_cur)
        theirs = stats.kstwo.sf(d, np.round(effective))  # what ks_2samp(method="asymp") uses
        assert 0.0 <= ours <= 1.0
        assert ours == pytest.approx(theirs, abs=0.03 if effective < 250 else 0.01)
        if effective >= 250 and 1e-4 < theirs < 0.1:
            assert ours == pytest.approx(theirs, rel=0.05)


def test_ks_p_value_agrees_with_ks_2samp_on_real_samples() -> None:
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=3000), rng.normal(0.05, 1.0, size=2000)
    result = stats.ks_2samp(ref, cur, method="asymp")
    ours = ks_p_value(float(result.statistic), ref.size, cur.size)
    assert ours == pytest.approx(result.pvalue, abs=0.01)


def test_ks_p_value_edges_and_validation() -> None:
    assert ks_p_value(0.0, 10, 10) == 1.0
    assert ks_p_value(np.float64(0.2), np.int64(300), np.int64(200)) == ks_p_value(0.2, 300, 200)
    assert ks_p_value(1.0, 10_000, 10_000) == 0.0
    # monotone: a larger distance is never less significant
    values = [ks_p_value(float(d), 300, 200) for d in np.linspace(0, 1, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    with pytest.raises(ValueError, match="d="):
        ks_p_value(1.5, 10, 10)
    with pytest.raises(ValueError, match="n_cur"):
        ks_p_value(0.5, 10, 0)


@st.composite
def binned_samples(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    edges = np.array(sorted(draw(st.lists(st.integers(-50, 50), min_size=2, max_size=10, unique=True))), float)
    counts = st.lists(st.integers(0, 30), min_size=edges.size + 1, max_size=edges.size + 1)
    ref, cur = np.array(draw(counts)), np.array(draw(counts))
    assume(ref.sum() > 0 and cur.sum() > 0)
    return edges, ref, cur


@settings(deadline=None)
@given(binned_samples())
def test_wasserstein_equals_scipy_on_samples_at_support_points(
    sample: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    edges, ref, cur = sample
    support = np.concatenate(([edges[0]], (edges[:-1] + edges[1:]) / 2, [edges[-1]]))
    expected = stats.wasserstein_distance(np.repeat(support, ref), np.repeat(support, cur))
    assert wasserstein_binned(ref, cur, edges) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_wasserstein_of_a_shift_on_a_fine_grid_is_the_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=20_000)
    edges = np.linspace(-6.0, 7.0, 1301)
    w = wasserstein_binned(bin_counts(ref, edges)[0], bin_counts(ref + 0.5, edges)[0], edges)
    assert w == pytest.approx(0.5, abs=0.01)


def test_normalised_wasserstein_is_scale_free() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    ref, cur = np.array([0, 5, 3, 2, 0]), np.array([1, 2, 3, 3, 1])
    base = normalised_wasserstein(ref, cur, edges, reference_std=0.8)
    assert normalised_wasserstein(ref, cur, edges * 10, reference_std=8.0) == pytest.approx(base)
    assert base == pytest.approx(wasserstein_binned(ref, cur, edges) / 0.8)


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan"), float("inf")])
def test_normalised_wasserstein_rejects_a_reference_without_scale(std: float) -> None:
    with pytest.raises(ValueError, match="reference_std"):
        normalised_wasserstein([1, 1, 1], [1, 2, 1], [0.0, 1.0], reference_std=std)


def test_wasserstein_requires_the_bin_counts_layout() -> None:
    with pytest.raises(ValueError, match=r"len\(edges\) \+ 1"):
        wasserstein_binned([1, 2, 3], [3, 2, 1], [0.0, 1.0, 2.0])
