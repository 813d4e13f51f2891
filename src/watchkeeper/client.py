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

It needs confluent-kafka and msgspec only (``pip install watchkeeper``, the light install):
nothing here imports pydantic, numpy or the rest of the service at import time.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from watchkeeper.input_events import OutcomeEvent, Prediction, PredictionEvent

if TYPE_CHECKING:
    from watchkeeper.config import Settings

__all__ = ["WatchkeeperClient", "DeliveryError", "encode_event", "light_settings", "outcome_event", "prediction_event"]

Scalar = float | int | str | bool | None
_PREDICTION_FIELDS = frozenset(f.name for f in msgspec.structs.fields(Prediction))


class DeliveryError(RuntimeError):
    """Some events could not be delivered before ``close``/``flush`` timed out."""


# The settings the light install reads from the environment (Settings' defaults), and the
# Kafka security ones it cannot apply without the service's Settings.
_LIGHT_DEFAULTS = {
    "BOOTSTRAP_SERVERS": "localhost:9092",
    "TOPIC_PREDICTIONS": "watchkeeper.predictions",
    "TOPIC_OUTCOMES": "watchkeeper.outcomes",
}
_SECURITY_VARIABLES = (
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SSL_CAFILE",
    "SSL_CERTFILE",
    "SSL_KEYFILE",
    "SSL_KEY_PASSWORD",
    "KAFKA_DEBUG",
)


def light_settings(environ: Mapping[str, str]) -> tuple[dict[str, Any], str, str]:
    """librdkafka settings and the predictions and outcomes topics from ``WATCHKEEPER_*`` variables,
    without :class:`~watchkeeper.config.Settings` (the light install has no pydantic).

    Only the bootstrap servers and the two topics are read. A security variable is refused
    rather than ignored, since ignoring ``WATCHKEEPER_SECURITY_PROTOCOL=SSL`` would send in
    plain text: pass librdkafka's own settings in ``producer_config`` instead.
    """
    variables = {name.upper(): value for name, value in environ.items()}  # (Settings ignores the case too)
    refused = [f"WATCHKEEPER_{name}" for name in _SECURITY_VARIABLES if f"WATCHKEEPER_{name}" in variables]
    if refused:
        raise ValueError(
            f"{', '.join(refused)}: read only when the service is installed (pip install 'watchkeeper[server]'); "
            "without it pass librdkafka settings to WatchkeeperClient(producer_config={'security.protocol': ...})"
        )
    value = {name: variables.get(f"WATCHKEEPER_{name}") or default for name, default in _LIGHT_DEFAULTS.items()}
    return {"bootstrap.servers": value["BOOTSTRAP_SERVERS"]}, value["TOPIC_PREDICTIONS"], value["TOPIC_OUTCOMES"]


def _kafka_settings(settings: Settings | None) -> tuple[dict[str, Any], str, str]:
    """librdkafka settings and the two input topics: from ``settings``, else from the environment
    through :class:`~watchkeeper.config.Settings` when the service is installed, else :func:`light_settings`.
    """
    if settings is None:
        try:
            from watchkeeper.config import Settings
        except ImportError:  # the light install: no pydantic-settings
            return light_settings(os.environ)
        settings = Settings()
    return settings.kafka_client_config(), settings.topic_predictions, settings.topic_outcomes


def _when(timestamp: datetime | str | None) -> datetime | str:
    return timestamp if timestamp else datetime.now(UTC)


def prediction_event(
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
) -> PredictionEvent:
    """The PredictionEvent ``log_prediction`` sends (not validated here: the worker does).

    ``timestamp`` defaults to now (UTC); ``prediction`` keys that are not fields of
    :class:`~watchkeeper.events.Prediction` are dropped (the contract ignores them).
    """
    event_id = event_id or uuid.uuid4().hex
    return PredictionEvent(
        event_id=event_id,
        prediction_id=prediction_id or event_id,
        model_id=model_id,
        model_version=model_version,
        timestamp=_when(timestamp),  # type: ignore[arg-type]  # an RFC 3339 string is sent as is
        features=dict(features),
        prediction=Prediction(**{k: v for k, v in (prediction or {}).items() if k in _PREDICTION_FIELDS}),
        attributes=dict(attributes or {}),
        metadata=dict(metadata or {}),
    )


def outcome_event(
    *,
    prediction_id: str,
    model_id: str,
    label: str | int | bool | None = None,
    value: float | None = None,
    timestamp: datetime | str | None = None,
    event_id: str | None = None,
) -> OutcomeEvent:
    """The OutcomeEvent ``log_outcome`` sends (exactly one of ``label`` or ``value``)."""
    if (label is None) == (value is None):
        raise ValueError(f"label={label!r}, value={value!r}: expected exactly one of label or value")
    return OutcomeEvent(
        event_id=event_id or uuid.uuid4().hex,
        prediction_id=prediction_id,
        model_id=model_id,
        timestamp=_when(timestamp),  # type: ignore[arg-type]
        label=label,
        value=value,
    )


def encode_event(event: PredictionEvent | OutcomeEvent) -> bytes:
    """The JSON value of an input event on Kafka."""
    return msgspec.json.encode(event)


class WatchkeeperClient:
    """A thin, thread-safe wrapper around a confluent-kafka Producer.

    Kafka settings and topic names come from ``settings``, else from ``WATCHKEEPER_*``
    variables (see :func:`_kafka_settings`); ``bootstrap_servers`` and ``producer_config``
    (librdkafka settings) override them.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        *,
        settings: Settings | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        config, self.topic_predictions, self.topic_outcomes = _kafka_settings(settings)
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

    def _produce(self, topic: str, key: str, event: PredictionEvent | OutcomeEvent) -> None:
        value = encode_event(event)
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
        event = prediction_event(
            model_id=model_id,
            features=features,
            prediction=prediction,
            model_version=model_version,
            prediction_id=prediction_id,
            event_id=event_id,
            timestamp=timestamp,
            attributes=attributes,
            metadata=metadata,
        )
        assert event.prediction_id is not None  # filled from event_id
        self._produce(self.topic_predictions, event.prediction_id, event)
        return event.prediction_id

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
        event = outcome_event(
            prediction_id=prediction_id,
            model_id=model_id,
            label=label,
            value=value,
            timestamp=timestamp,
            event_id=event_id,
        )
        self._produce(self.topic_outcomes, prediction_id, event)

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
