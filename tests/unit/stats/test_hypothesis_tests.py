"""χ² survival function and Pearson's homogeneity test, checked against scipy."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from watchkeeper.stats import hypothesis_tests
from watchkeeper.stats.hypothesis_tests import (
    ChiSquareResult,
    chi2_sf,
    chi_square_homogeneity,
    regularized_gamma_q,
)


def test_doctests() -> None:
    assert doctest.testmod(hypothesis_tests).failed == 0


def _assert_close(ours: float, theirs: float, rel: float) -> None:
    assert ours == pytest.approx(theirs, rel=rel, abs=0.0 if theirs > 1e-300 else 1e-300)


@pytest.mark.parametrize("dof", [0.5, 1, 1.5, 2, 3, 5, 10, 29, 49, 100, 255, 500, 1000])
def test_chi2_sf_matches_scipy_over_the_whole_range(dof: float) -> None:
    grid = np.concatenate((np.geomspace(1e-10, 20_000.0, 300), dof + np.linspace(-4.0, 8.0, 97) * np.sqrt(2.0 * dof)))
    for x in grid[grid > 0]:
        theirs = float(stats.chi2.sf(x, dof))
        if theirs > 1e-300:
            _assert_close(chi2_sf(float(x), dof), theirs, rel=1e-10)


@given(
    dof=st.integers(1, 400) | st.floats(0.05, 400.0),
    x=st.floats(1e-8, 5000.0),
)
def test_chi2_sf_matches_scipy_property(dof: float, x: float) -> None:
    theirs = float(stats.chi2.sf(x, dof))
    assume(theirs > 1e-300)
    _assert_close(chi2_sf(x, dof), theirs, rel=1e-10)


@given(a=st.floats(0.01, 300.0), x=st.floats(0.0, 2000.0))
def test_regularized_gamma_q_matches_scipy_gammaincc(a: float, x: float) -> None:
    theirs = float(special.gammaincc(a, x))
    assume(theirs > 1e-300)
    _assert_close(regularized_gamma_q(a, x), theirs, rel=1e-10)


def test_chi2_sf_known_values_and_limits() -> None:
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-12)
    assert chi2_sf(2.0 * np.log(20.0), 2) == pytest.approx(0.05, rel=1e-12)  # sf = e^(−x/2)
    assert chi2_sf(np.float64(4.0), np.int64(2)) == pytest.approx(np.exp(-2.0), rel=1e-13)  # numpy scalars
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(-1.0, 3) == 1.0
    assert chi2_sf(float("inf"), 3) == 0.0
    assert chi2_sf(1e6, 3) == 0.0  # underflows cleanly, no exception


@pytest.mark.parametrize(("x", "dof", "name"), [(1.0, 0, "dof"), (1.0, -2, "dof"), (float("nan"), 2, "x")])
def test_chi2_sf_rejects_invalid_arguments(x: float, dof: float, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        chi2_sf(x, dof)


@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    size = draw(st.integers(2, 15))
    counts = st.lists(st.integers(0, 5000), min_size=size, max_size=size)
    return np.array(draw(counts)), np.array(draw(counts))


@settings(deadline=None)
@given(tables())
def test_homogeneity_equals_scipy_chi2_contingency(table: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = table
    keep = (ref + cur) > 0
    assume(keep.sum() >= 2 and ref.sum() > 0 and cur.sum() > 0)
    statistic, p_value, dof, _ = stats.chi2_contingency([ref[keep], cur[keep]], correction=False)
    result = chi_square_homogeneity(ref, cur)
    assert result.dof == dof == keep.sum() - 1
    assert result.statistic == pytest.approx(statistic, rel=1e-9, abs=1e-9)
    _assert_close(result.p_value, float(p_value), rel=1e-9)


def test_all_zero_columns_are_dropped() -> None:
    with_gaps = chi_square_homogeneity([10, 0, 20, 0, 30], [15, 0, 15, 0, 30])
    without = chi_square_homogeneity([10, 20, 30], [15, 15, 30])
    assert with_gaps == without
    assert with_gaps.dof == 2


@pytest.mark.parametrize(
    ("ref", "cur"),
    [([10, 0, 0], [5, 0, 0]), ([0, 0], [0, 0]), ([10, 20], [0, 0]), ([], [])],
)
def test_no_evidence_gives_statistic_zero_and_p_one(ref: list[int], cur: list[int]) -> None:
    assert chi_square_homogeneity(ref, cur) == ChiSquareResult(0.0, 0, 1.0)


def test_identical_proportions_give_p_one() -> None:
    result = chi_square_homogeneity([100, 200, 300], [10, 20, 30])
    assert result.statistic == pytest.approx(0.0, abs=1e-12)
    assert result.p_value == pytest.approx(1.0)


def test_p_value_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(2024)
    probabilities = np.array([0.4, 0.3, 0.2, 0.1])
    refs = rng.multinomial(2000, probabilities, size=1000)
    curs = rng.multinomial(500, probabilities, size=1000)
    p_values = np.array([chi_square_homogeneity(r, c).p_value for r, c in zip(refs, curs, strict=True)])
    assert 0.03 <= np.mean(p_values < 0.05) <= 0.07


def test_a_real_shift_is_detected() -> None:
    assert chi_square_homogeneity([400, 300, 200, 100], [100, 200, 300, 400]).p_value < 1e-50


def test_result_is_frozen() -> None:
    result = chi_square_homogeneity([1, 2], [2, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.statistic = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("ref", "cur", "message"),
    [([1, 2], [1, 2, 3], "same layout"), ([1, -2], [1, 2], "reference_counts"), ([[1]], [[1]], "1-D")],
)
def test_homogeneity_rejects_invalid_counts(ref: list[int], cur: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chi_square_homogeneity(ref, cur)
