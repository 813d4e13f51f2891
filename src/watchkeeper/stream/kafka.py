"""The Kafka layer of the worker: client settings, changelog restore, and the transactional stage.

Each stage of the worker is a consume → process → produce loop on librdkafka
(confluent-kafka) in which everything its batches produce (partials or alerts, dead
letters, state changelog records) and their input offsets are committed in **one Kafka
transaction** (``send_offsets_to_transaction``) every ``commit_interval`` seconds (and
whenever the input is drained, and before partitions are given up). A failed transaction
is aborted: the stage rewinds to the committed offsets and rebuilds its in-memory state
from its changelog (:meth:`TransactionalStage.reset`), then consumes the batches again. Consumers use static
group membership (``group.instance.id``), so a restarted worker gets its partitions back
at once instead of after the session timeout, and the range assignor, so that partition
*p* of the predictions and of the outcomes topic go to the same worker (the join needs it).
"""

from __future__ import annotations

import itertools
import logging
import operator
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from watchkeeper.config import Settings

__all__ = [
    "MAX_MESSAGE_BYTES",
    "Outgoing",
    "TransactionalStage",
    "produce_all",
    "read_changelog",
    "run_forever",
    "where",
]

log = logging.getLogger("watchkeeper.worker")

MAX_MESSAGE_BYTES = 1_000_000  # the broker's default record limit (max.message.bytes), with headroom
LARGE_MESSAGE_BYTES = 16 * 1024 * 1024  # the references topic is created to accept profiles this large

Outgoing = tuple[str, bytes | None, bytes | None, int | None, list[tuple[str, str | bytes | None]] | None]
"""A record to produce: (topic, key, value, partition or None for the key's, headers)."""


# C-level reads of a batch's records (``map(TOPIC, messages)``: no Python loop per record)
_ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses
ERROR, VALUE, TOPIC = operator.methodcaller("error"), operator.methodcaller("value"), operator.methodcaller("topic")
PARTITION, OFFSET = operator.methodcaller("partition"), operator.methodcaller("offset")


def records_only(errors: Sequence[KafkaError | None]) -> bool:
    """Whether a batch's ``errors`` (``map(ERROR, messages)``) are all None: records, no event.

    (By identity: a KafkaError compares with None by converting it to an error code, and raises.)
    """
    return all(map(operator.is_, errors, itertools.repeat(None)))


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed record (always known for one)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def _partition_names(partitions: Iterable[tuple[str, int]]) -> list[str]:
    """``topic:partition`` names, sorted: how log lines list partitions."""
    return [f"{topic}:{partition}" for topic, partition in sorted(partitions)]


def read_changelog(settings: Settings, topic: str, partition: int) -> dict[bytes, bytes]:
    """The committed content of one changelog partition, read from the start to its end.

    The end is the partition's high watermark, not its last stable offset: a transaction
    that the previous owner committed just before it left may not have its commit marker
    written yet (the coordinator writes markers after answering), and a read-committed
    consumer reports the end of the partition at the last stable offset. Stopping there
    would restore a state without that transaction's records while its offsets are
    already committed. So the read waits until every record below the high watermark
    taken at the start is resolved (committed and read, or aborted and skipped).
    """
    tp = TopicPartition(topic, partition)
    uncommitted = {"group.id": f"{settings.app_id}-restore", "isolation.level": "read_uncommitted"}
    probe = Consumer({**settings.kafka_client_config(), **uncommitted})
    try:
        low, high = probe.get_watermark_offsets(tp, timeout=30)
    finally:
        probe.close()
    state: dict[bytes, bytes] = {}
    if high <= low:
        return state  # empty: nothing to wait for
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"{settings.app_id}-restore-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "fetch.max.bytes": 64 * 1024 * 1024,
        }
    )
    waiting_since = time.monotonic()
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        while True:
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    if (message.offset() or 0) >= high:
                        return state
                    continue  # at the last stable offset: a transaction below ``high`` is unresolved
                key = message.key()
                if key is None:
                    continue
                value = message.value()
                if value is None:
                    state.pop(key, None)
                else:
                    state[key] = value
            if (consumer.position([tp])[0].offset or 0) >= high:
                return state
            if time.monotonic() - waiting_since > 60:
                log.warning(
                    "restore waits for an open transaction on the changelog",
                    extra={"topic": topic, "partition": partition, "end": high},
                )
                waiting_since = time.monotonic()
    finally:
        consumer.close()


def produce_all(producer: Producer, outgoing: Iterable[Outgoing]) -> None:
    """Produce every record, in order; while the producer's local queue is full, let deliveries drain.

    Positional arguments: a keyword call costs about twice as much, and a batch with outcomes
    produces a changelog record per join change.
    """
    produce = producer.produce
    for topic, key, value, partition, headers in outgoing:
        where = _ANY_PARTITION if partition is None else partition
        while True:
            try:
                if headers:
                    produce(topic, value, key, where, headers=headers)
                else:
                    produce(topic, value, key, where)
                break
            except BufferError:
                producer.poll(0.05)


class TransactionalStage:
    """A consume → process → produce loop whose batches commit atomically with their offsets.

    Subclasses implement :meth:`process` (records in, records out), :meth:`assigned` /
    :meth:`revoked` (restore and drop per-partition state) and :meth:`reset` (rebuild the
    in-memory state of every assigned partition from its changelog after an abort).
    """

    name = "stage"

    def __init__(self, settings: Settings, topics: Sequence[str], consumer_options: dict[str, Any]) -> None:
        self.settings = settings
        instance = f"{settings.app_id}-{settings.instance_id}-{self.name}"
        self.consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": f"{settings.app_id}-{self.name}",
                "group.instance.id": instance,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": settings.auto_offset_reset,
                "partition.assignment.strategy": "range",
                "session.timeout.ms": int(settings.session_timeout * 1000),
                **consumer_options,
            }
        )
        self.producer = Producer(
            {
                **settings.kafka_client_config(),
                "transactional.id": instance,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.max.bytes": LARGE_MESSAGE_BYTES + 65536,
                "transaction.timeout.ms": int(settings.transaction_timeout * 1000),
            }
        )
        self.producer.init_transactions(60)
        self.assignment: set[tuple[str, int]] = set()
        self.needs_rewind = False
        self.commit_interval = settings.commit_interval
        self._opened_at: float | None = None  # monotonic time the open transaction began; None: none open
        self._offsets: dict[tuple[str, int], int] = {}  # input positions the open transaction commits
        self.consumer.subscribe(
            list(topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    # -- hooks ------------------------------------------------------------------------
    def assigned(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Restore the state of newly assigned partitions (before any of their records is processed)."""

    def revoked(self, partitions: Sequence[tuple[str, int]]) -> None:
        """Drop the state of partitions this process no longer owns."""

    def reset(self) -> None:
        """Rebuild in-memory state from the changelogs (after an aborted batch)."""

    def process(self, messages: Sequence[Message]) -> list[Outgoing]:
        raise NotImplementedError

    def idle(self) -> list[Outgoing]:
        """Records to produce when no input arrived (e.g. heartbeats)."""
        return []

    # -- rebalance ----------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        added = [(p.topic, p.partition) for p in partitions]
        self.assignment.update(added)
        self.assigned(added)
        log.info("partitions assigned", extra={"stage": self.name, "partitions": _partition_names(added)})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()  # the open transaction holds offsets of these partitions: commit it while we own them
        self._drop(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._discard()  # another member may already own them: nothing of ours may commit
        self.needs_rewind = True
        self._drop(partitions)

    def _drop(self, partitions: list[TopicPartition]) -> None:
        removed = [(p.topic, p.partition) for p in partitions]
        self.assignment.difference_update(removed)
        self.revoked(removed)
        log.info("partitions revoked", extra={"stage": self.name, "partitions": _partition_names(removed)})

    # -- the loop -----------------------------------------------------------------------
    def step(self, max_messages: int, timeout: float) -> int:
        """Consume one batch and add what it produced, with its offsets, to the open transaction.

        The transaction is committed once it has been open for ``commit_interval`` seconds,
        or when a poll brings no records (nothing to wait for): a commit costs several
        round trips to the transaction and group coordinators, so committing every batch
        left the worker idle for a third of its time.
        """
        if self.needs_rewind:
            self._discard()
            self.rewind()
        messages = self.consumer.consume(num_messages=max_messages, timeout=timeout)
        errors = list(map(ERROR, messages))
        records = messages
        if not records_only(errors):  # (partition-end events, or errors)
            records = [m for m, e in zip(messages, errors, strict=True) if e is None]
            for message, error in zip(messages, errors, strict=True):
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning(
                        "consumer error",
                        extra={
                            "stage": self.name,
                            "topic": message.topic(),
                            "partition": message.partition(),
                            "error": str(error),
                        },
                    )
        self.observe(messages, errors)
        outgoing = self.process(records) if records else self.idle()
        if records or outgoing:
            self._add(outgoing, records)
        if self._opened_at is not None and (not records or time.monotonic() - self._opened_at >= self.commit_interval):
            self._commit()
        return len(records)

    def observe(self, messages: Sequence[Message], errors: Sequence[KafkaError | None]) -> None:
        """Every record and partition-end event of a batch, in order, with each one's error (None
        for a record): stage 1 tracks which partitions are read to the end."""

    def _add(self, outgoing: Iterable[Outgoing], records: Sequence[Message]) -> None:
        try:
            if self._opened_at is None:
                self.producer.begin_transaction()
                self._opened_at = time.monotonic()
            produce_all(self.producer, outgoing)
        except KafkaException as exc:
            self._abort(exc)
            return
        # a partition's records come in offset order: the last one read is its position
        places = zip(map(TOPIC, records), map(PARTITION, records), strict=True)
        last = dict(zip(places, map(OFFSET, records), strict=True))
        for place, offset in last.items():
            self._offsets[place] = max(self._offsets.get(place, -1), offset + 1)

    def _commit(self) -> None:
        """Commit the open transaction (records and input offsets) if there is one."""
        if self._opened_at is None:
            return
        try:
            if self._offsets:
                positions = [TopicPartition(t, p, o) for (t, p), o in self._offsets.items()]
                self.producer.send_offsets_to_transaction(positions, self.consumer.consumer_group_metadata(), 60)
            self.producer.commit_transaction(120)
        except KafkaException as exc:
            self._abort(exc)
            return
        self._opened_at = None
        self._offsets = {}

    def _abort(self, exc: KafkaException) -> None:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if error is not None and error.fatal():
            raise exc
        log.warning(
            "transaction aborted; re-consuming from the committed offsets",
            extra={"stage": self.name, "partitions": _partition_names(self._offsets) or None, "error": str(exc)},
        )
        self._discard()
        self.rewind()

    def _discard(self) -> None:
        """Abort the open transaction, if any (its records are never read; its offsets never count)."""
        self._offsets = {}
        if self._opened_at is None:
            return
        self._opened_at = None
        try:
            self.producer.abort_transaction(60)
        except KafkaException as again:
            if isinstance(again.args[0], KafkaError) and again.args[0].fatal():
                raise

    def rewind(self) -> None:
        """Seek every assigned partition to its committed offset and rebuild state from the changelogs."""
        self.needs_rewind = True  # until it succeeded
        assigned = [TopicPartition(t, p) for t, p in sorted(self.assignment)]
        if assigned:
            for committed in self.consumer.committed(assigned, timeout=30):
                offset = committed.offset if committed.offset >= 0 else OFFSET_BEGINNING
                self.consumer.seek(TopicPartition(committed.topic, committed.partition, offset))
        self.reset()
        self.needs_rewind = False

    def close(self) -> None:
        """Leave cleanly: commit what is open, then close the clients."""
        self._commit()
        self.consumer.close()
        self.producer.flush(10)


def run_forever(stage: TransactionalStage, stop: Callable[[], bool], max_messages: int, timeout: float) -> None:
    """Step until ``stop()`` holds; logs (once per minute) when the broker cannot be reached."""
    last_warning = 0.0
    while not stop():
        try:
            stage.step(max_messages, timeout)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.fatal():
                raise  # e.g. fenced by another process with the same instance id: stop the worker
            stage.needs_rewind = True  # whatever the batch did in memory is rebuilt from the changelogs
            now = time.monotonic()
            if now - last_warning > 60:
                log.warning("stage %s retrying after a Kafka error: %s", stage.name, exc)
                last_warning = now
            time.sleep(1.0)
