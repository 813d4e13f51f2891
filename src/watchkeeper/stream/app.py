"""The Faust application: the only module that knows Faust.

Stage 1 (agent ``stage1``, partitioned like the input) validates batches of prediction
events and publishes one partial aggregate per model and batch to the partials topic,
keyed by model id; bad input goes to the dead-letter topic with its reason. Stage 2
(agent ``stage2``, partitioned by model id) merges partials into per-model state kept in
a changelogged table, closes windows, evaluates the monitors and publishes alerts.
A timer sends a *tick* per model through the partials topic, so that stage 2 closes
idle windows from inside its own partition (Faust tables change only within a stream).

With ``processing_guarantee=exactly_once`` (the default) partial, alert and changelog
writes commit atomically with the input offsets (Kafka transactions); on top of that,
stage 2 skips partials whose source offsets it has already applied.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer

from watchkeeper.config import Settings, WatchkeeperConfig
from watchkeeper.events import alert_cloudevent, trigger_cloudevent
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.monitor.engine import (
    AlertRaised,
    LabelsEvaluated,
    Output,
    ProfileLearned,
    TriggerRaised,
    WindowClosed,
)
from watchkeeper.monitor.parse import Rejected
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime

__all__ = ["create_app"]

log = logging.getLogger("watchkeeper.worker")


class _JsonTable(MutableMapping[str, Any]):
    """A table seen as str keys and JSON values (label windows live one key each)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        raw = self.table[key.encode()]
        return orjson.loads(raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.table.get(key.encode())
        return orjson.loads(raw) if raw is not None else default

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode()] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (key.decode() for key in self.table)

    def __len__(self) -> int:
        return len(self.table)


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism or "PLAIN",
            ssl_context=context if settings.security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


def _aiokafka_security(settings: Settings) -> dict[str, Any]:
    if settings.security_protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        if settings.sasl_password:
            options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


_REASON_KINDS = (
    "invalid JSON",
    "event",
    "event_id",
    "model_id",
    "prediction_id",
    "model_version",
    "timestamp",
    "features",
    "attributes",
    "prediction",
    "metadata",
    "label",
    "value",
)


def _reason_kind(reason: str) -> str:
    """A bounded label for a rejection reason: the top-level field it names (never input text)."""
    head = reason.split(":", 1)[0].split(".", 1)[0]
    return head if head in _REASON_KINDS else "other"


def create_app(
    settings: Settings,
    config: WatchkeeperConfig,
    metrics: WorkerMetrics | None = None,
    processing_guarantee: str = "exactly_once",
) -> faust.App:
    metrics = metrics or WorkerMetrics()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        processing_guarantee=processing_guarantee,
        topic_partitions=settings.input_partitions,
        datadir=str(settings.data_dir),
        web_enabled=False,
        producer_acks=-1,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        stream_wait_empty=False,
        # With transactions Faust commits through the transaction manager and never marks
        # partitions as committed, so its livelock check would log false "has not committed"
        # errors every few seconds; it stays on for at_least_once.
        broker_commit_livelock_soft_timeout=86400.0 if processing_guarantee == "exactly_once" else 300.0,
    )
    inputs = app.topic(settings.topic_predictions, settings.topic_outcomes, partitions=settings.input_partitions)
    partials = app.topic(settings.topic_partials, partitions=settings.input_partitions)
    alerts = app.topic(settings.topic_alerts, partitions=1)
    retraining = app.topic(settings.topic_retraining, partitions=1)
    deadletter = app.topic(settings.topic_deadletter, partitions=1)
    references = app.topic(settings.topic_references, partitions=1, compacting=True)
    state = app.Table("model-state", partitions=settings.input_partitions, key_type=bytes, value_type=bytes)
    # The join stores, keyed by prediction_id like the input topics; use_partitioner puts each
    # key's changelog record in the key's own partition although stage 1 handles batches.
    join_tables = tuple(
        app.Table(
            name,
            partitions=settings.input_partitions,
            key_type=bytes,
            value_type=bytes,
            use_partitioner=True,
            store=settings.join_store,
        )
        for name in ("join-predictions", "join-outcomes", "join-done")
    )
    runtime = MonitorRuntime(config, join_stores=join_tables)  # type: ignore[arg-type]
    index_stale = [True]

    @app.on_rebalance_complete.connect
    async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
        index_stale[0] = True  # the join stores now hold other partitions' keys

    async def send_deadletter(raw: Sequence[bytes | None], events: Sequence[Any], rejected: list[Rejected]) -> None:
        for item in rejected:
            message = events[item.index].message
            await deadletter.send(
                key=message.topic.encode(),
                value=raw[item.index] or b"",
                headers=[
                    ("reason", item.reason.encode()),
                    ("source.topic", message.topic.encode()),
                    ("source.partition", str(message.partition).encode()),
                    ("source.offset", str(message.offset).encode()),
                ],
            )
            metrics.deadletter.labels(message.topic, _reason_kind(item.reason)).inc()

    @app.agent(inputs)
    async def stage1(stream: faust.StreamT[bytes]) -> None:
        async for events in stream.take_events(settings.batch_size, within=settings.flush_interval):
            if index_stale[0]:
                runtime.joiner.rebuild_index()
                index_stale[0] = False
            raw = [event.value for event in events]
            sources = [f"{e.message.topic}:{e.message.partition}" for e in events]
            offsets = [e.message.offset for e in events]
            is_outcome = [e.message.topic == settings.topic_outcomes for e in events]
            now = time.time()
            result = runtime.stage1(raw, sources, offsets, now=now, is_outcome=is_outcome, wall_clock=now)
            await send_deadletter(raw, events, result.rejected)
            for payload in result.expired_outcomes:
                reason = "outcome: no prediction with this prediction_id arrived within the label horizon"
                await deadletter.send(
                    key=settings.topic_outcomes.encode(),
                    value=payload,
                    headers=[("reason", reason.encode()), ("source.topic", settings.topic_outcomes.encode())],
                )
                metrics.deadletter.labels(settings.topic_outcomes, "expired").inc()
            for status, count in result.outcomes.items():
                metrics.outcomes.labels(status).inc(count)
            for partial in result.partials:
                n = sum(window["n"] for window in partial["windows"])
                if n:
                    metrics.events.labels(partial["model_id"], "accepted").inc(n)
                await partials.send(key=partial["model_id"].encode(), value=orjson.dumps(partial))
            if result.rejected:
                metrics.events.labels("-", "rejected").inc(len(result.rejected))

    async def publish(outputs: list[Output], model_id: str, monitor_late: int) -> None:
        for output in outputs:
            if isinstance(output, AlertRaised):
                alert = output.alert
                envelope = alert_cloudevent(alert, settings.source)
                await alerts.send(key=alert.fingerprint.encode(), value=envelope.model_dump_json().encode())
                metrics.alerts.labels(model_id, alert.monitor, alert.status).inc()
                log.warning("alert %s %s %s", alert.status, alert.model_id, alert.summary)
            elif isinstance(output, WindowClosed):
                metrics.observe_drift(output.report, monitor_late)
            elif isinstance(output, TriggerRaised):
                trigger = output.trigger
                envelope = trigger_cloudevent(trigger, settings.source, trigger.data_window.end)
                await retraining.send(key=model_id.encode(), value=envelope.model_dump_json().encode())
                metrics.triggers.labels(model_id, trigger.reason.rule).inc()
                log.warning("retraining requested for %s by %s (%s)", model_id, trigger.reason.rule, trigger.id)
            elif isinstance(output, LabelsEvaluated):
                metrics.observe_labels(output.report)
            elif isinstance(output, ProfileLearned):
                await references.send(key=model_id.encode(), value=orjson.dumps(output.profile.to_dict()))
                metrics.references.labels(model_id).inc()
                log.warning("reference learned for %s from %d events", model_id, output.profile.n_rows)

    written: dict[str, bytes] = {}  # the state this process last wrote, per model

    @app.agent(partials)
    async def stage2(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            partial = orjson.loads(value)
            model_id = partial.get("model_id")
            if model_id not in runtime.models:
                continue
            stored = state.get(model_id.encode())
            if stored is not None and stored == written.get(model_id) and model_id in runtime.monitors:
                monitor = runtime.monitors[model_id]  # the table holds what this process wrote: reuse it
            else:  # first partial here, or the state came from another worker (rebalance, restore)
                monitor = runtime.monitor(model_id, orjson.loads(stored) if stored else {}, _JsonTable(state))
            skipped = monitor.duplicates_skipped
            if partial["kind"] == "tick":
                outputs = monitor.tick(now=float(partial["sent_at"]))
            else:
                outputs = runtime.stage2(partial, now=time.time())
            metrics.partials.labels(partial["kind"]).inc()
            if monitor.duplicates_skipped > skipped:
                metrics.duplicates.labels(model_id).inc()
            written[model_id] = orjson.dumps(monitor.state_dict())
            state[model_id.encode()] = written[model_id]
            await publish(outputs, model_id, monitor.late_events)

    @app.timer(interval=max(settings.flush_interval, 1.0))
    async def tick() -> None:
        now = time.time()
        for model_id in runtime.models:
            tick_partial = {
                "v": 1,
                "kind": "tick",
                "model_id": model_id,
                "source": {},
                "sent_at": now,
                "windows": [],
            }
            await partials.send(key=model_id.encode(), value=orjson.dumps(tick_partial))

    @app.task
    async def follow_references() -> None:
        """Adopt every profile on the references topic (all partitions, from the start)."""
        consumer = AIOKafkaConsumer(
            settings.topic_references,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            **_aiokafka_security(settings),
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        try:
                            runtime.adopt_profile(ReferenceProfile.from_dict(orjson.loads(record.value)))
                        except (ValueError, KeyError, orjson.JSONDecodeError) as exc:
                            log.error("ignoring invalid reference profile at offset %s: %s", record.offset, exc)
        except asyncio.CancelledError:
            raise
        finally:
            await consumer.stop()

    app.watchkeeper_runtime = runtime  # type: ignore[attr-defined]
    app.watchkeeper_metrics = metrics  # type: ignore[attr-defined]
    return app
