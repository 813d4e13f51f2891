"""Shared fixtures: the real local Kafka broker (KRaft) for integration tests; Hypothesis
settings for a shared, noisy machine."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from watchkeeper.dev.kafka import LocalKafka

# The suite runs on shared machines: no test may fail because an example (or generating one)
# was slow there. Hypothesis's per-example deadline and its too-slow health check are timings.
settings.register_profile("shared-machine", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka]:
    """A running broker: reused when one answers on the port, else started (and stopped after)."""
    broker = LocalKafka(
        port=int(os.environ.get("WATCHKEEPER_TEST_KAFKA_PORT", "19092")),
        controller_port=int(os.environ.get("WATCHKEEPER_TEST_KAFKA_CONTROLLER_PORT", "19093")),
        data_dir=ROOT / ".watchkeeper" / "test-kafka",
    )
    outcome = broker.up()
    yield broker
    if outcome == "started" and not os.environ.get("WATCHKEEPER_KEEP_KAFKA"):
        broker.down()


@pytest.fixture
def topic_prefix(kafka: LocalKafka) -> Iterator[str]:
    """A unique topic-name prefix; topics created under it are deleted after the test."""
    from confluent_kafka.admin import AdminClient

    prefix = f"t{uuid.uuid4().hex[:10]}."
    yield prefix
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            with contextlib.suppress(Exception):  # a topic already gone is fine
                future.result()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the broker is an integration test (`make unit` skips them)."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
