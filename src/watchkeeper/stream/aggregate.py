"""Stage 2 of the worker: partials in, alerts, retraining triggers and state records out.

Partials are keyed by model id, so each model's partials arrive, in order, at the one
process that owns their partition. Each batch of partials goes through the pure monitors
(:meth:`MonitorRuntime.stage2`); the alerts, triggers, learned profiles and the state
records that changed (:meth:`ModelMonitor.take_changes`) commit in one transaction with
the partials' offsets. State records of the models of partials partition *q* live in
partition *q* of ``<app_id>-state-changelog`` (key ``<model_id>\\x1f<record>``) and are
restored from it when *q* is assigned. Gauges of a model are exported only by the process
that owns it: set on assignment as windows close, removed on revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson
from confluent_kafka import Message

from watchkeeper.config import Settings
from watchkeeper.events import alert_cloudevent, trigger_cloudevent
from watchkeeper.logs import log_context
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.monitor.engine import (
    AlertRaised,
    LabelsEvaluated,
    Output,
    ProfileLearned,
    TriggerRaised,
    WindowClosed,
)
from watchkeeper.monitor.output_records import dumps, evaluation_record
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.stream.kafka import Outgoing, TransactionalStage, read_changelog, where

__all__ = ["Aggregator", "SEPARATOR"]

log = logging.getLogger("watchkeeper.worker")

SEPARATOR = b"\x1f"


class Aggregator(TransactionalStage):
    """Stage 2 over the partials topic."""

    name = "stage2"

    def __init__(self, settings: Settings, runtime: MonitorRuntime, metrics: WorkerMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.changelog = f"{settings.app_id}-state-changelog"
        self.owned: dict[str, int] = {}  # model id → partials partition
        self.largest_record = 0
        super().__init__(
            settings,
            [settings.topic_partials],
            # learning a wide reference can take minutes of CPU between two polls
            {"max.poll.interval.ms": int(settings.transaction_timeout * 1000)},
        )

    # -- partitions ---------------------------------------------------------------------
    def _restore(self, partition: int) -> None:
        records: dict[str, dict[str, bytes]] = {}
        for key, value in read_changelog(self.settings, self.changelog, partition).items():
            model, _, name = key.partition(SEPARATOR)
            records.setdefault(model.decode(), {})[name.decode()] = value
        for model_id, model_records in records.items():
            if model_id in self.runtime.models:
                self.runtime.monitor(model_id, model_records)
                self.owned[model_id] = partition

    def _forget(self, partition: int) -> None:
        for model_id in [m for m, p in self.owned.items() if p == partition]:
            del self.owned[model_id]
            self.runtime.monitors.pop(model_id, None)
            self.metrics.forget_model(model_id)

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        for _, partition in partitions:
            self._restore(partition)

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        for _, partition in partitions:
            self._forget(partition)

    def reset(self) -> None:
        for partition in sorted({p for _, p in self.assignment}):
            self._forget(partition)
            self._restore(partition)

    # -- batches ------------------------------------------------------------------------
    def process(self, messages: Sequence[Message]) -> list[Outgoing]:
        outgoing: list[Outgoing] = []
        touched: dict[str, int] = {}
        for message in messages:
            topic, partition, offset = where(message)
            try:
                partial = orjson.loads(message.value() or b"")
                model_id = partial["model_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                place = {"topic": topic, "partition": partition, "offset": offset}
                log.error("skipping an unreadable partial at offset %s: %s", offset, exc, extra=place)
                continue
            if model_id not in self.runtime.models:
                continue
            self.owned[model_id] = touched[model_id] = partition
            with log_context(model=model_id, topic=topic, partition=partition):  # the model's alert lines
                monitor = self.runtime.monitor(model_id)
                skipped, late = monitor.duplicates_skipped, monitor.late_events
                outputs = monitor.apply(partial)  # a learned profile reaches stage 1 once committed (references)
                self.metrics.partials.labels(partial["kind"]).inc()
                if monitor.duplicates_skipped > skipped:
                    self.metrics.duplicates.labels(model_id).inc()
                if monitor.late_events > late:  # (also set as windows close)
                    self.metrics.late_events.labels(model_id).set(monitor.late_events)
                outgoing += self._publish(outputs, model_id, monitor.late_events)
        for model_id, partition in touched.items():
            for name, value in self.runtime.monitors[model_id].take_changes().items():
                key = model_id.encode() + SEPARATOR + name.encode()
                if value is not None:
                    self.largest_record = max(self.largest_record, len(value))
                    self.metrics.state_record_bytes.set(self.largest_record)
                outgoing.append((self.changelog, key, value, partition, None))
        return outgoing

    def _evaluation(self, output: WindowClosed | LabelsEvaluated, model_id: str) -> Outgoing:
        record = evaluation_record(output)
        assert record is not None
        return (self.settings.topic_windows, model_id.encode(), dumps(record), None, None)

    def _publish(self, outputs: list[Output], model_id: str, late_events: int) -> list[Outgoing]:
        settings = self.settings
        outgoing: list[Outgoing] = []
        for output in outputs:
            if isinstance(output, AlertRaised):
                alert = output.alert
                envelope = alert_cloudevent(alert, settings.source)
                outgoing.append(
                    (settings.topic_alerts, alert.fingerprint.encode(), envelope.model_dump_json().encode(), None, None)
                )
                self.metrics.alerts.labels(model_id, alert.monitor, alert.status).inc()
                log.warning("alert %s %s %s", alert.status, alert.model_id, alert.summary)
            elif isinstance(output, WindowClosed):
                self.metrics.observe_drift(output.report, late_events)
                outgoing.append(self._evaluation(output, model_id))
            elif isinstance(output, TriggerRaised):
                trigger = output.trigger
                envelope_t = trigger_cloudevent(trigger, settings.source, trigger.data_window.end)
                outgoing.append(
                    (settings.topic_retraining, model_id.encode(), envelope_t.model_dump_json().encode(), None, None)
                )
                self.metrics.triggers.labels(model_id, trigger.reason.rule).inc()
                log.warning("retraining requested for %s by %s (%s)", model_id, trigger.reason.rule, trigger.id)
            elif isinstance(output, LabelsEvaluated):
                self.metrics.observe_labels(output.report)
                outgoing.append(self._evaluation(output, model_id))
            elif isinstance(output, ProfileLearned):
                profile = orjson.dumps(output.profile.to_dict())
                outgoing.append((settings.topic_references, model_id.encode(), profile, None, None))
                self.metrics.references.labels(model_id).inc()
                log.warning("reference learned for %s from %d events", model_id, output.profile.n_rows)
        return outgoing
