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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

__all__ = ["ColumnBinner", "build_partials", "monitored_columns", "window_starts", "extract_columns"]

PARTIAL_VERSION = 1
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


def _versions(events: Sequence[dict[str, Any]], windows: np.ndarray, n_windows: int) -> list[dict[str, int]]:
    names = np.asarray([str(e.get("model_version") or "unversioned") for e in events], dtype=object)
    out: list[dict[str, int]] = [{} for _ in range(n_windows)]
    pairs, counts = np.unique(np.stack([windows.astype(str), names]).T.astype(str), axis=0, return_counts=True)
    for (w, name), count in zip(pairs, counts, strict=True):
        out[int(w)][str(name)] = int(count)
    return out


def _bucket_rows(binner: ColumnBinner, matrix: np.ndarray, numeric: np.ndarray) -> dict[str, list[list[float]]]:
    """CUSUM bucket statistics completed by this batch, per column (events in batch order)."""
    rows: dict[str, list[list[float]]] = {}
    for name, detector in binner.detectors.items():
        if name in binner.numeric:
            values: Any = numeric[:, binner.numeric.index(name)]
        else:
            values = matrix[:, len(binner.numeric) + binner.categorical.index(name)]
        statistics, _ = detector.bucket_statistics(values)
        if len(statistics):
            rows[name] = statistics.tolist()
    return rows


def _stats_windows(
    binner: ColumnBinner, events: Sequence[dict[str, Any]], times: np.ndarray, size: float
) -> tuple[list[dict[str, Any]], dict[str, list[list[float]]]]:
    starts, windows = _window_groups(times, size)
    n_windows = len(starts)
    matrix = extract_columns(events, list(binner.numeric) + list(binner.categorical))
    numeric, invalid = as_float(matrix[:, : len(binner.numeric)])
    pca = binner.profile.multivariate
    if pca is not None and MULTIVARIATE in binner.numeric and set(pca.names) <= set(binner.numeric):
        inputs = [binner.numeric.index(name) for name in pca.names]
        numeric[:, binner.numeric.index(MULTIVARIATE)] = pca.errors(numeric[:, inputs])
        invalid[:, binner.numeric.index(MULTIVARIATE)] = False
    sequential = _bucket_rows(binner, matrix, numeric)
    fine = binner.fine_counts(numeric, windows, n_windows)
    invalid_counts = np.zeros((n_windows, len(binner.numeric)), dtype=np.int64)
    np.add.at(invalid_counts, windows, invalid.astype(np.int64))
    versions = _versions(events, windows, n_windows)
    result = []
    for w, start in enumerate(starts):
        mask = windows == w
        entry: dict[str, Any] = {
            "start": float(start),
            "n": int(mask.sum()),
            "t_max": float(times[mask].max()),
            "versions": versions[w],
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


def _sample_windows(
    columns: Mapping[str, str], events: Sequence[dict[str, Any]], times: np.ndarray, size: float
) -> list[dict[str, Any]]:
    """Raw column values, for a model that learns its reference from its first events."""
    names = list(columns)
    matrix = extract_columns(events, names)
    starts, windows = _window_groups(times, size)
    result = []
    for w, start in enumerate(starts):
        mask = windows == w
        rows: dict[str, list[Any]] = {}
        for j, name in enumerate(names):
            column = matrix[mask, j]
            if columns[name] == "numeric":
                values, _ = as_float(column)
                rows[name] = [None if np.isnan(v) else float(v) for v in values]
            else:
                rows[name] = [None if v is None else str(v) for v in column]
        result.append({"start": float(start), "n": int(mask.sum()), "t_max": float(times[mask].max()), "rows": rows})
    return result


def build_partials(
    events: Sequence[dict[str, Any]],
    times: np.ndarray,
    sources: Sequence[str],
    offsets: np.ndarray,
    models: Mapping[str, tuple[ModelConfig, ColumnBinner | None]],
    sent_at: float,
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
        watermarks: dict[str, float] = {}
        for source in sorted(set(source_arr[mask].tolist())):
            in_source = mask & (source_arr == source)
            ranges[source] = [int(offsets[in_source].min()), int(offsets[in_source].max())]
            watermarks[source] = float(times[in_source].max())
        size = config.window.size
        sequential: dict[str, list[list[float]]] = {}
        if binner is None:
            kind, windows = "sample", _sample_windows(monitored_columns(config), selected, times[mask], size)
            profile_id = None
        else:
            kind = "stats"
            windows, sequential = _stats_windows(binner, selected, times[mask], size)
            profile_id = binner.profile.reference_id
        partials.append(
            {
                "v": PARTIAL_VERSION,
                "kind": kind,
                "model_id": model_id,
                "profile_id": profile_id,
                "source": ranges,
                "watermarks": watermarks,
                "sent_at": sent_at,
                "windows": windows,
                "sequential": sequential,
            }
        )
    return partials
