"""Reference-quantile edges and the [underflow, bins..., overflow] count layout."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from watchkeeper.stats import histogram
from watchkeeper.stats.histogram import bin_counts, quantile_edges, validate_edges

finite_floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


def test_doctests() -> None:
    assert doctest.testmod(histogram).failed == 0


@settings(deadline=None)
@given(values=arrays(np.float64, st.integers(1, 300), elements=finite_floats), n_bins=st.integers(1, 30))
def test_edges_are_strictly_increasing_and_span_the_reference(values: np.ndarray, n_bins: int) -> None:
    edges = quantile_edges(values, n_bins)
    assert edges.dtype == np.float64
    assert 2 <= edges.size <= n_bins + 1
    assert np.all(np.diff(edges) > 0)
    assert edges[0] == values.min()
    if values.min() < values.max():
        assert edges[-1] == values.max()
    # The whole reference lands in interior bins: no under/overflow, nothing missing.
    counts, missing = bin_counts(values, edges)
    assert counts[0] == 0 and counts[-1] == 0 and missing == 0
    assert counts.sum() == values.size


@settings(deadline=None)
@given(values=arrays(np.float64, st.integers(1, 200), elements=any_floats))
def test_non_finite_reference_values_are_ignored(values: np.ndarray) -> None:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        with pytest.raises(ValueError, match="no finite value"):
            quantile_edges(values)
    else:
        np.testing.assert_array_equal(quantile_edges(values), quantile_edges(finite))


def test_deciles_of_a_uniform_reference_give_equal_frequencies() -> None:
    values = np.arange(1000.0)
    counts, _ = bin_counts(values, quantile_edges(values, 10))
    assert counts.tolist() == [0] + [100] * 10 + [0]


def test_ties_collapse_bins() -> None:
    values = np.concatenate((np.zeros(90), np.arange(1.0, 11.0)))
    edges = quantile_edges(values, 10)
    assert edges[0] == 0.0 and edges[-1] == 10.0
    assert edges.size < 11
    assert np.all(np.diff(edges) > 0)


def test_constant_column_gets_one_tiny_bin_holding_the_value() -> None:
    edges = quantile_edges(np.full(50, 3.5), 10)
    assert edges.size == 2 and edges[0] == 3.5 and edges[1] > 3.5
    counts, _ = bin_counts(np.array([3.5, 3.4, 3.6]), edges)
    assert counts.tolist() == [1, 1, 1]


def test_huge_values_do_not_produce_infinite_edges() -> None:
    edges = quantile_edges(np.array([-1e308, 0.0, 1e308, 1.7e308]), 4)
    assert np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_invalid_n_bins_is_rejected(n_bins: object) -> None:
    with pytest.raises(ValueError, match="n_bins"):
        quantile_edges(np.arange(5.0), n_bins)  # type: ignore[arg-type]


def test_no_finite_value_is_rejected() -> None:
    with pytest.raises(ValueError, match="no finite value"):
        quantile_edges(np.array([np.nan, np.inf, -np.inf]))
    with pytest.raises(ValueError, match="no finite value"):
        quantile_edges(np.array([]))


def test_bin_layout_underflow_interior_overflow_missing() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    values = np.array([-np.inf, -0.1, 0.0, 0.99, 1.0, 2.0, 2.0001, np.inf, np.nan, np.nan])
    counts, missing = bin_counts(values, edges)
    # [< 0], [0, 1), [1, 2] (closed: the reference max is inside), [> 2]
    assert counts.tolist() == [2, 2, 2, 2]
    assert counts.dtype == np.int64
    assert missing == 2


def test_none_in_an_object_array_counts_as_missing() -> None:
    counts, missing = bin_counts(np.array([0.5, None, 1.5], dtype=object), [0.0, 1.0, 2.0])
    assert counts.tolist() == [0, 1, 1, 0] and missing == 1


@settings(deadline=None)
@given(
    values=arrays(np.float64, st.integers(0, 200), elements=any_floats),
    edges=st.lists(finite_floats, min_size=2, max_size=12, unique=True).map(sorted),
)
def test_bin_counts_match_numpy_histogram(values: np.ndarray, edges: list[float]) -> None:
    counts, missing = bin_counts(values, edges)
    assert counts.size == len(edges) + 1
    assert counts.sum() + missing == values.size
    assert missing == np.isnan(values).sum()
    present = values[~np.isnan(values)]
    assert counts[0] == np.sum(present < edges[0])
    assert counts[-1] == np.sum(present > edges[-1])
    # np.histogram uses the same half-open bins with a closed last bin.
    inside = present[np.isfinite(present)]
    np.testing.assert_array_equal(counts[1:-1], np.histogram(inside, bins=np.array(edges))[0])


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([1.0], "at least 2 edges"),
        ([[0.0, 1.0]], "1-D"),
        ([0.0, np.nan], "finite"),
        ([0.0, 1.0, 1.0], "strictly increasing"),
        ([2.0, 1.0], "strictly increasing"),
    ],
)
def test_invalid_edges_are_rejected(edges: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_edges(edges)
    with pytest.raises(ValueError, match=message):
        bin_counts(np.arange(3.0), edges)
