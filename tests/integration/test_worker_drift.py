"""End to end through the real broker: a worker process, stationary then shifted traffic.

Asserts what a user relies on: exactly the shifted feature raises a drift alert on the
alerts topic, the alert validates against schemas/, malformed input lands in the
dead-letter topic with its reason, /metrics counts the events, and an offline replay of
the same events gives exactly the same alerts (same windows, same numbers).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import orjson
import pytest
import yaml
from confluent_kafka import Producer

from watchkeeper.client import WatchkeeperClient
from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import AlertRaised, TriggerRaised
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

from .conftest import RunningWorker, read_topic
from .streams import drift_reference, drift_rows

ROOT = Path(__file__).resolve().parents[2]
MODEL = "it-model"
T0 = 1_700_000_000.0


def _event(i: int, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "model_id": MODEL,
        "model_version": "7",
        "timestamp": datetime.fromtimestamp(T0 + i * 0.005, UTC).isoformat(),
        "features": {"x1": row["x1"], "x2": row["x2"], "x3": row["x3"], "c1": row["c1"]},
        "prediction": {"score": row["score"], "label": int(row["score"] >= 0.5)},
    }


@pytest.fixture
def setup(start_worker: Callable[..., RunningWorker], tmp_path: Path) -> RunningWorker:
    profile_path = drift_reference(tmp_path / "profile.json", MODEL, sequential_arl_events=1e6)  # calibrated CUSUMs
    worker = start_worker(
        {
            "models": [
                {
                    "model_id": MODEL,
                    "features": {"x1": "numeric", "x2": "numeric", "x3": "numeric", "c1": "categorical"},
                    "reference": {"profile": str(profile_path)},
                    "window": {"size": "5s", "allowed_lateness": "1s", "idle_close": "4s"},
                    "retraining": [{"name": "drift-retrain", "monitors": ["drift"], "cooldown": "1h"}],
                }
            ]
        },
        spawn=False,
    )
    worker.env["WATCHKEEPER_LOG_FORMAT"] = "json"  # its log is checked line by line at the end
    worker.spawn()
    return worker


def test_shifted_feature_alerts_end_to_end(setup: RunningWorker) -> None:
    settings = setup.settings
    rng = np.random.default_rng(5)
    rows = drift_rows(rng, 6000, 0.0) + drift_rows(rng, 6000, 0.0)
    for row in rows[6000:]:
        row["x2"] += 0.8  # only x2 shifts; the score depends on x1 alone
    events = [_event(i, row) for i, row in enumerate(rows)]
    lines = [orjson.dumps(e) for e in events]

    with WatchkeeperClient(settings=settings) as client:
        for event in events:
            client.log_prediction(
                model_id=MODEL,
                model_version="7",
                event_id=event["event_id"],
                timestamp=event["timestamp"],
                features=event["features"],
                prediction=event["prediction"],
            )
    bad = Producer(settings.kafka_client_config())
    bad.produce(settings.topic_predictions, key=b"bad-1", value=b'{"event_id": "x", "model_id": ')
    bad.produce(settings.topic_predictions, key=b"bad-2", value=orjson.dumps({**events[0], "model_id": "nope"}))
    bad.flush(10)

    def all_closed(messages: list[Any]) -> bool:
        statuses = [
            (orjson.loads(m.value())["data"]["subject"], orjson.loads(m.value())["data"]["status"]) for m in messages
        ]
        return ("x2", "firing") in statuses

    alerts = read_topic(settings, settings.topic_alerts, all_closed, timeout=120)
    assert setup.process.poll() is None, setup.log_tail()
    time.sleep(8)  # let idle close finish the last windows, then read everything
    alerts = read_topic(settings, settings.topic_alerts, lambda m: False, timeout=6)
    envelopes = [orjson.loads(m.value()) for m in alerts]
    firing = {(e["data"]["subject"], e["data"]["metric"]) for e in envelopes if e["data"]["status"] == "firing"}
    assert firing == {("x2", "psi"), ("x2", "cusum")}  # the window test and the sequential detector

    schema = json.loads((ROOT / "schemas" / "alert.v1.json").read_text())
    for envelope in envelopes:
        jsonschema.validate(envelope, schema)
        assert envelope["type"] == "io.watchkeeper.alert.v1"
    assert {m.key() for m in alerts} == {e["data"]["fingerprint"].encode() for e in envelopes}

    dead = read_topic(settings, settings.topic_deadletter, lambda m: len(m) >= 2, timeout=30)
    reasons = {dict(m.headers())["reason"].decode() for m in dead}
    assert any(r.startswith("invalid JSON") for r in reasons)
    assert "model_id: 'nope': not a configured model" in reasons
    assert all(m.key() == settings.topic_predictions.encode() for m in dead)

    # one retraining trigger per cooldown, although x2 stays drifted for six windows
    triggers = read_topic(settings, settings.topic_retraining, lambda m: False, timeout=5)
    assert len(triggers) == 1
    trigger = orjson.loads(triggers[0].value())
    jsonschema.validate(trigger, json.loads((ROOT / "schemas" / "retraining-trigger.v1.json").read_text()))
    assert trigger["type"] == "io.watchkeeper.retraining.requested.v1" and trigger["id"] == trigger["data"]["id"]
    assert {e["subject"] for e in trigger["data"]["evidence"]} == {"x2"}
    assert triggers[0].key() == MODEL.encode()

    port = setup.metrics_port
    body = urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5).read().decode()
    assert f'watchkeeper_events_total{{model_id="{MODEL}",outcome="accepted"}} 12000.0' in body
    decoded = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("watchkeeper_decoded_records_total{")
    }
    # the SDK's events take the native reader; a batch holding one of the two bad records, the generic decoder
    assert decoded.get("native", 0) > 0 and sum(decoded.values()) == 12002, decoded

    # the same events replayed offline give the same alerts, CUSUM included, number for number
    runtime = MonitorRuntime(parse_config(yaml.safe_load(setup.config_path.read_text())))
    outputs = [out for batch, _, _ in replay_lines(runtime, lines, batch_size=777) for out in batch]
    replayed = [out.alert for out in outputs if isinstance(out, AlertRaised)]
    replayed_triggers = [out.trigger.id for out in outputs if isinstance(out, TriggerRaised)]
    worker_alerts = [
        (e["data"]["fingerprint"], e["data"]["status"], e["data"]["observed"], e["data"]["window"]["start"])
        for e in envelopes
    ]
    replay_alerts = [
        (a.fingerprint, a.status, a.observed, a.window.start.isoformat().replace("+00:00", "Z")) for a in replayed
    ]
    assert worker_alerts == replay_alerts
    assert replayed_triggers == [trigger["id"]]  # the idempotency key is the same offline

    # every line of the worker's log is a JSON object with its stage; the model's lines name it
    lines = [orjson.loads(line) for line in setup.log.read_text().splitlines()]
    assert all(line["stage"] in ("main", "stage1", "stage2", "references") for line in lines), lines
    alert_lines = [line for line in lines if line["message"].startswith("alert firing")]
    assert alert_lines and all(
        (line["stage"], line["model"], line["topic"]) == ("stage2", MODEL, settings.topic_partials)
        for line in alert_lines
    )
    assigned = {p for line in lines if line["message"] == "partitions assigned" for p in line["partitions"]}
    assert f"{settings.topic_predictions}:0" in assigned and f"{settings.topic_partials}:0" in assigned
