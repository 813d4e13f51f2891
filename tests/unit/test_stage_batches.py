"""How a stage tells a batch of records from one that holds partition-end events or errors.

The check runs on every consumed batch, so it is one C-level pass; it must compare by
identity, because a KafkaError compares with None by converting None to an error code and
raises (a worker once stopped on the first partition-end event it read).
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from watchkeeper.stream.kafka import records_only


def test_a_batch_of_records_only_is_told_from_one_with_an_event() -> None:
    end = KafkaError(KafkaError._PARTITION_EOF)
    assert records_only([None] * 3) and records_only([])
    assert not records_only([None, end, None])
    assert not records_only([KafkaError(KafkaError._TRANSPORT)])
