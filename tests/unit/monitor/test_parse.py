"""The fast batch validator accepts and rejects exactly what the contract (the msgspec Structs) does."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.events import OutcomeEvent, PredictionEvent
from watchkeeper.monitor.parse import as_float, parse_outcomes, parse_predictions

MODELS = {"m1", "m2"}
scalars = st.one_of(  # JSON-representable values only (orjson: 64-bit integers)
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
anything = st.one_of(
    scalars,
    st.lists(st.integers(-5, 5), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-5, 5), max_size=2),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123+02:00",
            "2026-01-02T03:04:05",
            "20260102T030405Z",
            "yesterday",
            "",
        ]
    ),
    st.integers(0, 2_000_000_000),
    st.booleans(),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": draw(st.one_of(st.text(min_size=1, max_size=4), st.just(""), st.integers(0, 3))),
        "model_id": draw(st.sampled_from(["m1", "m2"])),
        "timestamp": draw(timestamps),
        "features": draw(
            st.one_of(
                st.dictionaries(st.text(max_size=3), scalars, max_size=4),
                st.dictionaries(st.text(max_size=3), anything, max_size=3),
                st.integers(-5, 5),
            )
        ),
    }
    if draw(st.booleans()):
        event["prediction"] = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "score": st.one_of(st.floats(-0.5, 1.5), st.none(), st.text(max_size=2), st.booleans()),
                        "probabilities": st.dictionaries(
                            st.text(max_size=2), st.one_of(st.floats(0, 1), st.just("0.5"))
                        ),
                        "label": st.one_of(scalars, st.lists(st.integers(-5, 5), max_size=1)),
                        "value": st.one_of(st.floats(allow_nan=False), st.none(), st.booleans(), st.just("1.5")),
                    },
                ),
                st.integers(-5, 5),
            )
        )
    if draw(st.booleans()):
        event["attributes"] = draw(st.dictionaries(st.text(max_size=3), anything, max_size=3))
    if draw(st.booleans()):
        event["model_version"] = draw(st.one_of(st.text(max_size=3), st.integers(-5, 5)))
    for field in draw(st.lists(st.sampled_from(["event_id", "model_id", "timestamp", "features"]), max_size=1)):
        event.pop(field, None)
    return event


@settings(max_examples=400, deadline=None)
@given(events())
def test_validator_agrees_with_the_contract(event: dict[str, Any]) -> None:
    try:
        msgspec.json.decode(orjson.dumps(event), type=PredictionEvent)
        contract_ok = True
    except msgspec.ValidationError:
        contract_ok = False
    batch = parse_predictions([orjson.dumps(event)], MODELS)
    assert (len(batch.events) == 1) == contract_ok, (event, batch.rejected)


def test_rejections_name_field_value_and_expectation() -> None:
    raw = [
        b"not json",
        orjson.dumps([1, 2]),
        orjson.dumps({"event_id": "1", "model_id": "zz", "timestamp": "2026-01-01T00:00:00Z", "features": {}}),
        orjson.dumps({"event_id": "1", "model_id": "m1", "timestamp": "2026-01-01T00:00:00", "features": {}}),
        orjson.dumps({"event_id": "1", "model_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "features": {"a": [1]}}),
        orjson.dumps(
            {
                "event_id": "1",
                "model_id": "m1",
                "timestamp": "2026-01-01T00:00:00Z",
                "features": {},
                "prediction": {"score": 1.7},
            }
        ),
        orjson.dumps({"event_id": "ok", "model_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "features": {}}),
    ]
    batch = parse_predictions(raw, MODELS)
    reasons = [r.reason for r in batch.rejected]
    assert [r.index for r in batch.rejected] == [0, 1, 2, 3, 4, 5]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "event: list: expected a JSON object"
    assert reasons[2] == "model_id: 'zz': not a configured model"
    assert reasons[3] == "timestamp: '2026-01-01T00:00:00': expected an RFC 3339 date-time with offset"
    assert reasons[4] == "features.a: [1]: expected a number, string, bool or null"
    assert reasons[5] == "prediction.score: 1.7: expected a number between 0 and 1"
    assert [e["event_id"] for e in batch.events] == ["ok"]
    assert batch.times.tolist() == [1767225600.0]


def test_as_float_flags_non_numeric_values_instead_of_binning_them() -> None:
    values = np.array([[1, None], ["x", 2.5], [True, "3"]], dtype=object)
    numbers, invalid = as_float(values)
    assert np.isnan(numbers[0, 1]) and numbers[1, 1] == 2.5 and numbers[2, 0] == 1.0
    assert invalid.tolist() == [[False, False], [True, False], [False, True]]


@st.composite
def outcomes(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "prediction_id": draw(st.one_of(st.text(min_size=1, max_size=4), st.just(""), st.integers(0, 3))),
        "model_id": draw(st.sampled_from(["m1", "m2"])),
        "timestamp": draw(timestamps),
    }
    for field, strategy in (
        ("label", st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans(), st.floats(0, 1), st.none())),
        ("value", st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just("2.5"), st.booleans())),
        (
            "prediction",
            st.one_of(st.fixed_dictionaries({}, optional={"score": st.floats(-0.5, 1.5)}), st.integers(-5, 5)),
        ),
        ("prediction_timestamp", timestamps),
        ("attributes", st.dictionaries(st.text(max_size=3), anything, max_size=2)),
        ("event_id", st.one_of(st.text(max_size=3), st.integers(0, 3))),
    ):
        if draw(st.booleans()):
            event[field] = draw(strategy)
    return event


@settings(max_examples=400, deadline=None)
@given(outcomes())
def test_outcome_validator_agrees_with_the_contract(event: dict[str, Any]) -> None:
    try:
        msgspec.json.decode(orjson.dumps(event), type=OutcomeEvent)
        contract_ok = True
    except msgspec.ValidationError:
        contract_ok = False
    batch = parse_outcomes([orjson.dumps(event)], MODELS)
    assert (len(batch.events) == 1) == contract_ok, (event, batch.rejected)
