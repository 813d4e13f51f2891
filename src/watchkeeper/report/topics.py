"""The report's records from the live topics, as the worker wrote them.

Reads ``windows`` (window and labels records), ``alerts`` (Alert CloudEvents),
``retraining`` (RetrainingTrigger CloudEvents) and ``references`` (learned reference
profiles) from the beginning of every partition up to their current end, committed
records only (``isolation.level=read_committed``: the worker writes in transactions),
without a consumer group (partitions are assigned, nothing is committed), like
``watchkeeper alerts tail --from-beginning``. A record that is not what its topic holds is
reported to ``skip`` and left out: one bad record does not make the others unreadable.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from watchkeeper.config import Settings
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.report.records import RecordError

__all__ = ["TopicRecords", "read_topics"]

TopicRecords = tuple[list[tuple[str, dict[str, Any]]], dict[str, ReferenceProfile]]


def _decode(topic_role: str, value: dict[str, Any]) -> dict[str, Any]:
    """The record in the replay output's shape (``kind`` plus fields); KeyError/TypeError when it is not one."""
    if topic_role == "windows":
        return value
    if topic_role == "alerts":
        data = value["data"]
        if not isinstance(data, dict):
            raise TypeError("field 'data': expected an object (the Alert)")
        return {"kind": "alert", **data}
    return {"kind": "retraining", **value}


def read_topics(settings: Settings, timeout: float, skip: Callable[[RecordError], None]) -> TopicRecords:
    """``(where, record)`` pairs of the windows, alerts and retraining topics, and the latest profile per model.

    Reads until every partition reached its end, or ``timeout`` seconds pass without a
    record (then what was read is used). A missing topic is a :class:`RecordError`.
    """
    roles = {
        settings.topic_windows: "windows",
        settings.topic_alerts: "alerts",
        settings.topic_retraining: "retraining",
        settings.topic_references: "references",
    }
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"watchkeeper-report-{os.getpid()}",  # required by the client; never joined or committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    records: list[tuple[str, dict[str, Any]]] = []
    profiles: dict[str, ReferenceProfile] = {}
    try:
        assignment = []
        for topic in roles:
            try:
                described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
            except KafkaException as exc:
                raise RecordError(
                    f"topic {topic!r}: no metadata from {settings.bootstrap_servers}: {exc.args[0]}"
                ) from None
            if described is None or described.error is not None or not described.partitions:
                raise RecordError(
                    f"topic {topic!r} does not exist on {settings.bootstrap_servers} (watchkeeper topics create)"
                )
            assignment += [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(described.partitions)]
        consumer.assign(assignment)
        open_partitions = {(tp.topic, tp.partition) for tp in assignment}
        last = time.monotonic()
        while open_partitions and time.monotonic() - last < timeout:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                last = time.monotonic()
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard((message.topic(), message.partition()))
                    else:
                        skip(RecordError(f"topic {message.topic()!r}: {error}"))
                    continue
                _take(message, roles[str(message.topic())], records, profiles, skip)
    finally:
        consumer.close()
    return records, profiles


def _take(
    message: Message,
    role: str,
    records: list[tuple[str, dict[str, Any]]],
    profiles: dict[str, ReferenceProfile],
    skip: Callable[[RecordError], None],
) -> None:
    """Decode one message into ``records`` or ``profiles`` (a later profile of a model replaces the earlier)."""
    where = f"topic {message.topic()!r} partition {message.partition()} offset {message.offset()}"
    try:
        value = orjson.loads(message.value() or b"")
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object (got {type(value).__name__})")
        if role == "references":
            profile = ReferenceProfile.from_dict(value)
            profiles[profile.model_id] = profile
        else:
            records.append((where, _decode(role, value)))
    except orjson.JSONDecodeError as exc:
        skip(RecordError(f"{where}: expected JSON ({exc})"))
    except KeyError as exc:
        skip(RecordError(f"{where}: field {exc.args[0]!r}: missing"))
    except (TypeError, ValueError) as exc:
        skip(RecordError(f"{where}: {exc}"))
