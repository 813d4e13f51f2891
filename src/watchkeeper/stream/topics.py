"""Creating watchkeeper's topics (idempotent), with the partitioning the design needs.

Predictions and outcomes get the same partition count, so that records with the same
``prediction_id`` key land in the same partition number on both (murmur2, as Java
clients, aiokafka and the SDK all use).
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from watchkeeper.config import Settings
from watchkeeper.stream.kafka import LARGE_MESSAGE_BYTES

__all__ = ["ensure_topics", "topic_specs"]

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """Inputs, the partials between the stages, outputs, and the two state changelogs.

    The join changelog has a partition per input partition, the state changelog one per
    partials partition (records of partition *p* restore the state of partition *p*); both
    are compacted. The references topic accepts records up to 16 MiB (wide learned profiles).
    """
    n = settings.input_partitions
    compact = {"cleanup.policy": "compact"}
    return [
        NewTopic(settings.topic_predictions, n, 1),
        NewTopic(settings.topic_outcomes, n, 1),
        NewTopic(settings.topic_partials, n, 1),
        NewTopic(settings.topic_alerts, 1, 1),
        NewTopic(settings.topic_retraining, 1, 1),
        NewTopic(settings.topic_deadletter, 1, 1),
        NewTopic(settings.topic_windows, n, 1),
        NewTopic(settings.topic_references, 1, 1, config={**compact, "max.message.bytes": str(LARGE_MESSAGE_BYTES)}),
        NewTopic(f"{settings.app_id}-join-changelog", n, 1, config=compact),
        NewTopic(f"{settings.app_id}-state-changelog", n, 1, config=compact),
    ]


def ensure_topics(settings: Settings, replication_factor: int = 1, timeout: float = 30.0) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AdminClient(settings.kafka_client_config())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = []
    for spec in topic_specs(settings):
        if spec.topic not in existing:
            wanted.append(NewTopic(spec.topic, spec.num_partitions, replication_factor, config=dict(spec.config or {})))
    created = []
    results = admin.create_topics(wanted, operation_timeout=timeout) if wanted else {}
    for name, future in results.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    if created:
        log.info("topics created", extra={"topics": created})
    return created
