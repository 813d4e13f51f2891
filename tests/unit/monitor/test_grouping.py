"""Grouping a batch's positions by key: the pair grouping equals the grouping of the pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.monitor.grouping import key_groups, pair_groups

pairs = st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3"]), st.sampled_from(["t:0", "t:1", "t:2", "t:3"])))


@given(pairs)
def test_pair_groups_equal_key_groups_of_the_pairs(keys: list[tuple[str, str]]) -> None:
    distinct, order, starts = pair_groups([a for a, _ in keys], [b for _, b in keys])
    expected_distinct, expected_order, expected_starts = key_groups(keys)
    assert distinct == expected_distinct  # in order of first appearance
    assert np.array_equal(order, expected_order) and np.array_equal(starts, expected_starts)


def test_one_pair_needs_no_sort() -> None:
    distinct, order, starts = pair_groups(["m"] * 3, ["t:0"] * 3)
    assert distinct == [("m", "t:0")] and order.tolist() == [0, 1, 2] and starts.tolist() == [0]
