"""BH and Holm adjusted p-values against textbook definitions and published examples."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.stats import multiple_testing
from watchkeeper.stats.multiple_testing import adjust, benjamini_hochberg, holm

p_lists = st.lists(st.floats(0.0, 1.0) | st.sampled_from([0.0, 0.01, 0.05, 0.5, 1.0]), min_size=0, max_size=40)

# Benjamini & Hochberg (1995), §4: 15 p-values from a clinical trial; at q = 0.05 BH rejects
# 4 hypotheses while the Bonferroni-type procedures (Holm) reject 3.
BH_1995 = [
    0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344,
    0.0459, 0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000,
]  # fmt: skip


def reference_bh(p: list[float]) -> list[float]:
    """adj(p_i) = min over p_j >= p_i of min(1, n·p_j / rank_j), rank_j = #{k : p_k <= p_j}."""
    n = len(p)
    return [min(min(1.0, n * pj / sum(pk <= pj for pk in p)) for pj in p if pj >= pi) for pi in p]


def reference_holm(p: list[float]) -> list[float]:
    """adj(p_i) = max over p_j <= p_i of min(1, (n − r_j + 1)·p_j), r_j = 1 + #{k : p_k < p_j}."""
    n = len(p)
    return [max(min(1.0, (n - sum(pk < pj for pk in p)) * pj) for pj in p if pj <= pi) for pi in p]


def test_doctests() -> None:
    assert doctest.testmod(multiple_testing).failed == 0


@given(p_lists)
def test_bh_matches_the_textbook_definition(p: list[float]) -> None:
    np.testing.assert_allclose(benjamini_hochberg(p), reference_bh(p), rtol=1e-12, atol=0.0)


@given(p_lists)
def test_holm_matches_the_textbook_definition(p: list[float]) -> None:
    np.testing.assert_allclose(holm(p), reference_holm(p), rtol=1e-12, atol=0.0)


@given(p_lists)
def test_adjusted_values_are_valid_and_ordered(p: list[float]) -> None:
    raw = np.array(p)
    bh, fw = benjamini_hochberg(p), holm(p)
    for adjusted in (bh, fw):
        assert np.all((adjusted >= raw) & (adjusted <= 1.0))
        # a smaller raw p-value never gets a larger adjusted one
        order = np.argsort(raw, kind="mergesort")
        assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(bh <= fw + 1e-15)  # FDR control is never stricter than FWER control


def test_benjamini_hochberg_1995_example() -> None:
    assert int(np.sum(benjamini_hochberg(BH_1995) <= 0.05)) == 4
    assert int(np.sum(holm(BH_1995) <= 0.05)) == 3


def test_r_p_adjust_examples() -> None:
    p = [0.01, 0.02, 0.03, 0.04, 0.05]
    # p.adjust(p, "BH") and p.adjust(p, "holm") in R
    np.testing.assert_allclose(benjamini_hochberg(p), [0.05] * 5)
    np.testing.assert_allclose(holm(p), [0.05, 0.08, 0.09, 0.09, 0.09])


def test_nan_entries_stay_nan_and_do_not_count() -> None:
    p = [0.01, np.nan, 0.04]
    np.testing.assert_allclose(benjamini_hochberg(p), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(holm(p), [0.02, np.nan, 0.04])
    assert benjamini_hochberg([]).size == 0


def test_adjust_dispatches_and_validates() -> None:
    p = [0.01, 0.04, 0.03]
    np.testing.assert_array_equal(adjust(p, "bh"), benjamini_hochberg(p))
    np.testing.assert_array_equal(adjust(p, "holm"), holm(p))
    np.testing.assert_array_equal(adjust(p, "none"), p)
    with pytest.raises(ValueError, match="method='bonferroni'"):
        adjust(p, "bonferroni")  # type: ignore[arg-type]


@pytest.mark.parametrize("p", [[0.5, 1.5], [-0.1], [[0.1, 0.2]]])
def test_invalid_p_values_are_rejected(p: list[float]) -> None:
    with pytest.raises(ValueError, match="p_values"):
        benjamini_hochberg(p)
    with pytest.raises(ValueError, match="p_values"):
        holm(p)
