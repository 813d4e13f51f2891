"""Stage 1: turn a batch of validated prediction events into mergeable partial aggregates.

One partial per model per batch, holding one entry per event-time window the batch
touched: fine-grid bin counts for numeric columns, vocabulary counts for categorical
ones, the event count, the latest event time and the model versions seen. Models still
learning their reference get raw column samples instead.

The batch's columns are read by :mod:`watchkeeper.monitor.columns` and binned by
:class:`watchkeeper.monitor.binning.ColumnBinner`; events are grouped by model and window
with :mod:`watchkeeper.monitor.grouping`. What is left here is numpy over whole columns:
one ``bincount`` for all numeric columns and windows; one dict-lookup encoding per
categorical column (shared with its CUSUM when the encoders agree) and one ``bincount``;
integer codes for the model versions; one sort by CUSUM slice shared by all columns.

Partials are plain JSON-able dicts, typed by :mod:`watchkeeper.monitor.wire` (see
docs/architecture.md, "Partials").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.binning import ColumnBinner, add_multivariate
from watchkeeper.monitor.columns import ColumnValues, extract_columns, field_values, monitored_columns
from watchkeeper.monitor.grouping import key_groups, model_groups, pick, segments, window_groups
from watchkeeper.monitor.parse import as_float
from watchkeeper.monitor.profile import CategoricalProfile
from watchkeeper.monitor.wire import PARTIAL_VERSION, Partial, SampleEntry, SampleRows, Slices, StatsEntry
from watchkeeper.stats.sequential import SliceGroups, numeric_slice_sums

__all__ = [
    "build_partials",
    "column_stats",
    "slice_indices",
    "split_partial",
    "stats_from_samples",
    "stats_windows",
]

_SAMPLE_TEXT = 200  # longest category text kept in a learning sample (and model version or id in a partial)


def _source_ranges(sources: Sequence[str], offsets: np.ndarray) -> dict[str, list[int]]:
    """First and last offset per input partition ("topic:partition"), by name."""
    names, order, starts = key_groups(sources, ordered=True)
    ordered = offsets[order]
    lows = np.minimum.reduceat(ordered, starts).tolist()
    highs = np.maximum.reduceat(ordered, starts).tolist()
    return {name: [int(low), int(high)] for name, low, high in zip(names, lows, highs, strict=True)}


def _version_names(events: Sequence[dict[str, Any]]) -> list[str]:
    """Each event's model version as text ("unversioned" when there is none), as learning samples carry it."""
    return [str(e.get("model_version") or "unversioned")[:_SAMPLE_TEXT] for e in events]


def _versions(names: Sequence[Any], windows: np.ndarray, n_windows: int) -> list[dict[str, int]]:
    """Events per model version per window, by name.

    ``names`` are the versions as sent (None or empty: "unversioned"); a version is named
    ``str(version)`` as numpy unicode, which drops trailing NULs, cut at 200 characters (a
    huge version string would otherwise make partials and window state records too large
    for Kafka). Only the distinct versions are named: each event gets an integer code.
    """
    distinct = list(dict.fromkeys(names))
    if not all(type(name) is str or name is None for name in distinct):  # (1 and True: one key, two names)
        names = [str(name or "unversioned") for name in names]
        distinct = list(dict.fromkeys(names))
    text = {name: str(name or "unversioned")[:_SAMPLE_TEXT].rstrip("\x00") for name in distinct}
    ordered = sorted(set(text.values()))
    index = {named: k for k, named in enumerate(ordered)}
    position = {name: index[named] for name, named in text.items()}
    codes = np.fromiter(map(position.__getitem__, names), np.int64, count=len(names))
    k = len(ordered)
    counts = np.bincount(windows * k + codes, minlength=n_windows * k).reshape(n_windows, k).tolist()
    return [{name: c for name, c in zip(ordered, row, strict=True) if c} for row in counts]


def slice_indices(times: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Index of the CUSUM event-time slice of each time (``window.size / drift.slices_per_window`` long)."""
    return np.floor(times * (config.drift.slices_per_window / config.window.size)).astype(np.int64)


def _slice_rows(binner: ColumnBinner, columns: ColumnValues, codes: Sequence[np.ndarray], slices: np.ndarray) -> Slices:
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
) -> tuple[list[StatsEntry], Slices]:
    """Window entries and CUSUM slice sums of a batch's columns (``versions``: model version names)."""
    starts, windows = window_groups(times, config.window.size)
    n_windows = len(starts)
    add_multivariate(binner, columns)
    codes = _category_codes(binner, columns)
    sequential = _slice_rows(binner, columns, codes, slice_indices(times, config))
    fine = binner.fine_counts(columns.numeric, windows, n_windows)
    invalid = _invalid_counts(columns.invalid, windows, n_windows).tolist()
    categorical = _category_counts(binner, codes, windows, n_windows)
    version_counts = _versions(versions, windows, n_windows)
    order, first = segments(windows, n_windows)
    sizes = np.bincount(windows, minlength=n_windows).tolist()
    latest = np.maximum.reduceat(times[order], first).tolist() if n_windows else []
    lengths = binner.lengths.tolist()
    result: list[StatsEntry] = []
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
) -> tuple[list[StatsEntry], Slices]:
    """Window entries and CUSUM slice sums of a column matrix (binner's numeric then categorical columns)."""
    return column_stats(binner, ColumnValues.from_matrix(binner, matrix), list(versions), times, config)


def stats_from_samples(
    binner: ColumnBinner, samples: Sequence[SampleRows], config: ModelConfig
) -> tuple[list[StatsEntry], Slices]:
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
) -> list[SampleEntry]:
    """Raw column values, times and versions, for a model that learns its reference."""
    names = list(columns)
    matrix = extract_columns(events, names)
    versions = np.asarray(_version_names(events), dtype=object)
    ids = np.asarray([str(e.get("prediction_id") or e["event_id"])[:_SAMPLE_TEXT] for e in events], dtype=object)
    starts, windows = window_groups(times, size)
    result: list[SampleEntry] = []
    for w, start in enumerate(starts):
        mask = windows == w
        rows: dict[str, list[float | str | None]] = {}
        for j, name in enumerate(names):
            column = matrix[mask, j]
            if columns[name] == "numeric":  # numbers (NaN, i.e. null on the wire: missing), invalid values as text
                numbers, invalid = as_float(column)
                values: list[float | str | None] = numbers.tolist()
                for i in np.flatnonzero(invalid).tolist():
                    values[i] = str(column[i])[:_SAMPLE_TEXT]
                rows[name] = values
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
) -> list[Partial]:
    """One partial per model present in the batch.

    ``sources[i]`` names the input partition of event i ("topic:partition") and
    ``offsets[i]`` its offset, so stage 2 can skip what it has already applied.
    ``groups`` is :func:`model_groups` of the events, if the caller has it already.
    """
    if not events:
        return []
    offsets = np.asarray(offsets, dtype=np.int64)
    partials: list[Partial] = []
    for model_id, index in (model_groups(events) if groups is None else groups).items():
        config, binner = models[model_id]
        selected_times = times if index is None else times[index]
        ranges = _source_ranges(pick(sources, index), offsets if index is None else offsets[index])
        selected = pick(events, index)
        if binner is None:
            samples = _sample_windows(monitored_columns(config), selected, selected_times, config.window.size)
            partials.append(
                {
                    "v": PARTIAL_VERSION,
                    "kind": "sample",
                    "model_id": model_id,
                    "profile_id": None,
                    "source": ranges,
                    "watermarks": {},
                    "windows": samples,
                    "slices": {},
                }
            )
            continue
        columns = ColumnValues.from_events(binner, selected)
        versions = field_values(selected, "model_version")
        windows, slices = column_stats(binner, columns, versions, selected_times, config)
        partials.append(
            {
                "v": PARTIAL_VERSION,
                "kind": "stats",
                "model_id": model_id,
                "profile_id": binner.profile.reference_id,
                "source": ranges,
                "watermarks": {},
                "windows": windows,
                "slices": slices,
            }
        )
    return partials


def split_partial(partial: Partial, limit: int) -> list[bytes]:
    """The partial serialised in pieces of at most about ``limit`` bytes (Kafka's record limit).

    Windows are spread over pieces (a sample window too large alone is split by rows); the
    source offsets, slices, labels and watermarks travel in the last piece, so a replayed
    piece is recognised as applied and stage 2 closes windows only after all pieces.
    """
    data = orjson.dumps(partial)
    if len(data) <= limit or not partial.get("windows"):
        return [data]
    pieces: list[bytes] = []
    head: dict[str, Any] = {"v": partial["v"], "kind": partial["kind"], "model_id": partial["model_id"]}
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
