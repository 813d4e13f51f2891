"""`watchkeeper report --from-topics`: the live topics give the report the same records as the replay file."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.events import Alert, alert_cloudevent
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.report.records import RecordError, group_records, read_replay_output
from watchkeeper.report.topics import read_topics
from watchkeeper.stream.topics import ensure_topics

runner = CliRunner()
CONFIG = """models:
- model_id: m
  features: {a: numeric, b: numeric}
  reference: {learn_from_first: 2000}
  window: {size: 10s}
  drift: {sequential: false}
  accuracy: {label_horizon: 5s, min_labeled: 100}
  retraining: [{name: on-drift, monitors: [drift], cooldown: 1s}]
"""


def _replay(directory: Path) -> Path:
    """A replay with drift in ``a`` part-way: windows, label windows, alerts and a retraining trigger."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(8000):
        t = 1e9 + i * 0.01
        score = float(rng.random())
        event = {
            "event_id": str(i),
            "model_id": "m",
            "timestamp": t,
            "prediction": {"score": score, "label": int(score >= 0.5)},
        }
        lines.append(
            {**event, "features": {"a": float(rng.normal() + (1.5 if i >= 5000 else 0)), "b": float(rng.normal())}}
        )
        lines.append({"prediction_id": str(i), "model_id": "m", "timestamp": t + 1, "label": int(rng.random() < score)})
    (directory / "events.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    (directory / "m.yaml").write_text(CONFIG)
    output = directory / "out.jsonl"
    result = runner.invoke(
        app, ["replay", str(directory / "events.jsonl"), "-c", str(directory / "m.yaml"), "-o", str(output)]
    )
    assert result.exit_code == 0, result.output
    return output


def _as_the_worker_writes(settings: Settings, record: dict[str, Any]) -> tuple[str, bytes, bytes]:
    """(topic, key, value) of a replay record, as stage 2 publishes it."""
    if record["kind"] in ("window", "labels"):
        return settings.topic_windows, record["model_id"].encode(), orjson.dumps(record)
    if record["kind"] == "alert":
        alert = Alert.model_validate(record)
        return (
            settings.topic_alerts,
            alert.fingerprint.encode(),
            alert_cloudevent(alert, "watchkeeper").model_dump_json().encode(),
        )
    event = {k: v for k, v in record.items() if k != "kind"}
    return settings.topic_retraining, record["subject"].encode(), orjson.dumps(event)


def test_the_topics_give_the_records_of_the_replay_and_a_report(
    kafka: LocalKafka, topic_prefix: str, tmp_path: Path
) -> None:
    names = ("predictions", "outcomes", "partials", "alerts", "retraining", "deadletter", "references", "windows")
    settings = Settings(bootstrap_servers=kafka.bootstrap, **{f"topic_{n}": f"{topic_prefix}{n}" for n in names})
    ensure_topics(settings)
    output = _replay(tmp_path)
    replayed = [record for _, record in read_replay_output(output)]
    assert {r["kind"] for r in replayed} == {"window", "labels", "alert", "retraining"}
    profile = ReferenceProfile.build("m", {"a": ("numeric", np.arange(100.0)), "b": ("numeric", np.arange(100.0))})
    producer = Producer({**settings.kafka_client_config(), "transactional.id": f"test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for record in replayed:
        topic, key, value = _as_the_worker_writes(settings, record)
        producer.produce(topic, key=key, value=value)
    producer.produce(settings.topic_alerts, key=b"x", value=b"not json")
    producer.produce(settings.topic_references, key=b"m", value=orjson.dumps(profile.to_dict()))
    producer.commit_transaction(10)

    skipped: list[RecordError] = []
    records, profiles = read_topics(settings, 10.0, skipped.append)
    assert group_records(records) == group_records(read_replay_output(output))
    assert set(profiles) == {"m"} and profiles["m"].reference_id == profile.reference_id
    assert len(skipped) == 1 and "expected JSON" in str(skipped[0])

    env = {f"WATCHKEEPER_TOPIC_{n.upper()}": getattr(settings, f"topic_{n}") for n in names}
    args = [
        "report",
        "--from-topics",
        "--bootstrap-servers",
        kafka.bootstrap,
        "--kafka-timeout",
        "10",
        "-o",
        str(tmp_path / "r.html"),
    ]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert f"skipped: topic '{settings.topic_alerts}'" in result.output
    page = (tmp_path / "r.html").read_text()
    assert "reference: references topic" in page and 'id="m-timeline"' in page and "on-drift" in page
