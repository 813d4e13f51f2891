"""The consumer loop shared by all notifiers: poll, parse, deliver, dead-letter, commit.

Delivery guarantee: **at least once**. The consumer reads the alerts topic with
``isolation.level=read_committed`` (the worker writes alerts in transactions) and
``enable.auto.commit=False``; a message's offset is committed synchronously only after
every matching receiver accepted it or it was durably written to the dead-letter topic.
Messages are processed one at a time in poll order, so the order per partition (hence per
fingerprint, the Kafka key) is preserved.

Where a new consumer group starts: at the **end** of the alerts topic (a new notifier
does not page every historical alert), unless ``from_beginning``; later runs resume from
the group's committed offsets. The end is committed explicitly when the group is first
assigned a partition, before anything is processed: with ``auto.offset.reset=latest``
alone, a process that was assigned partitions but had committed nothing yet would, after
a restart, start at the *new* end and lose the alerts produced in between.

A crash between a delivery and its commit re-delivers the message after a restart. That
is harmless because every message carries a deterministic id and receivers deduplicate:
PagerDuty merges events with the same ``dedup_key`` (the fingerprint) into one incident
(a second trigger of an open incident or a second resolve of a resolved one is a no-op),
Alertmanager merges alerts with equal labels, and a Slack consumer can key on the
CloudEvent id printed in every message. Within one process the notifier also remembers
the ``(receiver, CloudEvent id)`` pairs it delivered and skips repeats (for example after
a rebalance hands back a partition whose offsets were not yet committed).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr, ValidationError

from watchkeeper.config import Settings
from watchkeeper.events import ALERT_TYPE, Alert, CloudEvent
from watchkeeper.notify.delivery import BODY_LIMIT, Delivery, DeliveryResult, HttpClient, HttpResponse, deliver
from watchkeeper.notify.routing import Receiver
from watchkeeper.redact import redact, register_secrets

__all__ = ["Aborted", "InvalidEvent", "Notifier", "NotifyRunner", "RunStats", "StartOffsetError", "parse_alert_event"]

log = logging.getLogger("watchkeeper.notify")


class InvalidEvent(ValueError):
    """A message on the alerts topic that is not an alert CloudEvent."""


class Aborted(Exception):
    """Stop was requested in the middle of a delivery; the message must not be committed."""


class StartOffsetError(RuntimeError):
    """A new group's start offsets (the end of the alerts topic) could not be looked up or committed."""


def parse_alert_event(raw: bytes | None) -> CloudEvent[Alert]:
    """Validate a structured-mode alert CloudEvent; :class:`InvalidEvent` names what is wrong."""
    if not raw:
        raise InvalidEvent("empty message value")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a CloudEvent JSON object, got {type(data).__name__}")
    if data.get("type") != ALERT_TYPE:
        raise InvalidEvent(f"type: {data.get('type')!r}: expected {ALERT_TYPE!r}")
    try:
        return CloudEvent[Alert].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InvalidEvent(f"{path}: {first['msg']} ({exc.error_count()} error(s))") from None


class Notifier:
    """Delivers alert events to the receivers of one type; subclasses implement :meth:`send`.

    It owns one :class:`HttpClient` (``self.http``, pooled connections, ``timeout`` seconds per
    connect/read/write); close the notifier (or use it as a context manager) when done.
    """

    kind = "notifier"
    seen_limit = 100_000

    def __init__(
        self, receivers: list[Receiver], targets: dict[str, Any], delivery: Delivery, timeout: float = 10.0
    ) -> None:
        self.receivers = receivers
        self.targets = targets  # receiver name -> what send() needs (secrets as SecretStr)
        register_secrets(*(t for t in targets.values() if isinstance(t, SecretStr)))
        self.delivery = delivery
        self.http = HttpClient(timeout)
        self._delivered: OrderedDict[tuple[str, str], None] = OrderedDict()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def send(self, receiver: Receiver, event: CloudEvent[Alert]) -> HttpResponse:
        raise NotImplementedError

    def tick(self) -> float | None:
        """Periodic work; returns seconds until it wants to run again (None: never)."""
        return None

    def observe(self, event: CloudEvent[Alert]) -> None:
        """Hook called for every valid event before delivery (state keeping)."""

    def handle(self, event: CloudEvent[Alert]) -> list[tuple[str, DeliveryResult]]:
        """Deliver to every matching receiver; returns the failures to dead-letter."""
        self.observe(event)
        failures: list[tuple[str, DeliveryResult]] = []
        alert = event.data
        for receiver in self.receivers:
            if not receiver.matches(alert):
                continue
            key = (receiver.name, event.id)
            fields: dict[str, object] = {
                "id": event.id,
                "fingerprint": alert.fingerprint,
                "alert": alert.status,
            }
            if key in self._delivered:
                log.info("duplicate-skipped", extra={"receiver": receiver.name, **fields})
                continue
            send = functools.partial(self.send, receiver, event)
            result = deliver(send, receiver.name, receiver.interval, self.delivery, fields)
            if result.outcome == "aborted":
                raise Aborted(receiver.name)
            if result.outcome == "delivered":
                self._remember(key)
            else:
                failures.append((receiver.name, result))
        return failures

    def _remember(self, key: tuple[str, str]) -> None:
        self._delivered[key] = None
        if len(self._delivered) > self.seen_limit:
            self._delivered.popitem(last=False)


@dataclass
class RunStats:
    processed: int = 0
    delivered_or_skipped: int = 0
    deadlettered: int = 0


class NotifyRunner:
    """Runs one notifier as the consumer group ``group_id`` until stop / max_messages / idle_exit.

    A group that has never committed on a partition starts there at the end of the topic
    (committed at once, see the module doc), or at the beginning with ``from_beginning``.
    """

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        group_id: str,
        stop: threading.Event | None = None,
        max_messages: int | None = None,
        idle_exit: float | None = None,
        session_timeout: float = 10.0,
        max_poll_interval: float = 900.0,
        consumer_overrides: dict[str, Any] | None = None,
        registry: CollectorRegistry | None = None,
        from_beginning: bool = False,
    ) -> None:
        """``max_poll_interval`` must exceed the longest delivery (all retries of all receivers);
        the counters go to ``registry`` (a new one if None); ``from_beginning`` starts a new group
        at the oldest alert instead of the end."""
        self.settings = settings
        self.notifier = notifier
        self.group_id = group_id
        self.from_beginning = from_beginning
        self.stop = stop or notifier.delivery.stop
        self.max_messages = max_messages
        self.idle_exit = idle_exit
        self.stats = RunStats()
        self.registry = registry or CollectorRegistry()
        self.processed = Counter(
            "watchkeeper_notify_processed", "Alert messages processed and committed", ["kind"], registry=self.registry
        )
        self.deadlettered = Counter(
            "watchkeeper_notify_deadlettered",
            "Alert messages written to the dead-letter topic instead of reaching a receiver",
            ["kind", "receiver"],
            registry=self.registry,
        )
        self.assigned: set[int] = set()  # partitions of the alerts topic
        self._last_activity: float | None = None
        kafka = settings.kafka_client_config()
        self.consumer_config: dict[str, Any] = {
            **kafka,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "client.id": f"{group_id}-consumer",
            "session.timeout.ms": int(session_timeout * 1000),
            "heartbeat.interval.ms": max(500, int(session_timeout * 1000 / 3)),
            "max.poll.interval.ms": int(max_poll_interval * 1000),
            **(consumer_overrides or {}),
        }
        self.producer_config: dict[str, Any] = {
            **kafka,
            "enable.idempotence": True,
            "acks": "all",
            "client.id": f"{group_id}-deadletter",
        }

    def run(self) -> RunStats:
        consumer = Consumer(self.consumer_config)
        producer = Producer(self.producer_config)
        fields = {"group": self.group_id, "topic": self.settings.topic_alerts, "kind": self.notifier.kind}
        self._last_activity = None  # idle time counts only while partitions are assigned

        def on_assign(client: Consumer, partitions: list[TopicPartition]) -> None:
            if not self.from_beginning:
                self._commit_end_of_new(client, partitions)
            self._last_activity = time.monotonic()  # idle time counts from the (re)assignment
            self.assigned.update(p.partition for p in partitions)
            log.info("assigned", extra={"partitions": [p.partition for p in partitions]})

        def on_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            self.assigned.difference_update(p.partition for p in partitions)
            log.info("revoked", extra={"partitions": [p.partition for p in partitions]})

        consumer.subscribe([self.settings.topic_alerts], on_assign=on_assign, on_revoke=on_revoke)
        log.info("started", extra=fields)
        try:
            while not self.stop.is_set():
                next_tick = self.notifier.tick()
                timeout = 0.5 if next_tick is None else max(0.0, min(0.5, next_tick))
                msg = consumer.poll(timeout)
                if msg is None:
                    idle_since: float | None = self._last_activity
                    if self.idle_exit is not None and idle_since and time.monotonic() - idle_since > self.idle_exit:
                        log.info("idle-exit", extra=fields)
                        break
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer-error", extra={"error": str(error)})
                    continue
                self._last_activity = time.monotonic()
                if not self._process(msg, producer):
                    break  # aborted: leave the offset uncommitted
                consumer.commit(message=msg, asynchronous=False)
                self.stats.processed += 1
                self.processed.labels(self.notifier.kind).inc()
                if self.max_messages is not None and self.stats.processed >= self.max_messages:
                    break
        finally:
            consumer.close()
            producer.flush(10)
            log.info("stopped", extra={**fields, **self.stats.__dict__})
        return self.stats

    def _commit_end_of_new(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit the end offset of every assigned partition on which the group never committed.

        Runs in the assignment callback, before the partitions are fetched, so the fetch starts
        there and a restart resumes there. The end is the last stable offset: the consumer
        reads ``read_committed``, and the look-up uses the consumer's isolation level.
        """
        topic = self.settings.topic_alerts
        try:
            committed = consumer.committed(partitions, timeout=10)
            failed = [tp for tp in committed if tp.error is not None]
            if failed:
                raise KafkaException(f"partition {failed[0].partition}: {failed[0].error}")
            new = [tp for tp in committed if tp.offset < 0]  # OFFSET_INVALID: nothing committed yet
            ends = []
            for tp in new:
                watermarks = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
                if watermarks is None:
                    raise KafkaException(f"no answer for partition {tp.partition} within 10 s")
                ends.append(TopicPartition(tp.topic, tp.partition, watermarks[1]))
            if ends:
                consumer.commit(offsets=ends, asynchronous=False)
        except KafkaException as exc:
            partitions_text = [tp.partition for tp in partitions]
            raise StartOffsetError(
                f"group {self.group_id!r}, topic {topic!r}, partitions {partitions_text}: cannot commit the end "
                f"offsets a new group starts at: {redact(str(exc))}; expected the group coordinator to answer"
            ) from None
        if ends:
            starts = {tp.partition: tp.offset for tp in ends}
            log.info("starting-at-end", extra={"group": self.group_id, "topic": topic, "offsets": starts})

    def not_ready(self) -> str | None:
        """``/readyz``: ready while the group gave this process partitions of the alerts topic."""
        return None if self.assigned else f"no partition of {self.settings.topic_alerts} assigned"

    def _process(self, msg: Message, producer: Producer) -> bool:
        """Deliver or dead-letter one message; False when stop interrupted it."""
        raw = msg.value()
        try:
            event = parse_alert_event(raw)
        except InvalidEvent as exc:
            return self._deadletter(producer, msg, f"invalid-event: {exc}", self.notifier.kind, None)
        try:
            failures = self.notifier.handle(event)
        except Aborted:
            log.info("aborted", extra={"id": event.id, "offset": msg.offset()})
            return False
        if not failures:
            self.stats.delivered_or_skipped += 1
        return all(self._deadletter(producer, msg, r.reason, receiver, r) for receiver, r in failures)

    def _deadletter(
        self, producer: Producer, msg: Message, reason: str, receiver: str, result: DeliveryResult | None
    ) -> bool:
        """Write the original bytes to the dead-letter topic and wait until Kafka has them.

        Header values are redacted (a receiver's answer or an error text can echo a secret).
        """
        texts = [
            ("reason", reason),
            ("source.topic", str(msg.topic())),
            ("source.partition", str(msg.partition())),
            ("source.offset", str(msg.offset())),
            ("receiver", receiver),
        ]
        if result is not None:
            texts.append(("http.status", str(result.status or "")))
            texts.append(("http.body", result.body))
            if result.error:
                texts.append(("error", result.error))
        headers: list[tuple[str, str | bytes | None]] = [
            (name, redact(text)[:BODY_LIMIT].encode()) for name, text in texts
        ]
        attempt = 0
        while True:
            attempt += 1
            errors: list[KafkaError] = []
            producer.produce(
                self.settings.topic_deadletter,
                key=str(msg.topic()).encode(),
                value=msg.value(),
                headers=headers,
                on_delivery=_collect(errors),
            )
            remaining = producer.flush(10)
            if remaining == 0 and not errors:
                break
            log.error("deadletter-failed", extra={"attempt": attempt, "error": str(errors[:1])})
            if self.stop.wait(min(30.0, 2.0**attempt)):
                return False
        self.stats.deadlettered += 1
        self.deadlettered.labels(self.notifier.kind, receiver).inc()
        log.warning(
            "deadlettered",
            extra={"reason": reason, "receiver": receiver, "partition": msg.partition(), "offset": msg.offset()},
        )
        return True


def _collect(errors: list[KafkaError]) -> Callable[[KafkaError | None, Message], None]:
    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    return on_delivery
