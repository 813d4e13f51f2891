"""The per-model prediction decoders change nothing but speed.

``parse_predictions`` given the models' :class:`FeatureRow` classes first decodes each
record with its model's own decoder (features as a Struct, numeric ones typed as numbers)
and falls back to the generic decoder for a batch with any record that decoder refuses.
Whatever the batch, the accepted events, their times, every rejection reason and the
columns stage 1 reads from them must be those of the generic decoder alone.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.monitor.columns import ColumnValues, unknown_names
from watchkeeper.monitor.contracts import FeatureRow, feature_row
from watchkeeper.monitor.parse import ParsedBatch, parse_predictions

NUMERIC = ("income", "age in years")  # (a name that is no identifier)
OTHER = ("region",)
ROWS = {"m1": feature_row(NUMERIC, OTHER), "m2": feature_row(("x",), ())}
MODELS = {"m1", "m2"}
LITERALS = [b"1e400", b"123456789012345678901234567890", b"9223372036854775807", b"-0.0", b"NaN", b"5e-324"]

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
    if clean:  # (what the per-model decoders take: numbers or null in the numeric features)
        model = draw(st.sampled_from(["m1", "m2"]))
        numbers = st.one_of(
            st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
        )
        names = NUMERIC + OTHER if model == "m1" else ("x",)
        sent = draw(st.lists(st.sampled_from(names), unique=True))
        features = {n: draw(feature_values if n in OTHER else numbers) for n in sent}
        event = {"event_id": "e", "model_id": model, "timestamp": draw(st.floats(1e9, 2e9)), "features": features}
        return orjson.dumps(event)
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
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(lambda clean: st.lists(raw_predictions(clean), min_size=1, max_size=12)))
def test_per_model_decoders_give_what_the_generic_decoder_gives(raw: list[bytes | None]) -> None:
    fast, generic = parse_predictions(raw, MODELS, ROWS), parse_predictions(raw, MODELS)
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


def test_a_clean_batch_takes_the_per_model_decoder() -> None:
    """The speed-up applies to the usual batch: every event's features come back as the model's row."""
    events = [
        {"event_id": f"e{i}", "model_id": model, "timestamp": 1.7e9 + i, "features": features}
        for i, (model, features) in enumerate(
            [("m1", {"income": 1, "age in years": 2.5, "region": "eu"}), ("m2", {"x": None}), ("m1", {})]
        )
    ]
    batch = parse_predictions([orjson.dumps(e) for e in events], MODELS, ROWS)
    assert [type(e["features"]) for e in batch.events] == [ROWS["m1"], ROWS["m2"], ROWS["m1"]]
    assert all(isinstance(e["features"], FeatureRow) for e in batch.events)
    assert batch.events[0]["features"]["age in years"] == 2.5 and batch.events[2]["features"].get("income") is None
    mixed = [*events, {**events[0], "features": {"income": "high"}}]  # a text in a numeric feature
    batch = parse_predictions([orjson.dumps(e) for e in mixed], MODELS, ROWS)
    assert [type(e["features"]) for e in batch.events] == [dict] * 4  # (the generic decoder read the batch)
