"""Stage 1: turn a batch of validated prediction events into mergeable partial aggregates.

One partial per model per batch, holding one entry per event-time window the batch
touched: fine-grid bin counts for numeric columns, vocabulary counts for categorical
ones, the event count, the latest event time and the model versions seen. Models still
learning their reference get raw column samples instead.

The work per event is a few C-level passes over the decoded dicts (one ``itemgetter`` per
event for all feature columns, one for the prediction's score and label) that build the
batch's columns: a float64 matrix of the numeric ones and the raw values of the
categorical ones (:class:`ColumnValues`). Everything after that is numpy over whole
columns: a branch-free table search for the bins of all numeric columns at once and one
``bincount`` for all numeric columns and windows; one dict-lookup encoding per categorical
column (shared with its CUSUM when the encoders agree) and one ``bincount``; integer codes
for the model versions; one sort by CUSUM slice shared by all columns.

Partials are plain JSON-able dicts (see docs/architecture.md, "partials").
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import orjson

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.parse import as_float, object_matrix
from watchkeeper.monitor.profile import (
    MULTIVARIATE,
    PREDICTION_LABEL,
    PREDICTION_SCORE,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    calibrated_detector,
)
from watchkeeper.stats.sequential import CalibratedCusum, SliceGroups, numeric_slice_sums

__all__ = [
    "ColumnBinner",
    "ColumnValues",
    "build_partials",
    "extract_columns",
    "field_values",
    "groups_of",
    "key_groups",
    "model_groups",
    "pick",
    "reduce_by_key",
    "monitored_columns",
    "split_partial",
    "slice_indices",
    "stats_from_samples",
    "stats_windows",
    "texts",
    "window_starts",
]

PARTIAL_VERSION = 2
_SAMPLE_TEXT = 200  # longest category text kept in a learning sample
_NUMBER_TYPES = frozenset({float, int, bool})  # binned as numbers (bools as 0/1)
_READ_CHUNK = 128  # events whose values ColumnValues.from_events reads together


def monitored_columns(config: ModelConfig) -> dict[str, str]:
    """Column name → kind for a model: its features plus the prediction's score and label."""
    columns: dict[str, str] = {f.name: f.type for f in config.features}
    if config.drift.multivariate and sum(f.type == "numeric" for f in config.features) >= 2:
        columns[MULTIVARIATE] = "numeric"
    if config.drift.monitor_prediction and config.task != "regression":
        columns[PREDICTION_SCORE] = "numeric"
        columns[PREDICTION_LABEL] = "categorical"
    return columns


def window_starts(times: np.ndarray, size: float) -> np.ndarray:
    """Start (epoch seconds) of the tumbling event-time window of each time."""
    return np.floor(times / size) * size


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


# -- a batch's columns -------------------------------------------------------------------
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


def _columns(mappings: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    """The mappings' values of each of ``names``, one sequence per name (None where absent)."""
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
    return values if all(values) else [value or {} for value in values]


def texts(values: list[Any]) -> list[str | None]:
    """``str`` of each value, None kept (how ``prediction.label`` is monitored)."""
    out: list[str | None] = list(map(str, values))
    if None in values:
        for i, value in enumerate(values):
            if value is None:
                out[i] = None
    return out


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

        Read :data:`_READ_CHUNK` events at a time: each value is touched by a few passes (read
        out of its dict, type-checked, converted), which find it in the CPU caches only when
        the chunk is small (in a batch of 2000, reading this way costs about 2/3 as much).
        """
        if len(events) <= _READ_CHUNK:
            return cls._from_chunk(binner, events)
        return cls.concat(
            [cls._from_chunk(binner, events[i : i + _READ_CHUNK]) for i in range(0, len(events), _READ_CHUNK)]
        )

    @classmethod
    def concat(cls, parts: Sequence[ColumnValues]) -> ColumnValues:
        """The columns of consecutive chunks of events as one batch's."""
        numeric = np.concatenate([p.numeric.T for p in parts], axis=1).T
        invalid = np.concatenate([p.invalid.T for p in parts], axis=1).T
        columns = zip(*(p.categorical for p in parts), strict=True)
        categorical: list[Sequence[Any]] = [list(itertools.chain.from_iterable(c)) for c in columns]
        return cls(numeric, invalid, categorical)

    @classmethod
    def _from_chunk(cls, binner: ColumnBinner, events: Sequence[dict[str, Any]]) -> ColumnValues:
        """:meth:`from_events` of a few events: each event's features are read in one pass for all
        columns, and the numeric matrix is built column by column (``numeric`` is the transpose
        of a C-ordered (F, n) array).
        """
        special = (PREDICTION_SCORE, PREDICTION_LABEL)
        derived = _derives_multivariate(binner)  # (then its value is computed, not read)
        numeric_read = [n for n in binner.numeric if n not in special and not (derived and n == MULTIVARIATE)]
        categorical_read = [n for n in binner.categorical if n not in special]
        read = _columns(nested(events, "features"), numeric_read + categorical_read)
        predictions = nested(events, "prediction") if set(special) & {*binner.numeric, *binner.categorical} else []
        n, width = len(events), len(binner.numeric)
        numbers, flagged = as_numbers(list(itertools.chain.from_iterable(read[: len(numeric_read)])))
        if len(numeric_read) == width:
            numeric, invalid = numbers.reshape(width, n), flagged.reshape(width, n)
        else:
            numeric = np.full((width, n), np.nan)
            invalid = np.zeros((width, n), dtype=bool)
            rows = [binner.numeric.index(name) for name in numeric_read]
            numeric[rows], invalid[rows] = numbers.reshape(-1, n), flagged.reshape(-1, n)
            for j, name in enumerate(binner.numeric):
                if name in special:
                    numeric[j], invalid[j] = as_numbers(_prediction_column(predictions, name))
        by_name = dict(zip(categorical_read, read[len(numeric_read) :], strict=True))
        categorical = [
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


def _derives_multivariate(binner: ColumnBinner) -> bool:
    """Whether the binner's :data:`MULTIVARIATE` column is computed from the numeric features."""
    pca = binner.profile.multivariate
    return pca is not None and MULTIVARIATE in binner.numeric and set(pca.names) <= set(binner.numeric)


def _add_multivariate(binner: ColumnBinner, columns: ColumnValues) -> None:
    """Fill the :data:`MULTIVARIATE` column with the PCA reconstruction error of the numeric features."""
    pca = binner.profile.multivariate
    if pca is None or not _derives_multivariate(binner):
        return
    inputs = [binner.numeric.index(name) for name in pca.names]
    column = binner.numeric.index(MULTIVARIATE)
    columns.numeric[:, column] = pca.errors(np.ascontiguousarray(columns.numeric)[:, inputs])  # (same layout as ever)
    columns.invalid[:, column] = False


@dataclass(frozen=True)
class ColumnBinner:
    """Bins all numeric columns of a model at once against its reference grids."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    edges: np.ndarray  # (F, E_max), padded with +inf
    lengths: np.ndarray  # number of real edges per column
    profile: ReferenceProfile
    detectors: dict[str, CalibratedCusum]  # stage-1 halves: they buffer partial buckets

    @classmethod
    def from_profile(
        cls, profile: ReferenceProfile, columns: Mapping[str, str], quiet: frozenset[str] = frozenset()
    ) -> ColumnBinner:
        """Binner for the monitored ``columns``; ``quiet`` columns get no CUSUM bucket statistics."""
        numeric = tuple(n for n, k in columns.items() if isinstance(profile.columns.get(n), NumericProfile))
        categorical = tuple(n for n, k in columns.items() if isinstance(profile.columns.get(n), CategoricalProfile))
        grids = [profile.columns[n].edges for n in numeric]  # type: ignore[union-attr]
        width = max((len(g) for g in grids), default=1)
        edges = np.full((len(numeric), width), np.inf)
        for j, grid in enumerate(grids):
            edges[j, : len(grid)] = grid
        lengths = np.asarray([len(g) for g in grids], dtype=np.int64)
        detectors = {
            name: CalibratedCusum.from_dict(state)
            for name, column in profile.columns.items()
            if (state := calibrated_detector(column)) is not None and name in columns and name not in quiet
        }
        return cls(numeric, categorical, edges, lengths, profile, detectors)

    @cached_property
    def shared_encoders(self) -> frozenset[str]:
        """Categorical columns whose CUSUM encodes values exactly as the profile does (same encoder state)."""
        return frozenset(
            name
            for name, detector in self.detectors.items()
            if detector.kind == "categorical"
            and isinstance(column := self.profile.columns.get(name), CategoricalProfile)
            and detector.reference.get("encoder") == column.encoder.to_dict()
        )

    @cached_property
    def _searches(self) -> tuple[tuple[np.ndarray, ...], _CellSearch | None, list[int]]:
        """(per column, its edges with the last one moved up by one ulp; the cell search of the
        columns it suits; the other columns).

        ``searchsorted(grid, v, side="right")`` on such a grid is the bin of :func:`bin_counts`
        directly: #edges ≤ v, except that the reference max (the last edge) falls in the last
        interior bin. (Edges are finite, so the next float up is never a value in between.)
        """
        grids = []
        for j, length in enumerate(self.lengths.tolist()):
            grid = self.edges[j, :length].copy()
            grid[-1] = np.nextafter(grid[-1], np.inf)
            grids.append(grid)
        table = _CellSearch.build(grids)
        searched = [j for j in range(len(grids)) if table is None or j not in table.columns.tolist()]
        return tuple(grids), table, searched

    def fine_counts(self, values: np.ndarray, windows: np.ndarray, n_windows: int) -> np.ndarray:
        """Counts (n_windows, F, E_max + 2): [underflow, bins..., overflow, (padding), missing].

        Equals :func:`watchkeeper.stats.histogram.bin_counts` per column: a value v falls
        in bin #edges ≤ v, except that the reference max belongs to the last interior bin;
        NaN is missing. The bins come from a :class:`_CellSearch` of all columns at once
        (or a binary search per column, for columns with edges too unevenly spread for it).
        """
        n_columns, width = self.edges.shape
        slots = width + 2
        size = n_windows * n_columns * slots
        if values.size == 0 or n_columns == 0:
            return np.zeros(size, dtype=np.int64).reshape(n_windows, n_columns, slots)
        columns = np.ascontiguousarray(values.T)
        grids, table, searched = self._searches
        index = np.empty(columns.shape, dtype=np.int64)
        if table is not None and not searched:
            index = table.count(columns)
        elif table is not None:
            index[table.columns] = table.count(columns[table.columns])
        for j in searched:
            index[j] = np.searchsorted(grids[j], columns[j], side="right")
        index[np.isnan(columns)] = slots - 1
        index += np.arange(n_columns)[:, None] * slots
        if n_windows > 1:
            index += windows[None, :] * (n_columns * slots)
        return np.bincount(index.ravel(), minlength=size).astype(np.int64).reshape(n_windows, n_columns, slots)


@dataclass(frozen=True)
class _CellSearch:
    """Exact, branch-free ``searchsorted(grid, v, side="right")`` of several columns at once.

    Each column's range [first edge, last edge] is cut into ``cells`` equal cells. A value's
    cell, ``clip((v - low) · scale)``, is a monotone function of the value, so the edges in
    earlier cells are all ≤ it and those in later cells all > it: #edges ≤ v is the number
    of edges before its cell plus the edges of its own cell that are ≤ v, which takes
    ``rounds`` vectorised comparisons (the most edges any cell holds). Values outside the
    range fall in the first or last cell; NaN gets some bin (the caller marks it missing).
    """

    columns: np.ndarray  # which of the grids given to build() this searches
    low: np.ndarray  # (k, 1) first edge per column
    scale: np.ndarray  # (k, 1) cells per unit
    cells: int
    before: np.ndarray  # (k · cells) per column and cell: where its edges start in ``edges``
    edges: np.ndarray  # (k · stride) the columns' edges, each padded with NaN (never ≤ a value)
    stride: int
    rounds: int

    CELLS_PER_EDGE: ClassVar[int] = 8
    MAX_ROUNDS: ClassVar[int] = 4  # columns needing more comparisons use a binary search

    @classmethod
    def build(cls, grids: Sequence[np.ndarray]) -> _CellSearch | None:
        """The search for the grids (strictly increasing, finite, at least two edges) it suits, or None."""
        if not grids:
            return None
        cells = cls.CELLS_PER_EDGE * max(len(g) for g in grids)
        chosen: list[tuple[int, float, float, np.ndarray]] = []
        for j, grid in enumerate(grids):
            low = float(grid[0])
            with np.errstate(over="ignore", divide="ignore"):
                scale = float(cells / np.float64(grid[-1] - low))
            if not (np.isfinite(scale) and scale > 0):
                continue
            cell = cls._cells(grid, np.float64(low), np.float64(scale), cells)
            counts = np.bincount(cell, minlength=cells)
            if counts.max() <= cls.MAX_ROUNDS:
                chosen.append((j, low, scale, counts))
        if not chosen:
            return None
        rounds = max(int(counts.max()) for *_, counts in chosen)
        stride = max(len(grids[j]) for j, *_ in chosen) + rounds
        edges = np.full((len(chosen), stride), np.nan)
        before = np.zeros((len(chosen), cells), dtype=np.int64)
        for k, (j, _, _, counts) in enumerate(chosen):
            edges[k, : len(grids[j])] = grids[j]
            before[k, 1:] = np.cumsum(counts)[:-1]
            before[k] += k * stride
        return cls(
            columns=np.asarray([j for j, *_ in chosen], dtype=np.int64),
            low=np.asarray([[low] for _, low, _, _ in chosen]),
            scale=np.asarray([[scale] for _, _, scale, _ in chosen]),
            cells=cells,
            before=before.ravel(),
            edges=edges.ravel(),
            stride=stride,
            rounds=rounds,
        )

    @staticmethod
    def _cells(values: np.ndarray, low: Any, scale: Any, cells: int) -> np.ndarray:
        """The cell of each value (the same float operations for edges and values)."""
        with np.errstate(over="ignore", invalid="ignore"):
            cell: np.ndarray = np.clip((values - low) * scale, 0, cells - 1).astype(np.int64)
        return cell

    def count(self, values: np.ndarray) -> np.ndarray:
        """(k, n) #edges ≤ value, for the (k, n) values of the searched columns."""
        present = np.where(np.isnan(values), self.low, values)  # (NaN: any bin will do)
        cell = self._cells(present, self.low, self.scale, self.cells)
        cell += (np.arange(len(self.columns)) * self.cells)[:, None]
        start = self.before[cell]
        index: np.ndarray = start.copy()
        for offset in range(self.rounds):
            index += present >= self.edges[start + offset]
        index -= (np.arange(len(self.columns)) * self.stride)[:, None]
        return index


# -- grouping -----------------------------------------------------------------------------
def _window_groups(times: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    starts = window_starts(times, size)
    unique, inverse = np.unique(starts, return_inverse=True)
    return unique, inverse.astype(np.int64).ravel()


def _segments(codes: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
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
    order, starts = _segments(codes, len(distinct))
    return distinct, order, starts


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


def _source_ranges(sources: Sequence[str], offsets: np.ndarray) -> dict[str, list[int]]:
    """First and last offset per input partition ("topic:partition"), by name."""
    names, order, starts = key_groups(sources, ordered=True)
    ordered = offsets[order]
    lows = np.minimum.reduceat(ordered, starts).tolist()
    highs = np.maximum.reduceat(ordered, starts).tolist()
    return {name: [int(low), int(high)] for name, low, high in zip(names, lows, highs, strict=True)}


def _version_names(events: Sequence[dict[str, Any]]) -> list[str]:
    """Each event's model version as text ("unversioned" when there is none), as learning samples carry it."""
    return [str(e.get("model_version") or "unversioned") for e in events]


def _versions(names: Sequence[Any], windows: np.ndarray, n_windows: int) -> list[dict[str, int]]:
    """Events per model version per window, by name.

    ``names`` are the versions as sent (None or empty: "unversioned"); a version is named
    ``str(version)`` as numpy unicode, which drops trailing NULs. Only the distinct
    versions are named: each event gets an integer code.
    """
    distinct = list(dict.fromkeys(names))
    if not all(type(name) is str or name is None for name in distinct):  # (1 and True: one key, two names)
        names = [str(name or "unversioned") for name in names]
        distinct = list(dict.fromkeys(names))
    text = {name: str(name or "unversioned").rstrip("\x00") for name in distinct}
    ordered = sorted(set(text.values()))
    position = {name: ordered.index(named) for name, named in text.items()}
    codes = np.fromiter(map(position.__getitem__, names), np.int64, count=len(names))
    k = len(ordered)
    counts = np.bincount(windows * k + codes, minlength=n_windows * k).reshape(n_windows, k).tolist()
    return [{name: c for name, c in zip(ordered, row, strict=True) if c} for row in counts]


def slice_indices(times: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Index of the CUSUM event-time slice of each time (``window.size / drift.slices_per_window`` long)."""
    return np.floor(times * (config.drift.slices_per_window / config.window.size)).astype(np.int64)


def _slice_rows(
    binner: ColumnBinner, columns: ColumnValues, codes: Sequence[np.ndarray], slices: np.ndarray
) -> dict[str, dict[str, list[int]]]:
    """CUSUM sufficient statistics per event-time slice and column (exact integers).

    ``codes`` are the categorical columns encoded by their profile's encoder: a detector
    with the same encoder counts them as they are.
    """
    if not binner.detectors or slices.size == 0:
        return {}
    unique, slots = np.unique(slices, return_inverse=True)
    groups = SliceGroups.of(slots.ravel(), len(unique))
    numeric = [name for name, d in binner.detectors.items() if d.kind == "numeric" and name in binner.numeric]
    rows = columns.numeric.T[[binner.numeric.index(name) for name in numeric]]
    together = numeric_slice_sums([binner.detectors[name] for name in numeric], rows, groups)
    sums = dict(zip(numeric, together.tolist(), strict=True))
    for name, detector in binner.detectors.items():
        if name not in sums:
            k = binner.categorical.index(name)
            same = codes[k] if name in binner.shared_encoders else None
            sums[name] = detector.slice_sums(
                columns.categorical[k], groups.slots, groups.n_slots, groups, same
            ).tolist()
    keys = [str(k) for k in unique.tolist()]
    out: dict[str, dict[str, list[int]]] = {key: {} for key in keys}
    for name in binner.detectors:  # (in the detectors' order)
        for key, row in zip(keys, sums[name], strict=True):
            out[key][name] = row
    return out


# -- window entries ------------------------------------------------------------------------
def _invalid_counts(invalid: np.ndarray, windows: np.ndarray, n_windows: int) -> np.ndarray:
    """(n_windows, F) non-numbers per window and numeric column."""
    n_columns = invalid.shape[1]
    events, columns = np.nonzero(invalid)
    flat = np.bincount(windows[events] * n_columns + columns, minlength=n_windows * n_columns)
    return flat.reshape(n_windows, n_columns)


def _category_codes(binner: ColumnBinner, columns: ColumnValues) -> list[np.ndarray]:
    """Each categorical column encoded by its profile's encoder: ``[vocab..., UNSEEN, MISSING]`` codes."""
    out = []
    for name, values in zip(binner.categorical, columns.categorical, strict=True):
        column = binner.profile.columns[name]
        assert isinstance(column, CategoricalProfile)
        out.append(column.encoder.encode(values))
    return out


def _category_counts(
    binner: ColumnBinner, codes: Sequence[np.ndarray], windows: np.ndarray, n_windows: int
) -> list[Any]:
    """Per categorical column, (n_windows × [vocab..., UNSEEN, MISSING]) counts as lists."""
    out = []
    for name, column_codes in zip(binner.categorical, codes, strict=True):
        column = binner.profile.columns[name]
        assert isinstance(column, CategoricalProfile)
        k = len(column.encoder.vocabulary) + 2
        out.append(np.bincount(windows * k + column_codes, minlength=n_windows * k).reshape(n_windows, k).tolist())
    return out


def column_stats(
    binner: ColumnBinner, columns: ColumnValues, versions: Sequence[Any], times: np.ndarray, config: ModelConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[int]]]]:
    """Window entries and CUSUM slice sums of a batch's columns (``versions``: model version names)."""
    starts, windows = _window_groups(times, config.window.size)
    n_windows = len(starts)
    _add_multivariate(binner, columns)
    codes = _category_codes(binner, columns)
    sequential = _slice_rows(binner, columns, codes, slice_indices(times, config))
    fine = binner.fine_counts(columns.numeric, windows, n_windows)
    invalid = _invalid_counts(columns.invalid, windows, n_windows).tolist()
    categorical = _category_counts(binner, codes, windows, n_windows)
    version_counts = _versions(versions, windows, n_windows)
    order, first = _segments(windows, n_windows)
    sizes = np.bincount(windows, minlength=n_windows).tolist()
    latest = np.maximum.reduceat(times[order], first).tolist() if n_windows else []
    lengths = binner.lengths.tolist()
    result = []
    for w, start in enumerate(starts.tolist()):
        counts = fine[w].tolist()
        result.append(
            {
                "start": float(start),
                "n": sizes[w],
                "t_max": float(latest[w]),
                "versions": version_counts[w],
                "numeric": {
                    name: [*counts[j][: lengths[j] + 1], counts[j][-1]] for j, name in enumerate(binner.numeric)
                },
                "categorical": {name: categorical[k][w] for k, name in enumerate(binner.categorical)},
                "invalid": {name: invalid[w][j] for j, name in enumerate(binner.numeric) if invalid[w][j]},
            }
        )
    return result, sequential


def stats_windows(
    binner: ColumnBinner, matrix: np.ndarray, versions: np.ndarray, times: np.ndarray, config: ModelConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[int]]]]:
    """Window entries and CUSUM slice sums of a column matrix (binner's numeric then categorical columns)."""
    return column_stats(binner, ColumnValues.from_matrix(binner, matrix), list(versions), times, config)


def stats_from_samples(
    binner: ColumnBinner, samples: Sequence[Mapping[str, Any]], config: ModelConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[int]]]]:
    """Stage 2's conversion of sample entries (raw rows) into stats, once the profile exists.

    The same computation as stage 1's, so a window whose events came before and after the
    reference was learned is summarised exactly as if all had been binned in stage 1.
    """
    names = list(binner.numeric) + list(binner.categorical)
    n = sum(int(entry["n"]) for entry in samples)
    matrix = np.empty((n, len(names)), dtype=object)
    row = 0
    for entry in samples:
        size = int(entry["n"])
        for j, name in enumerate(names):
            matrix[row : row + size, j] = entry["rows"].get(name, [None] * size)
        row += size
    times = np.concatenate([np.asarray(e["times"], dtype=np.float64) for e in samples]) if samples else np.zeros(0)
    versions = np.concatenate([np.asarray(e["model_versions"], dtype=object) for e in samples]) if samples else times
    return stats_windows(binner, matrix, versions, times, config)


def _sample_windows(
    columns: Mapping[str, str], events: Sequence[dict[str, Any]], times: np.ndarray, size: float
) -> list[dict[str, Any]]:
    """Raw column values, times and versions, for a model that learns its reference."""
    names = list(columns)
    matrix = extract_columns(events, names)
    versions = np.asarray(_version_names(events), dtype=object)
    ids = np.asarray([str(e.get("prediction_id") or e["event_id"]) for e in events], dtype=object)
    starts, windows = _window_groups(times, size)
    result = []
    for w, start in enumerate(starts):
        mask = windows == w
        rows: dict[str, list[Any]] = {}
        for j, name in enumerate(names):
            column = matrix[mask, j]
            if columns[name] == "numeric":
                rows[name] = as_float(column)[0].tolist()  # NaN is missing (JSON null on the wire)
            else:
                rows[name] = [None if v is None else str(v)[:_SAMPLE_TEXT] for v in column]
        result.append(
            {
                "start": float(start),
                "n": int(mask.sum()),
                "t_max": float(times[mask].max()),
                "times": times[mask].tolist(),
                "model_versions": versions[mask].tolist(),
                "ids": ids[mask].tolist(),
                "rows": rows,
            }
        )
    return result


def build_partials(
    events: Sequence[dict[str, Any]],
    times: np.ndarray,
    sources: Sequence[str],
    offsets: np.ndarray,
    models: Mapping[str, tuple[ModelConfig, ColumnBinner | None]],
    groups: Mapping[str, np.ndarray | None] | None = None,
) -> list[dict[str, Any]]:
    """One partial per model present in the batch.

    ``sources[i]`` names the input partition of event i ("topic:partition") and
    ``offsets[i]`` its offset, so stage 2 can skip what it has already applied.
    ``groups`` is :func:`model_groups` of the events, if the caller has it already.
    """
    if not events:
        return []
    offsets = np.asarray(offsets, dtype=np.int64)
    partials = []
    for model_id, index in (model_groups(events) if groups is None else groups).items():
        config, binner = models[model_id]
        selected_times = times if index is None else times[index]
        ranges = _source_ranges(pick(sources, index), offsets if index is None else offsets[index])
        slices: dict[str, dict[str, list[int]]] = {}
        if binner is None:
            kind = "sample"
            selected = pick(events, index)
            windows = _sample_windows(monitored_columns(config), selected, selected_times, config.window.size)
            profile_id = None
        else:
            kind = "stats"
            selected = pick(events, index)
            columns = ColumnValues.from_events(binner, selected)
            versions = field_values(selected, "model_version")
            windows, slices = column_stats(binner, columns, versions, selected_times, config)
            profile_id = binner.profile.reference_id
        partials.append(
            {
                "v": PARTIAL_VERSION,
                "kind": kind,
                "model_id": model_id,
                "profile_id": profile_id,
                "source": ranges,
                "watermarks": {},
                "windows": windows,
                "slices": slices,
            }
        )
    return partials


def split_partial(partial: Mapping[str, Any], limit: int) -> list[bytes]:
    """The partial serialised in pieces of at most about ``limit`` bytes (Kafka's record limit).

    Windows are spread over pieces (a sample window too large alone is split by rows); the
    source offsets, slices, labels and watermarks travel in the last piece, so a replayed
    piece is recognised as applied and stage 2 closes windows only after all pieces.
    """
    data = orjson.dumps(partial)
    if len(data) <= limit or not partial.get("windows"):
        return [data]
    pieces: list[bytes] = []
    head = {"v": partial["v"], "kind": partial["kind"], "model_id": partial["model_id"]}
    head["profile_id"] = partial.get("profile_id")
    for entry in partial["windows"]:
        pieces += [orjson.dumps({**head, "source": {}, "windows": [e]}) for e in _split_entry(entry, limit)]
    pieces.append(orjson.dumps({**partial, "windows": []}))
    return pieces


def _split_entry(entry: Mapping[str, Any], limit: int) -> list[Mapping[str, Any]]:
    """A sample entry in row ranges of about ``limit`` bytes each (stats entries are never split)."""
    n = int(entry["n"])
    size = len(orjson.dumps(entry)) if "rows" in entry else 0
    if size <= limit or n < 2:
        return [entry]
    parts = min(n, size // limit + 1)
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [
        {
            **entry,
            "n": int(hi - lo),
            "rows": {k: v[lo:hi] for k, v in entry["rows"].items()},
            **{k: entry[k][lo:hi] for k in ("times", "model_versions", "ids")},
        }
        for lo, hi in itertools.pairwise(bounds.tolist())
    ]
