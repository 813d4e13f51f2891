"""Stage 1 of the worker: batches of predictions and outcomes in, partials and dead letters out.

A batch of up to ``batch_size`` records from the predictions and outcomes topics goes to
the pure core as it is (:meth:`MonitorRuntime.stage1`); the partials (keyed by model id),
the dead letters, the outcome join's changelog records and the input offsets commit in
one transaction. The join store of input partition *p* is changelogged to partition *p*
of ``<app_id>-join-changelog`` and restored from it when *p* is assigned, so the join
survives kill -9 and rebalances exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from confluent_kafka import KafkaError, Message

from watchkeeper.config import ModelConfig, Settings
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.monitor.join import JoinStore, MemoryJoinStore
from watchkeeper.monitor.partials import split_partial
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.monitor.stage1_result import Ignored
from watchkeeper.monitor.wire import Partial
from watchkeeper.stream.kafka import (
    MAX_MESSAGE_BYTES,
    OFFSET,
    PARTITION,
    TOPIC,
    VALUE,
    Outgoing,
    TransactionalStage,
    read_changelog,
    records_only,
    where,
)

__all__ = ["IgnoredReporter", "Ingester", "RecordingStore", "dead_letter", "ignored_message"]

log = logging.getLogger("watchkeeper.worker")

_DEADLETTER_VALUE_BYTES = 512 * 1024  # a dead-letter copy keeps at most this much of the value

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
    "outcome join",
)


def reason_kind(reason: str) -> str:
    """A bounded label for a rejection reason: the top-level field it names (never input text)."""
    head = reason.split(":", 1)[0].split(".", 1)[0]
    return head if head in _REASON_KINDS else "other"


def dead_letter(
    topic: str, value: bytes | None, reason: str, source: tuple[str, int, int] | None, deadletter_topic: str
) -> Outgoing:
    """A dead-letter record: the original bytes (truncated past 512 KiB, said in a header) and why."""
    data = value or b""
    headers: list[tuple[str, str | bytes | None]] = [("reason", reason.encode())]
    if source is not None:
        headers += [
            ("source.topic", source[0].encode()),
            ("source.partition", str(source[1]).encode()),
            ("source.offset", str(source[2]).encode()),
        ]
    else:
        headers.append(("source.topic", topic.encode()))
    if len(data) > _DEADLETTER_VALUE_BYTES:
        headers.append(("truncated.original_bytes", str(len(data)).encode()))
        data = data[:_DEADLETTER_VALUE_BYTES]
    return (deadletter_topic, topic.encode(), data, None, headers)


def ignored_message(item: Ignored, config: ModelConfig) -> str:
    """The log line of values stage 1 did not monitor: what, which, and what to do about it."""
    names = ", ".join(map(repr, item.names))
    regression = config.task == "regression"
    what = {
        "not_in_profile": f"columns {names} of the models config are not in its reference profile: not monitored; "
        "rebuild the profile with them (watchkeeper profile build)",
        "unknown_feature": f"events carry features {names} that are not in the models config: ignored; "
        "add them to the model's features to monitor them",
        "invalid": f"numeric columns {names} received values that are not numbers (e.g. text): counted as invalid "
        "(not missing) and left out of the drift statistics",
        "unknown_label": f"outcomes without a value (label {names})"
        if regression
        else f"outcome labels {names} are not among its classes {config.classes}",
        "unusable_prediction": "joined outcomes whose prediction has no value"
        if regression
        else f"joined outcomes whose prediction's label ({names}) is not among its classes {config.classes} "
        "and has no score",
    }[item.reason]
    if item.reason in ("unknown_label", "unusable_prediction"):
        what += ": left out of accuracy and fairness"
    return (
        f"model {item.model_id!r}: {what} ({item.count} in this batch; counted in "
        f'watchkeeper_ignored_total{{reason="{item.reason}"}}; logged once)'
    )


class IgnoredReporter:
    """Counts what stage 1 did not monitor (``watchkeeper_ignored_total{model_id, reason}``) and logs
    each reason once per model and process: nothing the worker leaves out is left out silently."""

    def __init__(self, metrics: WorkerMetrics, models: Mapping[str, ModelConfig]) -> None:
        self.metrics = metrics
        self.models = models
        self.logged: set[tuple[str, str]] = set()

    def report(self, ignored: Iterable[Ignored]) -> None:
        for item in ignored:
            self.metrics.ignored.labels(item.model_id, item.reason).inc(item.count)
            if (item.model_id, item.reason) not in self.logged:
                self.logged.add((item.model_id, item.reason))
                log.warning(ignored_message(item, self.models[item.model_id]), extra={"model": item.model_id})


class RecordingStore:
    """A join store that remembers every change since the last :meth:`drain` (for the changelog)."""

    def __init__(self, inner: JoinStore) -> None:
        self.inner = inner
        self.changes: dict[bytes, bytes | None] = {}

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.get_many(keys)

    def write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> None:
        self.inner.write(puts, deletes)
        self.changes.update(dict.fromkeys(deletes))  # (deletes, then puts: a key in both ends up put, as in the store)
        self.changes.update(puts)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.items()

    def __len__(self) -> int:
        return len(self.inner)

    def clear(self) -> None:
        self.inner.clear()
        self.changes.clear()

    def drain(self) -> dict[bytes, bytes | None]:
        changes, self.changes = self.changes, {}
        return changes


class Ingester(TransactionalStage):
    """Stage 1 over the predictions and outcomes topics."""

    name = "stage1"

    def __init__(self, settings: Settings, runtime: MonitorRuntime, metrics: WorkerMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.ignored = IgnoredReporter(metrics, runtime.models)
        self.stores: dict[int, RecordingStore] = {}
        self.caught_up: set[int] = set()  # prediction partitions read to their end
        self.outcomes_caught_up: set[int] = set()  # outcome partitions read to their end
        self.changelog = f"{settings.app_id}-join-changelog"
        super().__init__(
            settings,
            [settings.topic_predictions, settings.topic_outcomes],
            {"enable.partition.eof": True, "fetch.min.bytes": 1, "max.poll.interval.ms": 600_000},
        )

    # -- partitions ---------------------------------------------------------------------
    def _source(self, partition: int) -> str:
        return f"{self.settings.topic_predictions}:{partition}"

    def _new_store(self, partition: int) -> JoinStore:
        if self.settings.join_store == "rocksdb://":
            from watchkeeper.stream.join_store import RocksJoinStore

            return RocksJoinStore(Path(self.settings.data_dir) / "join" / str(partition))
        return MemoryJoinStore()

    def _open(self, partition: int) -> None:
        inner = self._new_store(partition)
        inner.clear()
        restored = read_changelog(self.settings, self.changelog, partition)
        if restored:
            inner.write(restored, ())
        store = RecordingStore(inner)
        self.stores[partition] = store
        self.runtime.open_partition(partition, store, self._source(partition), time.time())

    def _close(self, partition: int) -> None:
        self.runtime.close_partition(partition, self._source(partition))
        store = self.stores.pop(partition, None)
        close = getattr(store.inner, "close", None) if store is not None else None
        if close is not None:
            close()
        self.caught_up.discard(partition)
        self.outcomes_caught_up.discard(partition)

    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        self.runtime.partitions = self.settings.input_partitions
        for partition in sorted({p for _, p in partitions} - set(self.stores)):
            self._open(partition)

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        owned = {p for _, p in self.assignment}
        for partition in sorted({p for _, p in partitions} - owned):
            self._close(partition)

    def reset(self) -> None:
        for partition in sorted(self.stores):
            self._close(partition)
            self._open(partition)

    def observe(self, messages: Sequence[Message], errors: Sequence[KafkaError | None]) -> None:
        settings = self.settings
        kinds = {settings.topic_predictions: self.caught_up, settings.topic_outcomes: self.outcomes_caught_up}
        if records_only(errors):  # records only (the usual batch): none of their partitions is at its end
            for topic, partition in set(zip(map(TOPIC, messages), map(PARTITION, messages), strict=True)):
                if topic in kinds:
                    kinds[topic].discard(partition)
            return
        for message, error in zip(messages, errors, strict=True):  # in order: a partition's last event decides
            partition, caught_up = message.partition(), kinds.get(message.topic() or "")
            if partition is None or caught_up is None:
                continue
            if error is None:
                caught_up.discard(partition)
            elif error.code() == KafkaError._PARTITION_EOF:
                caught_up.add(partition)

    # -- batches ------------------------------------------------------------------------
    def process(self, messages: Sequence[Message]) -> list[Outgoing]:
        settings = self.settings
        raw = list(map(VALUE, messages))
        topics = list(map(TOPIC, messages))
        places = list(zip(topics, map(PARTITION, messages), strict=True))
        names = {place: f"{place[0]}:{place[1]}" for place in set(places)}  # "topic:partition", once each
        sources = list(map(names.__getitem__, places))
        offsets = list(map(OFFSET, messages))
        is_outcome = list(map(settings.topic_outcomes.__eq__, topics))
        result = self.runtime.stage1(raw, sources, offsets, is_outcome=is_outcome, wall_clock=time.time())
        outgoing: list[Outgoing] = []
        failed = [(r.index, r.reason, reason_kind(r.reason)) for r in result.rejected]
        failed += [(o.index, o.reason, "outcome join") for o in result.overflow]
        models = self.runtime.models
        failed += [(x.index, x.reason, "late") for x in result.late if models[x.model_id].window.dead_letter_late]
        for index, reason, kind in failed:
            place = where(messages[index])
            outgoing.append(dead_letter(place[0], raw[index], reason, place, settings.topic_deadletter))
            self.metrics.deadletter.labels(place[0], kind).inc()
        for payload in result.expired_outcomes:
            reason = "outcome: no prediction with this prediction_id arrived within the label horizon"
            outgoing.append(dead_letter(settings.topic_outcomes, payload, reason, None, settings.topic_deadletter))
            self.metrics.deadletter.labels(settings.topic_outcomes, "expired").inc()
        for status, count in result.outcomes.items():
            self.metrics.outcomes.labels(status).inc(count)
        for decoder, count in result.decoded.items():
            self.metrics.decoded.labels(decoder).inc(count)
        self.ignored.report(result.ignored)
        for partial in result.partials:
            n = sum(window["n"] for window in partial["windows"])
            if n:
                self.metrics.events.labels(partial["model_id"], "accepted").inc(n)
            if partial.get("late"):
                self.metrics.events.labels(partial["model_id"], "late").inc(partial["late"])
        if result.rejected:
            self.metrics.events.labels("-", "rejected").inc(len(result.rejected))
        outgoing += self._partials(result.partials)
        outgoing += self.idle()
        return outgoing + self._changelog()

    def idle(self) -> list[Outgoing]:
        caught_up = {self._source(p) for p in self.caught_up}
        return self._partials(self.runtime.heartbeat(time.time(), caught_up, self.outcomes_caught_up))

    def _partials(self, partials: Sequence[Partial]) -> list[Outgoing]:
        topic = self.settings.topic_partials
        return [
            (topic, str(partial["model_id"]).encode(), piece, None, None)
            for partial in partials
            for piece in split_partial(partial, MAX_MESSAGE_BYTES // 2)
        ]

    def _changelog(self) -> list[Outgoing]:
        return [
            (self.changelog, key, value, partition, None)
            for partition, store in sorted(self.stores.items())
            for key, value in store.drain().items()
        ]
