"""Hostile input through the pure stage 1: no exception escapes, nothing disappears without a trace.

``MonitorRuntime.stage1`` (the parser, the plausibility and lateness checks, the partials
and the outcome join: everything between raw Kafka values and what stage 1 produces) gets
arbitrary bytes, arbitrary JSON, and valid events with one field replaced by a hostile
value (NaN, Infinity, 1e400, 10**30, lone surrogates, absurd timestamps...), predictions and
outcomes mixed, batch after batch (with a worker clock). Every record is counted exactly once:
accepted (in its model's window counts, or by its outcome join status), late (counted in
its model's partial) or rejected with a non-empty reason that a dead-letter header can
carry; valid events are never rejected. Then the records that once crashed or stalled the
worker, one by one, with bounds on their time and on the size of what stage 1 writes to
Kafka (partials, join changelog records: 1 MB each at most).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.config import parse_config
from watchkeeper.monitor.join import MemoryJoinStore
from watchkeeper.monitor.parse import parse_outcomes, parse_predictions
from watchkeeper.monitor.partials import split_partial
from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.monitor.stage1_result import Stage1Result
from watchkeeper.stream.ingest import RecordingStore
from watchkeeper.stream.kafka import MAX_MESSAGE_BYTES

T0 = 1_750_000_000.0
MB = 1_000_000

_rng = np.random.default_rng(0)
PROFILE = ReferenceProfile.build(
    "m",
    {
        "x": ("numeric", _rng.normal(size=500)),
        "c": ("categorical", list(_rng.choice(["a", "b", "c"], 500))),
        PREDICTION_SCORE: ("numeric", _rng.uniform(size=500)),
        PREDICTION_LABEL: ("categorical", [str(v) for v in _rng.integers(0, 2, 500)]),
    },
)
MODEL = {
    "model_id": "m",
    "features": {"x": "numeric", "c": "categorical"},
    "sensitive_attributes": ["g"],
    "window": {"size": "60s", "allowed_lateness": "10s"},
    "accuracy": {"label_horizon": "1h"},
}


def _runtime() -> MonitorRuntime:
    runtime = MonitorRuntime(parse_config({"models": [MODEL]}), {"m": PROFILE})
    for partition in (0, 1):
        runtime.open_partition(partition, RecordingStore(MemoryJoinStore()), f"p:{partition}", 0.0)
    return runtime


# -- generated records ------------------------------------------------------------------
surrogates = st.sampled_from(["\ud800", "a\udfff", "\udc00\ud800"])
texts = st.text(max_size=8) | surrogates
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN and Infinity reach the wire as literals
    texts,
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8
)
hostile = json_values | st.sampled_from(
    [-1e15, 0, 1e11, 1e300, "yesterday", "", "\x00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00"]
)


@st.composite
def predictions(draw: st.DrawFn) -> dict[str, Any]:
    pid = draw(st.sampled_from([f"p{i}" for i in range(30)]))
    return {
        "event_id": pid,
        "model_id": "m",
        "timestamp": T0 + draw(st.floats(0, 600)),
        "features": {
            "x": draw(st.none() | st.floats(-5, 5) | st.text(max_size=8)),
            "c": draw(st.sampled_from(["a", "b", "z"])),
        },
        "prediction": {"score": draw(st.floats(0, 1)), "label": draw(st.sampled_from([0, 1]))},
        "attributes": {"g": draw(st.sampled_from(["A", "B", None, 3]))},
    }


@st.composite
def outcomes(draw: st.DrawFn) -> dict[str, Any]:
    event = {
        "prediction_id": draw(st.sampled_from([f"p{i}" for i in range(30)])),
        "model_id": "m",
        "timestamp": T0 + draw(st.floats(0, 900)),
        "label": draw(st.sampled_from([0, 1, "1", True])),
    }
    if draw(st.booleans()):  # the prediction embedded: no join
        event |= {"prediction": {"score": draw(st.floats(0, 1))}, "prediction_timestamp": T0 + draw(st.floats(0, 600))}
    return event


def _replace(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    """The event with one field (top-level or nested) replaced by a hostile value, or removed."""
    paths = [(k,) for k in event] + [(k, n) for k, v in event.items() if isinstance(v, dict) for n in v]
    path = draw(st.sampled_from(paths))
    target = event if len(path) == 1 else event[path[0]]
    if draw(st.booleans()):
        target[path[-1]] = draw(hostile)
    else:
        del target[path[-1]]
    return event


@st.composite
def records(draw: st.DrawFn) -> tuple[bool, bytes | None, bool]:
    """(is an outcome, the raw Kafka value, whether it is a valid event)."""
    outcome = draw(st.booleans())
    event = draw(outcomes() if outcome else predictions())
    kind = draw(st.sampled_from(["valid", "valid", "valid", "replace", "bytes", "json", "truncate", "null"]))
    if kind == "valid":
        return outcome, orjson.dumps(event), True
    if kind == "replace":
        return outcome, json.dumps(_replace(draw, event)).encode(), False  # (NaN, Infinity, \ud800 as sent)
    if kind == "bytes":
        return outcome, draw(st.binary(max_size=300)), False
    if kind == "json":
        return outcome, json.dumps(draw(json_values)).encode(), False
    if kind == "truncate":
        raw = orjson.dumps(event)
        return outcome, raw[: draw(st.integers(0, len(raw) - 1))], False
    return outcome, draw(st.sampled_from([None, b""])), False


def _check(runtime: MonitorRuntime, batch: list[tuple[bool, bytes | None, bool]], first: int) -> Stage1Result:
    flags = [outcome for outcome, _, _ in batch]
    raw = [value for _, value, _ in batch]
    sources = [f"p:{i % 2}" for i in range(len(batch))]
    offsets = list(range(first, first + len(batch)))
    result = runtime.stage1(raw, sources, offsets, is_outcome=flags, wall_clock=T0 + 1000)  # (as in the worker)
    rejected = {r.index: r.reason for r in result.rejected}
    late = {x.index for x in result.late}
    assert len(rejected) == len(result.rejected) and not late & set(rejected)
    for index, reason in rejected.items():
        assert reason and reason.encode("utf-8")  # a dead-letter header
        assert not batch[index][2], (raw[index], reason)  # valid events are never rejected
    windowed = sum(entry["n"] for partial in result.partials for entry in partial["windows"])
    n_predictions = flags.count(False)
    assert windowed + len(late) + sum(not flags[i] for i in rejected) == n_predictions
    assert sum(result.outcomes.values()) + sum(flags[i] for i in rejected) == flags.count(True)
    assert sum(p.get("late", 0) for p in result.partials) == len(late)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.lists(records(), min_size=1, max_size=25), min_size=1, max_size=4))
def test_every_record_is_accepted_late_or_rejected_with_a_reason(batches: list[list[Any]]) -> None:
    runtime = _runtime()
    first = 0
    for batch in batches:
        _check(runtime, batch, first)
        first += len(batch)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_get_a_reason(payload: bytes) -> None:
    for parser in (parse_predictions, parse_outcomes):
        batch = parser([payload, payload], {"m"})
        assert len(batch.events) + len(batch.rejected) == 2
        assert all(r.reason and r.reason.encode() for r in batch.rejected)


# -- the records that once crashed or stalled the worker ------------------------------------
def _prediction(**fields: Any) -> dict[str, Any]:
    event = {
        "event_id": "e",
        "model_id": "m",
        "timestamp": T0,
        "features": {"x": 1.0, "c": "a"},
        "prediction": {"score": 0.5, "label": 1},
        "attributes": {"g": "A"},
    }
    return {**event, **fields}


DEEP = 10_000
NESTED = b"[" * DEEP + b"]" * DEEP
BAD = {
    "10k-deep array": (NESTED, "invalid JSON: nested too deeply"),
    "10k-deep feature": (
        orjson.dumps(_prediction(features={"x": "__"})).replace(b'"__"', NESTED),
        "invalid JSON: nested too deeply",
    ),
    "10k-deep metadata": (
        orjson.dumps(_prediction(metadata={"a": "__"})).replace(b'"__"', b'{"b":' * DEEP + b"1" + b"}" * DEEP),
        "invalid JSON: nested too deeply",
    ),
    "10k-deep truncated": (b'{"features":' + b"[" * DEEP, "invalid JSON: nested too deeply"),
    "lone surrogate in an id": (
        json.dumps(_prediction(event_id="\ud800")).encode(),
        r"event_id: '\ud800': a lone UTF-16 surrogate escape is not text; expected a non-empty string",
    ),
    "lone surrogate in a feature name": (
        json.dumps(_prediction(features={"\udc00": [1]})).encode(),
        r"features.\udc00: [1]: expected a number, string, bool or null",
    ),
    "non-UTF-8 bytes": (orjson.dumps(_prediction(event_id="é")).replace("é".encode(), b"\xff\xfe"), "invalid JSON"),
    "100k-key features, one a list": (
        orjson.dumps(_prediction(features={**{f"f{i}": float(i) for i in range(100_000)}, "z": [1]})),
        "features.z: [1]: expected a number, string, bool or null",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_records_that_once_crashed_the_parser_get_their_reason_fast(name: str) -> None:
    raw, reason = BAD[name]
    started = time.perf_counter()
    batch = parse_predictions([raw], {"m"})
    assert time.perf_counter() - started < 2.0  # (the 100k keys took seconds, walked key by key)
    assert [r.reason[: len(reason)] for r in batch.rejected] == [reason]
    assert batch.rejected[0].reason.encode()


def _huge(text: str) -> str:
    return text * (300_000 // len(text))


def test_huge_strings_keep_what_stage_one_writes_under_the_kafka_record_limit() -> None:
    """Huge categories, model versions, ids, labels and fairness groups in a batch of 10,000: no
    n × longest-string array (a MemoryError), and every partial and join changelog record < 1 MB."""
    runtime = MonitorRuntime(parse_config({"models": [MODEL]}), {"m": PROFILE})
    store = RecordingStore(MemoryJoinStore())
    runtime.open_partition(0, store, "p:0", 0.0)
    events = [_prediction(event_id=f"e{i}", timestamp=T0 + i * 0.001, features={"c": f"u{i}"}) for i in range(10_000)]
    for i, k in enumerate(range(0, 10_000, 1000)):
        events[k] = _prediction(
            event_id=_huge(f"id{i}"),
            model_version=_huge(f"v{i}"),
            timestamp=T0 + k * 0.001,
            features={"x": 1.0, "c": _huge(f"c{i}")},
            prediction={"score": 0.5, "label": _huge("L")},
            attributes={"g": _huge(f"g{i}")},
        )
    raw = [orjson.dumps(e) for e in events]
    result = runtime.stage1(raw, ["p:0"] * len(raw), list(range(len(raw))))
    assert not result.rejected and sum(e["n"] for p in result.partials for e in p["windows"]) == 10_000
    pieces = [piece for partial in result.partials for piece in split_partial(partial, MAX_MESSAGE_BYTES // 2)]
    assert max(map(len, pieces)) < MB
    changes = store.drain()
    assert changes and max(len(k) + len(v or b"") for k, v in changes.items()) < MB


def test_an_outcome_still_joins_a_prediction_with_a_huge_id() -> None:
    runtime = _runtime()
    pid = _huge("id")
    prediction = orjson.dumps(_prediction(event_id=pid))
    outcome = orjson.dumps({"prediction_id": pid, "model_id": "m", "timestamp": T0 + 5, "label": 1})
    runtime.stage1([prediction], ["p:0"], [0])
    result = runtime.stage1([outcome], ["p:0"], [1], is_outcome=[True])
    assert result.outcomes["joined"] == 1
