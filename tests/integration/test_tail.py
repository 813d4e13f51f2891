"""`watchkeeper alerts tail` and `watchkeeper deadletter tail` on the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.dev.processes import stop_process
from watchkeeper.events import ALERT_TYPE
from watchkeeper.notify.fake import sample_alert, sample_event
from watchkeeper.stream.ingest import dead_letter
from watchkeeper.stream.kafka import Outgoing
from watchkeeper.stream.topics import ensure_topics

runner = CliRunner()


@pytest.fixture
def settings(kafka: LocalKafka, topic_prefix: str) -> Settings:
    names = ("predictions", "outcomes", "partials", "alerts", "retraining", "deadletter", "references", "windows")
    s = Settings(bootstrap_servers=kafka.bootstrap, **{f"topic_{name}": f"{topic_prefix}{name}" for name in names})
    ensure_topics(s)
    return s


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        "WATCHKEEPER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "WATCHKEEPER_TOPIC_ALERTS": settings.topic_alerts,
        "WATCHKEEPER_TOPIC_DEADLETTER": settings.topic_deadletter,
    }


def _produce(settings: Settings, records: list[Outgoing], commit: bool = True) -> None:
    """Produce in one transaction, as the worker does (aborted when ``commit`` is false)."""
    producer = Producer({**settings.kafka_client_config(), "transactional.id": f"test-{uuid.uuid4().hex[:8]}"})
    producer.init_transactions(10)
    producer.begin_transaction()
    for topic, key, value, _partition, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers)
    if commit:
        producer.commit_transaction(10)
    else:
        producer.flush(10)
        producer.abort_transaction(10)


def _alert(settings: Settings, model_id: str, fingerprint: str, subject: str = "income") -> Outgoing:
    event = sample_event(sample_alert(fingerprint=fingerprint, model_id=model_id, subject=subject))
    return (settings.topic_alerts, fingerprint.encode(), event.model_dump_json().encode(), None, None)


def _tail(env: dict[str, str], *args: str) -> list[str]:
    result = runner.invoke(app, [*args, "--from-beginning", "--idle-exit", "3"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_alerts_tail_prints_committed_alerts_filters_by_model_and_prints_json(
    settings: Settings, env: dict[str, str]
) -> None:
    garbage: Outgoing = (settings.topic_alerts, b"k", b"not\x1b[2J json", None, None)
    _produce(settings, [_alert(settings, "credit-risk", "fp-1"), _alert(settings, "fraud", "fp-2", subject="amount")])
    _produce(settings, [_alert(settings, "credit-risk", "fp-aborted", subject="aborted")], commit=False)
    _produce(settings, [garbage])

    lines = _tail(env, "alerts", "tail")
    assert lines[:2] == [
        "ALERT FIRING   warning  credit-risk drift/psi subject=income observed=0.312 > 0.2 "
        "window=12:00:00-12:05:00 n=4812",
        "ALERT FIRING   warning  fraud drift/psi subject=amount observed=0.312 > 0.2 window=12:00:00-12:05:00 n=4812",
    ]  # and not the aborted one (read_committed)
    assert len(lines) == 3 and lines[2].startswith("NOT AN ALERT partition=0 offset=")
    assert lines[2].endswith(" value=not\\x1b[2J json")  # (a terminal escape sequence, escaped)

    assert [line.split()[3] for line in _tail(env, "alerts", "tail", "--model", "fraud")] == ["fraud"]

    events = [json.loads(line) for line in _tail(env, "alerts", "tail", "--json", "--model", "credit-risk")]
    assert [(e["type"], e["data"]["fingerprint"], e["data"]["model_id"]) for e in events] == [
        (ALERT_TYPE, "fp-1", "credit-risk")
    ]


def test_deadletter_tail_prints_reason_source_and_short_value(settings: Settings, env: dict[str, str]) -> None:
    rejected = b'{"event_id":"e1","model_id":"nope","timestamp":1700000000,"features":{"a":1}}'
    huge = b'{"model_id":"credit-risk","features":{"a":"' + b"x" * 600_000 + b'"}}'
    reason = "model_id: 'nope': not a configured model"
    _produce(
        settings,
        [
            dead_letter(
                settings.topic_predictions,
                rejected,
                reason,
                (settings.topic_predictions, 1, 42),
                settings.topic_deadletter,
            ),
            dead_letter(
                settings.topic_predictions,
                huge,
                "invalid JSON: \x1b[31mred",
                (settings.topic_predictions, 0, 7),
                settings.topic_deadletter,
            ),
            dead_letter(
                settings.topic_outcomes,
                b'{"prediction_id":"p9"}',
                "outcome: no prediction",
                None,
                settings.topic_deadletter,
            ),
        ],
    )
    lines = _tail(env, "deadletter", "tail")
    assert lines[0] == (
        f"DEADLETTER topic={settings.topic_predictions} partition=1 offset=42 "
        f'reason="{reason}" value={rejected.decode()}'
    )
    assert lines[1].startswith(
        f"DEADLETTER topic={settings.topic_predictions} partition=0 offset=7 truncated.original_bytes={len(huge)} "
        'reason="invalid JSON: \\u001b[31mred" value={"model_id":"credit-risk","features":{"a":"xxx'
    )
    assert lines[1].endswith("x…") and len(lines[1].split(" value=")[1]) == 121
    assert lines[2] == (
        f'DEADLETTER topic={settings.topic_outcomes} reason="outcome: no prediction" value={{"prediction_id":"p9"}}'
    )

    assert [line.split()[3] for line in _tail(env, "deadletter", "tail", "--model", "nope")] == ["offset=42"]

    records = [json.loads(line) for line in _tail(env, "deadletter", "tail", "--json")]
    assert records[0]["headers"] == {
        "reason": reason,
        "source.topic": settings.topic_predictions,
        "source.partition": "1",
        "source.offset": "42",
    }
    assert records[0]["value"] == rejected.decode() and len(records[1]["value"]) == 512 * 1024


def test_alerts_tail_starts_at_the_end_by_default(settings: Settings, env: dict[str, str]) -> None:
    _produce(settings, [_alert(settings, "credit-risk", "fp-old", subject="old")])
    process = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "alerts", "tail", "--idle-exit", "3"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout or []:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline:  # until the tail has started reading
            _produce(settings, [_alert(settings, "credit-risk", f"fp-{uuid.uuid4().hex[:6]}", subject="new")])
            time.sleep(0.5)
        assert process.wait(timeout=30) == 0, process.stderr.read() if process.stderr else ""
    finally:
        stop_process(process)
    reader.join(timeout=5)
    assert lines and all("subject=new" in line for line in lines)


def test_tail_names_a_missing_topic(settings: Settings, env: dict[str, str]) -> None:
    result = runner.invoke(
        app, ["alerts", "tail", "--idle-exit", "1"], env={**env, "WATCHKEEPER_TOPIC_ALERTS": "nope.x"}
    )
    assert result.exit_code == 2
    assert f"topic 'nope.x' does not exist on {settings.bootstrap_servers} (watchkeeper topics create)" in (
        result.output
    )
