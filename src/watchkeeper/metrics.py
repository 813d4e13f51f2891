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
