"""Alertmanager notifier: POST /api/v2/alerts, re-sending firing alerts periodically.

Alertmanager forgets an alert whose ``endsAt`` has passed, so a firing alert is sent with
``endsAt = now + 4 × resend_interval`` and re-sent every ``resend_interval``; a resolved
alert is sent once with ``endsAt`` = its resolution time.

The set of firing alerts is held in memory (latest status per fingerprint). On start it is
**rebuilt by re-reading the alerts topic from the beginning** (within retention) with a
separate consumer that has its own throw-away group id, never commits and stops at the end
of every partition (``read_committed``, so at the last stable offset); the firing ones are
re-sent immediately. Then the committed group consumer continues where it left off; the
messages it sees again are idempotent for this state. An alert whose last message has
left retention is not rebuilt; the worker re-publishes still-firing alerts periodically,
so it comes back with the next repeat.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from watchkeeper.config import Settings
from watchkeeper.events import Alert, CloudEvent
from watchkeeper.notify.delivery import Delivery, HttpResponse, RetryPolicy, deliver
from watchkeeper.notify.payloads import alertmanager_alert
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import InvalidEvent, Notifier, parse_alert_event

__all__ = ["AlertmanagerNotifier", "rebuild_firing"]

log = logging.getLogger("watchkeeper.notify")


class AlertmanagerNotifier(Notifier):
    """Posts alerts to Alertmanager ``/api/v2/alerts`` and re-sends the firing set periodically."""

    kind = "alertmanager"

    def __init__(
        self,
        receivers: list[Receiver],
        delivery: Delivery,
        resend_interval: float = 60.0,
        timeout: float = 10.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(receivers, {r.name: r.endpoint for r in receivers}, delivery, timeout)
        self.resend_interval = resend_interval
        self.now = now
        self.firing: dict[str, Alert] = {}
        self._ended: dict[str, Alert] = {}  # the last firing version of each resolved fingerprint
        self._next_resend = time.monotonic() + resend_interval
        self._resend_policy = RetryPolicy(
            delivery.policy.base, delivery.policy.cap, max_attempts=3, max_elapsed=resend_interval / 2
        )

    def url(self, receiver: Receiver) -> str:
        return str(self.targets[receiver.name]).rstrip("/") + "/api/v2/alerts"

    def observe(self, event: CloudEvent[Alert]) -> None:
        alert = event.data
        if alert.status == "firing":
            self.firing[alert.fingerprint] = alert
            self._ended.pop(alert.fingerprint, None)
        elif alert.fingerprint in self.firing:
            self._ended[alert.fingerprint] = self.firing.pop(alert.fingerprint)

    def restore(self, events: list[CloudEvent[Alert]]) -> None:
        """Seed the firing set (from :func:`rebuild_firing`) and re-send it on the next tick."""
        for event in events:
            self.observe(event)
        self._next_resend = time.monotonic()

    def send(self, receiver: Receiver, event: CloudEvent[Alert]) -> HttpResponse:
        alert = event.data
        fired = self._ended.get(alert.fingerprint)
        if alert.status == "resolved" and fired is not None and fired.severity != alert.severity:
            # Alertmanager identifies an alert by its labels: resolve the one that fired
            alert = alert.model_copy(update={"severity": fired.severity})
        body = orjson.dumps([alertmanager_alert(alert, self.now(), self.resend_interval)])
        return self.http.post_json(self.url(receiver), body)

    def tick(self) -> float | None:
        remaining = self._next_resend - time.monotonic()
        if remaining > 0:
            return remaining
        self.resend()
        self._next_resend = time.monotonic() + self.resend_interval
        return self.resend_interval

    def resend(self) -> None:
        """Re-send every firing alert to the receivers it matches; failures wait for the next round."""
        ctx = dataclasses.replace(self.delivery, policy=self._resend_policy)
        now = self.now()
        for receiver in self.receivers:
            alerts = [a for a in self.firing.values() if receiver.matches(a)]
            if not alerts:
                continue
            body = orjson.dumps([alertmanager_alert(a, now, self.resend_interval) for a in alerts])
            result = deliver(
                functools.partial(self.http.post_json, self.url(receiver), body),
                receiver.name,
                receiver.interval,
                ctx,
                {"resend": len(alerts)},
            )
            if result.outcome != "delivered":
                why = {"receiver": receiver.name, "why": result.reason}
                log.warning("resend-failed", extra=why)


def rebuild_firing(settings: Settings, timeout: float = 30.0) -> list[CloudEvent[Alert]]:
    """The alerts whose latest message on the alerts topic is ``firing`` (reads to the end once)."""
    topic = settings.topic_alerts
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"watchkeeper-notify-rebuild-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    latest: dict[str, CloudEvent[Alert]] = {}
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return []
        pending = set(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                continue
            try:
                event = parse_alert_event(msg.value())
            except InvalidEvent:
                continue  # the main consumer dead-letters it
            latest[event.data.fingerprint] = event
        if pending:
            log.warning("rebuild-incomplete", extra={"partitions": sorted(pending)})
    finally:
        consumer.close()
    firing = [e for e in latest.values() if e.data.status == "firing"]
    log.info("rebuilt", extra={"fingerprints": len(latest), "firing": len(firing)})
    return firing
