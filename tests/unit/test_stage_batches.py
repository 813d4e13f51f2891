"""How a stage tells a batch of records from one that holds partition-end events or errors, and
how it produces a batch's records.

The check runs on every consumed batch, so it is one C-level pass; it must compare by
identity, because a KafkaError compares with None by converting None to an error code and
raises (a worker once stopped on the first partition-end event it read).
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, Message, Producer

from watchkeeper.stream.kafka import Outgoing, produce_all, records_only


def test_a_batch_of_records_only_is_told_from_one_with_an_event() -> None:
    end = KafkaError(KafkaError._PARTITION_EOF)
    assert records_only([None] * 3) and records_only([])
    assert not records_only([None, end, None])
    assert not records_only([KafkaError(KafkaError._TRANSPORT)])


def test_records_are_produced_in_order_when_the_local_queue_is_full() -> None:
    """A stage waits for room in the producer's queue rather than dropping a record: here the
    queue holds one record and no broker answers, so each record waits for the one before to
    time out of the queue; every record reaches the queue, in order, with its value and partition
    as given (a record with headers too)."""
    reports: list[Message] = []
    producer = Producer(
        {
            "bootstrap.servers": "127.0.0.1:9",  # (nothing listens: deliveries fail after message.timeout.ms)
            "queue.buffering.max.messages": 1,
            "message.timeout.ms": 50,
            "on_delivery": lambda _, message: reports.append(message),
            "log_level": 0,
        }
    )
    producer.produce("t", b"first", b"k0")
    with pytest.raises(BufferError):  # (the queue is full)
        producer.produce("t", b"x")
    outgoing: list[Outgoing] = [("t", b"k1", b"v", 2, None), ("t", b"k2", None, None, [("reason", b"why")])]
    produce_all(producer, outgoing)
    producer.flush(5)
    assert [(m.key(), m.value()) for m in reports] == [(b"k0", b"first"), (b"k1", b"v"), (b"k2", None)]
    assert reports[1].partition() == 2 and len(producer) == 0
