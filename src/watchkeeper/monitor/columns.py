"""Reading a batch's columns: the monitored columns of a model, out of the decoded events.

Stage 1 reads, per batch, the values of every monitored column of every event: the
features by name plus the prediction's score and label. This module does that reading
(and nothing after it), kept apart from binning and from building partials because it is
where the per-event Python work is, and the rest is numpy over whole columns.

Where the native reader has read a batch's features
(:class:`~watchkeeper.monitor.feature_block.FeatureRef` rows of one block), the feature
columns are taken from its block whole. Otherwise the work per event is a few C-level
passes over the decoded events (one ``itemgetter`` per event for all feature columns; one
for the prediction's score and label) that build the batch's columns: a float64 matrix of
the numeric ones and the raw values of the categorical ones (:class:`ColumnValues`).
:func:`field_values` and :func:`nested` are the same reading for one field (also used for
the label entries, :mod:`watchkeeper.monitor.labels`).
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.binning import ColumnBinner, derives_multivariate
from watchkeeper.monitor.feature_block import FeatureBlock, FeatureRef, block_rows
from watchkeeper.monitor.parse import object_matrix
from watchkeeper.monitor.profile import MULTIVARIATE, PREDICTION_LABEL, PREDICTION_SCORE

__all__ = [
    "ColumnValues",
    "as_numbers",
    "extract_columns",
    "field_values",
    "monitored_columns",
    "nested",
    "texts",
    "unknown_names",
]

_NUMBER_TYPES = frozenset({float, int, bool})  # binned as numbers (bools as 0/1)
_READ_CHUNK = 256  # events whose numeric values ColumnValues.from_events reads together


def monitored_columns(config: ModelConfig) -> dict[str, str]:
    """Column name → kind for a model: its features plus the prediction's score and label."""
    columns: dict[str, str] = {f.name: f.type for f in config.features}
    if config.drift.multivariate and sum(f.type == "numeric" for f in config.features) >= 2:
        columns[MULTIVARIATE] = "numeric"
    if config.drift.monitor_prediction and config.task != "regression":
        columns[PREDICTION_SCORE] = "numeric"
        columns[PREDICTION_LABEL] = "categorical"
    return columns


def extract_columns(events: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """(events × names) object matrix: features by name, plus prediction.score / .label."""
    features = object_matrix([e.get("features") or {} for e in events], names)
    if PREDICTION_SCORE in names or PREDICTION_LABEL in names:
        predictions = object_matrix([e.get("prediction") or {} for e in events], ["score", "label"])
        for j, name in enumerate(names):
            if name == PREDICTION_SCORE:
                features[:, j] = predictions[:, 0]
            elif name == PREDICTION_LABEL:
                features[:, j] = [None if v is None else str(v) for v in predictions[:, 1]]
    return features


def as_numbers(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """float64 of the values and the mask of those that are not numbers (as ``parse.as_float``).

    Bools count as 0/1 and None is missing (NaN, not flagged); strings (also numeric-looking
    ones such as ``"3"``) and other non-numbers become NaN and are flagged.
    """
    n = len(values)
    try:  # all numbers: a C loop that raises on None, strings or containers
        sum(values)
        clean = True
    except (TypeError, OverflowError):
        clean = False
    if clean:
        return np.fromiter(values, np.float64, count=n), np.zeros(n, dtype=bool)
    plain = np.fromiter(map(_NUMBER_TYPES.__contains__, map(type, values)), bool, count=n)
    invalid = np.zeros(n, dtype=bool)
    numbers = values
    odd = np.flatnonzero(~plain).tolist()
    if odd:
        numbers = list(values)
        for i in odd:
            value = values[i]
            if value is not None and not isinstance(value, int | float):
                numbers[i] = None
                invalid[i] = True
    return np.array(numbers, dtype=np.float64), invalid


def _picked(mappings: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Any]:
    """Per mapping, the tuple of its values of ``names`` (the value itself for one name); None where absent."""
    pick = operator.itemgetter(*names)
    try:
        return list(map(pick, mappings))  # (one C pass, each mapping read once)
    except KeyError:  # some mapping lacks some name
        picked = []
        for mapping in mappings:
            try:
                picked.append(pick(mapping))
            except KeyError:
                picked.append(tuple(map(mapping.get, names)) if len(names) > 1 else mapping.get(names[0]))
        return picked


def _block_columns(
    mappings: Sequence[Any], names: Sequence[str], numeric: bool
) -> tuple[FeatureBlock, np.ndarray, list[int]] | None:
    """Where the mappings are rows of one natively read block holding ``names`` (all numeric,
    or all categorical): the block, the rows and the names' columns in it."""
    read = block_rows(mappings)
    if read is None or not names:
        return None
    block, rows = read
    kinds = [block.names.get(name) for name in names]
    if any(kind is None or kind[0] != numeric for kind in kinds):
        return None  # (a column the profile has in another kind than the config: read the generic way)
    return block, rows, [kind[1] for kind in kinds if kind is not None]


def _columns(mappings: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    """The mappings' values of each of ``names``, one sequence per name (None where absent)."""
    read = _block_columns(mappings, names, numeric=False)
    if read is not None:
        block, where, columns = read
        positions = where.tolist()
        return [
            [block.categorical[j][r] for r in positions]
            if len(positions) < 2
            else operator.itemgetter(*positions)(block.categorical[j])
            for j in columns
        ]
    if len(names) < 2:
        return [_picked(mappings, names)] if names else []
    rows = _picked(mappings, names)
    return list(zip(*rows, strict=True)) if rows else [() for _ in names]


def field_values(mappings: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    """Each mapping's value of ``name`` (None where absent)."""
    return _picked(mappings, [name])


def nested(mappings: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    """Each mapping's mapping under ``name`` (``{}`` where absent or empty), e.g. the events' features."""
    values = field_values(mappings, name)
    if values and type(values[0]) is FeatureRef and set(map(type, values)) == {FeatureRef}:
        return values  # (natively read rows, never empty: spares a truth test in Python per row)
    return values if all(values) else [value or {} for value in values]


def unknown_names(mappings: Sequence[Mapping[str, Any]], known: frozenset[str]) -> dict[str, int]:
    """Keys of the mappings (e.g. the events' features) not in ``known``, with how many mappings hold each.

    One C-level pass unions the batch's key sets and compares that with ``known``; only when
    some key is unknown are the keys counted (one more pass), so the usual batch costs a set
    union, never a Python loop per event.
    """
    if mappings and type(mappings[0]) is FeatureRef and known.issuperset(mappings[0].block.names):
        return {}  # (the native reader takes configured features only)
    names = set().union(*mappings) - known
    if not names:
        return {}
    counts = Counter(itertools.chain.from_iterable(mappings))
    return {name: counts[name] for name in sorted(names)}


def texts(values: list[Any]) -> list[str | None]:
    """``str`` of each value, None kept (how ``prediction.label`` is monitored)."""
    out: list[str | None] = list(map(str, values))
    if None in values:
        for i, value in enumerate(values):
            if value is None:
                out[i] = None
    return out


def _numbers(mappings: Sequence[Mapping[str, Any]], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, len(names)) :func:`as_numbers` of the mappings' values of ``names``, read :data:`_READ_CHUNK` at a time."""
    n, k = len(mappings), len(names)
    read = _block_columns(mappings, names, numeric=True)
    if read is not None:  # (numbers or null only: nothing to flag)
        block, where, columns = read
        return block.numeric[np.ix_(where, np.asarray(columns))], np.zeros((n, k), dtype=bool)
    numbers = np.empty((n, k))
    flagged = np.zeros((n, k), dtype=bool)
    if not k:
        return numbers, flagged
    for first in range(0, n, _READ_CHUNK):
        rows = _picked(mappings[first : first + _READ_CHUNK], names)
        values, bad = as_numbers(list(itertools.chain.from_iterable(rows)) if k > 1 else rows)
        numbers[first : first + len(rows)] = values.reshape(len(rows), k)
        if bad.any():
            flagged[first : first + len(rows)] = bad.reshape(len(rows), k)
    return numbers, flagged


def _prediction_column(predictions: Sequence[Mapping[str, Any]], name: str) -> list[Any]:
    """``prediction.score`` (as sent) or ``prediction.label`` (as text) of each event."""
    if name == PREDICTION_SCORE:
        return field_values(predictions, "score")
    return texts(field_values(predictions, "label"))


@dataclass(frozen=True)
class ColumnValues:
    """A batch's columns, in the binner's order: numbers of the numeric ones, values of the categorical ones."""

    numeric: np.ndarray  # (n, F) float64, any memory layout; NaN: missing or not a number
    invalid: np.ndarray  # (n, F) bool: present but not a number
    categorical: list[Sequence[Any]]  # per categorical column, its n values as sent

    @classmethod
    def from_events(cls, binner: ColumnBinner, events: Sequence[dict[str, Any]]) -> ColumnValues:
        """Columns of decoded events: features by name, plus ``prediction.score`` / ``prediction.label``.

        The numeric features are read :data:`_READ_CHUNK` events at a time, all columns of an
        event in one pass: each value is touched by a few passes (read out of its dict,
        type-checked, converted), which find it in the CPU caches only when the chunk is
        small. ``numeric`` is the transpose of a C-ordered (F, n) array.
        """
        special = (PREDICTION_SCORE, PREDICTION_LABEL)
        derived = derives_multivariate(binner)  # (then its value is computed, not read)
        numeric_read = [n for n in binner.numeric if n not in special and not (derived and n == MULTIVARIATE)]
        categorical_read = [n for n in binner.categorical if n not in special]
        features = nested(events, "features")
        n, width = len(events), len(binner.numeric)
        numbers, flagged = _numbers(features, numeric_read)
        if len(numeric_read) == width:
            numeric, invalid = np.ascontiguousarray(numbers.T), np.ascontiguousarray(flagged.T)
        else:
            numeric = np.full((width, n), np.nan)
            invalid = np.zeros((width, n), dtype=bool)
            rows = [binner.numeric.index(name) for name in numeric_read]
            numeric[rows], invalid[rows] = numbers.T, flagged.T
        predictions = nested(events, "prediction") if set(special) & {*binner.numeric, *binner.categorical} else []
        for j, name in enumerate(binner.numeric):
            if name in special:
                numeric[j], invalid[j] = as_numbers(_prediction_column(predictions, name))
        by_name = dict(zip(categorical_read, map(list, _columns(features, categorical_read)), strict=True))
        categorical: list[Sequence[Any]] = [
            _prediction_column(predictions, name) if name in special else by_name[name] for name in binner.categorical
        ]
        return cls(numeric.T, invalid.T, categorical)

    @classmethod
    def from_matrix(cls, binner: ColumnBinner, matrix: np.ndarray) -> ColumnValues:
        """Columns of an object matrix (the binner's numeric then categorical columns)."""
        n, width = matrix.shape[0], len(binner.numeric)
        numbers, flagged = as_numbers(matrix[:, :width].ravel().tolist())
        categorical = [matrix[:, width + k].tolist() for k in range(len(binner.categorical))]
        return cls(numbers.reshape(n, width), flagged.reshape(n, width), categorical)
