"""Reference profiles: what "normal" looks like for each monitored column of a model.

A numeric column keeps a fine quantile grid of the reference (``fine_bins`` bins between
the reference min and max, plus underflow and overflow) and a grouping of those fine bins
into ``bins`` coarse bins of roughly equal reference mass. Stage 1 bins each event once,
on the fine grid; the coarse histogram (PSI, Jensen–Shannon, χ²) is a sum of fine bins
and the fine grid itself serves KS and Wasserstein. A categorical column keeps its
capped vocabulary (:class:`~watchkeeper.stats.categorical.CategoryEncoder`).

Bins come from the reference only and are never re-fitted on current data, so partial
aggregates from any number of workers merge exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np

from watchkeeper.events import deterministic_id
from watchkeeper.stats.categorical import CategoryEncoder
from watchkeeper.stats.histogram import bin_counts, quantile_edges
from watchkeeper.stats.multivariate import PCAReconstruction
from watchkeeper.stats.sequential import CalibratedCusum, feature_arl_target

__all__ = [
    "calibrated_detector",
    "CategoricalProfile",
    "NumericProfile",
    "ReferenceProfile",
    "PREDICTION_LABEL",
    "PREDICTION_SCORE",
    "MULTIVARIATE",
    "build_column_profile",
]

PREDICTION_SCORE = "prediction.score"
PREDICTION_LABEL = "prediction.label"
MULTIVARIATE = "multivariate.pca_error"  # derived column: PCA reconstruction error of the numeric features
FINE_BINS = 100


@dataclass(frozen=True)
class NumericProfile:
    """Fine reference grid, its counts and the fine→coarse bin grouping."""

    edges: np.ndarray
    counts: np.ndarray
    coarse_index: np.ndarray
    missing: int
    mean: float
    std: float
    sequential: dict[str, Any] | None = None

    kind = "numeric"

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def n_coarse(self) -> int:
        return int(self.coarse_index.max()) + 1

    def coarse(self, fine_counts: np.ndarray) -> np.ndarray:
        """Sum fine-bin counts (underflow, bins, overflow) into the coarse bins."""
        return np.bincount(self.coarse_index, weights=fine_counts, minlength=self.n_coarse).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "coarse_index": self.coarse_index.tolist(),
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
            "sequential": self.sequential,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        return cls(
            edges=np.asarray(data["edges"], dtype=np.float64),
            counts=np.asarray(data["counts"], dtype=np.int64),
            coarse_index=np.asarray(data["coarse_index"], dtype=np.int64),
            missing=int(data["missing"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            sequential=data.get("sequential"),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    """Capped reference vocabulary and its counts laid out ``[vocab..., UNSEEN, MISSING]``."""

    encoder: CategoryEncoder
    counts: np.ndarray
    sequential: dict[str, Any] | None = None

    kind = "categorical"

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoder": self.encoder.to_dict(),
            "counts": self.counts.tolist(),
            "sequential": self.sequential,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        return cls(
            encoder=CategoryEncoder.from_dict(data["encoder"]),
            counts=np.asarray(data["counts"], dtype=np.int64),
            sequential=data.get("sequential"),
        )


ColumnProfile = NumericProfile | CategoricalProfile


def calibrated_detector(column: ColumnProfile) -> dict[str, Any] | None:
    """The column's calibrated CUSUM state, or None when none could be calibrated."""
    state = column.sequential
    return state if state is not None and "unavailable" not in state else None


def _coarse_grouping(fine_counts: np.ndarray, bins: int) -> np.ndarray:
    """Group consecutive fine bins into ``bins`` groups of about equal reference mass.

    Underflow joins the first group and overflow the last, so out-of-range values count
    in the nearest bin for the χ² test (their rate is reported on its own) — except for a
    column that was constant in the reference (one interior bin): there, below, at and
    above the constant are three groups, or a column that starts to vary could never drift.
    """
    interior = fine_counts[1:-1].astype(np.float64)
    if interior.size == 1:
        return np.asarray([0, 1, 2], dtype=np.int64)
    cumulative = np.cumsum(interior) / max(interior.sum(), 1.0)
    group = np.minimum((cumulative * bins - 1e-9).astype(np.int64), bins - 1)
    group = np.maximum.accumulate(np.maximum(group, 0))
    _, dense = np.unique(group, return_inverse=True)
    return np.concatenate([[0], dense, [dense[-1] if dense.size else 0]]).astype(np.int64)


def _calibrated(
    values: Sequence[Any] | np.ndarray,
    kind: Literal["numeric", "categorical"],
    arl_events: float | None,
    bucket_size: int,
    cap: int,
) -> dict[str, Any] | None:
    """A calibrated CUSUM for the column (thresholds from the reference itself), or None."""
    if arl_events is None:
        return None
    try:
        detector = CalibratedCusum.from_reference(
            values, kind, target_arl_events=arl_events, bucket_size=bucket_size, max_categories=min(cap, 20)
        )
    except ValueError as exc:  # e.g. a near-constant column: no calibrated detector, window tests only
        return {"unavailable": str(exc)}
    return detector.to_dict()


def build_column_profile(
    values: Sequence[Any] | np.ndarray,
    kind: str,
    bins: int = 10,
    max_categories: int = 50,
    sequential_arl: float | None = None,
    bucket_size: int = 50,
) -> ColumnProfile:
    """Profile one reference column; ``kind`` is 'numeric' or 'categorical'.

    With ``sequential_arl`` (expected events between false alarms of this column's
    detector) a CUSUM is calibrated on the reference and stored with the profile.
    """
    if kind == "categorical":
        encoder = CategoryEncoder.from_reference(list(values), max_categories=max_categories)
        return CategoricalProfile(
            encoder=encoder,
            counts=encoder.counts(list(values)),
            sequential=_calibrated(list(values), "categorical", sequential_arl, bucket_size, max_categories),
        )
    numbers = np.asarray(values, dtype=np.float64)
    finite = numbers[np.isfinite(numbers)]
    if finite.size == 0:
        raise ValueError("reference column has no numeric value; expected at least one finite number")
    edges = quantile_edges(finite, FINE_BINS)
    counts, _ = bin_counts(numbers, edges)
    return NumericProfile(
        edges=edges,
        counts=counts,
        coarse_index=_coarse_grouping(counts, bins),
        missing=int(np.isnan(numbers).sum()),
        mean=float(finite.mean()),
        std=float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        sequential=_calibrated(finite, "numeric", sequential_arl, bucket_size, max_categories),
    )


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference of one model: a profile per feature (and per prediction column)."""

    model_id: str
    n_rows: int
    columns: dict[str, ColumnProfile]
    source: str = "file"
    metadata: dict[str, Any] = field(default_factory=dict)
    multivariate: PCAReconstruction | None = None

    @cached_property
    def reference_id(self) -> str:
        """Content hash: the same reference data gives the same id (computed once)."""
        return deterministic_id(self.model_id, self.n_rows, sorted(self.to_dict()["columns"].items()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "watchkeeper.profile/v1",
            "model_id": self.model_id,
            "n_rows": self.n_rows,
            "source": self.source,
            "metadata": self.metadata,
            "columns": {name: column.to_dict() for name, column in self.columns.items()},
            "multivariate": self.multivariate.to_dict() if self.multivariate else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        if data.get("format") != "watchkeeper.profile/v1":
            raise ValueError(f"format={data.get('format')!r}: expected 'watchkeeper.profile/v1'")
        columns: dict[str, ColumnProfile] = {}
        for name, column in data["columns"].items():
            if column["kind"] == "numeric":
                columns[name] = NumericProfile.from_dict(column)
            else:
                columns[name] = CategoricalProfile.from_dict(column)
        return cls(
            model_id=str(data["model_id"]),
            n_rows=int(data["n_rows"]),
            columns=columns,
            source=str(data.get("source", "file")),
            metadata=dict(data.get("metadata", {})),
            multivariate=PCAReconstruction.from_dict(data["multivariate"]) if data.get("multivariate") else None,
        )

    @classmethod
    def build(
        cls,
        model_id: str,
        columns: Mapping[str, tuple[str, Sequence[Any] | np.ndarray]],
        bins: int = 10,
        max_categories: int | Mapping[str, int] = 50,
        source: str = "file",
        metadata: Mapping[str, Any] | None = None,
        sequential_arl_events: float | None = None,
        bucket_size: int = 50,
        multivariate: bool = False,
    ) -> ReferenceProfile:
        """Profile every column given as ``{name: (kind, values)}``.

        ``max_categories`` caps categorical vocabularies, for all columns or per column.
        ``sequential_arl_events`` (model level, e.g. 1e6) calibrates a CUSUM per column
        with the budget split evenly across the columns (Bonferroni). ``multivariate`` adds
        the derived column :data:`MULTIVARIATE` (PCA reconstruction error of the numeric
        features, at least two of them).
        """

        def cap(name: str) -> int:
            return max_categories if isinstance(max_categories, int) else max_categories.get(name, 50)

        n_rows = max((len(values) for _, values in columns.values()), default=0)
        present = {name: kv for name, kv in columns.items() if len(kv[1]) > 0}
        pca = None
        numeric = [n for n, (k, v) in present.items() if k == "numeric" and not n.startswith("prediction.")]
        if multivariate and len(numeric) >= 2 and len({len(present[n][1]) for n in numeric}) == 1:
            matrix = np.column_stack([np.asarray(present[n][1], dtype=np.float64) for n in numeric])
            pca = PCAReconstruction.fit(matrix, numeric)
            present[MULTIVARIATE] = ("numeric", pca.errors(matrix))
        arl = feature_arl_target(sequential_arl_events, len(present)) if sequential_arl_events and present else None
        profiles = {
            name: build_column_profile(
                values, kind, bins=bins, max_categories=cap(name), sequential_arl=arl, bucket_size=bucket_size
            )
            for name, (kind, values) in present.items()
        }
        return cls(model_id, n_rows, profiles, source=source, metadata=dict(metadata or {}), multivariate=pca)
