"""The per-model readers (the native feature reader) change nothing but speed.

``parse_predictions`` given the models' :class:`ModelFeatures` first reads each model's
records with the native reader (features into columns, the rest by msgspec) and falls
back to the generic decoder for a batch with any record that reader refuses. Whatever the
batch, the accepted events, their times, every rejection reason and the columns stage 1
reads from them must be those of the generic decoder alone (numeric features as floats).
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper_native import start_events

from watchkeeper.monitor.columns import ColumnValues, unknown_names
from watchkeeper.monitor.feature_block import FeatureRef, ModelFeatures
from watchkeeper.monitor.parse import ParsedBatch, parse_predictions

NUMERIC = ("income", "age in years")  # (a name that is no identifier)
OTHER = ("region",)
READERS = {"m1": ModelFeatures(NUMERIC, OTHER), "m2": ModelFeatures(("x",), ())}
MODELS = {"m1", "m2"}
ESCAPED = [  # (inside a JSON string: valid escapes; a lone surrogate, an unknown escape, a raw tab are rejected)
    b"S\\u00e3o \\\"Paulo\\\"", b"\\uD83D\\ude00", b"a\\/b\\\\c\\n\\u0000", b"\\ud83d", b"\\ude00x", b"\\ud83d\\u0041",
    b"\\q", b"tab\there", b"\\u00G0",
]  # fmt: skip
LITERALS = [b"1e400", b"123456789012345678901234567890", b"9223372036854775807", b"-0.0", b"NaN", b"5e-324"]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30).map(str).map(int) | st.floats(-1e9, 1e9) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
feature_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.sampled_from(["3", "", "high"]),
)


@st.composite
def raw_predictions(draw: st.DrawFn, clean: bool) -> bytes | None:
    """A prediction of m1 or m2; unless ``clean``, possibly of no configured model, or odd in any field."""
    if clean:  # (what the native reader takes: numbers or null in numeric features, text or null in others)
        model = draw(st.sampled_from(["m1", "m2"]))
        numbers = st.one_of(
            st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
        )
        names = NUMERIC + OTHER if model == "m1" else ("x",)
        sent = draw(st.lists(st.sampled_from(names), unique=True))
        texts = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["eu", "ü", "a\\b", 'say "hi"', "\x01"]))
        features = {n: draw(texts if n in OTHER else numbers) for n in sent}
        event = {"event_id": "e", "model_id": model, "timestamp": draw(st.floats(1e9, 2e9)), "features": features}
        event["metadata"] = draw(st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=3))  # (skipped)
        ascii_only = draw(st.booleans())  # (json.dumps's default: escapes for all but ASCII, surrogate pairs)
        raw = json.dumps(event, indent=draw(st.sampled_from([None, 2])), ensure_ascii=ascii_only).encode()
        if draw(st.integers(0, 9)) == 0:  # a second features object, or its key written with an escape
            raw = raw.replace(b'"metadata"', draw(st.sampled_from([b'"features":{},"metadata"', b'"feat\\u0075res"'])))
        if model == "m1" and draw(st.integers(0, 9)) == 0:  # a category as written by hand: escapes, good and bad
            raw = raw.replace(b'"features": {', b'"features": {"region": "%s", ' % draw(st.sampled_from(ESCAPED)), 1)
        return raw
    model = draw(st.sampled_from(["m1", "m1", "m1", "m2", "zz"]))
    names = NUMERIC + OTHER if model != "m2" else ("x",)
    numbers = st.one_of(st.none(), st.integers(-(10**6), 10**6), st.floats(-1e9, 1e9))
    features: dict[str, Any] = {}
    for name in names:
        if draw(st.integers(0, 9)) == 0:
            continue  # not sent
        clean = name in NUMERIC or name == "x"
        features[name] = draw(numbers if clean and draw(st.integers(0, 9)) else feature_values)
    if draw(st.integers(0, 19)) == 0:
        features[draw(st.sampled_from(["unknown", "Income", "x", "region"]))] = draw(feature_values)
    event: dict[str, Any] = {
        "event_id": draw(st.sampled_from(["e1", "e2", ""])),
        "model_id": model,
        "timestamp": draw(st.sampled_from(["2026-11-30T10:00:00Z", "2026-11-30T10:00:00.5+01:00", 1.7e9, "soon"])),
        "features": features,
        "prediction": {"score": draw(st.sampled_from([0.25, 1, 1.5, None])), "label": draw(feature_values)},
    }
    raw = orjson.dumps(event)
    if draw(st.integers(0, 19)) == 0:  # a literal JSON or float64 cannot carry, in a numeric feature
        raw = raw.replace(b'"features":{', b'"features":{"income":' + draw(st.sampled_from(LITERALS)) + b",", 1)
    return draw(st.sampled_from([raw, raw, raw, raw[:-3], None]))


def _features(batch: ParsedBatch) -> list[dict[str, Any]]:
    return [{name: event["features"].get(name) for name in (*NUMERIC, *OTHER, "x")} for event in batch.events]


def _same(a: Any, b: Any) -> bool:
    """The same value; a number read natively (a float) equals the generic decoder's int or float."""
    if type(a) is float and type(b) in (int, float):
        return a == float(b) and math.copysign(1, a) == math.copysign(1, float(b))
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(lambda clean: st.lists(raw_predictions(clean), min_size=1, max_size=12)))
def test_per_model_readers_give_what_the_generic_decoder_gives(raw: list[bytes | None]) -> None:
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    assert fast.indices == generic.indices
    assert [(r.index, r.reason) for r in fast.rejected] == [(r.index, r.reason) for r in generic.rejected]
    assert fast.times.tolist() == generic.times.tolist()
    for one, other in zip(fast.events, generic.events, strict=True):
        assert {k: v for k, v in one.items() if k not in ("features", "metadata")} == {
            k: v for k, v in other.items() if k not in ("features", "metadata")
        }
    for one, other in zip(_features(fast), _features(generic), strict=True):
        assert all(_same(one[name], other[name]) for name in one), (one, other)
    m1 = [k for k, event in enumerate(generic.events) if event["model_id"] == "m1"]
    if m1:  # the columns stage 1 reads: the same numbers, invalid flags and categories
        binner: Any = SimpleNamespace(numeric=list(NUMERIC), categorical=list(OTHER), profile=SimpleNamespace())
        binner.profile.multivariate = None
        read = [ColumnValues.from_events(binner, [batch.events[k] for k in m1]) for batch in (fast, generic)]
        np.testing.assert_array_equal(read[0].numeric, read[1].numeric)
        np.testing.assert_array_equal(read[0].invalid, read[1].invalid)
        assert read[0].categorical == read[1].categorical
        sent = [batch.events[k]["features"] for batch in (fast, generic) for k in m1]
        assert unknown_names(sent[: len(m1)], frozenset(NUMERIC + OTHER)) == unknown_names(
            sent[len(m1) :], frozenset(NUMERIC + OTHER)
        )


def _strict(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, True is not 1; keys in any order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_strict(a[k], b[k]) for k in a)
    if type(a) is float and type(b) is float:
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


def _iso(draw: st.DrawFn) -> str:
    """A date-time as producers write it, mostly RFC 3339, sometimes not quite."""
    when = draw(st.datetimes(min_value=datetime(1600, 1, 1), max_value=datetime(2300, 12, 31)))
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.sampled_from([0, 0, 3, 6, 1, 9]))
    if digits:
        text += "." + f"{when.microsecond:06d}{draw(st.integers(0, 999))}"[:digits].ljust(digits, "0")
    text += draw(st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "-00:00", "+14:00", "", "z", "+0530", "+24:00"]))
    return draw(st.sampled_from([text, text, text, text.replace("T", " "), text.replace("T", "t"), text[:10]]))


ODD_DATES = [  # (invalid days, hours, leap seconds, year 0; one microsecond after the epoch)
    "2023-02-29T00:00:00Z", "2024-02-29T23:59:59Z", "2023-04-31T00:00:00Z", "2023-01-01T24:00:00Z",
    "2016-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "1970-01-01T00:00:00.000001Z", "2023-13-01T00:00:00Z",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@st.composite
def full_predictions(draw: st.DrawFn) -> bytes:
    """A prediction of m2 whose every field other than ``features`` varies, mostly within the contract."""
    event: dict[str, Any] = {"event_id": draw(st.text(max_size=5)), "model_id": draw(st.sampled_from(["m2", "m2", ""]))}
    choice = draw(st.integers(0, 5))
    if choice < 4:
        event["prediction_id"] = [None, event["event_id"], draw(st.text(max_size=5)), 7][choice]
    if draw(st.booleans()):
        event["model_version"] = draw(st.one_of(st.text(max_size=5), st.none(), st.integers(0, 3)))
    event["timestamp"] = draw(
        st.one_of(
            st.builds(_iso, st.just(draw)),
            st.sampled_from(ODD_DATES),
            st.floats(-7e10, 3e11),
            st.integers(-(10**12), 10**12),
        )
    )
    event["features"] = {"x": draw(st.floats(-10, 10))}
    if draw(st.integers(0, 4)):
        prediction: dict[str, Any] = {}
        for name, values in {
            "label": scalars,
            "score": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0, 1, -0.0, None, "0.5"])),
            "value": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**20), 10**20)),
            "probabilities": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.floats(0, 1), max_size=3)),
            "extra": JSON_VALUES,
        }.items():
            if draw(st.booleans()):
                prediction[name] = draw(values)
        event["prediction"] = draw(st.sampled_from([prediction, prediction, prediction, None]))
    if draw(st.booleans()):
        event["attributes"] = draw(st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=3), JSON_VALUES))
    if draw(st.booleans()):
        event["metadata"] = draw(st.one_of(st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=3), JSON_VALUES))
    if draw(st.integers(0, 4)) == 0:
        event[draw(st.sampled_from(["other", "Model_id", "event_id"]))] = draw(JSON_VALUES)  # (event_id: sent twice)
    keys = list(event)
    order = draw(st.permutations(keys))
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(event[k], ensure_ascii=draw(st.booleans()))}" for k in order)
    if "event_id" not in order and draw(st.booleans()):
        text += ',"event_id":"again"'
    return (text + "}").encode()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(full_predictions(), min_size=1, max_size=3))
def test_every_field_read_natively_equals_the_generic_decoder(raw: list[bytes]) -> None:
    """Ids, versions, times (as epoch seconds, bit for bit), the prediction and the attributes: the
    same values of the same types as the generic decoder's, or the batch goes to the generic decoder."""
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    assert fast.indices == generic.indices
    assert [(r.index, r.reason) for r in fast.rejected] == [(r.index, r.reason) for r in generic.rejected]
    assert fast.times.tobytes() == generic.times.tobytes()
    for one, other in zip(fast.events, generic.events, strict=True):
        mine = {k: v for k, v in one.items() if k not in ("features", "metadata")}
        assert _strict(mine, {k: v for k, v in other.items() if k not in ("features", "metadata")}), (one, other)


def test_a_batch_with_every_field_takes_the_native_reader() -> None:
    """Every field of the contract, written as producers write them, stays on the fast path and
    reads as the generic decoder reads it (times: as ``datetime.timestamp()`` gives them)."""
    events: list[dict[str, Any]] = [
        {
            "event_id": "e1",
            "prediction_id": "p1",
            "model_id": "m2",
            "model_version": "v\u00e9",
            "timestamp": "2026-11-30T10:00:00.123456+05:30",
            "features": {"x": 1},
            "prediction": {"label": "yes", "score": 1, "value": -2, "probabilities": {"yes": 0.75, "no": 0}},
            "attributes": {"group": "a", "age": 41, "ratio": 0.5, "member": True, "none": None},
            "metadata": {"trace": [1, {"deep": None}], "big": 1.5e300},
            "unknown": {"ignored": ["x"]},
        },
        {"event_id": "e2", "model_id": "m2", "timestamp": 1.7e9, "features": {}, "prediction": {"label": 3}},
        {
            "event_id": "e3",
            "prediction_id": None,
            "model_id": "m2",
            "timestamp": "1999-12-31T23:59:59Z",
            "features": {},
        },
    ]
    raw = [json.dumps(e).encode() for e in events]
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    assert fast.native and not generic.native and not fast.rejected
    for one, other in zip(fast.events, generic.events, strict=True):
        assert "metadata" not in one
        assert _strict(
            {k: v for k, v in one.items() if k != "features"},
            {k: v for k, v in other.items() if k not in ("features", "metadata")},
        )
    assert fast.times.tolist() == [datetime.fromisoformat(events[0]["timestamp"]).timestamp(), 1.7e9, 946684799.0]
    assert fast.events[0]["model_version"] == "vé" and fast.events[1]["prediction"] == {"label": 3}


def test_a_clean_batch_takes_the_native_reader() -> None:
    """The speed-up applies to the usual batch: every event's features come back as a row of one block."""
    events = [
        {"event_id": f"e{i}", "model_id": model, "timestamp": 1.7e9 + i, "features": features}
        for i, (model, features) in enumerate(
            [("m1", {"income": 1, "age in years": 2.5, "region": "eu"}), ("m2", {"x": None}), ("m1", {})]
        )
    ]
    events[2]["features"] = {"region": "S\u00e3o Paulo \U0001f600"}  # (written with escapes below)
    batch = parse_predictions([json.dumps(e).encode() for e in events], MODELS, READERS)
    assert batch.native and all(type(e["features"]) is FeatureRef for e in batch.events)
    assert batch.events[2]["features"]["region"] == "S\u00e3o Paulo \U0001f600"
    events[2]["features"] = {}
    first = batch.events[0]["features"]
    assert dict(first) == {"income": 1.0, "age in years": 2.5, "region": "eu"}
    assert batch.events[2]["features"].get("income") is None and batch.events[1]["features"]["x"] is None
    mixed = [*events, {**events[0], "features": {"income": "high"}}]  # a text in a numeric feature
    batch = parse_predictions([orjson.dumps(e) for e in mixed], MODELS, READERS)
    assert [type(e["features"]) for e in batch.events] == [dict] * 4  # (the generic decoder read the batch)
    assert not batch.native  # (and says so: watchkeeper_decoded_records_total{decoder="generic"})


TRICKY = [  # (around the fast path's limits: 2^53, 10^22, 19 digits; subnormals; exponent forms)
    "0.1", "1.5e3", "1E-7", "-0.0", "-0e5", "1e22", "1e23", "9007199254740992.5", "9007199254740993e0",
    "0.30000000000000004", "123456789012345678.5", "1234567890123456789012.5e-3", "0.000000000000000000001",
    "5e-324", "1.5e-400", "2.2250738585072014e-308", "1.7976931348623157e308", "4.35e-1", "100000000000000000000000e-2",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False)), min_size=1, max_size=8)
)
def test_numbers_read_natively_equal_the_generic_decoder_bit_for_bit(numbers: list[int | float | None]) -> None:
    """Floats (correctly rounded), integers (as float(int), to int64) and null: the same float64 bits."""
    texts = ["null" if v is None else repr(v) for v in numbers] + ["-0"] + TRICKY  # (-0: the int 0, not -0.0)
    raw = [b'{"event_id":"e","model_id":"m2","timestamp":1.7e9,"features":{"x":%s}}' % t.encode() for t in texts]
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    binner: Any = SimpleNamespace(numeric=["x"], categorical=[], profile=SimpleNamespace(multivariate=None))
    read = [ColumnValues.from_events(binner, batch.events).numeric for batch in (fast, generic)]
    assert read[0].tobytes() == read[1].tobytes()
    if all(v is None or abs(v) < 10**18 for v in numbers):  # (every finite float, every int64 of ≤ 18 digits)
        assert type(fast.events[0]["features"]) is FeatureRef  # (the native reader took the batch)


def test_a_large_batch_read_in_chunks_equals_the_generic_decoder() -> None:
    """A batch big enough to be read by several threads: the same columns, and one bad record anywhere refuses it."""
    rng = np.random.default_rng(7)
    events = [
        {
            "event_id": f"e{i}",
            "model_id": "m1",
            "timestamp": 1.7e9 + i,
            "features": {
                "income": float(rng.normal()),
                "age in years": int(rng.integers(18, 90)),
                "region": f"r{i % 5}",
            },
        }
        for i in range(3000)
    ]
    raw = [orjson.dumps(e) for e in events]
    binner: Any = SimpleNamespace(numeric=list(NUMERIC), categorical=list(OTHER), profile=SimpleNamespace())
    binner.profile.multivariate = None
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    assert all(type(e["features"]) is FeatureRef for e in fast.events)
    read = [ColumnValues.from_events(binner, batch.events) for batch in (fast, generic)]
    assert read[0].numeric.tobytes() == read[1].numeric.tobytes()
    assert read[0].categorical == read[1].categorical
    raw[2900] = orjson.dumps({**events[2900], "features": {"income": "high"}})  # (in the last chunk)
    fast = parse_predictions(raw, MODELS, READERS)
    assert type(fast.events[0]["features"]) is dict and fast.events[2900]["features"]["income"] == "high"
    raw[2900] = orjson.dumps(events[2900])  # the next batch is clean again: read natively, the same columns
    fast = parse_predictions(raw, MODELS, READERS)
    assert type(fast.events[0]["features"]) is FeatureRef
    assert ColumnValues.from_events(binner, fast.events).numeric.tobytes() == read[1].numeric.tobytes()


def test_a_pending_read_holds_its_records_until_its_threads_are_done() -> None:
    """The reader's threads parse while stage 1 goes on: the records they read stay alive even if
    nothing else holds them (dropped before the result, or read after), and a result is taken once."""
    records = [
        b'{"event_id":"e%d","model_id":"m2","timestamp":%d,"features":{"x":%d.5}}' % (i, i, i) for i in range(4000)
    ]
    dropped = start_events(records, ["x"], [])
    pending = start_events(records, ["x"], [])
    del records, dropped  # (the one dropped joins its threads first; the other keeps the bytes it reads)
    read = pending.result()
    assert read is not None and read[2][:, 0].tolist() == [i + 0.5 for i in range(4000)] and read[3] == []
    assert read[0][3999] == {"event_id": "e3999", "model_id": "m2", "timestamp": 3999.0}
    assert read[1].tolist() == [float(i) for i in range(4000)]
    with pytest.raises(RuntimeError, match="taken already"):
        pending.result()
    with pytest.raises(ValueError, match='"x" is given twice'):
        start_events([], ["x"], ["x"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True), min_size=1)
)
def test_any_json_number_literal_is_read_as_the_generic_decoder_reads_it(literals: list[str]) -> None:
    """Written by hand, not by repr: short and long mantissas, exponents, leading zeros, both exponent signs."""
    raw = [b'{"event_id":"e","model_id":"m2","timestamp":1.7e9,"features":{"x":%s}}' % t.encode() for t in literals]
    fast, generic = parse_predictions(raw, MODELS, READERS), parse_predictions(raw, MODELS)
    assert fast.indices == generic.indices
    binner: Any = SimpleNamespace(numeric=["x"], categorical=[], profile=SimpleNamespace(multivariate=None))
    read = [ColumnValues.from_events(binner, batch.events).numeric for batch in (fast, generic)]
    assert read[0].tobytes() == read[1].tobytes(), literals
