"""The SDK's partitioning agrees with Kafka's Java default (murmur2), which aiokafka also uses.

That is what keeps a prediction and its outcome in the same partition number of the two
co-partitioned topics, whichever client produced them.
"""

from __future__ import annotations

import time

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from watchkeeper.client import WatchkeeperClient
from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka


def test_sdk_partitions_like_the_java_client(kafka: LocalKafka, topic_prefix: str) -> None:
    settings = Settings(
        bootstrap_servers=kafka.bootstrap,
        topic_predictions=f"{topic_prefix}predictions",
        topic_outcomes=f"{topic_prefix}outcomes",
    )
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for future in admin.create_topics(
        [NewTopic(settings.topic_predictions, 6, 1), NewTopic(settings.topic_outcomes, 6, 1)]
    ).values():
        future.result()
    ids = [f"pred-{i}-{i * 7919}" for i in range(300)]
    with WatchkeeperClient(settings=settings) as client:
        for pid in ids:
            client.log_prediction(model_id="m", prediction_id=pid, features={"x": 1.0})
            client.log_outcome(prediction_id=pid, model_id="m", label=1)
    consumer = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": f"p-{time.time()}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([settings.topic_predictions, settings.topic_outcomes])
    seen: dict[tuple[str, str], int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 600 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            seen[(message.topic(), message.key().decode())] = message.partition()
    consumer.close()
    java = DefaultPartitioner()
    for pid in ids:
        expected = java(pid.encode(), list(range(6)), list(range(6)))
        assert seen[(settings.topic_predictions, pid)] == expected
        assert seen[(settings.topic_outcomes, pid)] == expected
