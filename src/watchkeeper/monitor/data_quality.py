"""Data-quality verdicts: missing, invalid, unseen-category and out-of-range values.

The drift tests compare the shape of the values that are there (vocabulary columns,
in-range bins), so a column that suddenly goes missing, starts sending text instead of
numbers, or a new category, can stay "undrifted". Missing (null) and invalid (a value of
the wrong type, e.g. text in a numeric column) are separate rates, named so in the
alerts. Each of these rates gets its own verdict per closed window: it breaches when it
is at least ``min_increase`` above the reference rate and the one-sided binomial
z-statistic against the reference rate, (p − p0) / sqrt(p0 (1 − p0) / n), is at least
``z``. The reference rate p0 is floored at 1 / n_reference (a value outside the reference
range or vocabulary, or invalid, has at least that probability under no change; a
reference holds no invalid values). A rate clears when it is back below
p0 + min_increase / 2.
"""

from __future__ import annotations

import math

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.drift import ColumnDrift, DriftReport
from watchkeeper.monitor.profile import CategoricalProfile, NumericProfile, ReferenceProfile

__all__ = ["data_quality_evaluations"]

_DESCRIPTIONS = {
    "missing_rate": "missing (null) values",
    "invalid_rate": "invalid values (not numbers, e.g. text, in a numeric column)",
    "unseen_rate": "categories never seen in the reference",
    "out_of_range_rate": "values outside the reference range",
}


def _reference_rates(column: NumericProfile | CategoricalProfile) -> dict[str, float]:
    if isinstance(column, NumericProfile):
        present = column.n
        total = present + column.missing
        return {
            "missing_rate": column.missing / total if total else 0.0,
            "invalid_rate": 0.0,  # (a reference holds numbers and nulls only)
            "out_of_range_rate": (int(column.counts[0]) + int(column.counts[-1])) / present if present else 0.0,
        }
    total = column.n
    missing = int(column.counts[-1])
    return {
        "missing_rate": missing / total if total else 0.0,
        "unseen_rate": int(column.counts[-2]) / (total - missing) if total > missing else 0.0,
    }


def _verdict(
    config: ModelConfig, report: DriftReport, column: ColumnDrift, metric: str, observed: float, p0: float, n: int
) -> Evaluation:
    quality = config.data_quality
    z = (observed - p0) / math.sqrt(p0 * (1 - p0) / n) if n else 0.0
    threshold = p0 + quality.min_increase
    breached = observed >= threshold and z >= quality.z
    what = _DESCRIPTIONS[metric]
    return Evaluation(
        model_id=config.model_id,
        model_version=report.model_version,
        monitor="data_quality",
        metric=metric,
        subject=column.column,
        observed=observed,
        threshold=threshold,
        comparator=">=",
        breached=breached,
        cleared=observed < p0 + quality.min_increase / 2,
        window_start=report.window_start,
        window_end=report.window_end,
        n=n,
        severity=quality.severity,
        summary=f"{config.model_id}: {column.column} has {observed:.1%} {what} (reference {p0:.2%})",
        description=(
            f"Share of {what} in '{column.column}': {observed:.4f} over {n} events against {p0:.4f} in the "
            f"reference; one-sided binomial z = {z:.1f} (alerts at >= {quality.z} and an increase of at least "
            f"{quality.min_increase})."
        ),
        details={"reference_rate": p0, "z": z, "min_increase": quality.min_increase},
    )


def data_quality_evaluations(config: ModelConfig, report: DriftReport, profile: ReferenceProfile) -> list[Evaluation]:
    """One verdict per column and applicable rate of a closed window."""
    if not config.data_quality.enabled or not report.evaluated:
        return []
    evaluations = []
    for column in report.columns:
        reference = profile.columns.get(column.column)
        if reference is None or reference.n == 0:
            continue
        floor = 1.0 / reference.n
        rates = _reference_rates(reference)
        for metric, p0 in rates.items():
            observed = getattr(column, metric)
            if observed is None or math.isnan(observed):
                continue
            n = column.n
            if metric in ("out_of_range_rate", "unseen_rate"):  # rates among the values present
                invalid = 0.0 if math.isnan(column.invalid_rate) else column.invalid_rate
                n = round(column.n * (1 - column.missing_rate - invalid))
            evaluations.append(_verdict(config, report, column, metric, observed, min(max(p0, floor), 1 - floor), n))
    return evaluations
