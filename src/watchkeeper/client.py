"""Producer SDK for model services: log predictions and outcomes to watchkeeper.

Non-blocking (librdkafka queues and sends in the background), keyed by ``prediction_id``
with the murmur2 partitioner so that Java clients, aiokafka and this SDK agree on the
partition of a key, which keeps a prediction and its outcome in the same partition.

Example::

    from watchkeeper.client import WatchkeeperClient

    with WatchkeeperClient("localhost:9092") as client:
        pid = client.log_prediction(
            model_id="credit-risk", model_version="3",
            features={"income": 52000.0, "region": "north"},
            prediction={"label": 1, "score": 0.83},
            attributes={"sex": "female"},
        )
        ...
        client.log_outcome(prediction_id=pid, model_id="credit-risk", label=1)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
from confluent_kafka import KafkaError, Message, Producer

from watchkeeper.config import Settings

__all__ = ["WatchkeeperClient", "DeliveryError"]

Scalar = float | int | str | bool | None


class DeliveryError(RuntimeError):
    """Some events could not be delivered before ``close``/``flush`` timed out."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


class WatchkeeperClient:
    """A thin, thread-safe wrapper around a confluent-kafka Producer."""

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: Settings | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        config: dict[str, Any] = self.settings.kafka_client_config()
        if bootstrap_servers:
            config["bootstrap.servers"] = bootstrap_servers
        config.update(
            {
                "partitioner": "murmur2_random",
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
            }
        )
        config.update(producer_config or {})
        self._producer = Producer(config)
        self.failed = 0
        self.last_error: KafkaError | None = None

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failed += 1
            self.last_error = error

    def _produce(self, topic: str, key: str, payload: dict[str, Any]) -> None:
        value = orjson.dumps(payload)
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let librdkafka drain, then retry
                self._producer.poll(0.05)
        self._producer.poll(0)

    def log_prediction(
        self,
        *,
        model_id: str,
        features: Mapping[str, Scalar],
        prediction: Mapping[str, Any] | None = None,
        model_version: str = "unversioned",
        prediction_id: str | None = None,
        event_id: str | None = None,
        timestamp: datetime | str | None = None,
        attributes: Mapping[str, Scalar] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue a PredictionEvent; returns its prediction_id (for the outcome later)."""
        event_id = event_id or uuid.uuid4().hex
        prediction_id = prediction_id or event_id
        when = timestamp.isoformat() if isinstance(timestamp, datetime) else (timestamp or _now())
        payload: dict[str, Any] = {
            "event_id": event_id,
            "prediction_id": prediction_id,
            "model_id": model_id,
            "model_version": model_version,
            "timestamp": when,
            "features": dict(features),
            "prediction": dict(prediction or {}),
            "attributes": dict(attributes or {}),
            "metadata": dict(metadata or {}),
        }
        self._produce(self.settings.topic_predictions, prediction_id, payload)
        return prediction_id

    def log_outcome(
        self,
        *,
        prediction_id: str,
        model_id: str,
        label: str | int | bool | None = None,
        value: float | None = None,
        timestamp: datetime | str | None = None,
        event_id: str | None = None,
    ) -> None:
        """Queue an OutcomeEvent (exactly one of ``label`` or ``value``)."""
        if (label is None) == (value is None):
            raise ValueError(f"label={label!r}, value={value!r}: expected exactly one of label or value")
        when = timestamp.isoformat() if isinstance(timestamp, datetime) else (timestamp or _now())
        payload: dict[str, Any] = {
            "event_id": event_id or uuid.uuid4().hex,
            "prediction_id": prediction_id,
            "model_id": model_id,
            "timestamp": when,
        }
        payload["label" if label is not None else "value"] = label if label is not None else value
        self._produce(self.settings.topic_outcomes, prediction_id, payload)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued event is delivered; raises DeliveryError otherwise."""
        remaining = self._producer.flush(timeout)
        if remaining or self.failed:
            raise DeliveryError(
                f"{remaining} events still queued and {self.failed} failed after {timeout}s"
                + (f" (last error: {self.last_error})" if self.last_error else "")
            )

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)

    def __enter__(self) -> WatchkeeperClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
