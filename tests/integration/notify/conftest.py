"""Fixtures for the notifier integration tests: topics on the real broker, producers, readers,
notifier processes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.events import Alert, CloudEvent


@pytest.fixture
def settings(kafka: LocalKafka, topic_prefix: str) -> Settings:
    """Settings whose alerts (3 partitions) and dead-letter topics exist under the test prefix."""
    s = Settings(
        bootstrap_servers=kafka.bootstrap,
        topic_alerts=f"{topic_prefix}alerts",
        topic_deadletter=f"{topic_prefix}deadletter",
    )
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    futures = admin.create_topics(
        [NewTopic(s.topic_alerts, num_partitions=3), NewTopic(s.topic_deadletter, num_partitions=1)],
        operation_timeout=10,
    )
    for future in futures.values():
        future.result()
    return s


def _produce(settings: Settings, events: Iterable[CloudEvent[Alert] | bytes]) -> None:
    """Produce like the worker: in one Kafka transaction, keyed by fingerprint."""
    producer = Producer({**settings.kafka_client_config(), "transactional.id": f"test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for event in events:
        if isinstance(event, bytes):
            producer.produce(settings.topic_alerts, key=b"garbage", value=event)
        else:
            value = event.model_dump_json().encode()
            producer.produce(settings.topic_alerts, key=event.data.fingerprint.encode(), value=value)
    producer.commit_transaction(10)


def _read_all(settings: Settings, topic: str, expected: int, timeout: float = 15.0) -> list[Message]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    try:
        import time

        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
        # give a possible extra (unexpected) message a moment to show up
        extra = consumer.poll(1.0)
        if extra is not None and extra.error() is None:
            messages.append(extra)
    finally:
        consumer.close()
    return messages


Produce = Callable[[Settings, Iterable[CloudEvent[Alert] | bytes]], None]
ReadAll = Callable[..., list[Message]]


@pytest.fixture
def produce() -> Produce:
    """``produce(settings, events)``: alert CloudEvents (or raw bytes) in one transaction."""
    return _produce


@pytest.fixture
def read_all() -> ReadAll:
    """``read_all(settings, topic, expected)``: the messages of a topic from the beginning."""
    return _read_all


PAGERDUTY_ROUTING_KEY = "R0UTINGKEYsecret1234567890abcdef"


def _start_pagerduty(settings: Settings, url: str, group: str, cwd: Path, *options: str) -> subprocess.Popen[bytes]:
    """``watchkeeper notify pagerduty --group-id group *options`` as a process, stderr piped."""
    env = {
        **os.environ,
        "WATCHKEEPER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "WATCHKEEPER_TOPIC_ALERTS": settings.topic_alerts,
        "WATCHKEEPER_TOPIC_DEADLETTER": settings.topic_deadletter,
        "WATCHKEEPER_PAGERDUTY_URL": url,
        "PAGERDUTY_ROUTING_KEY": PAGERDUTY_ROUTING_KEY,
    }
    cmd = [sys.executable, "-m", "watchkeeper.notify.cli", "pagerduty", "--group-id", group, *options]
    return subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE)


StartPagerDuty = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_pagerduty() -> StartPagerDuty:
    """``start_pagerduty(settings, url, group, cwd, *options)``: a PagerDuty notifier process
    (routing key :data:`PAGERDUTY_ROUTING_KEY`) sending to the fake receiver at ``url``."""
    return _start_pagerduty
