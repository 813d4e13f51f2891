"""Grouping a batch's positions by key: by model, by event-time window, by input partition.

Stage 1 splits every batch several ways (events by model, then by window; offsets by
input partition; event times by model and partition for the watermarks). Each is one
stable sort of integer codes and the starts of the runs (:func:`key_groups`), so the
groups keep the events' order, and a batch with one key (the usual case) needs no sort.
These helpers are shared by the partials (:mod:`watchkeeper.monitor.partials`), the label
entries (:mod:`watchkeeper.monitor.labels`) and the runtime (:mod:`watchkeeper.monitor.runtime`).
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "groups_of",
    "key_groups",
    "model_groups",
    "pair_groups",
    "pick",
    "reduce_by_key",
    "segments",
    "window_groups",
    "window_starts",
]


def window_starts(times: np.ndarray, size: float) -> np.ndarray:
    """Start (epoch seconds) of the tumbling event-time window of each time."""
    return np.floor(times / size) * size


def window_groups(times: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct window starts, ascending; per time, the index of its window among them)."""
    starts = window_starts(times, size)
    unique, inverse = np.unique(starts, return_inverse=True)
    return unique, inverse.astype(np.int64).ravel()


def segments(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions sorted by code, stably; where each code's run starts): every code must occur."""
    order = np.argsort(codes, kind="stable")
    return order, np.searchsorted(codes[order], np.arange(n_codes))


def key_groups(keys: Sequence[Hashable], ordered: bool = False) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Group positions by key: (distinct keys, positions sorted by key, where each key's run starts).

    Distinct keys come in order of first appearance, or sorted with ``ordered``; positions
    keep their order within a key, so ``positions[starts[k]:starts[k + 1]]`` are the
    positions of ``distinct[k]`` in ascending order.
    """
    distinct: list[Any] = list(dict.fromkeys(keys))
    if len(distinct) == 1:  # (the usual batch: one model, ...)
        return distinct, np.arange(len(keys)), np.zeros(1, dtype=np.intp)
    if ordered:
        distinct.sort()
    lookup = {key: k for k, key in enumerate(distinct)}
    codes = np.fromiter(map(lookup.__getitem__, keys), np.int64, count=len(keys))
    order, starts = segments(codes, len(distinct))
    return distinct, order, starts


def _codes(values: Sequence[Hashable]) -> tuple[list[Any], np.ndarray | None]:
    """(distinct values in order of first appearance; each value's index among them, None if just one)."""
    distinct: list[Any] = list(dict.fromkeys(values))
    if len(distinct) == 1:
        return distinct, None
    lookup = {value: k for k, value in enumerate(distinct)}
    return distinct, np.fromiter(map(lookup.__getitem__, values), np.int64, count=len(values))


def pair_groups(first: Sequence[Hashable], second: Sequence[Hashable]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """:func:`key_groups` of the pairs ``zip(first, second)``, without building and hashing the pairs
    (each side is coded on its own; e.g. model ids and input partitions)."""
    distinct_a, codes_a = _codes(first)
    distinct_b, codes_b = _codes(second)
    if codes_a is None and codes_b is None:  # (the usual batch: one model, one partition)
        return [(distinct_a[0], distinct_b[0])], np.arange(len(first)), np.zeros(1, dtype=np.intp)
    width = len(distinct_b)
    combined = (0 if codes_a is None else codes_a * width) + (0 if codes_b is None else codes_b)
    unique, firsts, inverse = np.unique(combined, return_index=True, return_inverse=True)
    appearance = np.argsort(firsts, kind="stable")  # the distinct pairs in order of first appearance
    rank = np.empty(len(unique), dtype=np.int64)
    rank[appearance] = np.arange(len(unique))
    order, starts = segments(rank[inverse.ravel()], len(unique))
    pairs = [(distinct_a[code // width], distinct_b[code % width]) for code in unique[appearance].tolist()]
    return pairs, order, starts


def reduce_by_key(
    keys: Sequence[Hashable], values: np.ndarray, reduce: np.ufunc, ordered: bool = False
) -> dict[Any, Any]:
    """``reduce`` (a ufunc with ``reduceat``: np.minimum, np.fmax, ...) of the values of each key.

    Keys in order of first appearance, or sorted with ``ordered``; values as Python scalars.
    """
    if not len(keys):
        return {}
    distinct, order, starts = key_groups(keys, ordered)
    return dict(zip(distinct, reduce.reduceat(values[order], starts).tolist(), strict=True))


def model_groups(events: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray | None]:
    """Positions of each model's events, by model id in sorted order (None: all of them)."""
    return groups_of(list(map(operator.itemgetter("model_id"), events)))


def groups_of(model_ids: Sequence[str]) -> dict[str, np.ndarray | None]:
    """:func:`model_groups` of events with these model ids."""
    distinct, order, starts = key_groups(model_ids, ordered=True)
    if len(distinct) == 1:
        return {distinct[0]: None}
    bounds = [*starts.tolist(), len(model_ids)]
    return {model_id: order[bounds[k] : bounds[k + 1]] for k, model_id in enumerate(distinct)}


def pick(values: Sequence[Any], index: np.ndarray | None) -> list[Any]:
    """The values at ``index`` (all of them for None), as a list."""
    return list(values) if index is None else [values[i] for i in index.tolist()]
