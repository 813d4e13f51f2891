"""Prometheus metrics of the worker (served on ``/metrics``).

Label values come from the configuration (model ids, column names), never straight from
input, except through :func:`capped`, which keeps at most ``limit`` distinct values per
label set and folds the rest into ``__other__``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from watchkeeper.monitor.drift import DriftReport
from watchkeeper.monitor.label_windows import LabelReport

__all__ = ["WorkerMetrics", "capped"]

_SEEN: dict[str, set[str]] = {}


def capped(family: str, value: str, limit: int = 50) -> str:
    """``value`` while fewer than ``limit`` distinct values were seen for ``family``."""
    seen = _SEEN.setdefault(family, set())
    if value in seen:
        return value
    if len(seen) >= limit:
        return "__other__"
    seen.add(value)
    return value


class WorkerMetrics:
    """All worker metrics on one registry (a fresh registry per worker keeps tests isolated)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "watchkeeper_events", "Prediction events read by stage 1", ["model_id", "outcome"], registry=r
        )
        self.deadletter = Counter(
            "watchkeeper_deadletter", "Inputs sent to the dead-letter topic", ["topic", "reason"], registry=r
        )
        self.partials = Counter("watchkeeper_partials", "Partials processed by stage 2", ["kind"], registry=r)
        self.duplicates = Counter(
            "watchkeeper_partials_duplicate", "Partials skipped as already applied", ["model_id"], registry=r
        )
        self.windows = Counter("watchkeeper_windows_closed", "Windows closed", ["model_id"], registry=r)
        self.window_events = Gauge(
            "watchkeeper_window_events", "Events in the last closed window", ["model_id"], registry=r
        )
        self.window_end = Gauge(
            "watchkeeper_window_end_timestamp_seconds",
            "End of the last closed window",
            ["model_id"],
            registry=r,
        )
        self.late_events = Gauge(
            "watchkeeper_late_events",
            "Events that arrived after their window closed",
            ["model_id"],
            registry=r,
        )
        labels = ["model_id", "column"]
        self.psi = Gauge("watchkeeper_drift_psi", "Population stability index", labels, registry=r)
        self.js = Gauge("watchkeeper_drift_jensen_shannon", "Jensen-Shannon distance (base 2)", labels, registry=r)
        self.p_adjusted = Gauge(
            "watchkeeper_drift_p_value_adjusted",
            "Chi-square p-value, multiplicity-adjusted",
            labels,
            registry=r,
        )
        self.ks = Gauge("watchkeeper_drift_ks", "Kolmogorov-Smirnov D on the reference grid", labels, registry=r)
        self.drifted = Gauge("watchkeeper_drift_detected", "1 when the double gate fired", labels, registry=r)
        self.missing_rate = Gauge("watchkeeper_missing_rate", "Share of missing values", labels, registry=r)
        self.unseen_rate = Gauge("watchkeeper_unseen_rate", "Share of unseen categories", labels, registry=r)
        self.out_of_range = Gauge(
            "watchkeeper_out_of_range_rate", "Share outside the reference range", labels, registry=r
        )
        self.alerts = Counter(
            "watchkeeper_alerts", "Alert transitions published", ["model_id", "monitor", "status"], registry=r
        )
        self.triggers = Counter(
            "watchkeeper_retraining_triggers", "Retraining triggers published", ["model_id", "rule"], registry=r
        )
        self.outcomes = Counter("watchkeeper_outcomes", "Outcome events by join result", ["status"], registry=r)
        self.accuracy = Gauge(
            "watchkeeper_accuracy_metric",
            "Accuracy metrics of the newest evaluated window",
            ["model_id", "metric"],
            registry=r,
        )
        self.coverage = Gauge("watchkeeper_label_coverage", "Labelled share of predictions", ["model_id"], registry=r)
        self.label_delay = Gauge(
            "watchkeeper_label_delay_seconds", "Label delay quantiles", ["model_id", "quantile"], registry=r
        )
        self.fairness_rate = Gauge(
            "watchkeeper_fairness_group_rate",
            "Per-group rates",
            ["model_id", "attribute", "group", "metric"],
            registry=r,
        )
        self.fairness_disparity = Gauge(
            "watchkeeper_fairness_disparity",
            "Disparities (differences); groups=sufficient (alerting) or all (Fairlearn's definition)",
            ["model_id", "attribute", "metric", "groups"],
            registry=r,
        )
        self.fairness_sufficient = Gauge(
            "watchkeeper_fairness_group_sufficient",
            "1 when the group has the minimum labelled support, 0 = insufficient data",
            ["model_id", "attribute", "group"],
            registry=r,
        )
        self.estimated = Gauge(
            "watchkeeper_estimated_metric",
            "Label-free estimate (CBPE, calibrated binary models) of the newest window",
            ["model_id", "metric"],
            registry=r,
        )
        self._newest_label_window: dict[str, float] = {}
        self._newest_estimate: dict[str, float] = {}
        self.references = Counter(
            "watchkeeper_references_learned", "Reference profiles learned", ["model_id"], registry=r
        )

    def observe_drift(self, report: DriftReport, late_events: int) -> None:
        model = report.model_id
        self.windows.labels(model).inc()
        self.window_events.labels(model).set(report.n)
        self.window_end.labels(model).set(report.window_end)
        self.late_events.labels(model).set(late_events)
        for column in report.columns:
            pairs: Iterable[tuple[Gauge, float]] = (
                (self.psi, column.psi),
                (self.js, column.jensen_shannon),
                (self.p_adjusted, column.p_adjusted),
                (self.ks, column.ks),
                (self.drifted, float(column.drifted)),
                (self.missing_rate, column.missing_rate),
                (self.unseen_rate, column.unseen_rate),
                (self.out_of_range, column.out_of_range_rate),
            )
            for gauge, value in pairs:
                if not math.isnan(value):
                    gauge.labels(model, column.column).set(value)

    def observe_labels(self, report: LabelReport) -> None:
        """Gauges from the newest window with enough labels (``ready``); older windows re-evaluated
        later and windows still short of labels do not move them."""
        model = report.model_id
        if report.estimated and report.window_start >= self._newest_estimate.get(model, float("-inf")):
            self._newest_estimate[model] = report.window_start
            for metric, value in report.estimated.items():
                if value is not None:
                    self.estimated.labels(model, metric).set(value)
        if not report.ready or report.window_start < self._newest_label_window.get(model, float("-inf")):
            return
        self._newest_label_window[model] = report.window_start
        if report.coverage is not None:
            self.coverage.labels(model).set(report.coverage)
        for quantile, value in (("0.5", report.delay_p50), ("0.9", report.delay_p90), ("0.99", report.delay_p99)):
            if value is not None:
                self.label_delay.labels(model, quantile).set(value)
        if report.accuracy is not None:
            for metric, value in report.accuracy.metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.accuracy.labels(model, metric).set(value)
        for attribute, data in report.fairness.get("attributes", {}).items():
            for group, rates in data.get("groups", {}).items():
                label = capped(f"{model}|{attribute}", group)
                self.fairness_sufficient.labels(model, attribute, label).set(float(bool(rates.get("sufficient"))))
                for metric in ("selection_rate", "tpr", "fpr", "precision", "accuracy"):
                    value = (rates.get(metric) or {}).get("value")
                    if isinstance(value, int | float) and math.isfinite(value):
                        self.fairness_rate.labels(model, attribute, label, metric).set(value)
            for metric, disparity in data.get("disparities", {}).items():
                for groups, key in (("sufficient", "difference"), ("all", "difference_all_groups")):
                    value = disparity.get(key)
                    if isinstance(value, int | float) and math.isfinite(value):
                        self.fairness_disparity.labels(model, attribute, metric, groups).set(value)
