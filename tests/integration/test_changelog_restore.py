"""Restoring state from a changelog sees the previous owner's last transaction, whatever its marker's timing.

A read-committed consumer reports the end of a partition at its last stable offset, and a
transaction's commit marker is written after the producer's commit returns. A new owner
that restored only up to the first end-of-partition would miss the last committed batch
of state while that batch's input offsets are already committed: the state would silently
diverge. ``read_changelog`` reads up to the high watermark instead, waiting for open
transactions to resolve, and never includes an aborted one.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.stream.kafka import read_changelog


def _open_transaction(kafka: LocalKafka, topic: str) -> Producer:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"{topic}-owner"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"meta", value=b"v1")
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"meta", value=b"v2")
    producer.produce(topic, key=b"window/0", value=b"w")
    producer.flush(10)
    return producer


def _restore_while(kafka: LocalKafka, topic: str, finish: str) -> tuple[dict[bytes, bytes], float]:
    producer = _open_transaction(kafka, topic)
    ends = getattr(producer, f"{finish}_transaction")
    threading.Timer(3.0, lambda: ends(30)).start()
    started = time.monotonic()
    state = read_changelog(Settings(bootstrap_servers=kafka.bootstrap), topic, 0)
    return state, time.monotonic() - started


def test_restore_includes_a_transaction_committed_while_it_reads(kafka: LocalKafka, topic_prefix: str) -> None:
    state, waited = _restore_while(kafka, f"{topic_prefix}changelog", "commit")
    assert state == {b"meta": b"v2", b"window/0": b"w"}
    assert waited >= 1.0  # it did wait for the marker instead of stopping at the stable offset


def test_restore_leaves_out_a_transaction_aborted_while_it_reads(kafka: LocalKafka, topic_prefix: str) -> None:
    state, _ = _restore_while(kafka, f"{topic_prefix}changelog", "abort")
    assert state == {b"meta": b"v1"}
