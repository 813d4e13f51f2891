"""The JoinStore contract, run against the memory store and the RocksDB store alike."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchkeeper.monitor.join import JoinModel, JoinStore, MemoryJoinStore, OutcomeJoiner
from watchkeeper.stream.join_store import RocksJoinStore


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JoinStore]:
    if request.param == "memory":
        yield MemoryJoinStore()
    else:
        rocks = RocksJoinStore(tmp_path / "join")
        yield rocks
        rocks.close()


def test_an_empty_store(store: JoinStore) -> None:
    assert len(store) == 0
    assert list(store.items()) == []
    assert store.get_many([b"a", b"b"]) == [None, None]
    assert store.get_many([]) == []


def test_get_many_answers_in_the_order_asked(store: JoinStore) -> None:
    store.write({b"a": b"1", b"b": b"2", b"\x00\xff": b"\xff\x00"}, [])
    assert store.get_many([b"b", b"missing", b"a", b"\x00\xff", b"a"]) == [b"2", None, b"1", b"\xff\x00", b"1"]
    assert all(type(value) is bytes for value in store.get_many([b"a", b"b"]))


def test_write_puts_and_deletes_in_one_batch(store: JoinStore) -> None:
    store.write({b"a": b"1", b"b": b"2", b"c": b"3"}, [])
    store.write({b"a": b"one", b"d": b"4"}, [b"b", b"never-there"])
    assert sorted(store.items()) == [(b"a", b"one"), (b"c", b"3"), (b"d", b"4")]
    assert len(store) == 3
    store.write({}, [])  # an empty batch changes nothing
    assert len(store) == 3


def test_a_key_both_deleted_and_put_ends_up_put(store: JoinStore) -> None:
    store.write({b"a": b"1"}, [])
    store.write({b"a": b"2"}, [b"a"])
    assert store.get_many([b"a"]) == [b"2"]


def test_items_yields_bytes_pairs(store: JoinStore) -> None:
    puts = {bytes([i]) + b"key": bytes([255 - i]) * i for i in range(0, 256, 5)}
    store.write(puts, [])
    items = list(store.items())
    assert dict(items) == puts and len(items) == len(puts) == len(store)
    assert all(type(key) is bytes and type(value) is bytes for key, value in items)


def test_clear_wipes_and_the_store_stays_usable(store: JoinStore) -> None:
    store.write({b"a": b"1", b"b": b"2"}, [])
    store.clear()
    assert len(store) == 0 and list(store.items()) == [] and store.get_many([b"a"]) == [None]
    store.write({b"c": b"3"}, [])
    assert list(store.items()) == [(b"c", b"3")]


def test_large_values(store: JoinStore) -> None:
    value = bytes(range(256)) * 4000
    store.write({b"big": value}, [])
    assert store.get_many([b"big"]) == [value]


def test_the_joiner_gives_the_same_results_on_either_store(store: JoinStore) -> None:
    models = {"m": JoinModel(horizon=120.0, attributes=("sex",))}
    reference = OutcomeJoiner(models, MemoryJoinStore(), max_waiting=50)
    joiner = OutcomeJoiner(models, store, max_waiting=50)
    for step in range(6):
        predictions = [
            (
                {
                    "event_id": f"{i:08x}-0000-4000-8000-{step:012x}" if i % 2 else f"p{i}-{step}",
                    "model_id": "m",
                    "prediction": {"label": i % 2, "score": i / 40},
                    "attributes": {"sex": "fm"[i % 2]},
                },
                step * 30.0 + i,
            )
            for i in range(20)
        ]
        outcomes = [
            ({"prediction_id": str(event["event_id"]), "model_id": "m", "label": 1}, step * 30.0 + 25)
            for event, _ in predictions[::3]
        ]
        outcomes += [
            ({"prediction_id": f"orphan-{step}-{i}", "model_id": "m", "label": 0}, step * 30.0) for i in range(9)
        ]
        expected = reference.join(predictions, outcomes)
        assert joiner.join(predictions, outcomes) == expected
        assert joiner.expire(step * 30.0) == reference.expire(step * 30.0)
        assert joiner.waiting == reference.waiting
        assert sorted(store.items()) == sorted(reference.store.items())
    assert joiner.expire(math.inf) == reference.expire(math.inf)
    assert len(store) == 0


def test_a_rocksdb_store_keeps_its_data_across_a_reopen(tmp_path: Path) -> None:
    with RocksJoinStore(tmp_path / "join") as store:
        store.write({b"a": b"1"}, [])
    with RocksJoinStore(tmp_path / "join") as store:
        assert list(store.items()) == [(b"a", b"1")]
        store.clear()
    with RocksJoinStore(tmp_path / "join") as store:
        assert len(store) == 0
    with pytest.raises(RuntimeError, match="closed"):
        store.get_many([b"a"])
