"""Where a notifier's consumer group starts: the end of the topic, committed on the first assignment."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from watchkeeper.config import Settings
from watchkeeper.notify.delivery import Delivery
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import Notifier, NotifyRunner, StartOffsetError

TOPIC = "watchkeeper.alerts"


class FakeConsumer:
    """Committed offsets and end offsets per partition; records the commits."""

    def __init__(self, committed: dict[int, int], ends: dict[int, int], fail: bool = False) -> None:
        self._committed = committed
        self._ends = ends
        self._fail = fail
        self.commits: list[dict[int, int]] = []

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        if self._fail:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator not available"))
        return [
            TopicPartition(TOPIC, tp.partition, self._committed.get(tp.partition, OFFSET_INVALID)) for tp in partitions
        ]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float, cached: bool) -> tuple[int, int]:
        assert not cached  # the broker's current end, not a stale one
        return 0, self._ends[tp.partition]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous  # committed before the partitions are fetched
        self.commits.append({tp.partition: tp.offset for tp in offsets})


def _runner(from_beginning: bool = False) -> NotifyRunner:
    notifier = Notifier([Receiver(name="am", type="alertmanager", endpoint="http://am:9093")], {}, Delivery())
    return NotifyRunner(Settings(topic_alerts=TOPIC), notifier, "g-start", from_beginning=from_beginning)


def _assign(runner: NotifyRunner, consumer: FakeConsumer, *partitions: int) -> None:
    runner._commit_end_of_new(cast(Consumer, consumer), [TopicPartition(TOPIC, p) for p in partitions])


def test_offset_reset_is_latest_unless_from_beginning() -> None:
    assert _runner().consumer_config["auto.offset.reset"] == "latest"
    assert _runner(from_beginning=True).consumer_config["auto.offset.reset"] == "earliest"


def test_new_group_commits_the_end_of_every_assigned_partition() -> None:
    consumer = FakeConsumer(committed={}, ends={0: 3, 1: 0, 2: 5})
    _assign(_runner(), consumer, 0, 1, 2)
    assert consumer.commits == [{0: 3, 1: 0, 2: 5}]


def test_only_partitions_without_a_committed_offset_are_moved() -> None:
    consumer = FakeConsumer(committed={0: 2, 2: 4}, ends={0: 9, 1: 7, 2: 9})
    _assign(_runner(), consumer, 0, 1, 2)
    assert consumer.commits == [{1: 7}]


def test_a_group_that_committed_everywhere_commits_nothing() -> None:
    consumer = FakeConsumer(committed={0: 2}, ends={0: 9})
    _assign(_runner(), consumer, 0)
    assert consumer.commits == []


def test_lookup_failure_names_group_topic_and_partitions() -> None:
    consumer: Any = FakeConsumer(committed={}, ends={}, fail=True)
    with pytest.raises(StartOffsetError) as info:
        _assign(_runner(), consumer, 0, 1)
    message = str(info.value)
    assert f"group 'g-start', topic '{TOPIC}', partitions [0, 1]" in message
    assert "coordinator not available" in message and "expected the group coordinator to answer" in message
