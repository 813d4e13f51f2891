"""The outcome join: any arrival order, duplicates counted once, horizon expiry."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.monitor.join import JoinModel, OutcomeJoiner

MODELS = {"m": JoinModel(horizon=100.0, attributes=("sex",))}


def _joiner() -> OutcomeJoiner:
    return OutcomeJoiner(MODELS, {}, {}, {})


def _prediction(pid: str, t: float) -> dict[str, Any]:
    return {
        "event_id": pid,
        "model_id": "m",
        "model_version": "3",
        "prediction": {"label": 1, "score": 0.7},
        "attributes": {"sex": "f", "zip": "123"},
    }


def _outcome(pid: str, label: int = 0) -> dict[str, Any]:
    return {"prediction_id": pid, "model_id": "m", "label": label}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_pair_joins_once_whatever_the_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 15))
    items = [("p", str(i)) for i in range(n)] + [("o", str(i)) for i in range(n)]
    items += [("o", str(i)) for i in data.draw(st.lists(st.integers(0, n - 1), max_size=5))]  # duplicates
    order = data.draw(st.permutations(items))
    joiner = _joiner()
    rows = []
    for t, (kind, pid) in enumerate(order):
        if kind == "p":
            row = joiner.add_prediction(_prediction(pid, t), float(t))
        else:
            row, _ = joiner.add_outcome(_outcome(pid), float(t))
        if row is not None:
            rows.append(row)
    assert sorted(r.prediction_time for r in rows) == sorted(float(order.index(("p", str(i)))) for i in range(n))
    assert len(rows) == n
    assert all(r.true_label == "0" and r.label == "1" and r.attributes == {"sex": "f"} for r in rows)
    assert not joiner.predictions and not joiner.outcomes


def test_labels_are_attributed_to_the_prediction_time() -> None:
    joiner = _joiner()
    joiner.add_prediction(_prediction("a", 10.0), 10.0)
    row, status = joiner.add_outcome(_outcome("a", 1), 70.0)
    assert status == "joined" and row is not None
    assert (row.prediction_time, row.outcome_time, row.model_version) == (10.0, 70.0, "3")


def test_horizon_expires_unlabeled_predictions_and_orphan_outcomes() -> None:
    joiner = _joiner()
    joiner.add_prediction(_prediction("a", 0.0), 0.0)
    joiner.add_outcome(_outcome("orphan"), 5.0)
    assert joiner.expire(now=99.0).predictions == []
    expired = joiner.expire(now=200.0)
    assert expired.predictions == [("m", "3", 0.0)]
    assert [b'"prediction_id":"orphan"' in raw for raw in expired.outcomes] == [True]
    assert not joiner.predictions and not joiner.outcomes


def test_a_duplicate_outcome_after_the_join_is_not_counted_again() -> None:
    joiner = _joiner()
    joiner.add_prediction(_prediction("a", 0.0), 0.0)
    assert joiner.add_outcome(_outcome("a"), 1.0)[1] == "joined"
    assert joiner.add_outcome(_outcome("a"), 2.0) == (None, "duplicate")


def test_an_outcome_with_its_prediction_embedded_needs_no_join() -> None:
    joiner = _joiner()
    event = {
        **_outcome("z", 1),
        "prediction": {"label": 0, "score": 0.2},
        "prediction_timestamp": 3.0,
        "attributes": {"sex": "m"},
        "model_version": "9",
    }
    row, status = joiner.add_outcome(event, 10.0)
    assert status == "embedded" and row is not None
    assert (row.label, row.score, row.true_label, row.prediction_time, row.attributes) == (
        "0",
        0.2,
        "1",
        3.0,
        {"sex": "m"},
    )


def test_the_expiry_index_is_rebuilt_from_the_stores_after_a_restart() -> None:
    joiner = _joiner()
    joiner.add_prediction(_prediction("a", 0.0), 0.0)
    restarted = OutcomeJoiner(MODELS, joiner.predictions, joiner.outcomes, joiner.joined)
    restarted.rebuild_index()
    assert restarted.expire(now=500.0).predictions == [("m", "3", 0.0)]
