"""Category encoding ([vocab..., UNSEEN, MISSING]) and SpaceSaving heavy hitters."""

from __future__ import annotations

import doctest
import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.stats import categorical
from watchkeeper.stats.categorical import (
    MISSING_INDEX,
    OTHER,
    UNSEEN_INDEX,
    CategoryEncoder,
    SpaceSaving,
)
from watchkeeper.stats.hypothesis_tests import chi_square_homogeneity

labels = st.text(alphabet="abcdef", min_size=1, max_size=2)
raw_values = st.one_of(labels, st.none(), st.just(float("nan")), st.integers(0, 3))


def test_doctests() -> None:
    assert doctest.testmod(categorical).failed == 0


def test_layout_vocab_then_unseen_then_missing() -> None:
    encoder = CategoryEncoder(["red", "blue"], pooled=["green", "teal"])
    assert encoder.vocabulary == ("red", "blue", OTHER)
    values = np.array(["blue", "green", "teal", "pink", None, np.nan, "red", "red"], dtype=object)
    assert encoder.encode(values).tolist() == [1, 2, 2, 3, 4, 4, 0, 0]
    counts = encoder.counts(values)
    assert counts.tolist() == [2, 1, 2, 1, 2]
    assert counts[UNSEEN_INDEX] == counts[encoder.unseen_index] == 1
    assert counts[MISSING_INDEX] == counts[encoder.missing_index] == 2
    assert counts.dtype == np.int64


def test_values_are_compared_as_strings() -> None:
    encoder = CategoryEncoder(["1", "2"])
    assert encoder.encode([1, "2", 2, 3.5]).tolist() == [0, 1, 1, 2]


def test_empty_input_and_empty_vocabulary() -> None:
    assert CategoryEncoder(["a"]).counts([]).tolist() == [0, 0, 0]
    assert CategoryEncoder([]).counts(["a", None]).tolist() == [1, 1]


def test_from_reference_keeps_the_top_categories_and_pools_the_rest() -> None:
    reference = ["a"] * 5 + ["b"] * 4 + ["c"] * 2 + ["d"] + [None] * 3
    encoder = CategoryEncoder.from_reference(reference, max_categories=2)
    assert encoder.vocabulary == ("a", "b", OTHER)
    assert encoder.pooled == frozenset({"c", "d"})
    # pooled reference values map to OTHER, genuinely new ones to UNSEEN
    assert encoder.counts(["c", "d", "e", "a"]).tolist() == [1, 0, 2, 1, 0]


def test_no_other_category_when_everything_fits() -> None:
    encoder = CategoryEncoder.from_reference(["x", "y", "x"], max_categories=50)
    assert encoder.vocabulary == ("x", "y")


def test_pooled_values_beyond_the_bound_become_unseen() -> None:
    counts = {"a": 10, "b": 5, "c": 3, "d": 1}
    encoder = CategoryEncoder.from_counts(counts, max_categories=1, max_pooled=2)
    assert encoder.vocabulary == ("a", OTHER) and encoder.pooled_truncated
    assert encoder.encode(["b", "c", "d"]).tolist() == [1, 1, encoder.unseen_index]
    bare = CategoryEncoder.from_counts(counts, max_categories=1, max_pooled=0)
    assert bare.vocabulary == ("a", OTHER) and bare.encode(["b"]).tolist() == [bare.unseen_index]


def test_ties_are_broken_deterministically() -> None:
    encoder = CategoryEncoder.from_counts({"z": 2, "y": 2, "x": 2}, max_categories=2)
    assert encoder.vocabulary == ("x", "y", OTHER)


def test_encoder_round_trips_through_json() -> None:
    encoder = CategoryEncoder.from_reference(list("aaabbcde"), max_categories=2)
    restored = CategoryEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    values = [*"abcdezz", None]
    np.testing.assert_array_equal(restored.encode(values), encoder.encode(values))
    assert restored.vocabulary == encoder.vocabulary


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_categories": 0}, "max_categories"), ({"max_pooled": -1}, "max_pooled")],
)
def test_invalid_bounds_are_rejected(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CategoryEncoder.from_counts({"a": 1}, **kwargs)


def test_duplicate_vocabulary_is_rejected() -> None:
    with pytest.raises(ValueError, match="distinct"):
        CategoryEncoder(["a", "a"])


@settings(deadline=None)
@given(
    reference=st.lists(raw_values, max_size=60),
    current=st.lists(raw_values, max_size=60),
    max_categories=st.integers(1, 6),
)
def test_encode_matches_a_dictionary_lookup(
    reference: list[object], current: list[object], max_categories: int
) -> None:
    encoder = CategoryEncoder.from_reference(reference, max_categories=max_categories)

    def missing(v: object) -> bool:
        return v is None or (isinstance(v, float) and v != v)

    index = {v: i for i, v in enumerate(encoder.vocabulary)}
    seen = {str(v) for v in reference if not missing(v)}
    expected = [
        encoder.missing_index
        if missing(v)
        else index[str(v)]
        if str(v) in index
        else index[OTHER]
        if str(v) in seen
        else encoder.unseen_index
        for v in current
    ]
    assert encoder.encode(current).tolist() == expected
    counts = encoder.counts(current)
    assert counts.size == len(encoder.vocabulary) + 2 and counts.sum() == len(current)


def test_a_single_unseen_category_does_not_force_p_to_zero() -> None:
    # The monitor-level recipe: χ² on the vocabulary columns, unseen rate reported apart.
    # A large reference and a small window, as usual for a streaming monitor.
    rng = np.random.default_rng(3)
    encoder = CategoryEncoder(["a", "b", "c"])
    reference = encoder.counts(rng.choice(["a", "b", "c"], size=200_000, p=[0.5, 0.3, 0.2]))
    window = [*rng.choice(["a", "b", "c"], size=2_000, p=[0.5, 0.3, 0.2]), "brand-new"]
    current = encoder.counts(window)
    k = len(encoder.vocabulary)
    assert current[UNSEEN_INDEX] == 1
    assert chi_square_homogeneity(reference[:k], current[:k]).p_value > 0.01
    # ... whereas putting UNSEEN into the table would flag drift on one event.
    assert chi_square_homogeneity(reference[: k + 1], current[: k + 1]).p_value < 1e-6


# --------------------------------------------------------------------------- SpaceSaving


def _check_guarantees(sketch: SpaceSaving, truth: Counter[str]) -> None:
    n = sum(truth.values())
    assert sketch.n == n
    assert len(sketch) <= sketch.capacity
    assert sketch.threshold <= n / sketch.capacity
    monitored = {item: (count, error) for item, count, error in sketch.top()}
    for item, (count, error) in monitored.items():
        assert count - error <= truth[item] <= count
    for item, frequency in truth.items():
        if item not in monitored:
            assert frequency <= sketch.threshold
        if frequency > n / sketch.capacity:
            assert item in monitored


streams = st.lists(st.lists(st.sampled_from(list("abcdefghijklmnop")) | st.none(), max_size=40), max_size=8)


@settings(deadline=None)
@given(batches=streams, capacity=st.integers(1, 8))
def test_space_saving_bounds_hold_for_batched_updates(batches: list[list[str | None]], capacity: int) -> None:
    sketch, truth = SpaceSaving(capacity), Counter[str]()
    for batch in batches:
        sketch.update(batch)
        truth.update(v for v in batch if v is not None)
        _check_guarantees(sketch, truth)


@settings(deadline=None)
@given(batches=streams, capacity=st.integers(1, 8), split=st.integers(0, 8))
def test_space_saving_bounds_hold_after_merging(batches: list[list[str | None]], capacity: int, split: int) -> None:
    left, right = SpaceSaving(capacity), SpaceSaving(capacity)
    for i, batch in enumerate(batches):
        (left if i < split else right).update(batch)
    truth = Counter(v for batch in batches for v in batch if v is not None)
    merged = left.merge(right)
    _check_guarantees(merged, truth)
    _check_guarantees(right.merge(left), truth)
    for k in range(1, len(merged) + 1):
        if merged.is_top_guaranteed(k):
            kth = sorted(truth.values(), reverse=True)[k - 1]
            assert all(truth[item] >= kth for item, _, _ in merged.top(k))


def test_space_saving_is_exact_when_the_alphabet_fits() -> None:
    sketch = SpaceSaving(capacity=5)
    sketch.update(list("abracadabra"))
    assert sketch.top() == [("a", 5, 0), ("b", 2, 0), ("r", 2, 0), ("c", 1, 0), ("d", 1, 0)]
    assert sketch.estimate("a") == (5, 0) and sketch.estimate("zzz") == (1, 1)
    assert sketch.is_top_guaranteed(1)


def test_space_saving_finds_a_heavy_hitter_in_a_long_tail() -> None:
    rng = np.random.default_rng(11)
    sketch = SpaceSaving(capacity=20)
    for _ in range(10):
        tail = rng.integers(0, 10_000, size=900).astype(str)
        sketch.update(np.concatenate((tail, np.full(100, "heavy"))))
    item, count, error = sketch.top(1)[0]
    assert item == "heavy" and count - error <= 1000 <= count


def test_space_saving_round_trips_through_json() -> None:
    sketch = SpaceSaving(capacity=3)
    sketch.update(list("aabbbcdde"))
    restored = SpaceSaving.from_dict(json.loads(json.dumps(sketch.to_dict())))
    assert restored.top() == sketch.top() and restored.n == sketch.n and restored.capacity == 3
    restored.update(["a"])
    sketch.update(["a"])
    assert restored.top() == sketch.top()


def test_space_saving_validation() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SpaceSaving(0)
    with pytest.raises(ValueError, match="expected equal lengths"):
        SpaceSaving.from_dict({"capacity": 1, "n": 2, "items": ["a", "b"], "counts": [1, 1], "errors": [0, 0]})
    with pytest.raises(TypeError, match="SpaceSaving"):
        SpaceSaving(2).merge({"capacity": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k="):
        SpaceSaving(2).is_top_guaranteed(1)


def test_space_saving_can_seed_an_encoder() -> None:
    sketch = SpaceSaving(capacity=10)
    sketch.update(["a"] * 5 + ["b"] * 3 + ["c"])
    encoder = CategoryEncoder.from_counts({item: count for item, count, _ in sketch.top()}, max_categories=2)
    assert encoder.vocabulary == ("a", "b", OTHER)
