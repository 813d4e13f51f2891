"""Categorical features: a capped reference vocabulary and bounded heavy-hitter counting.

**Encoding layout.** A :class:`CategoryEncoder` with ``k`` vocabulary entries maps values to
codes and counts them into a vector of length ``k + 2``::

    [vocab_0, ..., vocab_(k-1), UNSEEN, MISSING]

* ``vocab_i``: the reference's top ``max_categories`` values (most frequent first). When the
  reference had more distinct values, the rest are pooled into the last vocabulary entry
  :data:`OTHER` (``"__other__"``); reference values pooled that way map to OTHER, not to
  UNSEEN. The encoder remembers up to ``max_pooled`` pooled values (the most frequent);
  beyond that bound, rarer reference values are indistinguishable from new ones and count
  as UNSEEN (``pooled_truncated`` tells).
* UNSEEN (code ``k``, ``counts[UNSEEN_INDEX]`` with the negative constant ``-2``): values
  never seen in the reference.
* MISSING (code ``k + 1``, ``counts[MISSING_INDEX]`` = ``-1``): ``None`` and float NaN.

Values are compared by ``str(value)`` (a feature arriving as ``3`` matches vocabulary
``"3"``); strings are compared as numpy unicode, so trailing ``"\\x00"`` is ignored.

**How a monitor should test drift.** Run the χ² homogeneity test and effect sizes on the
vocabulary columns only, ``counts[:k]`` (reference OTHER included), and report the UNSEEN
and MISSING rates separately (e.g. with :func:`watchkeeper.stats.intervals.wilson_interval`
against the reference rate). Putting UNSEEN into the χ² table would give a column whose
reference count is 0: one new value then adds ≈ n_ref / n_cur to the statistic, which
forces p ≈ 0 whenever the reference is much larger than the window (the usual case).

**Heavy hitters.** :class:`SpaceSaving` (Metwally, Agrawal & El Abbadi 2005, "Efficient
computation of frequent and top-k elements in data streams", ICDT) keeps ``capacity``
counters; it finds the top-K of an unbounded reference stream in bounded memory and can
build the vocabulary with :meth:`CategoryEncoder.from_counts`.

Example:
    >>> encoder = CategoryEncoder.from_reference(["a", "a", "b", "c", None], max_categories=1)
    >>> encoder.vocabulary
    ('a', '__other__')
    >>> encoder.counts(["a", "b", "z", None, float("nan")]).tolist()
    [1, 1, 1, 2]
    >>> sketch = SpaceSaving(capacity=2)
    >>> sketch.update(["x", "x", "y", "z", "x"])
    >>> sketch.top(1)
    [('x', 3, 0)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

__all__ = ["MISSING_INDEX", "OTHER", "UNSEEN_INDEX", "CategoryEncoder", "SpaceSaving"]

OTHER = "__other__"
UNSEEN_INDEX = -2
MISSING_INDEX = -1
_NONE = np.array(None, dtype=object)
_NOT_FOUND = -1  # no vocabulary or pooled value is exactly this object (see CategoryEncoder.encode)
_SEQUENCES = (list, tuple, dict, set, frozenset, np.ndarray)  # values numpy would not treat as one scalar


def _split_missing(values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return (mask of missing entries, present values as a numpy unicode array)."""
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=object)
    array = array.ravel()
    with np.errstate(invalid="ignore"):
        # None is missing; NaN is the only value not equal to itself.
        missing = np.equal(array, _NONE) | np.not_equal(array, array)
    missing = np.asarray(missing, dtype=bool)
    present = array[~missing].astype(str) if np.any(~missing) else np.empty(0, dtype=str)
    return missing, present


def _ranked_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and counts, most frequent first (ties by value, deterministic)."""
    distinct, counts = np.unique(values, return_counts=True)
    order = np.lexsort((distinct, -counts))
    return distinct[order], counts[order].astype(np.int64)


class CategoryEncoder:
    """Map categorical values to codes ``[vocab..., UNSEEN, MISSING]`` (see module docs).

    Args:
        vocabulary: reference categories, in count-vector order; include :data:`OTHER`
            to have a pooled category (added automatically when ``pooled`` is non-empty).
        pooled: reference values represented by OTHER.
        pooled_truncated: whether some pooled reference values were not kept.

    Example:
        >>> encoder = CategoryEncoder(["red", "blue"], pooled=["green"])
        >>> encoder.encode(["blue", "green", "pink", None]).tolist()
        [1, 2, 3, 4]
        >>> encoder.unseen_index, encoder.missing_index
        (3, 4)
    """

    def __init__(self, vocabulary: Sequence[str], pooled: Iterable[str] = (), pooled_truncated: bool = False) -> None:
        vocab = [str(v) for v in vocabulary]
        pooled_values = sorted({str(v) for v in pooled} - set(vocab))
        if pooled_values and OTHER not in vocab:
            vocab.append(OTHER)
        if len(set(vocab)) != len(vocab):
            raise ValueError(f"vocabulary={vocab!r}: expected distinct categories")
        self.vocabulary: tuple[str, ...] = tuple(vocab)
        self.pooled: frozenset[str] = frozenset(pooled_values)
        self.pooled_truncated = bool(pooled_truncated)
        keys = np.array(vocab + pooled_values, dtype=str)
        other = vocab.index(OTHER) if OTHER in vocab else -1
        codes = np.array(list(range(len(vocab))) + [other] * len(pooled_values), dtype=np.int64)
        order = np.argsort(keys, kind="mergesort")
        self._keys = keys[order]
        self._codes = codes[order]
        self._width = self._keys.dtype.itemsize // 4  # characters of the longest key
        # the same lookup as a dict over the normalised keys (the first of equal keys wins, as
        # with searchsorted): exact matches of str values are found without numpy
        self._lookup: dict[str, int] = {}
        for key, code in zip(self._keys.tolist(), self._codes.tolist(), strict=True):
            self._lookup.setdefault(key, code)

    @classmethod
    def from_counts(
        cls, counts: Mapping[str, int], max_categories: int = 50, max_pooled: int = 10_000
    ) -> CategoryEncoder:
        """Build from reference value counts: top ``max_categories`` kept, the rest pooled.

        Ties are broken by value so the vocabulary is deterministic; at most ``max_pooled``
        of the pooled values (the most frequent) are remembered.
        """
        for name, bound in (("max_categories", max_categories), ("max_pooled", max_pooled)):
            if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0:
                raise ValueError(f"{name}={bound!r}: expected an integer >= 0")
        if max_categories < 1:
            raise ValueError(f"max_categories={max_categories!r}: expected an integer >= 1")
        items = sorted(((str(k), int(c)) for k, c in counts.items()), key=lambda kc: (-kc[1], kc[0]))
        kept = [k for k, _ in items[:max_categories]]
        rest = [k for k, _ in items[max_categories:]]
        vocabulary = [*kept, OTHER] if rest and OTHER not in kept else kept
        return cls(vocabulary, rest[:max_pooled], pooled_truncated=len(rest) > max_pooled)

    @classmethod
    def from_reference(
        cls, values: Iterable[Any], max_categories: int = 50, max_pooled: int = 10_000
    ) -> CategoryEncoder:
        """Build from raw reference values (missing values are ignored)."""
        _, present = _split_missing(values)
        distinct, counts = _ranked_counts(present)
        return cls.from_counts(dict(zip(distinct.tolist(), counts.tolist(), strict=True)), max_categories, max_pooled)

    @property
    def unseen_index(self) -> int:
        """Code of values absent from the reference (``len(vocabulary)``)."""
        return len(self.vocabulary)

    @property
    def missing_index(self) -> int:
        """Code of None/NaN (``len(vocabulary) + 1``)."""
        return len(self.vocabulary) + 1

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """int64 codes: vocabulary index, OTHER for pooled values, UNSEEN or MISSING.

        Values that are exactly a (normalised) vocabulary or pooled string are looked up in
        a dict; only the others (missing, unseen, non-strings, strings with a trailing NUL)
        take the numpy route of :meth:`_encode_array`, which defines the result.
        """
        items = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
        given = values if isinstance(values, np.ndarray) else items  # (an iterator is read once)
        try:
            codes = np.fromiter(map(self._lookup.get, items, repeat(_NOT_FOUND)), np.int64, count=len(items))
        except TypeError:  # an unhashable value
            return self._encode_array(given)
        misses = np.flatnonzero(codes == _NOT_FOUND)
        if misses.size:
            rest = [items[i] for i in misses.tolist()]
            if any(isinstance(v, _SEQUENCES) for v in rest):  # numpy would read these as more than one value
                return self._encode_array(given)
            codes[misses] = self._encode_array(np.fromiter(map(self._short, rest), dtype=object, count=len(rest)))
        return codes

    def _short(self, value: Any) -> Any:
        """``value`` as numpy compares it (trailing NULs dropped), but never longer than the longest
        key plus one: numpy sizes an array by its longest string (one 1 MB value among 10,000
        unseen ones would take 40 GB), and a string longer than every key is unseen anyway."""
        if not isinstance(value, str) or len(value) <= self._width:
            return value
        value = value.rstrip("\x00")
        return value if len(value) <= self._width else "\x01" * (self._width + 1)

    def _encode_array(self, values: Iterable[Any]) -> np.ndarray:
        """:meth:`encode` with numpy only: ``str(value)`` as numpy unicode, searched in the sorted keys."""
        missing, present = _split_missing(values)
        codes = np.full(missing.shape, self.missing_index, dtype=np.int64)
        found = np.full(present.shape, self.unseen_index, dtype=np.int64)
        if self._keys.size and present.size:
            position = np.clip(np.searchsorted(self._keys, present), 0, self._keys.size - 1)
            hit = self._keys[position] == present
            found[hit] = self._codes[position[hit]]
        codes[~missing] = found
        return codes

    def counts(self, values: Iterable[Any]) -> np.ndarray:
        """int64 counts of length ``len(vocabulary) + 2``: ``[vocab..., UNSEEN, MISSING]``."""
        return np.bincount(self.encode(values), minlength=len(self.vocabulary) + 2).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "vocabulary": list(self.vocabulary),
            "pooled": sorted(self.pooled),
            "pooled_truncated": self.pooled_truncated,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> CategoryEncoder:
        """Inverse of :meth:`to_dict`."""
        return cls(state["vocabulary"], state.get("pooled", ()), state.get("pooled_truncated", False))

    def __repr__(self) -> str:
        return (
            f"CategoryEncoder(vocabulary={list(self.vocabulary)!r}, "
            f"pooled=<{len(self.pooled)} values>, pooled_truncated={self.pooled_truncated})"
        )


class SpaceSaving:
    """Bounded top-K heavy hitters over a stream of categorical values.

    State: at most ``capacity`` monitored items, each with an estimated ``count`` and a
    maximum overestimation ``error``. Guarantees after any sequence of updates and merges
    (Metwally et al. 2005, Lemma 3.4 and Theorem 3.5; for merging, Agarwal et al. 2013,
    "Mergeable summaries", ACM TODS 38(4), and Cafaro, Pulimeno & Tempesta 2016):

    * monitored item x: ``count(x) - error(x) <= f(x) <= count(x)``;
    * unmonitored item x: ``f(x) <= threshold <= n / capacity`` (``threshold`` is the
      smallest monitored count when the summary is full, else 0);
    * hence every item with ``f(x) > n / capacity`` is monitored.

    A batch is first counted exactly and then merged in, so the result can differ from
    one-at-a-time processing while keeping the same guarantees. Missing values (None/NaN)
    are skipped. Items are compared by ``str(value)``.

    Example:
        >>> left, right = SpaceSaving(3), SpaceSaving(3)
        >>> left.update(["a", "a", "b"]); right.update(["a", "c", "d", "d"])
        >>> left.merge(right).top(3)  # b may have been among right's evicted items
        [('a', 3, 0), ('b', 2, 1), ('d', 2, 0)]
    """

    def __init__(self, capacity: int = 1000) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity={capacity!r}: expected an integer >= 1")
        self.capacity = capacity
        self.n = 0
        self._items = np.empty(0, dtype=str)
        self._counts = np.empty(0, dtype=np.int64)
        self._errors = np.empty(0, dtype=np.int64)

    @property
    def threshold(self) -> int:
        """Upper bound on the frequency of any unmonitored item."""
        full = self._counts.size >= self.capacity
        return int(self._counts.min()) if full and self._counts.size else 0

    def __len__(self) -> int:
        return int(self._items.size)

    def _absorb(self, items: np.ndarray, counts: np.ndarray, errors: np.ndarray, threshold: int, n: int) -> None:
        """Merge another summary (arrays of distinct items) into this one, then prune."""
        own = self._items.size
        union, inverse = np.unique(np.concatenate((self._items, items)), return_inverse=True)
        inverse = inverse.ravel()
        mine = np.zeros(union.size, dtype=bool)
        mine[inverse[:own]] = True
        theirs = np.zeros(union.size, dtype=bool)
        theirs[inverse[own:]] = True
        count = np.zeros(union.size, dtype=np.int64)
        error = np.zeros(union.size, dtype=np.int64)
        # An item absent from a summary may have had up to that summary's threshold.
        for present, idx, c, e, t in (
            (mine, inverse[:own], self._counts, self._errors, self.threshold),
            (theirs, inverse[own:], counts, errors, threshold),
        ):
            count[idx] += c
            error[idx] += e
            count[~present] += t
            error[~present] += t
        order = np.lexsort((union, -count))[: self.capacity]
        self._items, self._counts, self._errors = union[order], count[order], error[order]
        self.n += n

    def update(self, values: Iterable[Any]) -> None:
        """Add a batch of values (vectorised: exact batch counts merged into the summary)."""
        _, present = _split_missing(values)
        if present.size == 0:
            return
        distinct, counts = np.unique(present, return_counts=True)
        counts = counts.astype(np.int64)
        self._absorb(distinct, counts, np.zeros_like(counts), 0, int(present.size))

    def merge(self, other: SpaceSaving) -> SpaceSaving:
        """Return a new summary of both streams, with this summary's capacity."""
        if not isinstance(other, SpaceSaving):
            raise TypeError(f"other={other!r}: expected a SpaceSaving instance")
        merged = SpaceSaving.from_dict(self.to_dict())
        merged._absorb(other._items, other._counts, other._errors, other.threshold, other.n)
        return merged

    def estimate(self, value: Any) -> tuple[int, int]:
        """(upper bound of the count, maximum overestimation) for ``value``."""
        hit = np.flatnonzero(self._items == str(value))
        if hit.size:
            return int(self._counts[hit[0]]), int(self._errors[hit[0]])
        return self.threshold, self.threshold

    def top(self, k: int | None = None) -> list[tuple[str, int, int]]:
        """The ``k`` (default all) largest ``(item, count, error)``, by count then item."""
        if k is not None and (not isinstance(k, int) or k < 0):
            raise ValueError(f"k={k!r}: expected an integer >= 0 or None")
        end = self._items.size if k is None else k
        return [
            (str(i), int(c), int(e))
            for i, c, e in zip(self._items[:end], self._counts[:end], self._errors[:end], strict=True)
        ]

    def is_top_guaranteed(self, k: int) -> bool:
        """Whether ``top(k)`` is certainly the true top-k set (Metwally et al. 2005, §4).

        True when every one of the first k guaranteed counts ``count - error`` is at least
        the (k+1)-th estimate and the threshold for unmonitored items.
        """
        if not isinstance(k, int) or k < 1 or k > self._items.size:
            raise ValueError(f"k={k!r}: expected an integer in [1, {self._items.size}]")
        following = self._counts[k] if k < self._counts.size else 0
        bound = max(int(following), self.threshold)
        return bool(np.min(self._counts[:k] - self._errors[:k]) >= bound)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "capacity": self.capacity,
            "n": self.n,
            "items": self._items.tolist(),
            "counts": self._counts.tolist(),
            "errors": self._errors.tolist(),
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> SpaceSaving:
        """Inverse of :meth:`to_dict`; checks lengths and the capacity."""
        sketch = cls(int(state["capacity"]))
        items = [str(i) for i in state["items"]]
        counts = np.asarray(state["counts"], dtype=np.int64).reshape(-1)
        errors = np.asarray(state["errors"], dtype=np.int64).reshape(-1)
        if not len(items) == counts.size == errors.size <= sketch.capacity:
            raise ValueError(
                f"state: {len(items)} items, {counts.size} counts, {errors.size} errors; "
                f"expected equal lengths <= capacity {sketch.capacity}"
            )
        order = np.lexsort((np.array(items, dtype=str), -counts)) if items else np.empty(0, int)
        sketch._items = np.array(items, dtype=str)[order] if items else np.empty(0, dtype=str)
        sketch._counts, sketch._errors = counts[order], errors[order]
        sketch.n = int(state["n"])
        return sketch

    def __repr__(self) -> str:
        return f"SpaceSaving(capacity={self.capacity}, n={self.n}, monitored={len(self)})"
