"""The outcome join: any arrival order, duplicates counted once, batches, a cap, horizon expiry."""

from __future__ import annotations

import itertools
import math
import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.monitor.join import (
    Expired,
    JoinModel,
    JoinResult,
    JoinStore,
    LabelledRow,
    MemoryJoinStore,
    OutcomeJoiner,
)
from watchkeeper.monitor.join_records import (
    FORMAT_VERSION,
    KIND_J,
    KIND_O,
    KIND_P,
    encode_joined,
    encode_outcome,
    kind_of,
    kinds_of,
    outcome_event,
    outcome_truth,
    store_key,
    store_keys,
)

MODELS = {"m": JoinModel(horizon=100.0, attributes=("sex",))}
Batch = tuple[list[tuple[dict[str, Any], float]], list[tuple[dict[str, Any], float]]]


def _joiner(store: Any = None, max_waiting: int | None = None) -> OutcomeJoiner:
    return OutcomeJoiner(MODELS, store if store is not None else MemoryJoinStore(), max_waiting)


def _prediction(pid: str, label: int = 1, model: str = "m") -> dict[str, Any]:
    return {
        "event_id": pid,
        "model_id": model,
        "model_version": "3",
        "features": {"x": 1.0},
        "prediction": {"label": label, "score": 0.7},
        "attributes": {"sex": "f", "zip": "123"},
    }


def _outcome(pid: str, label: int = 0, model: str = "m") -> dict[str, Any]:
    return {"prediction_id": pid, "model_id": model, "label": label}


def _embedded(pid: str, label: int = 1, prediction_time: float | None = 3.0) -> dict[str, Any]:
    event = {
        **_outcome(pid, label),
        "prediction": {"label": 0, "score": 0.2},
        "attributes": {"sex": "m"},
        "model_version": "9",
    }
    if prediction_time is not None:
        event["prediction_timestamp"] = prediction_time
    return event


def _add_prediction(joiner: OutcomeJoiner, event: dict[str, Any], time: float) -> JoinResult:
    return joiner.join([(event, time)], [])


def _add_outcome(joiner: OutcomeJoiner, event: dict[str, Any], time: float) -> JoinResult:
    return joiner.join([], [(event, time)])


def _one_status(result: JoinResult) -> str:
    [status] = [name for name, count in result.status.items() if count]
    return status


def _entries(store: JoinStore) -> dict[bytes, bytes]:
    """The join entries of a store, without the expiry index chunks (kind x)."""
    return {key: value for key, value in store.items() if not key.startswith(b"x")}


def _multiset(rows: Sequence[LabelledRow]) -> Counter[str]:
    return Counter(repr(row) for row in rows)


class CountingStore(MemoryJoinStore):
    """A memory store that records every call (what a changelog-capturing shell would see)."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0
        self.writes: list[tuple[dict[bytes, bytes], list[bytes]]] = []

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.gets += 1
        return super().get_many(keys)

    def write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> None:
        self.writes.append((dict(puts), list(deletes)))
        super().write(puts, deletes)


# -- the behaviours of the one-event API, through one-event batches -----------------------
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_pair_joins_once_whatever_the_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 15))
    items = [("p", str(i)) for i in range(n)] + [("o", str(i)) for i in range(n)]
    items += [("o", str(i)) for i in data.draw(st.lists(st.integers(0, n - 1), max_size=5))]  # duplicates
    order = data.draw(st.permutations(items))
    joiner = _joiner()
    rows: list[LabelledRow] = []
    for t, (kind, pid) in enumerate(order):
        if kind == "p":
            rows += _add_prediction(joiner, _prediction(pid), float(t)).rows
        else:
            rows += _add_outcome(joiner, _outcome(pid), float(t)).rows
    assert sorted(r.prediction_time for r in rows) == sorted(float(order.index(("p", str(i)))) for i in range(n))
    assert len(rows) == n
    assert all(r.true_label == "0" and r.label == "1" and r.attributes == {"sex": "f"} for r in rows)
    assert joiner.waiting == 0
    assert all(kind_of(value) == KIND_J for value in _entries(joiner.store).values())  # only joined markers left

    # the same events as one batch: predictions first, so every outcome finds its prediction
    batch = joiner_in_one = _joiner()
    result = batch.join(
        [(_prediction(pid), float(t)) for t, (kind, pid) in enumerate(order) if kind == "p"],
        [(_outcome(pid), float(t)) for t, (kind, pid) in enumerate(order) if kind == "o"],
    )
    assert _multiset(result.rows) == _multiset(rows)
    assert result.status["joined"] == n and result.status["duplicate"] == len(items) - 2 * n
    assert joiner_in_one.waiting == 0


def test_labels_are_attributed_to_the_prediction_time() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 10.0)
    result = _add_outcome(joiner, _outcome("a", 1), 70.0)
    assert _one_status(result) == "joined"
    [row] = result.rows
    assert (row.prediction_time, row.outcome_time, row.model_version) == (10.0, 70.0, "3")
    assert (row.label, row.score, row.true_label, row.true_value, row.attributes) == ("1", 0.7, "1", None, {"sex": "f"})


def test_an_outcome_that_arrives_first_waits_and_the_prediction_completes_it() -> None:
    joiner = _joiner()
    assert _one_status(_add_outcome(joiner, {**_outcome("a"), "value": None}, 5.0)) == "waiting"
    assert joiner.waiting == 1
    result = _add_prediction(joiner, _prediction("a"), 2.0)
    [row] = result.rows
    assert (row.prediction_time, row.outcome_time, row.true_label) == (2.0, 5.0, "0")
    assert joiner.waiting == 0
    assert _one_status(_add_outcome(joiner, _outcome("a"), 6.0)) == "duplicate"


def test_regression_values_and_a_prediction_without_label() -> None:
    joiner = _joiner()
    event = {**_prediction("r"), "prediction": {"value": 3}, "model_version": None}
    _add_prediction(joiner, event, 1.0)
    [row] = _add_outcome(joiner, {"prediction_id": "r", "model_id": "m", "value": 2}, 2.0).rows
    assert (row.label, row.score, row.value, row.true_label, row.true_value) == (None, None, 3.0, None, 2.0)
    assert row.model_version == "unversioned"


def test_horizon_expires_unlabeled_predictions_and_orphan_outcomes() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 0.0)
    orphan = {**_outcome("orphan"), "event_id": "o-1", "timestamp": "2026-01-01T00:00:00Z", "extra": [1, {"é": None}]}
    _add_outcome(joiner, orphan, 5.0)
    assert joiner.expire(now=99.0) == Expired([], [])
    expired = joiner.expire(now=200.0)
    assert expired.predictions == [("m", "3", 0.0)]
    assert [orjson.loads(raw) for raw in expired.outcomes] == [orphan]  # the original event, as JSON
    assert all(type(raw) is bytes for raw in expired.outcomes)
    assert joiner.waiting == 0 and len(joiner.store) == 0


def test_expiry_works_by_whole_minutes_of_due_time_and_lists_by_due_time() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("late"), 30.0)  # due 130: bucket [120, 180)
    _add_prediction(joiner, _prediction("early"), 25.0)  # due 125
    _add_outcome(joiner, _outcome("o"), 21.0)  # due 121
    _add_prediction(joiner, _prediction("next"), 85.0)  # due 185: bucket [180, 240)
    assert joiner.expire(now=179.9) == Expired([], [])  # due, but the bucket has not ended
    expired = joiner.expire(now=180.0)
    assert expired.predictions == [("m", "3", 25.0), ("m", "3", 30.0)]
    assert len(expired.outcomes) == 1
    assert joiner.waiting == 1
    assert joiner.expire(now=240.0).predictions == [("m", "3", 85.0)]
    assert len(joiner.store) == 0


def test_a_duplicate_outcome_after_the_join_is_not_counted_again() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 0.0)
    assert _one_status(_add_outcome(joiner, _outcome("a"), 1.0)) == "joined"
    second = _add_outcome(joiner, _outcome("a"), 2.0)
    assert second.rows == [] and _one_status(second) == "duplicate"


def test_the_joined_marker_is_kept_until_the_horizon() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 0.0)
    _add_outcome(joiner, _outcome("a"), 1.0)
    assert joiner.expire(now=110.0) == Expired([], [])  # marker due at 100, bucket [60, 120) not over
    assert _one_status(_add_outcome(joiner, _outcome("a"), 110.0)) == "duplicate"
    assert joiner.expire(now=120.0) == Expired([], [])  # the marker goes silently
    assert len(joiner.store) == 0
    assert _one_status(_add_outcome(joiner, _outcome("a"), 130.0)) == "waiting"  # past the horizon: an orphan


def test_redelivered_predictions_are_stored_once() -> None:
    joiner = _joiner()
    result = joiner.join([(_prediction("a"), 1.0), (_prediction("a", label=0), 2.0)], [])
    assert result.rows == [] and joiner.waiting == 1
    _add_prediction(joiner, _prediction("a"), 3.0)
    [row] = _add_outcome(joiner, _outcome("a"), 4.0).rows
    assert (row.prediction_time, row.label) == (1.0, "1")  # the first one
    assert _add_prediction(joiner, _prediction("a"), 5.0).rows == [] and joiner.waiting == 0


def test_an_outcome_with_its_prediction_embedded_needs_no_join() -> None:
    joiner = _joiner()
    result = _add_outcome(joiner, _embedded("z"), 10.0)
    assert _one_status(result) == "embedded"
    [row] = result.rows
    assert (row.label, row.score, row.true_label, row.prediction_time, row.attributes, row.model_version) == (
        "0",
        0.2,
        "1",
        3.0,
        {"sex": "m"},
        "9",
    )
    assert _one_status(_add_outcome(joiner, _embedded("z"), 11.0)) == "duplicate"
    assert _add_prediction(joiner, _prediction("z"), 12.0).rows == []  # already labelled
    assert joiner.waiting == 0


def test_an_embedded_outcome_replaces_a_waiting_prediction() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("z"), 1.0)
    result = _add_outcome(joiner, _embedded("z", prediction_time=None), 10.0)
    [row] = result.rows
    assert (_one_status(result), row.prediction_time, row.label) == ("embedded", 10.0, "0")
    assert joiner.waiting == 0
    assert joiner.expire(now=math.inf).predictions == []  # not counted as unlabeled later


def test_the_first_outcome_wins_over_a_later_embedded_one() -> None:
    joiner = _joiner()
    _add_outcome(joiner, _outcome("z"), 1.0)
    assert _one_status(_add_outcome(joiner, _embedded("z"), 2.0)) == "duplicate"
    [row] = _add_prediction(joiner, _prediction("z"), 0.5).rows  # completes the first outcome, once
    assert (row.outcome_time, row.true_label, row.label) == (1.0, "0", "1")


def test_models_not_joined_are_ignored() -> None:
    joiner = _joiner()
    result = joiner.join([(_prediction("a", model="other"), 1.0)], [(_outcome("b", model="other"), 2.0)])
    assert result.rows == [] and _one_status(result) == "ignored"
    assert joiner.waiting == 0 and len(joiner.store) == 0
    assert _one_status(_add_outcome(joiner, _outcome("a"), 3.0)) == "waiting"


def test_statuses_count_every_outcome_once() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("joined"), 0.0)
    _add_prediction(joiner, _prediction("dup"), 0.0)
    _add_outcome(joiner, _outcome("dup"), 0.0)
    outcomes = [_outcome("joined"), _outcome("dup"), _outcome("new"), _outcome("new"), _embedded("e")]
    outcomes.append(_outcome("x", model="other"))
    result = joiner.join([], [(event, 1.0) for event in outcomes])
    assert result.status == {"joined": 1, "waiting": 1, "duplicate": 2, "embedded": 1, "overflow": 0, "ignored": 1}
    assert sum(result.status.values()) == len(outcomes)


# -- batches --------------------------------------------------------------------------------
def test_a_batch_reads_once_and_writes_once() -> None:
    store = CountingStore()
    joiner = _joiner(store)
    _add_outcome(joiner, _outcome("waiting-outcome"), 0.0)
    store.gets, store.writes = 0, []
    predictions = [(_prediction(str(i)), float(i)) for i in range(50)]
    predictions.append((_prediction("waiting-outcome"), 1.0))
    outcomes = [(_outcome(str(i)), 60.0 + i) for i in range(0, 50, 2)] + [(_embedded("e"), 2.0)]
    result = joiner.join(predictions, outcomes)
    assert store.gets == 1 and len(store.writes) == 1
    assert len(result.rows) == 27
    puts, deletes = store.writes[0]
    assert deletes == []  # the outcome that waited is overwritten by its joined marker, under the same key
    assert sum(1 for key, value in puts.items() if key[:1] != b"x" and kind_of(value) == KIND_P) == 25
    assert joiner.join([], []) == JoinResult() and store.gets == 1  # nothing to do: no store call
    duplicate = joiner.join([(_prediction("1"), 1.0)], [])  # nothing changes: read, no write
    assert duplicate.rows == [] and store.gets == 2 and len(store.writes) == 1
    store.writes = []
    joiner.expire(now=math.inf)
    assert len(store.writes) == 1 and len(store) == 0


def test_rows_come_in_a_deterministic_order() -> None:
    joiner = _joiner()
    joiner.join([], [(_outcome("b"), 0.0), (_outcome("a"), 0.0)])
    result = joiner.join(
        [(_prediction("a"), 1.0), (_prediction("c"), 2.0), (_prediction("b"), 3.0)],
        [(_embedded("d"), 4.0), (_outcome("c"), 5.0)],
    )
    times = [(r.prediction_time, r.outcome_time) for r in result.rows]
    assert times == [(1.0, 0.0), (3.0, 0.0), (3.0, 4.0), (2.0, 5.0)]


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[list[tuple[str, dict[str, Any], float]], list[int]]:
    """Random events of a few prediction ids, interleaved, and random batch boundaries."""
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(draw(st.integers(1, 8))):
        pid = str(uuid.UUID(int=i + 1)) if draw(st.booleans()) else f"id-{i}"
        for kind in draw(st.lists(st.sampled_from(["p", "o", "e", "x"]), min_size=1, max_size=5)):
            label = draw(st.integers(0, 1))
            if kind == "p":
                events.append(("p", _prediction(pid, label)))
            elif kind == "o":
                events.append(("o", _outcome(pid, label)))
            elif kind == "e":
                time = draw(st.one_of(st.none(), st.floats(0, 500, allow_nan=False)))
                events.append(("o", _embedded(pid, label, prediction_time=time)))
            else:
                events.append(("o", _outcome(pid, label, model="other")))
    order = draw(st.permutations(events))
    times = draw(st.lists(st.floats(0, 400, allow_nan=False), min_size=len(order), max_size=len(order)))
    cuts = draw(st.lists(st.integers(1, len(order)), max_size=len(order)))
    return [(kind, event, time) for (kind, event), time in zip(order, times, strict=True)], sorted(set(cuts))


def _batches(events: list[tuple[str, dict[str, Any], float]], cuts: list[int]) -> list[Batch]:
    bounds = [0, *cuts, len(events)]
    batches = []
    for start, end in itertools.pairwise(bounds):
        chunk = events[start:end]
        batches.append(
            (
                [(event, time) for kind, event, time in chunk if kind == "p"],
                [(event, time) for kind, event, time in chunk if kind == "o"],
            )
        )
    return batches


def _run(batches: list[Batch]) -> tuple[OutcomeJoiner, list[LabelledRow], Counter[str]]:
    joiner = _joiner()
    rows: list[LabelledRow] = []
    status: Counter[str] = Counter()
    for predictions, outcomes in batches:
        result = joiner.join(predictions, outcomes)
        rows += result.rows
        status.update(result.status)
    return joiner, rows, status


@settings(max_examples=300, deadline=None)
@given(_scenario())
def test_batch_boundaries_do_not_change_the_result(scenario: tuple[list[Any], list[int]]) -> None:
    events, cuts = scenario
    single, single_rows, single_status = _run(_batches(events, list(range(1, len(events)))))
    batched, batched_rows, batched_status = _run(_batches(events, cuts))
    assert _multiset(batched_rows) == _multiset(single_rows)
    assert _entries(batched.store) == _entries(single.store)
    assert batched.waiting == single.waiting
    for name in ("duplicate", "embedded", "ignored", "overflow"):
        assert batched_status[name] == single_status[name], name
    # an outcome waits one-by-one where the batch joins it (its prediction came later, same batch)
    assert batched_status["joined"] + batched_status["waiting"] == single_status["joined"] + single_status["waiting"]
    # a prediction id is labelled exactly once if its first outcome embeds the prediction, or if it has
    # a prediction and an outcome (a plain outcome that came first waits for the prediction: it wins)
    first: dict[str, dict[str, Any]] = {}
    for kind, event, _ in events:
        if kind == "o" and event["model_id"] == "m":
            first.setdefault(event["prediction_id"], event)
    predicted = {event["event_id"] for kind, event, _ in events if kind == "p"}
    labelled = {pid for pid, event in first.items() if "prediction" in event or pid in predicted}
    assert sorted(row.model_version == "9" for row in single_rows) == sorted(
        "prediction" in first[pid] for pid in labelled
    )
    assert batched.expire(now=math.inf) == single.expire(now=math.inf)
    assert len(batched.store) == len(single.store) == 0
    assert batched.waiting == single.waiting == 0


# -- the cap ----------------------------------------------------------------------------------
def test_max_waiting_caps_the_waiting_events_and_reports_the_rest() -> None:
    joiner = _joiner(max_waiting=3)
    result = joiner.join(
        [(_prediction(p), 1.0) for p in ("a", "b", "c", "d", "a")],
        [(_outcome("a"), 2.0), (_outcome("x"), 2.0), (_outcome("y"), 2.0), (_embedded("z"), 2.0)],
    )
    # a, b, c wait; d overflows; the redelivered a is already waiting; a's outcome joins (room for x); y overflows
    assert result.overflow == [("prediction", 3), ("outcome", 2)]
    assert result.status == {"joined": 1, "waiting": 1, "duplicate": 0, "embedded": 1, "overflow": 1, "ignored": 0}
    assert joiner.waiting == 3  # b, c, x; joined markers (a, z) do not count
    assert len(result.rows) == 2
    # a full partition still joins: the prediction completes the waiting outcome, outcomes complete predictions
    full = joiner.join([(_prediction("e"), 3.0), (_prediction("x"), 3.0)], [(_outcome("b"), 4.0)])
    assert len(full.rows) == 2 and full.overflow == [("prediction", 0)]
    assert joiner.waiting == 1
    assert joiner.expire(now=math.inf).predictions == [("m", "3", 1.0)]  # c
    assert joiner.join([(_prediction("e"), 5.0)], []).overflow == []


def test_a_zero_cap_stores_nothing_but_still_joins_embedded_outcomes() -> None:
    joiner = _joiner(max_waiting=0)
    result = joiner.join([(_prediction("a"), 1.0)], [(_outcome("b"), 1.0), (_embedded("c"), 1.0)])
    assert result.overflow == [("prediction", 0), ("outcome", 0)] and len(result.rows) == 1
    with pytest.raises(ValueError, match="max_waiting"):
        _joiner(max_waiting=-1)


# -- restore ---------------------------------------------------------------------------------
def _busy_joiner(store: MemoryJoinStore) -> OutcomeJoiner:
    joiner = _joiner(store)
    joiner.join(
        [(_prediction(str(uuid.UUID(int=i))), float(i * 7)) for i in range(1, 40)] + [(_prediction("plain"), 5.0)],
        [(_outcome(f"orphan-{i}"), float(i * 11)) for i in range(20)],
    )
    joiner.join([], [(_outcome(str(uuid.UUID(int=i))), 300.0) for i in range(1, 40, 3)] + [(_embedded("e"), 9.0)])
    joiner.expire(now=150.0)
    joiner.join([(_prediction("orphan-19"), 200.0), (_prediction("new"), 260.0)], [(_outcome("orphan-18"), 260.0)])
    return joiner


def test_rebuild_index_from_a_store_filled_by_another_joiners_writes() -> None:
    recorded = CountingStore()
    original = _busy_joiner(recorded)
    restored_store = MemoryJoinStore()
    for puts, deletes in recorded.writes:  # what a changelog replay gives
        restored_store.write(puts, deletes)
    assert dict(restored_store.items()) == dict(recorded.items())
    restored = OutcomeJoiner(MODELS, restored_store)
    restored.rebuild_index()
    assert restored.waiting == original.waiting > 0
    for now in (200.0, 260.0, 330.0, math.inf):
        assert restored.expire(now) == original.expire(now)
        assert dict(restored_store.items()) == dict(recorded.items())


def test_the_expiry_index_is_rebuilt_from_the_store_after_a_restart() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 0.0)
    restarted = OutcomeJoiner(MODELS, joiner.store)
    restarted.store.clear()
    restarted.rebuild_index()
    assert restarted.waiting == 0
    _add_prediction(restarted, _prediction("a"), 0.0)
    again = OutcomeJoiner(MODELS, restarted.store)  # built on a filled store: indexes it before its first use
    assert again.expire(now=500.0).predictions == [("m", "3", 0.0)]
    assert again.waiting == 0


# -- the encoding ------------------------------------------------------------------------------
def test_entries_are_compact_and_uuid_ids_take_16_bytes() -> None:
    joiner = _joiner()
    pid = "6f1c0b8e-3d2a-4c5b-9e7f-0123456789ab"
    _add_prediction(joiner, _prediction(pid), 1.0)
    _add_prediction(joiner, _prediction(pid.upper()), 1.0)  # not canonical: kept as text
    entries = _entries(joiner.store)
    assert set(entries) == {b"U" + uuid.UUID(pid).bytes, b"t" + pid.upper().encode()}
    assert all(value[0] == FORMAT_VERSION and len(value) < 50 for value in entries.values())
    assert len(joiner.join([], [(_outcome(pid), 2.0), (_outcome(pid.upper()), 2.0)]).rows) == 2


def test_a_text_id_never_meets_a_uuid_with_the_same_bytes() -> None:
    joiner = _joiner()
    pid = str(uuid.UUID(bytes=b"ABCDEFGHIJKLMNOP"))
    joiner.join([(_prediction(pid), 1.0)], [(_outcome("ABCDEFGHIJKLMNOP"), 2.0)])
    assert joiner.waiting == 2
    [row] = _add_outcome(joiner, _outcome(pid), 3.0).rows
    assert row.prediction_time == 1.0


def test_attribute_values_of_every_json_scalar_type_survive_the_store() -> None:
    models = {"m": JoinModel(horizon=100.0, attributes=("s", "i", "f", "b", "n", "missing", "long"))}
    joiner = OutcomeJoiner(models, MemoryJoinStore())
    attributes = {"s": "ü", "i": 12, "f": 0.1, "b": True, "n": None, "long": "x" * 300}
    event = {**_prediction("a"), "attributes": attributes, "model_id": "m", "model_version": "é" * 400}
    joiner.join([(event, 1.0)], [])
    [row] = _add_outcome(joiner, _outcome("a"), 2.0).rows
    assert row.attributes == {**attributes, "missing": None}
    assert [type(v) for v in row.attributes.values()] == [str, int, float, bool, type(None), type(None), str]
    assert row.model_version == "é" * 400


@pytest.mark.parametrize("text", ["a\x00b", "\x00" * 300, "", "ok"])
def test_strings_with_nul_characters_or_empty_survive_the_store(text: str) -> None:
    models = {"m": JoinModel(horizon=100.0, attributes=("s", "t"))}
    joiner = OutcomeJoiner(models, MemoryJoinStore())
    event = {**_prediction("a"), "attributes": {"s": text, "t": "x"}, "model_version": text or None}
    event["prediction"] = {"label": text}
    joiner.join([(event, 1.0)], [])
    [row] = _add_outcome(joiner, _outcome("a"), 2.0).rows
    assert (row.attributes, row.model_version, row.label) == ({"s": text, "t": "x"}, text or "unversioned", text)


def test_an_unknown_format_version_is_named() -> None:
    store = MemoryJoinStore()
    store.write({b"ta": bytes([7]) + bytes(17)}, [])
    with pytest.raises(ValueError, match="version 7"):
        OutcomeJoiner(MODELS, store).rebuild_index()
    with pytest.raises(ValueError, match="version 7"):
        OutcomeJoiner(MODELS, store).expire(0.0)  # indexes the store before its first use
    store.clear()
    store.write({b"ta": bytes([FORMAT_VERSION]) + b"?" + bytes(8)}, [])
    with pytest.raises(ValueError, match="unknown kind"):
        _ = OutcomeJoiner(MODELS, store).waiting


def test_a_stored_value_of_another_version_is_not_misread() -> None:
    joiner = _joiner()
    _add_prediction(joiner, _prediction("a"), 1.0)
    joiner.store.write({b"ta": b"\x01" + next(v for k, v in joiner.store.items() if k == b"ta")[1:]}, [])
    with pytest.raises(ValueError, match="format version 1"):
        _add_outcome(joiner, _outcome("a"), 2.0)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "label": st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text()),
            "value": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False)),
            "model_id": scalars,
            "attributes": scalars,
        },
    )
)
def test_a_waiting_outcome_keeps_its_truth_as_a_row_takes_it_and_its_event_as_sent(fields: dict[str, Any]) -> None:
    """The contract's label (text, int64, bool) and value (a JSON number) of every kind."""
    event = {"prediction_id": "p", **fields}
    stored = encode_outcome(event, 12.5, 112.5)
    label, value = event.get("label"), event.get("value")
    text = None if label is None else str(int(label)) if type(label) is bool else str(label)
    assert outcome_truth(stored) == (text, None if value is None else float(value), 12.5)
    assert outcome_event(stored) == orjson.dumps(event)
    assert kind_of(stored) == KIND_O


uuids = st.uuids().map(str)
ids = st.one_of(uuids, uuids.map(str.upper), uuids.map(lambda u: u[:-1]), uuids.map(lambda u: u + "0"), st.text())


@given(st.one_of(st.lists(uuids), st.lists(ids)))
def test_the_batch_store_keys_are_each_ids_key(prediction_ids: list[str]) -> None:
    """The batch path (all canonical UUIDs) and the fallback give the key of one id, id by id."""
    assert store_keys(prediction_ids) == [store_key(i) for i in prediction_ids]


def test_a_batch_of_values_with_one_bad_value_is_refused_naming_it() -> None:
    good = encode_outcome({"prediction_id": "p", "label": "1"}, 1.0, 2.0)
    assert kinds_of([good, encode_joined(3.0)]) == [KIND_O, KIND_J]
    for bad, message in ((b"\x07" + good[1:], "format version 7"), (good[:1] + b"?" + good[2:], "unknown kind")):
        with pytest.raises(ValueError, match=message):
            kinds_of([good, bad])
    with pytest.raises(ValueError, match="unknown kind"):
        kinds_of([good, good[:1]])
