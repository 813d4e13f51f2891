"""Binning a batch's numeric columns against a model's reference grids, all columns at once.

:class:`ColumnBinner` holds a model's grids (from its :class:`ReferenceProfile`) and its
stage-1 CUSUM halves, and counts the values of all numeric columns and windows with one
branch-free table search (:class:`_CellSearch`) and one ``bincount``. It lives apart from
the reading of columns (:mod:`watchkeeper.monitor.columns`) and from the partials built
from the counts (:mod:`watchkeeper.monitor.partials`): it is the part that depends on the
reference only, built once per profile and reused for every batch.

The multivariate column (the PCA reconstruction error of the numeric features) is derived
here too (:func:`derives_multivariate`, :func:`add_multivariate`): it is computed from the
binner's columns rather than read from the events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from watchkeeper.monitor.profile import (
    MULTIVARIATE,
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    calibrated_detector,
)
from watchkeeper.stats.sequential import CalibratedCusum

if TYPE_CHECKING:
    from watchkeeper.monitor.columns import ColumnValues

__all__ = ["ColumnBinner", "add_multivariate", "derives_multivariate"]


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


def derives_multivariate(binner: ColumnBinner) -> bool:
    """Whether the binner's :data:`MULTIVARIATE` column is computed from the numeric features."""
    pca = binner.profile.multivariate
    return pca is not None and MULTIVARIATE in binner.numeric and set(pca.names) <= set(binner.numeric)


def add_multivariate(binner: ColumnBinner, columns: ColumnValues) -> None:
    """Fill the :data:`MULTIVARIATE` column with the PCA reconstruction error of the numeric features."""
    pca = binner.profile.multivariate
    if pca is None or not derives_multivariate(binner):
        return
    inputs = [binner.numeric.index(name) for name in pca.names]
    column = binner.numeric.index(MULTIVARIATE)
    columns.numeric[:, column] = pca.errors(np.ascontiguousarray(columns.numeric)[:, inputs])  # (same layout as ever)
    columns.invalid[:, column] = False
