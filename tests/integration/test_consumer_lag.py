"""``watchkeeper_consumer_lag`` on a real broker: high watermark minus the group's committed offset,
asked through a probe consumer of the group that never joins it."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.metrics import consumer_lag


def _consume_and_commit(consumer: Consumer, count: int) -> None:
    """Read ``count`` records and commit the offset after the last one (as the worker's stages do)."""
    deadline, records = time.monotonic() + 30, []
    while len(records) < count and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=count - len(records), timeout=0.5)
        records += [m for m in batch if m.error() is None]
    assert len(records) == count
    consumer.commit(message=records[-1], asynchronous=False)


def test_lag_is_what_the_group_has_not_committed(kafka: LocalKafka, topic_prefix: str) -> None:
    topic, group = f"{topic_prefix}input", f"lag-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    plain = Producer({"bootstrap.servers": kafka.bootstrap})
    for i in range(100):
        plain.produce(topic, value=str(i).encode())
    assert plain.flush(30) == 0
    options = {"bootstrap.servers": kafka.bootstrap, "group.id": group, "enable.auto.commit": False}
    consumer = Consumer({**options, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    probe = Consumer(options)
    try:
        consumer.subscribe([topic])
        assert consumer_lag(probe, [(topic, 0)]) == {}  # nothing committed yet
        _consume_and_commit(consumer, 40)
        assert consumer_lag(probe, [(topic, 0)]) == {(topic, 0): 60}
        _consume_and_commit(consumer, 60)
        assert consumer_lag(probe, [(topic, 0)]) == {(topic, 0): 0}

        transactional = Producer({"bootstrap.servers": kafka.bootstrap, "transactional.id": f"lag-{topic}"})
        transactional.init_transactions(30)
        transactional.begin_transaction()
        for i in range(10):
            transactional.produce(topic, value=str(i).encode())
        transactional.commit_transaction(30)
        _consume_and_commit(consumer, 10)
        # the commit marker takes an offset and is never delivered: with the offset after the last
        # record committed, a lag of 1 stays
        assert consumer_lag(probe, [(topic, 0)]) == {(topic, 0): 1}
    finally:
        consumer.close()
        probe.close()
