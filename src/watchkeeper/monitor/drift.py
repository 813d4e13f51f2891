"""Drift verdicts for one closed window of one model, against its reference profile.

For every monitored column: effect sizes (PSI, Jensen–Shannon, Hellinger on the coarse
bins; KS and normalised Wasserstein on the fine grid for numeric columns), a χ² test of
homogeneity with its p-value adjusted across all of the model's columns in the window
(Benjamini–Hochberg or Holm), and data-quality rates (missing, out of reference range,
unseen category, invalid: not a number in a numeric column). A column drifts only through the double gate:
adjusted p < alpha AND PSI >= min_psi (AND JS >= min_js). See docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from watchkeeper.config import DriftConfig, ModelConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from watchkeeper.monitor.window import WindowAggregate
from watchkeeper.stats.distance import (
    hellinger_distance,
    jensen_shannon_distance,
    ks_p_value,
    ks_statistic_binned,
    normalised_wasserstein,
    psi,
)
from watchkeeper.stats.hypothesis_tests import chi_square_homogeneity
from watchkeeper.stats.multiple_testing import adjust

__all__ = ["ColumnDrift", "DriftReport", "drift_evaluation", "evaluate_drift"]


@dataclass(frozen=True)
class ColumnDrift:
    """Statistics of one column in one window (NaN where not applicable)."""

    column: str
    kind: str
    n: int
    psi: float
    jensen_shannon: float
    hellinger: float
    chi2: float
    p_value: float
    p_adjusted: float
    ks: float
    ks_p_value: float
    wasserstein: float
    missing_rate: float
    out_of_range_rate: float
    unseen_rate: float
    invalid_rate: float
    invalid: int
    significant: bool
    large_effect: bool

    @property
    def drifted(self) -> bool:
        return self.significant and self.large_effect


_COLUMN_FIELDS = tuple(f.name for f in fields(ColumnDrift))  # (all scalars: no deep copy as asdict makes)


@dataclass(frozen=True)
class DriftReport:
    model_id: str
    model_version: str
    window_start: float
    window_end: float
    n: int
    evaluated: bool
    columns: list[ColumnDrift]

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "n": self.n,
            "evaluated": self.evaluated,
            "drifted": self.drifted,
            "columns": {c.column: _finite({name: getattr(c, name) for name in _COLUMN_FIELDS}) for c in self.columns},
        }


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON has no NaN: undefined statistics become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}


def _numeric(name: str, profile: NumericProfile, fine: np.ndarray, invalid: int) -> dict[str, Any]:
    """Statistics of a numeric column; ``invalid`` values (not numbers) sit in the grid's missing
    slot with the nulls, and are told apart from them here: counted as invalid, not missing."""
    counts, missing = fine[:-1], int(fine[-1]) - invalid
    n_present = int(counts.sum())
    total = n_present + missing + invalid
    reference_coarse = profile.coarse(profile.counts)
    current_coarse = profile.coarse(counts)
    test = chi_square_homogeneity(reference_coarse, current_coarse)
    ks = ks_statistic_binned(profile.counts, counts) if n_present else math.nan
    wasserstein = (
        normalised_wasserstein(profile.counts, counts, profile.edges, profile.std)
        if n_present and profile.std > 0
        else math.nan
    )
    return {
        "column": name,
        "kind": "numeric",
        "n": total,
        "psi": psi(reference_coarse, current_coarse) if n_present else math.nan,
        "jensen_shannon": jensen_shannon_distance(reference_coarse, current_coarse) if n_present else math.nan,
        "hellinger": hellinger_distance(reference_coarse, current_coarse) if n_present else math.nan,
        "chi2": test.statistic,
        "p_value": test.p_value if n_present else math.nan,
        "ks": ks,
        "ks_p_value": ks_p_value(ks, profile.n, n_present) if n_present else math.nan,
        "wasserstein": wasserstein,
        "missing_rate": missing / total if total else math.nan,
        "out_of_range_rate": (int(counts[0]) + int(counts[-1])) / n_present if n_present else math.nan,
        "unseen_rate": math.nan,
        "invalid_rate": invalid / total if total else math.nan,
        "invalid": invalid,
    }


def _categorical(name: str, profile: CategoricalProfile, counts: np.ndarray) -> dict[str, Any]:
    k = len(profile.encoder.vocabulary)
    reference, current = profile.counts[:k], counts[:k]
    total = int(counts.sum())
    known = int(current.sum())
    test = chi_square_homogeneity(reference, current)
    return {
        "column": name,
        "kind": "categorical",
        "n": total,
        "psi": psi(reference, current) if known else math.nan,
        "jensen_shannon": jensen_shannon_distance(reference, current) if known else math.nan,
        "hellinger": hellinger_distance(reference, current) if known else math.nan,
        "chi2": test.statistic,
        "p_value": test.p_value if known else math.nan,
        "ks": math.nan,
        "ks_p_value": math.nan,
        "wasserstein": math.nan,
        "missing_rate": int(counts[-1]) / total if total else math.nan,
        "out_of_range_rate": math.nan,
        "unseen_rate": int(counts[-2]) / (total - int(counts[-1])) if total > int(counts[-1]) else math.nan,
        "invalid_rate": math.nan,  # (any value is a category)
        "invalid": 0,
    }


def evaluate_drift(
    model_id: str,
    window: WindowAggregate,
    window_size: float,
    profile: ReferenceProfile,
    config: DriftConfig,
) -> DriftReport:
    """All column statistics of a closed window, with the double gate applied."""
    rows: list[dict[str, Any]] = []
    for name, fine in window.numeric.items():
        column = profile.columns.get(name)
        if isinstance(column, NumericProfile):
            rows.append(_numeric(name, column, fine, window.invalid.get(name, 0)))
    for name, counts in window.categorical.items():
        column = profile.columns.get(name)
        if isinstance(column, CategoricalProfile):
            rows.append(_categorical(name, column, counts))
    p_values = np.asarray([r["p_value"] for r in rows], dtype=np.float64)
    adjusted = adjust(p_values, config.correction) if rows else p_values
    evaluated = window.n >= config.min_count
    columns = []
    for row, p_adjusted in zip(rows, adjusted, strict=True):
        effect = row["psi"] >= config.min_psi and row["jensen_shannon"] >= config.min_js
        columns.append(
            ColumnDrift(
                **row,
                p_adjusted=float(p_adjusted),
                significant=evaluated and bool(p_adjusted < config.alpha),
                large_effect=evaluated and bool(effect),
            )
        )
    return DriftReport(
        model_id=model_id,
        model_version=window.main_version,
        window_start=window.start,
        window_end=window.start + window_size,
        n=window.n,
        evaluated=evaluated,
        columns=columns,
    )


def drift_evaluation(config: ModelConfig, report: DriftReport, column: ColumnDrift) -> Evaluation:
    """The alert verdict of one column's window tests (breach: the double gate; clear: PSI hysteresis)."""
    drift = config.drift
    clear_psi = drift.clear_psi if drift.clear_psi is not None else 0.75 * drift.min_psi
    summary = (
        f"{config.model_id}: {column.column} drifted (PSI {column.psi:.3f} >= {drift.min_psi})"
        if column.drifted
        else f"{config.model_id}: {column.column} back to reference (PSI {column.psi:.3f})"
    )
    description = (
        f"Column '{column.column}' ({column.kind}) in window of {report.n} events: PSI {column.psi:.4f}, "
        f"Jensen-Shannon {column.jensen_shannon:.4f}, chi-square p {column.p_value:.3g} "
        f"({drift.correction}-adjusted {column.p_adjusted:.3g}, alpha {drift.alpha})."
    )
    return Evaluation(
        model_id=config.model_id,
        model_version=report.model_version,
        monitor="drift",
        metric="psi",
        subject=column.column,
        observed=column.psi,
        threshold=drift.min_psi,
        comparator=">=",
        breached=column.drifted,
        cleared=column.psi < clear_psi or not column.significant,
        window_start=report.window_start,
        window_end=report.window_end,
        n=column.n,
        severity=drift.severity,
        summary=summary,
        description=description,
        details={
            "jensen_shannon": column.jensen_shannon,
            "p_value": column.p_value,
            "p_adjusted": column.p_adjusted,
            "alpha": drift.alpha,
            "correction": drift.correction,
            "ks": column.ks,
            "wasserstein": column.wasserstein,
            "missing_rate": column.missing_rate,
            "unseen_rate": column.unseen_rate,
            "out_of_range_rate": column.out_of_range_rate,
            "invalid_rate": column.invalid_rate,
        },
    )
