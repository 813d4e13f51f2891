"""Properties of the stage-1 decoder: the batch fast path agrees with the per-record reference.

Valid events are generated from the contract Structs themselves (their msgspec type
information), then mutated (a field replaced by arbitrary JSON, removed, an unknown field
added, a number literal that JSON or float64 cannot carry, truncated bytes, ...).
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.client import encode_event, outcome_event, prediction_event
from watchkeeper.events import OutcomeEvent, PredictionEvent
from watchkeeper.monitor import contracts, parse, reasons
from watchkeeper.monitor.parse import ParsedBatch, parse_outcomes, parse_predictions

MODELS = {"m1", "m2"}
EXAMPLES = int(os.environ.get("WATCHKEEPER_PARSE_EXAMPLES", "300"))  # more for a longer search
CONTRACTS = {"prediction": (PredictionEvent, contracts.PREDICTIONS), "outcome": (OutcomeEvent, contracts.OUTCOMES)}
SENTINEL = "__literal__"
BAD_LITERALS = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e400",
    b"-1e400",
    b"1e309",
    b"123456789012345678901234567890",
    b"9223372036854775808",
    b"1" + b"0" * 400,
    # valid JSON numbers at the edges of float64 / int64
    b"1.7976931348623157e308",
    b"5e-324",
    b"-0.0",
    b"9223372036854775807",
    b"-9223372036854775808",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


def _rfc3339(moment: datetime) -> str:
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if text.endswith("+00:00") and moment.second % 2 else text


# -- valid values, generated from the contract's types -----------------------------------
def valid(info: mi.Type) -> st.SearchStrategy[Any]:
    """JSON-able values that the msgspec type ``info`` accepts."""
    if isinstance(info, mi.Metadata):
        return valid(info.type)
    if isinstance(info, mi.UnionType):
        return st.one_of([valid(t) for t in info.types])
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.StrType):
        return st.text(min_size=info.min_length or 0, max_size=8)
    if isinstance(info, mi.IntType):
        return st.integers(info.ge, info.le)
    if isinstance(info, mi.FloatType):
        low, high = info.ge, info.le
        floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
        ints = st.integers(-(2**53) if low is None else math.ceil(low), 2**53 if high is None else math.floor(high))
        return floats | ints
    if isinstance(info, mi.DateTimeType):
        moments = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=offsets)
        return moments.map(_rfc3339)
    if isinstance(info, mi.DictType):
        return st.dictionaries(st.text(max_size=5), valid(info.value_type), max_size=4)
    if isinstance(info, mi.AnyType):
        return json_values
    if isinstance(info, mi.StructType):
        required = {f.encode_name: valid(f.type) for f in info.fields if f.required}
        optional = {f.encode_name: valid(f.type) for f in info.fields if not f.required}
        records = st.fixed_dictionaries(required, optional=optional)
        rule: dict[str, str] | None = getattr(info.cls, "exactly_one_of", None)
        if rule:
            records = st.tuples(records, st.sampled_from(sorted(rule)), st.data()).map(
                lambda t: _one_of(t[0], t[1], rule, info, t[2])
            )
        return records
    raise NotImplementedError(info)


def _one_of(record: dict[str, Any], keep: str, rule: dict[str, str], info: mi.StructType, data: Any) -> dict[str, Any]:
    for name in rule:
        record.pop(name, None)
    field = next(f for f in info.fields if f.encode_name == keep)
    members = field.type.types if isinstance(field.type, mi.UnionType) else (field.type,)
    value = data.draw(st.one_of([valid(t) for t in members if not isinstance(t, mi.NoneType)]))
    record[keep] = value
    return record


def _with_model(record: dict[str, Any], model: str) -> dict[str, Any]:
    return {**record, "model_id": model}


_VALID = {
    contract: st.builds(_with_model, valid(mi.type_info(contract)), st.sampled_from(sorted(MODELS)))
    for contract in (PredictionEvent, OutcomeEvent)
}


def valid_events(contract: type[msgspec.Struct]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid records of ``contract`` (configured models), generated from its types."""
    return _VALID[contract]


# -- mutations ------------------------------------------------------------------------------
def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((*prefix, key))
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.append((*prefix, i))
            out += _paths(child, (*prefix, i))
    return out


def _set(record: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        record = record[key]
    record[path[-1]] = value


def _delete(record: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        record = record[key]
    del record[path[-1]]


@st.composite
def records(draw: st.DrawFn, contract: type[msgspec.Struct]) -> bytes | None:
    """A raw Kafka value: valid, mutated, or garbage."""
    record = draw(valid_events(contract))
    kind = draw(
        st.sampled_from(["valid", "valid", "replace", "delete", "unknown", "literal", "model", "bytes", "other"])
    )
    paths = _paths(record)
    if kind == "replace" and paths:
        _set(record, draw(st.sampled_from(paths)), draw(json_values))
    elif kind == "delete" and paths:
        _delete(record, draw(st.sampled_from(paths)))
    elif kind == "unknown":
        record[draw(st.text(min_size=1, max_size=5))] = draw(json_values)
    elif kind == "model":
        record["model_id"] = draw(st.sampled_from(["zz", "", "M1"]))
    elif kind == "literal":
        target = draw(st.sampled_from([*paths, ("extra_field",)])) if paths else ("extra_field",)
        _set(record, target, SENTINEL)
        raw = orjson.dumps(record)
        return raw.replace(orjson.dumps(SENTINEL), draw(st.sampled_from(BAD_LITERALS)), 1)
    elif kind == "bytes":
        raw = orjson.dumps(record)
        how = draw(st.sampled_from(["truncate", "garbage", "empty", "none", "array", "duplicate"]))
        if how == "truncate":
            return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
        if how == "garbage":
            return draw(st.binary(max_size=20))
        if how == "empty":
            return b""
        if how == "none":
            return None
        if how == "array":
            return b"[" + raw + b"]"
        key = draw(st.sampled_from(sorted(record))) if record else "event_id"
        return b'{"%s": %s, ' % (key.encode(), orjson.dumps(draw(json_values))) + raw[1:]
    elif kind == "other":
        return orjson.dumps(draw(json_values))
    return orjson.dumps(record)


# -- the properties ---------------------------------------------------------------------------
_HEAD = re.compile(r"^(invalid JSON|event|[A-Za-z_]+(/[A-Za-z_]+)?)(?=[:.\[])")


def _check_batch(raw: list[bytes | None], kind: str) -> ParsedBatch:
    contract, view = CONTRACTS[kind]
    parser = parse_predictions if kind == "prediction" else parse_outcomes
    batch = parser(raw, MODELS)  # no exception escapes
    assert sorted(batch.indices + [r.index for r in batch.rejected]) == list(range(len(raw)))
    assert len(batch.events) == len(batch.indices) == len(batch.times)
    accepted = dict(zip(batch.indices, zip(batch.events, batch.times, strict=True), strict=True))
    fields = {f.encode_name for f in msgspec.structs.fields(contract)}
    for index, payload in enumerate(raw):
        reference, reason = reasons.reference_decision(payload, MODELS, view)
        assert (index in accepted) == (reference is not None), (payload, reason, batch.rejected)
        if reference is None:
            continue
        event, time = accepted[index]
        assert set(event) <= fields
        assert time == contracts.epoch_seconds(reference.timestamp)
        plain = reasons.lenient_loads(payload)  # (an undeclared field may hold 1e400)
        for name, value in event.items():
            field_type = next(f.type for f in msgspec.structs.fields(contract) if f.encode_name == name)
            if name == "timestamp":
                assert value == time  # passed on as epoch seconds
            elif name == "prediction_timestamp" and value is not None:
                assert value == contracts.epoch_seconds(reference.prediction_timestamp)
            else:  # as sent, in the field's type (1 → 1.0 for a float; undeclared nested fields dropped)
                sent = msgspec.convert(plain[name], contracts.fast_type(field_type))
                assert msgspec.json.encode(value) == msgspec.json.encode(sent)
                if value is not None:  # (null: the contract's default applies)
                    assert msgspec.convert(value, field_type) == getattr(reference, name)
    for rejected in batch.rejected:
        assert rejected.reason and rejected.reason == reasons.rejection_reason(raw[rejected.index], MODELS, view)
        head = _HEAD.match(rejected.reason)
        assert head is not None, rejected.reason
        try:  # a reason may name an undeclared field (that holds NaN, say)
            record = reasons.lenient_loads(raw[rejected.index] or b"null")
        except ValueError:
            record = None
        keys = set(record) if isinstance(record, dict) else set()
        assert head.group(1) in {"invalid JSON", "event", "label/value", *fields, *keys}, rejected.reason
        assert "disagree" not in rejected.reason
    return batch


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(PredictionEvent), min_size=1, max_size=8))
def test_prediction_fast_path_agrees_with_the_reference(raw: list[bytes | None]) -> None:
    batch = _check_batch(raw, "prediction")
    alone = [parse_predictions([payload], MODELS) for payload in raw]  # the decision is per record
    assert [i for i, b in enumerate(alone) if b.events] == batch.indices
    assert [b.rejected[0].reason for b in alone if b.rejected] == [r.reason for r in batch.rejected]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records(OutcomeEvent), min_size=1, max_size=8))
def test_outcome_fast_path_agrees_with_the_reference(raw: list[bytes | None]) -> None:
    _check_batch(raw, "outcome")


@settings(max_examples=200, deadline=None)
@given(st.lists(valid_events(PredictionEvent), min_size=1, max_size=20))
def test_valid_generated_events_are_all_accepted(events: list[dict[str, Any]]) -> None:
    batch = parse_predictions([orjson.dumps(e) for e in events], MODELS)
    assert not batch.rejected, batch.rejected
    for parsed, sent in zip(batch.events, events, strict=True):
        assert {k: v for k, v in parsed.items() if k != "timestamp"} == {
            k: v for k, v in sent.items() if k != "timestamp"
        }


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | json_values.map(orjson.dumps))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    for parser in (parse_predictions, parse_outcomes):
        batch = parser([payload], MODELS)
        assert len(batch.events) + len(batch.rejected) == 1
        assert all(r.reason for r in batch.rejected)


# -- the SDK round trip -----------------------------------------------------------------------
features = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    max_size=6,
)
moments = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=offsets)


@settings(max_examples=200, deadline=None)
@given(
    model_id=st.sampled_from(sorted(MODELS)),
    features=features,
    attributes=features,
    prediction=st.fixed_dictionaries(
        {},
        optional={
            "label": st.one_of(st.text(max_size=3), st.integers(-5, 5), st.booleans()),
            "score": st.floats(0, 1),
            "probabilities": st.dictionaries(st.text(max_size=3), st.floats(0, 1), max_size=3),
            "value": st.floats(allow_nan=False, allow_infinity=False),
        },
    ),
    model_version=st.text(max_size=4),
    when=moments,
    event_id=st.text(min_size=1, max_size=8),
)
def test_sdk_prediction_events_round_trip(
    model_id: str,
    features: dict[str, Any],
    attributes: dict[str, Any],
    prediction: dict[str, Any],
    model_version: str,
    when: datetime,
    event_id: str,
) -> None:
    event = prediction_event(
        model_id=model_id,
        features=features,
        prediction=prediction,
        model_version=model_version,
        event_id=event_id,
        timestamp=when,
        attributes=attributes,
        metadata={"run": 1},
    )
    batch = parse_predictions([encode_event(event)], MODELS)
    assert not batch.rejected, batch.rejected
    (parsed,) = batch.events
    assert parsed["event_id"] == parsed["prediction_id"] == event_id
    assert parsed["model_id"] == model_id and parsed["model_version"] == model_version
    assert parsed["features"] == features and parsed["attributes"] == attributes
    assert parsed["prediction"] == prediction
    assert parsed["metadata"] == {"run": 1}
    assert batch.times[0] == pytest.approx(when.timestamp(), abs=1e-6)
    assert msgspec.json.decode(encode_event(event), type=PredictionEvent) == event


@settings(max_examples=100, deadline=None)
@given(label=st.one_of(st.text(max_size=3), st.integers(-5, 5), st.booleans()), when=moments)
def test_sdk_outcome_events_round_trip(label: Any, when: datetime) -> None:
    event = outcome_event(prediction_id="p1", model_id="m1", label=label, timestamp=when, event_id="o1")
    batch = parse_outcomes([encode_event(event)], MODELS)
    assert not batch.rejected, batch.rejected
    assert batch.events == [
        {
            "event_id": "o1",
            "prediction_id": "p1",
            "model_id": "m1",
            "timestamp": batch.events[0]["timestamp"],
            "label": label,
        }
    ]
    assert batch.times[0] == pytest.approx(when.timestamp(), abs=1e-6)


def test_sdk_defaults_to_now_and_an_event_id() -> None:
    before = datetime.now(UTC).timestamp()
    event = prediction_event(model_id="m1", features={"x": 1.0})
    batch = parse_predictions([encode_event(event)], MODELS)
    assert batch.events[0]["prediction_id"] == batch.events[0]["event_id"] and len(event.event_id) == 32
    assert before - 1 <= batch.times[0] <= datetime.now(UTC).timestamp() + 1
    with pytest.raises(ValueError, match="exactly one of label or value"):
        outcome_event(prediction_id="p", model_id="m1")


# -- numbers and timestamps JSON or float64 cannot carry ----------------------------------------
def _prediction(**fields: Any) -> dict[str, Any]:
    return {"event_id": "e", "model_id": "m1", "timestamp": "2026-01-01T00:00:00Z", "features": {}, **fields}


FEATURE = "expected a number, string, bool or null"
TIME = "expected an RFC 3339 date-time with offset or epoch seconds (years 1 to 9999)"
RANGE = "outside float64's finite range"
NOT_JSON = "NaN and Infinity are not JSON numbers"


@pytest.mark.parametrize(
    ("field", "literal", "reason"),
    [
        ("features.x", b"1e400", f"features.x: 1e400: {RANGE}; {FEATURE}"),
        ("features.x", b"-1e400", f"features.x: -1e400: {RANGE}; {FEATURE}"),
        ("features.x", b"NaN", f"features.x: NaN: {NOT_JSON}; {FEATURE}"),
        ("features.x", b"Infinity", f"features.x: Infinity: {NOT_JSON}; {FEATURE}"),
        ("features.x", b"1" + b"0" * 30, f"features.x: 1{'0' * 30}: outside the 64-bit integer range; {FEATURE}"),
        ("prediction.score", b"1e999", f"prediction.score: 1e999: {RANGE}; expected a number between 0 and 1"),
        ("prediction.value", b"-Infinity", f"prediction.value: -Infinity: {NOT_JSON}; expected a number"),
        ("timestamp", b"1e400", f"timestamp: 1e400: {RANGE}; {TIME}"),
        ("timestamp", b"NaN", f"timestamp: NaN: {NOT_JSON}; {TIME}"),
        ("timestamp", b"1e300", "timestamp: 1e+300: expected epoch seconds (years 1 to 9999)"),
        ("metadata.deep", b"[1, Infinity]", f"metadata.deep[1]: Infinity: {NOT_JSON}"),
    ],
)
def test_numbers_json_or_float64_cannot_carry_are_rejected(field: str, literal: bytes, reason: str) -> None:
    record = _prediction(prediction={}, metadata={})
    path = field.split(".")
    target = record
    for key in path[:-1]:
        target = target.setdefault(key, {}) if key != "timestamp" else target
    target[path[-1]] = SENTINEL
    raw = orjson.dumps(record).replace(orjson.dumps(SENTINEL), literal)
    batch = parse_predictions([raw, orjson.dumps(_prediction())], MODELS)
    assert [r.reason for r in batch.rejected] == [reason]
    assert batch.indices == [1]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prediction": {"score": True}}, "prediction.score: True: expected a number between 0 and 1"),
        ({"prediction": {"value": False}}, "prediction.value: False: expected a number"),
        ({"prediction": {"probabilities": {"a": True}}}, "prediction.probabilities.a: True: expected a number"),
        ({"timestamp": True}, f"timestamp: True: {TIME}"),
        (
            {"timestamp": "2026-01-01T00:00Z"},
            "timestamp: '2026-01-01T00:00Z': expected an RFC 3339 date-time with offset",
        ),
        ({"prediction": {"label": 1.5}}, "prediction.label: 1.5: expected an integer"),
        ({"model_version": None}, "model_version: None: expected a string"),
    ],
)
def test_bools_and_wrong_kinds_are_rejected_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    batch = parse_predictions([orjson.dumps(_prediction(**fields))], MODELS)
    assert [r.reason for r in batch.rejected] == [reason]


def test_outcome_reasons_and_prediction_timestamp_as_epoch_seconds() -> None:
    base = {"prediction_id": "p", "model_id": "m1", "timestamp": "2026-01-01T00:00:00Z"}
    raw = [
        orjson.dumps(base),
        orjson.dumps({**base, "label": 1, "value": 2.0}),
        orjson.dumps({**base, "value": True}),
        orjson.dumps({**base, "label": 1, "prediction_timestamp": "2026-01-01T00:00:00"}),
        orjson.dumps({**base, "label": 1, "prediction_timestamp": "2025-12-31T23:00:00-01:00"}),
        orjson.dumps({**base, "value": 0.5, "prediction_timestamp": 1767225500}),
    ]
    batch = parse_outcomes(raw, MODELS)
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (0, "label/value: expected exactly one of 'label' (classification) or 'value' (regression)"),
        (1, "label/value: expected exactly one of 'label' (classification) or 'value' (regression)"),
        (2, "value: True: expected a number"),
        (3, "prediction_timestamp: '2026-01-01T00:00:00': expected an RFC 3339 date-time with offset"),
    ]
    assert [e["prediction_timestamp"] for e in batch.events] == [1767225600.0, 1767225500.0]
    assert batch.times.tolist() == [1767225600.0, 1767225600.0]


def test_undeclared_fields_are_ignored_and_dropped() -> None:
    raw = orjson.dumps(_prediction(extra={"x": 1}, prediction={"score": 0.5, "class": "a"}))
    raw = raw.replace(b'"x":1', b'"x":1e400')  # the contract skips undeclared fields unread
    batch = parse_predictions([raw], MODELS)
    assert not batch.rejected
    assert batch.events == [{**_prediction(), "timestamp": 1767225600.0, "prediction": {"score": 0.5}}]


def test_object_matrix_and_as_float_on_missing_and_mixed_values() -> None:
    rows = [{"a": 1, "b": "x"}, {"a": None}, {"b": True, "a": 2.5}]
    matrix = parse.object_matrix(rows, ["a", "b"])
    assert matrix.tolist() == [[1, "x"], [None, None], [2.5, True]]
    assert parse.object_matrix(rows, ["a"]).tolist() == [[1], [None], [2.5]]
    assert parse.object_matrix([], ["a"]).shape == (0, 1)
    numbers, invalid = parse.as_float(matrix)
    assert np.isnan(numbers[1]).all() and numbers[2].tolist() == [2.5, 1.0]
    assert invalid.tolist() == [[False, True], [False, False], [False, False]]
    numbers, invalid = parse.as_float(np.array([["3", 1.0]], dtype=object))  # a numeric string is not a number
    assert np.isnan(numbers[0, 0]) and invalid.tolist() == [[True, False]]


def test_parse_timestamp_uses_the_contract() -> None:
    assert reasons.parse_timestamp("2026-01-01T01:00:00+01:00") == 1767225600.0
    assert reasons.parse_timestamp(1767225600) == 1767225600.0
    with pytest.raises(ValueError, match=r"expected an RFC 3339 date-time with offset$"):
        reasons.parse_timestamp("2026-01-01T00:00:00")
    with pytest.raises(ValueError, match="timestamp: inf"):
        reasons.parse_timestamp(float("inf"))
