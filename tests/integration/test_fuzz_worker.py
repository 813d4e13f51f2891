"""Hostile input through the real worker on the real broker: counted, dead-lettered or refused, never lost.

Over 60 kinds of malformed or odd records (invalid and truncated JSON, null and empty
values, values just under and just over the broker's record limit, 10k-deep nesting, NaN,
Infinity, 1e400, non-UTF-8 bytes, lone surrogates, unicode and empty names, 100k-key
feature objects, huge strings, absurd timestamps, unknown models, wrong types in every
field, late predictions...) are interleaved at random (fixed seed) with a valid stream of
predictions and outcomes whose second half drifts, and produced to the predictions and
outcomes topics of one worker process. Asserts, per input topic, the count identity

    records the broker took = accepted + late + dead-lettered (rejected)

from the worker's /metrics (predictions: ``watchkeeper_events_total`` accepted and late,
outcomes: ``watchkeeper_outcomes_total`` by join status; rejections:
``watchkeeper_deadletter_total``), that the dead-letter topic holds exactly those
rejections (and the late predictions: ``window.dead_letter_late``), each with its reason
and source topic, partition and offset; that the worker keeps working after the garbage
(the drift alert fires, the last window closes, the process never restarted, no stage
rewound after an error, no traceback in its log) and that its peak RSS stays under 512 MB.
Prints the table record kind → dead-letter reason (docs/operations.md, "Hostile input").
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, ConfigResource

from .conftest import RunningWorker, read_topic
from .streams import drift_reference, drift_rows

MODEL = "fuzz-model"
T0 = 1_700_000_000.0
N = 6000  # valid predictions, 0.01 s apart: twelve 5-s windows; x2 drifts in the second half
SPACING = 0.01
DEEP = 10_000
Kind = tuple[str, bool, bytes | None, bytes | None]  # (kind, to the outcomes topic, key, value)


def _prediction(pid: str, t: float, row: dict[str, Any], **fields: Any) -> dict[str, Any]:
    event = {
        "event_id": pid,
        "model_id": MODEL,
        "model_version": "1",
        "timestamp": t,
        "features": {"x1": row["x1"], "x2": row["x2"], "x3": row["x3"], "c1": row["c1"]},
        "prediction": {"score": float(row["score"]), "label": int(row["score"] >= 0.5)},
        "attributes": {"g": "A" if row["x3"] > 0 else "B"},
    }
    return {**event, **fields}


def _dumps(event: Any) -> bytes:
    return json.dumps(event).encode()  # (Python's json writes NaN, Infinity and \ud800 as they come)


def _kinds(t: float, n: int, row: dict[str, Any], limit: int) -> list[Kind]:
    """One record of every hostile kind, stamped near event time ``t`` (ids made unique by ``n``)."""
    pid = f"k{n}"

    def p(name: str, value: bytes | None, key: bytes | None = b"") -> Kind:
        return (name, False, (pid.encode() if key == b"" else key), value)

    def o(name: str, value: bytes | None) -> Kind:
        return (name, True, pid.encode(), value)

    good = _prediction(pid, t, row)
    good_bytes = orjson.dumps(good)
    outcome = {"prediction_id": pid, "model_id": MODEL, "timestamp": t + 1, "label": 1}
    padded = orjson.dumps({**good, "metadata": {"pad": ""}})
    under = padded.replace(b'"pad":""', b'"pad":"' + b"x" * (limit - 300 - len(padded)) + b'"')
    over = padded.replace(b'"pad":""', b'"pad":"' + b"x" * (limit + 100 - len(padded)) + b'"')
    keys = {f"{i:x}": 0 for i in range(100_000)}
    huge = "h" * 900_000
    return [
        # -- bytes that are not a JSON object
        p("invalid JSON", b'{"event_id": "x", "model_id": '),
        p("not JSON", b"hello, world"),
        p("truncated event", good_bytes[: len(good_bytes) // 2]),
        p("null value (tombstone)", None),
        p("empty value", b""),
        p("whitespace value", b"   \n"),
        p("JSON null", b"null"),
        p("JSON string", b'"an event"'),
        p("JSON number", b"42"),
        p("array instead of object", b"[" + good_bytes + b"]"),
        p("two objects", good_bytes + good_bytes),
        p("trailing garbage", good_bytes + b" xyz"),
        p("UTF-8 BOM", b"\xef\xbb\xbf" + good_bytes),
        p("non-UTF-8 bytes", good_bytes.replace(pid.encode(), b"\xff\xfe", 1)),
        p("10k-deep array", b"[" * DEEP + b"]" * DEEP),
        p("10k-deep metadata", good_bytes[:-1] + b',"metadata":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}"),
        p("just over the record limit", over),
        # -- numbers JSON or float64 cannot carry
        p("NaN feature", _dumps(_prediction(pid, t, row, features={"x1": float("nan")}))),
        p("Infinity feature", _dumps(_prediction(pid, t, row, features={"x1": float("inf")}))),
        p("-Infinity score", _dumps(_prediction(pid, t, row, prediction={"score": float("-inf")}))),
        p("1e400 feature", good_bytes.replace(b'"x1":', b'"x1":1e400,"was":', 1)),
        p("1e400 timestamp", _dumps(_prediction(pid, t, row, timestamp="__")).replace(b'"__"', b"1e400")),
        p("10**30 feature", _dumps(_prediction(pid, t, row, features={"x1": 10**30}))),
        # -- absurd timestamps
        p("timestamp -1e15", _dumps(_prediction(pid, t, row, timestamp=-1e15))),
        p("timestamp 0", _dumps(_prediction(pid, t, row, timestamp=0))),
        p("timestamp year 9999", _dumps(_prediction(pid, t, row, timestamp="9999-12-31T23:59:59Z"))),
        p("timestamp 31 days back", _dumps(_prediction(pid, t - 31 * 86_400, row))),
        p("timestamp text", _dumps(_prediction(pid, t, row, timestamp="yesterday"))),
        p("timestamp bool", _dumps(_prediction(pid, t, row, timestamp=True))),
        # -- missing, empty, unknown, wrong types
        p("missing model_id", _dumps({k: v for k, v in good.items() if k != "model_id"})),
        p("empty model_id", _dumps(_prediction(pid, t, row, model_id=""))),
        p("unknown model", _dumps(_prediction(pid, t, row, model_id="no-such-model"))),
        p("unicode unknown model", _dumps(_prediction(pid, t, row, model_id="модель-😀"))),
        p("missing event_id", _dumps({k: v for k, v in good.items() if k != "event_id"})),
        p("event_id number", _dumps(_prediction(pid, t, row, event_id=7))),
        p("lone surrogate event_id", _dumps(_prediction(pid, t, row, event_id="\ud800"))),
        p("model_version number", _dumps(_prediction(pid, t, row, model_version=2))),
        p("features missing", _dumps({k: v for k, v in good.items() if k != "features"})),
        p("features null", _dumps(_prediction(pid, t, row, features=None))),
        p("features array", _dumps(_prediction(pid, t, row, features=[1, 2]))),
        p("feature object", _dumps(_prediction(pid, t, row, features={"x1": {"a": 1}}))),
        p("100k-key features, one a list", orjson.dumps(_prediction(pid, t, row, features={**keys, "z": [1]}))),
        p("prediction text", _dumps(_prediction(pid, t, row, prediction="high"))),
        p("score 1.5", _dumps(_prediction(pid, t, row, prediction={"score": 1.5}))),
        p("label list", _dumps(_prediction(pid, t, row, prediction={"label": [1]}))),
        p("attributes array", _dumps(_prediction(pid, t, row, attributes=["A"]))),
        p("metadata array", _dumps(_prediction(pid, t, row, metadata=[1]))),
        p("v2-shaped event", _dumps({"id": pid, "modelId": MODEL, "ts": t, "inputs": good["features"]})),
        # -- odd but valid: accepted
        p(
            "unicode feature names",
            _dumps(_prediction(pid, t, row, features={**good["features"], "größe": 1, "特征": "😀"})),
        ),
        p("empty feature name", _dumps(_prediction(pid, t, row, features={**good["features"], "": 1.0}))),
        p("unknown fields (schema_version 2)", _dumps({**good, "schema_version": 2, "extra": {"a": [1]}})),
        p("duplicate JSON keys", good_bytes.replace(b"{", b'{"event_id":"dup",', 1)),
        p("duplicate event id", orjson.dumps(_prediction("dup-id", t, row))),
        p("duplicate event id", orjson.dumps(_prediction("dup-id", t, row))),
        p("label and value in a prediction", _dumps(_prediction(pid, t, row, prediction={"label": 1, "value": 2.5}))),
        p("no key", good_bytes, key=None),
        p("100k-key features", orjson.dumps(_prediction(pid, t, row, features={**good["features"], **keys}))),
        p("huge categorical", orjson.dumps(_prediction(pid, t, row, features={**good["features"], "c1": huge}))),
        p("huge model_version", orjson.dumps(_prediction(pid, t, row, model_version=huge))),
        p("huge event_id", orjson.dumps(_prediction(huge + pid, t, row)), key=b"huge-id"),
        p("huge sensitive attribute", orjson.dumps(_prediction(pid, t, row, attributes={"g": huge}))),
        p("just under the record limit", under),
        # -- outcomes
        o("outcome: invalid JSON", b'{"prediction_id": '),
        o("outcome: null value", None),
        o("outcome: array", b"[" + orjson.dumps(outcome) + b"]"),
        o("outcome: 10k-deep", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        o("outcome: label and value", _dumps({**outcome, "value": 2.0})),
        o("outcome: neither label nor value", _dumps({k: v for k, v in outcome.items() if k != "label"})),
        o("outcome: missing prediction_id", _dumps({k: v for k, v in outcome.items() if k != "prediction_id"})),
        o("outcome: empty prediction_id", _dumps({**outcome, "prediction_id": ""})),
        o("outcome: missing model_id", _dumps({k: v for k, v in outcome.items() if k != "model_id"})),
        o("outcome: unknown model", _dumps({**outcome, "model_id": "no-such-model"})),
        o("outcome: label object", _dumps({**outcome, "label": {"y": 1}})),
        o("outcome: NaN value", _dumps({**outcome, "label": None, "value": float("nan")})),
        o("outcome: timestamp 0", _dumps({**outcome, "timestamp": 0})),
        o("outcome: timestamp year 9999", _dumps({**outcome, "timestamp": "9999-12-31T23:59:59Z"})),
        o("outcome: embedded prediction, score text", _dumps({**outcome, "prediction": {"score": "high"}})),
        o("outcome: prediction_timestamp text", _dumps({**outcome, "prediction_timestamp": "soon"})),
        o("outcome: unknown prediction (valid)", _dumps({**outcome, "prediction_id": f"nobody-{n}"})),
        o("outcome: label not a class (valid)", _dumps({**outcome, "label": "maybe"})),
        o("outcome: huge prediction_id (valid)", orjson.dumps({**outcome, "prediction_id": huge + pid})),
    ]


def _topic_limit(bootstrap: str, topic: str) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return int(future.result()["max.message.bytes"].value)


def _metrics(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in body.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def _sum(metrics: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in metrics.items() if k.startswith(name + "{") and all(w in k for w in wanted))


@pytest.fixture
def worker(start_worker: Callable[..., RunningWorker], tmp_path: Path) -> RunningWorker:
    profile_path = drift_reference(tmp_path / "profile.json", MODEL)
    model = {
        "model_id": MODEL,
        "features": {"x1": "numeric", "x2": "numeric", "x3": "numeric", "c1": "categorical"},
        "reference": {"profile": str(profile_path)},
        "window": {"size": "5s", "allowed_lateness": "1s", "idle_close": "4s", "dead_letter_late": True},
        "sensitive_attributes": ["g"],
        "accuracy": {"label_horizon": "1h"},
    }
    return start_worker({"models": [model]})


def test_hostile_records_are_counted_dead_lettered_or_refused(worker: RunningWorker) -> None:
    started = time.monotonic()
    settings = worker.settings
    limit = _topic_limit(settings.bootstrap_servers, settings.topic_predictions)
    rng = np.random.default_rng(5)
    rows = drift_rows(rng, N // 2, 0.0) + drift_rows(rng, N // 2, 0.8)
    draw = random.Random(7)
    hostile: dict[int, list[Kind]] = {}  # valid prediction i → the hostile records produced after it
    for half in (0, 1):  # every kind twice: spread over 0.8 s of each half, stamped at its start
        at = half * N // 2 + N // 8 + draw.randrange(N // 4)
        kinds = _kinds(T0 + at * SPACING, half, rows[at], limit)
        draw.shuffle(kinds)
        for k, kind in enumerate(kinds):
            hostile.setdefault(at + k, []).append(kind)
    stream: list[Kind] = []
    for i, row in enumerate(rows):  # the valid stream in event-time order, the hostile records in between
        t = T0 + i * SPACING
        stream.append(("valid prediction", False, f"p{i}".encode(), orjson.dumps(_prediction(f"p{i}", t, row))))
        if i % 3 == 0:
            outcome = {"prediction_id": f"p{i}", "model_id": MODEL, "timestamp": t + 1, "label": i % 2}
            stream.append(("valid outcome", True, f"p{i}".encode(), orjson.dumps(outcome)))
        if i >= N // 2 and i % 300 == 0:  # 25 s behind its partition: its window closed long ago
            late = _prediction(f"late{i}", t - 25, row)
            stream.append(("late prediction (valid)", False, f"late{i}".encode(), orjson.dumps(late)))
        stream += hostile.get(i, [])

    delivered: dict[tuple[str, int, int], str] = {}
    refused: dict[str, str] = {}
    producer = Producer(
        {
            **settings.kafka_client_config(),
            "partitioner": "murmur2_random",
            "linger.ms": 10,
            "message.max.bytes": 2 * limit,  # let the broker be the one to refuse the record over its limit
        }
    )
    for kind, outcome, key, value in stream:
        topic = settings.topic_outcomes if outcome else settings.topic_predictions

        def report(error: KafkaError | None, message: Message, kind: str = kind) -> None:
            if error is None:
                delivered[(message.topic(), message.partition(), message.offset())] = kind
            else:
                refused[kind] = error.name()

        alone = value is not None and len(value) > 100_000  # a record near the limit goes in a batch of its own
        if alone:
            producer.flush(30)
        producer.produce(topic, key=key, value=value, on_delivery=report)
        producer.poll(0)
        if alone:
            producer.flush(30)
    assert producer.flush(30) == 0
    kinds_sent = {kind for kind, _, _, _ in stream}
    assert len(kinds_sent - {"valid prediction", "valid outcome"}) >= 40
    assert refused == {"just over the record limit": "MSG_SIZE_TOO_LARGE"}, refused
    sent = Counter(topic for topic, _, _ in delivered)

    # the count identity per input topic, from /metrics, once the worker has read everything
    deadline = time.monotonic() + 60
    while True:
        assert worker.process.poll() is None, worker.log_tail()
        try:
            metrics = _metrics(worker.metrics_port)
        except OSError:
            metrics = {}
        accepted = _sum(metrics, "watchkeeper_events_total", model_id=MODEL, outcome="accepted")
        late = _sum(metrics, "watchkeeper_events_total", model_id=MODEL, outcome="late")
        dead = {
            topic: {
                reason: _sum(metrics, "watchkeeper_deadletter_total", topic=topic, reason=reason)
                for reason in {
                    m.split('reason="')[1].split('"')[0]
                    for m in metrics
                    if m.startswith("watchkeeper_deadletter_total{") and f'topic="{topic}"' in m
                }
            }
            for topic in (settings.topic_predictions, settings.topic_outcomes)
        }
        rejected_p = sum(v for r, v in dead[settings.topic_predictions].items() if r not in ("late", "outcome join"))
        rejected_o = sum(v for r, v in dead[settings.topic_outcomes].items() if r not in ("expired", "outcome join"))
        joined = _sum(metrics, "watchkeeper_outcomes_total")
        identity = (
            accepted + late + rejected_p == sent[settings.topic_predictions]
            and joined + rejected_o == sent[settings.topic_outcomes]
        )
        if identity or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    figures = (
        f"predictions: {sent[settings.topic_predictions]} taken by the broker = {accepted:.0f} accepted + "
        f"{late:.0f} late + {rejected_p:.0f} rejected; outcomes: {sent[settings.topic_outcomes]} = "
        f"{joined:.0f} by join status + {rejected_o:.0f} rejected"
    )
    assert identity, f"{figures}; log: {worker.log_tail()}"
    assert late == sum(kind == "late prediction (valid)" for kind in delivered.values())
    assert dead[settings.topic_predictions].get("late", 0) == late  # window.dead_letter_late

    # every dead-letter record: a reason, and where it came from
    expected = sum(sum(reasons.values()) for reasons in dead.values())
    letters = read_topic(settings, settings.topic_deadletter, lambda m: len(m) >= expected, timeout=30)
    assert len(letters) == expected
    table: dict[str, set[str]] = defaultdict(set)
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers() or []}
        assert headers["reason"] and letter.key() == headers["source.topic"].encode()
        place = (headers["source.topic"], int(headers["source.partition"]), int(headers["source.offset"]))
        table[delivered[place]].add(re.sub(r"\d{6,}(\.\d+)?", "…", headers["reason"])[:110])
    for kind in sorted(set(delivered.values()) - set(table)):
        table[kind].add("(accepted)")
    table["just over the record limit"] = {f"(refused by the broker: {refused['just over the record limit']})"}

    # the worker kept working: the drift alert, the last window, one start, no traceback
    alerts = read_topic(
        settings,
        settings.topic_alerts,
        lambda m: any(b'"subject":"x2"' in x.value().replace(b" ", b"") for x in m),
        timeout=60,
    )
    subjects = {(orjson.loads(m.value())["data"]["subject"], orjson.loads(m.value())["data"]["status"]) for m in alerts}
    assert ("x2", "firing") in subjects, subjects
    last = T0 + (N - 1) * SPACING // 5 * 5
    windows = read_topic(
        settings,
        settings.topic_windows,
        lambda m: any(orjson.loads(x.value()).get("window_start") == last for x in m),
        timeout=30,
    )
    assert any(orjson.loads(m.value()).get("window_start") == last for m in windows)
    assert worker.process.poll() is None
    log = worker.log.read_text(errors="replace")
    assert "Traceback" not in log and log.count("worker started") == 1, log[-3000:]
    # no stage started over: a stage rewinds (aborts its transaction, rebuilds its state from the
    # changelogs, re-consumes) only after a Kafka error, and says so in one of these lines
    restarts = [
        line for line in log.splitlines() if "retrying after a Kafka error" in line or "transaction aborted" in line
    ]
    assert restarts == [], restarts
    status = Path(f"/proc/{worker.process.pid}/status").read_text()
    rss, peak = (int(re.search(rf"^{name}:\s+(\d+) kB", status, re.M).group(1)) // 1024 for name in ("VmRSS", "VmHWM"))
    assert peak < 512, f"peak RSS {peak} MB"  # ~150 MB measured: the garbage holds nothing

    width = max(map(len, table))
    print(f"\n{'record kind':<{width}} | dead-letter reason")
    for kind in sorted(table, key=lambda k: (k.startswith("valid"), k)):
        print(f"{kind:<{width}} | {' / '.join(sorted(table[kind]))}")
    print(f"{figures}\nworker RSS {rss} MB (peak {peak} MB); {time.monotonic() - started:.0f} s")
