"""Stage 1: turn a batch of validated prediction events into mergeable partial aggregates.

One partial per model per batch, holding one entry per event-time window the batch
touched: fine-grid bin counts for numeric columns, vocabulary counts for categorical
ones, the event count, the latest event time and the model versions seen. Models still
learning their reference get raw column samples instead. Everything is computed with a
handful of numpy calls per batch (one comparison cube and one ``bincount`` for all
numeric columns and windows at once), never per event per feature.

Partials are plain JSON-able dicts (see docs/architecture.md, "partials").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from watchkeeper.stats.sequential import CalibratedCusum

__all__ = [
    "ColumnBinner",
    "build_partials",
    "extract_columns",
    "monitored_columns",
    "split_partial",
    "slice_indices",
    "stats_from_samples",
    "stats_windows",
    "window_starts",
]

PARTIAL_VERSION = 2
_SAMPLE_TEXT = 200  # longest category text kept in a learning sample
_CUBE_CELLS = 4_000_000  # bound on the temporary comparison cube per chunk


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

    def fine_counts(self, values: np.ndarray, windows: np.ndarray, n_windows: int) -> np.ndarray:
        """Counts (n_windows, F, E_max + 2): [underflow, bins..., overflow, (padding), missing].

        Equals :func:`watchkeeper.stats.histogram.bin_counts` per column: a value v falls
        in bin #edges ≤ v, except that the reference max belongs to the last interior bin.
        """
        n_columns, width = self.edges.shape
        slots = width + 2
        out = np.zeros(n_windows * n_columns * slots, dtype=np.int64)
        if values.size == 0 or n_columns == 0:
            return out.reshape(n_windows, n_columns, slots)
        chunk = max(1, _CUBE_CELLS // max(1, n_columns * width))
        last_edge = self.edges[np.arange(n_columns), self.lengths - 1]
        for start in range(0, values.shape[0], chunk):
            block = values[start : start + chunk]
            index = (block[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
            index -= block == last_edge[None, :]
            index[np.isnan(block)] = slots - 1
            flat = (windows[start : start + chunk, None] * n_columns + np.arange(n_columns)) * slots + index
            out += np.bincount(flat.ravel(), minlength=out.size)
        return out.reshape(n_windows, n_columns, slots)


def _window_groups(times: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    starts = window_starts(times, size)
    unique, inverse = np.unique(starts, return_inverse=True)
    return unique, inverse.astype(np.int64)


def _versions(names: np.ndarray, windows: np.ndarray, n_windows: int) -> list[dict[str, int]]:
    out: list[dict[str, int]] = [{} for _ in range(n_windows)]
    pairs, counts = np.unique(np.stack([windows.astype(str), names.astype(str)]).T, axis=0, return_counts=True)
    for (w, name), count in zip(pairs, counts, strict=True):
        out[int(w)][str(name)] = int(count)
    return out


def _version_names(events: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.asarray([str(e.get("model_version") or "unversioned") for e in events], dtype=object)


def slice_indices(times: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Index of the CUSUM event-time slice of each time (``window.size / drift.slices_per_window`` long)."""
    return np.floor(times * (config.drift.slices_per_window / config.window.size)).astype(np.int64)


def _slice_rows(
    binner: ColumnBinner, matrix: np.ndarray, numeric: np.ndarray, slices: np.ndarray
) -> dict[str, dict[str, list[int]]]:
    """CUSUM sufficient statistics per event-time slice and column (exact integers)."""
    if not binner.detectors or slices.size == 0:
        return {}
    unique, slots = np.unique(slices, return_inverse=True)
    rows: dict[str, dict[str, list[int]]] = {str(int(k)): {} for k in unique}
    for name, detector in binner.detectors.items():
        if name in binner.numeric:
            values: Any = numeric[:, binner.numeric.index(name)]
        else:
            values = matrix[:, len(binner.numeric) + binner.categorical.index(name)]
        sums = detector.slice_sums(values, slots, len(unique))
        for j, key in enumerate(rows):
            rows[key][name] = sums[j].tolist()
    return rows


def stats_windows(
    binner: ColumnBinner, matrix: np.ndarray, versions: np.ndarray, times: np.ndarray, config: ModelConfig
) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[int]]]]:
    """Window entries and CUSUM slice sums of a column matrix (binner's numeric then categorical columns)."""
    starts, windows = _window_groups(times, config.window.size)
    n_windows = len(starts)
    numeric, invalid = as_float(matrix[:, : len(binner.numeric)])
    pca = binner.profile.multivariate
    if pca is not None and MULTIVARIATE in binner.numeric and set(pca.names) <= set(binner.numeric):
        inputs = [binner.numeric.index(name) for name in pca.names]
        numeric[:, binner.numeric.index(MULTIVARIATE)] = pca.errors(numeric[:, inputs])
        invalid[:, binner.numeric.index(MULTIVARIATE)] = False
    sequential = _slice_rows(binner, matrix, numeric, slice_indices(times, config))
    fine = binner.fine_counts(numeric, windows, n_windows)
    invalid_counts = np.zeros((n_windows, len(binner.numeric)), dtype=np.int64)
    np.add.at(invalid_counts, windows, invalid.astype(np.int64))
    version_counts = _versions(versions, windows, n_windows)
    result = []
    for w, start in enumerate(starts):
        mask = windows == w
        entry: dict[str, Any] = {
            "start": float(start),
            "n": int(mask.sum()),
            "t_max": float(times[mask].max()),
            "versions": version_counts[w],
            "numeric": {},
            "categorical": {},
            "invalid": {},
        }
        for j, name in enumerate(binner.numeric):
            length = int(binner.lengths[j])
            counts = fine[w, j]
            entry["numeric"][name] = [*counts[: length + 1].tolist(), int(counts[-1])]
            if invalid_counts[w, j]:
                entry["invalid"][name] = int(invalid_counts[w, j])
        for k, name in enumerate(binner.categorical):
            column = binner.profile.columns[name]
            assert isinstance(column, CategoricalProfile)
            values = matrix[mask, len(binner.numeric) + k]
            entry["categorical"][name] = column.encoder.counts(values).tolist()
        result.append(entry)
    return result, sequential


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
    versions = _version_names(events)
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
) -> list[dict[str, Any]]:
    """One partial per model present in the batch.

    ``sources[i]`` names the input partition of event i ("topic:partition") and
    ``offsets[i]`` its offset, so stage 2 can skip what it has already applied.
    """
    if not events:
        return []
    model_ids = np.asarray([e["model_id"] for e in events], dtype=object)
    source_arr = np.asarray(sources, dtype=object)
    partials = []
    for model_id in sorted(set(model_ids.tolist())):
        config, binner = models[model_id]
        mask = model_ids == model_id
        selected = [e for e, keep in zip(events, mask, strict=True) if keep]
        ranges: dict[str, list[int]] = {}
        for source in sorted(set(source_arr[mask].tolist())):
            in_source = mask & (source_arr == source)
            ranges[source] = [int(offsets[in_source].min()), int(offsets[in_source].max())]
        slices: dict[str, dict[str, list[int]]] = {}
        if binner is None:
            kind = "sample"
            windows = _sample_windows(monitored_columns(config), selected, times[mask], config.window.size)
            profile_id = None
        else:
            kind = "stats"
            matrix = extract_columns(selected, list(binner.numeric) + list(binner.categorical))
            windows, slices = stats_windows(binner, matrix, _version_names(selected), times[mask], config)
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
