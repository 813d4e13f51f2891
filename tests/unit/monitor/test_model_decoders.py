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
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watchkeeper_native import start_features

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
        assert {k: v for k, v in one.items() if k != "features"} == {k: v for k, v in other.items() if k != "features"}
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
    records = [b'{"model_id":"m2","features":{"x":%d.5}}' % i for i in range(4000)]
    dropped = start_features(records, ["x"], [])
    pending = start_features(records, ["x"], [])
    del records, dropped  # (the one dropped joins its threads first; the other keeps the bytes it reads)
    read = pending.result()
    assert read is not None and read[0][:, 0].tolist() == [i + 0.5 for i in range(4000)] and read[1] == []
    with pytest.raises(RuntimeError, match="taken already"):
        pending.result()
    with pytest.raises(ValueError, match='"x" is given twice'):
        start_features([], ["x"], ["x"])


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
