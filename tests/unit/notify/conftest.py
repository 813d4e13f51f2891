"""Stand-ins for the Kafka message and producer the runner dead-letters with (no broker needed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from confluent_kafka import Message


@dataclass
class FakeMessage:
    """The parts of a consumed Kafka message the runner reads."""

    payload: bytes
    at: int

    def value(self) -> bytes:
        return self.payload

    def topic(self) -> str:
        return "alerts"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.at


class RecordingProducer:
    """Keeps what the runner dead-letters; every record is 'delivered' at once."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def produce(self, topic: str, **record: Any) -> None:
        self.records.append({"topic": topic, **record})

    def flush(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def kafka_message() -> Callable[[bytes, int], Message]:
    """``kafka_message(value, offset)``: a consumed message on partition 0 of topic ``alerts``."""
    return lambda payload, offset: cast(Message, FakeMessage(payload, offset))


@pytest.fixture
def recording_producer() -> RecordingProducer:
    """A producer whose ``records`` are what the runner dead-lettered."""
    return RecordingProducer()
