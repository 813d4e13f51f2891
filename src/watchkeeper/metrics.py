"""Prometheus metrics of the worker (served on ``/metrics``, see :mod:`watchkeeper.metrics_server`).

Label values come from the configuration (model ids, column names, attribute names,
metric names) or from fixed sets (statuses, dead-letter reason kinds), never from input
data, with one exception: fairness **group names** are values of the events' attributes.
They are exported only when ``group_labels`` (setting ``metrics_group_labels``) is above 0,
at most that many distinct groups per model and attribute, the rest folded into
``__other__``; with 0 the per-group gauges stay empty (the disparities have no group label).

Once the worker hands its stages over (:meth:`WorkerMetrics.watch_stages`), the registry also
exports each stage's assigned partitions and per-partition consumer lag (asked of the broker
when scraped), and the process's ``/readyz`` check is set (:mod:`watchkeeper.metrics_server`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watchkeeper.metrics_server import readiness
from watchkeeper.monitor.drift import DriftReport
from watchkeeper.monitor.label_windows import LabelReport

if TYPE_CHECKING:
    from watchkeeper.config import Settings
    from watchkeeper.monitor.runtime import MonitorRuntime

__all__ = ["OTHER_GROUP", "ConsumingStage", "IngestStage", "WorkerMetrics", "consumer_lag", "stage1_not_ready"]

OTHER_GROUP = "__other__"


class ConsumingStage(Protocol):
    """What the metrics read of a worker stage (:class:`watchkeeper.stream.kafka.TransactionalStage`).

    Never its consumer: a call on it from another thread waits until the stage's poll returns,
    which a busy stage may not let happen for seconds."""

    name: str
    settings: Settings
    assignment: set[tuple[str, int]]


class IngestStage(ConsumingStage, Protocol):
    """Stage 1 (:class:`watchkeeper.stream.ingest.Ingester`): also which prediction partitions it read to the end."""

    caught_up: set[int]


def consumer_lag(
    probe: Consumer, partitions: Sequence[tuple[str, int]], timeout: float = 2.0
) -> dict[tuple[str, int], int]:
    """Records of each partition that its group has not committed yet: the high watermark minus the
    group's committed offset, both asked of the broker through ``probe`` (a consumer with the group's
    id that never joins it). Partitions without a committed offset are left out; so is everything
    when the broker does not answer within ``timeout`` seconds."""
    if not partitions:
        return {}
    try:
        lags: dict[tuple[str, int], int] = {}
        for committed in probe.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout):
            if committed.offset < 0:
                continue
            place = TopicPartition(committed.topic, committed.partition)
            _, high = probe.get_watermark_offsets(place, timeout=timeout)
            lags[(committed.topic, committed.partition)] = max(0, high - committed.offset)
        return lags
    except KafkaException:
        return {}


def stage1_not_ready(stage1: IngestStage, runtime: MonitorRuntime, max_windows: int, now: float) -> str | None:
    """Why stage 1 is not caught up, or None: each assigned predictions partition must be read to
    its end, or the newest event read from it be at most ``max_windows`` windows old (the shortest
    ``window.size`` of the models)."""
    window = min((model.window.size for model in runtime.models.values()), default=0.0)
    topic = stage1.settings.topic_predictions
    for name, partition in sorted(tuple(stage1.assignment)):
        if name != topic or partition in stage1.caught_up:
            continue
        source = f"{topic}:{partition}"  # as stage 1 names its prediction sources
        newest = max((t for (_, s), t in tuple(runtime.watermarks.items()) if s == source), default=None)
        if newest is not None and now - newest <= max_windows * window:
            continue
        read = "nothing read yet" if newest is None else f"its newest event read is {now - newest:.0f} s old"
        return f"stage1 is behind on {topic}[{partition}]: {read} (limit {max_windows} windows of {window:g} s)"
    return None


class _StageCollector(Collector):
    """Assigned partitions and consumer lag of the watched stages, read at scrape time (the lag
    from the broker, through one probe consumer per stage's group, made on the first scrape)."""

    def __init__(self) -> None:
        self.stages: Sequence[ConsumingStage] = ()
        self._probes: dict[str, Consumer] = {}
        self._lock = threading.Lock()  # one scrape at a time asks the broker

    def _probe(self, stage: ConsumingStage) -> Consumer:
        probe = self._probes.get(stage.name)
        if probe is None:
            settings = stage.settings
            group = f"{settings.app_id}-{stage.name}"  # the stage's group (stream/kafka.py)
            probe = Consumer({**settings.kafka_client_config(), "group.id": group, "enable.auto.commit": False})
            self._probes[stage.name] = probe
        return probe

    def collect(self) -> Iterator[Metric]:
        assigned = GaugeMetricFamily(
            "watchkeeper_partitions_assigned", "Input partitions assigned to this process's stage", labels=["stage"]
        )
        lag = GaugeMetricFamily(
            "watchkeeper_consumer_lag",
            "Records of an assigned input partition not yet committed by the stage (high watermark - committed)",
            labels=["stage", "topic", "partition"],
        )
        with self._lock:
            for stage in self.stages:
                places = sorted(tuple(stage.assignment))
                assigned.add_metric([stage.name], len(places))
                for (topic, partition), records in consumer_lag(self._probe(stage), places).items():
                    lag.add_metric([stage.name, topic, str(partition)], records)
        yield assigned
        yield lag


class WorkerMetrics:
    """All worker metrics on one registry (a fresh registry per worker keeps tests isolated).

    ``group_labels``: how many fairness group names (input data) to export per model and
    attribute; 0 exports none.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, group_labels: int = 0) -> None:
        if group_labels < 0:
            raise ValueError(f"group_labels: {group_labels}: expected 0 (none) or a positive cap")
        self.registry = registry or CollectorRegistry()
        self.group_labels = group_labels
        self._groups: dict[tuple[str, str], set[str]] = {}
        self._gauges: list[tuple[Gauge, tuple[str, ...]]] = []
        r = self.registry
        self.events = Counter(
            "watchkeeper_events", "Prediction events read by stage 1", ["model_id", "outcome"], registry=r
        )
        self.deadletter = Counter(
            "watchkeeper_deadletter", "Inputs sent to the dead-letter topic", ["topic", "reason"], registry=r
        )
        self.decoded = Counter(
            "watchkeeper_decoded_records",
            "Prediction records stage 1 decoded, by decoder: native (features read straight into columns) "
            "or generic (a batch with a record the native reader does not take: the same results, slower)",
            ["decoder"],
            registry=r,
        )
        self.partials = Counter("watchkeeper_partials", "Partials processed by stage 2", ["kind"], registry=r)
        self.duplicates = Counter(
            "watchkeeper_partials_duplicate", "Partials skipped as already applied", ["model_id"], registry=r
        )
        self.windows = Counter("watchkeeper_windows_closed", "Windows closed", ["model_id"], registry=r)
        self.window_events = self._gauge("watchkeeper_window_events", "Events in the last closed window", ["model_id"])
        self.window_end = self._gauge(
            "watchkeeper_window_end_timestamp_seconds", "End of the last closed window", ["model_id"]
        )
        self.window_size = self._gauge(
            "watchkeeper_window_size_seconds", "Length of the last closed window (window.size)", ["model_id"]
        )
        self.late_events = self._gauge(
            "watchkeeper_late_events", "Events that arrived after their window closed", ["model_id"]
        )
        labels = ["model_id", "column"]
        self.psi = self._gauge("watchkeeper_drift_psi", "Population stability index", labels)
        self.js = self._gauge("watchkeeper_drift_jensen_shannon", "Jensen-Shannon distance (base 2)", labels)
        self.p_adjusted = self._gauge(
            "watchkeeper_drift_p_value_adjusted", "Chi-square p-value, multiplicity-adjusted", labels
        )
        self.ks = self._gauge("watchkeeper_drift_ks", "Kolmogorov-Smirnov D on the reference grid", labels)
        self.drifted = self._gauge("watchkeeper_drift_detected", "1 when the double gate fired", labels)
        self.missing_rate = self._gauge("watchkeeper_missing_rate", "Share of missing values", labels)
        self.unseen_rate = self._gauge("watchkeeper_unseen_rate", "Share of unseen categories", labels)
        self.out_of_range = self._gauge("watchkeeper_out_of_range_rate", "Share outside the reference range", labels)
        self.invalid_rate = self._gauge(
            "watchkeeper_invalid_rate", "Share of values of the wrong type (not numbers in a numeric column)", labels
        )
        self.ignored = Counter(
            "watchkeeper_ignored",
            "Values stage 1 did not monitor, by reason (each reason logged once per model and process)",
            ["model_id", "reason"],
            registry=r,
        )
        self.alerts = Counter(
            "watchkeeper_alerts", "Alert transitions published", ["model_id", "monitor", "status"], registry=r
        )
        self.triggers = Counter(
            "watchkeeper_retraining_triggers", "Retraining triggers published", ["model_id", "rule"], registry=r
        )
        self.outcomes = Counter("watchkeeper_outcomes", "Outcome events by join result", ["status"], registry=r)
        self.accuracy = self._gauge(
            "watchkeeper_accuracy_metric", "Accuracy metrics of the newest evaluated window", ["model_id", "metric"]
        )
        self.coverage = self._gauge("watchkeeper_label_coverage", "Labelled share of predictions", ["model_id"])
        self.label_delay = self._gauge(
            "watchkeeper_label_delay_seconds", "Label delay quantiles", ["model_id", "quantile"]
        )
        self.fairness_rate = self._gauge(
            "watchkeeper_fairness_group_rate", "Per-group rates", ["model_id", "attribute", "group", "metric"]
        )
        self.fairness_disparity = self._gauge(
            "watchkeeper_fairness_disparity",
            "Disparities (differences); groups=sufficient (alerting) or all (Fairlearn's definition)",
            ["model_id", "attribute", "metric", "groups"],
        )
        self.fairness_sufficient = self._gauge(
            "watchkeeper_fairness_group_sufficient",
            "1 when the group has the minimum labelled support, 0 = insufficient data",
            ["model_id", "attribute", "group"],
        )
        self.label_window_end = self._gauge(
            "watchkeeper_label_window_end_timestamp_seconds",
            "End (event time) of the label window the accuracy or fairness gauges describe",
            ["model_id", "monitor"],
        )
        self.estimated = self._gauge(
            "watchkeeper_estimated_metric",
            "Label-free estimate (CBPE, calibrated binary models) of the newest window",
            ["model_id", "metric"],
        )
        self._newest_label_window: dict[str, float] = {}
        self._newest_estimate: dict[str, float] = {}
        self._fairness_shown: dict[str, set[tuple[Gauge, tuple[str, ...]]]] = {}
        self.references = Counter(
            "watchkeeper_references_learned", "Reference profiles learned", ["model_id"], registry=r
        )
        self.state_record_bytes = Gauge(
            "watchkeeper_state_record_max_bytes", "Largest stage-2 state record this process wrote", registry=r
        )
        self._stages = _StageCollector()
        r.register(self._stages)

    def watch_stages(
        self,
        stage1: IngestStage,
        stage2: ConsumingStage,
        runtime: MonitorRuntime,
        max_windows: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Export the stages' assigned partitions and consumer lag, and answer ``/readyz`` from now
        on: ready when both stages have partitions and stage 1 is caught up (:func:`stage1_not_ready`)."""
        self._stages.stages = (stage1, stage2)

        def not_ready() -> str | None:
            for stage in (stage1, stage2):
                if not stage.assignment:
                    return f"{stage.name} has no partitions assigned"
            return stage1_not_ready(stage1, runtime, max_windows, clock())

        readiness(self.registry).set_check(not_ready)

    def _group_label(self, model: str, attribute: str, group: str) -> str | None:
        """The label value for a group: its name while under the cap, then ``__other__``;
        None when group names are not exported."""
        if self.group_labels == 0:
            return None
        seen = self._groups.setdefault((model, attribute), set())
        if group in seen:
            return group
        if len(seen) >= self.group_labels:
            return OTHER_GROUP
        seen.add(group)
        return group

    def _gauge(self, name: str, documentation: str, labelnames: list[str]) -> Gauge:
        """A gauge on this registry that :meth:`forget_model` knows about (create every gauge here)."""
        gauge = Gauge(name, documentation, labelnames, registry=self.registry)
        self._gauges.append((gauge, tuple(labelnames)))
        return gauge

    def forget_model(self, model_id: str) -> None:
        """Drop every gauge series of ``model_id`` (all label combinations) from this registry.

        Call it when this worker stops owning the model (its partition moved to another
        process in a rebalance), so that only the owner exports the model's gauges. Counters
        are kept: they are per-process totals of what this process did, which stay true (and
        monotonic) after the model moves; sum them across workers.
        """
        for gauge, labelnames in self._gauges:
            if "model_id" not in labelnames:
                continue
            series = [
                tuple(sample.labels[name] for name in labelnames)
                for family in gauge.collect()
                for sample in family.samples
                if sample.labels.get("model_id") == model_id
            ]
            for labelvalues in series:
                gauge.remove(*labelvalues)
        self._newest_label_window.pop(model_id, None)
        self._newest_estimate.pop(model_id, None)
        self._fairness_shown.pop(model_id, None)
        for key in [key for key in self._groups if key[0] == model_id]:
            del self._groups[key]

    def observe_drift(self, report: DriftReport, late_events: int) -> None:
        model = report.model_id
        self.windows.labels(model).inc()
        self.window_events.labels(model).set(report.n)
        self.window_end.labels(model).set(report.window_end)
        self.window_size.labels(model).set(report.window_end - report.window_start)
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
                (self.invalid_rate, column.invalid_rate),
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
                self.estimated.labels(model, metric).set(_defined(value))
        if not report.ready or report.window_start < self._newest_label_window.get(model, float("-inf")):
            return
        self._newest_label_window[model] = report.window_start
        self.coverage.labels(model).set(_defined(report.coverage))
        for quantile, value in (("0.5", report.delay_p50), ("0.9", report.delay_p90), ("0.99", report.delay_p99)):
            self.label_delay.labels(model, quantile).set(_defined(value))
        if report.accuracy is not None:
            self.label_window_end.labels(model, "accuracy").set(report.window_end)
            for metric, value in report.accuracy.metrics.items():
                self.accuracy.labels(model, metric).set(_defined(value))
        if report.fairness.get("attributes"):
            self.label_window_end.labels(model, "fairness").set(report.window_end)
            self._fairness_gauges(model, report.fairness["attributes"])

    def _fairness_gauges(self, model: str, attributes: dict[str, Any]) -> None:
        """Per-group rates and disparities of the newest window; groups it lacks are removed."""
        shown: set[tuple[Gauge, tuple[str, ...]]] = set()

        def put(gauge: Gauge, labels: tuple[str, ...], value: object) -> None:
            gauge.labels(*labels).set(_defined(value))
            shown.add((gauge, labels))

        for attribute, data in attributes.items():
            for group, rates in data.get("groups", {}).items():
                label = self._group_label(model, attribute, group)
                if label is None:
                    continue
                put(self.fairness_sufficient, (model, attribute, label), float(bool(rates.get("sufficient"))))
                for metric in ("selection_rate", "tpr", "fpr", "precision", "accuracy"):
                    rate = rates.get(metric) or {}
                    value = rate.get("value") if rate.get("n") else None  # 0 of 0 is undefined, not 0
                    put(self.fairness_rate, (model, attribute, label, metric), value)
            for metric, disparity in data.get("disparities", {}).items():
                for groups, key in (("sufficient", "difference"), ("all", "difference_all_groups")):
                    put(self.fairness_disparity, (model, attribute, metric, groups), disparity.get(key))
        for gauge, labels in self._fairness_shown.get(model, set()) - shown:
            gauge.remove(*labels)
        self._fairness_shown[model] = shown


def _defined(value: object) -> float:
    """A gauge value: the number, or NaN where the newest window leaves it undefined (never an older value)."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan
