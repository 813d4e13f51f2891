"""``watchkeeper alerts tail`` and ``watchkeeper deadletter tail``: the two topics, one line a record.

Both read with ``isolation.level=read_committed`` (the worker writes in transactions), from
the end of every partition unless ``--from-beginning``, without a consumer group (partitions
are assigned, nothing is committed), until Ctrl-C or ``--idle-exit`` seconds without a record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Annotated, Any

import orjson
import typer
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Message, TopicPartition

from watchkeeper.broker import BrokerUnreachable, bootstrap_origin, check_broker, settings_for
from watchkeeper.cli_options import BootstrapOption, KafkaTimeoutOption
from watchkeeper.command_errors import fail
from watchkeeper.config import Settings

__all__ = [
    "alerts_app",
    "deadletter_app",
    "format_alert",
    "format_dead_letter",
    "tail_topic",
]

VALUE_CHARS = 120  # a dead letter's value is shown up to this many characters
BROKER_TIMEOUT = 10.0  # seconds to wait for a broker's first answer

alerts_app = typer.Typer(help="Alerts from the alerts topic, one line each.")
deadletter_app = typer.Typer(help="Dead letters (rejected input) with their reasons, one line each.")

FromBeginningOpt = Annotated[
    bool, typer.Option("--from-beginning", help="start at the earliest record (default: only new records)")
]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="only records of this model_id")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print each record as one JSON line")]
IdleExitOpt = Annotated[
    float | None, typer.Option("--idle-exit", min=0.0, help="exit after this many seconds without a record")
]


def _escape(text: str) -> str:
    """Non-printable characters (newlines, terminal escape sequences) as Python escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _next_day(day: str) -> str:
    """The ISO date after ``day`` (``2026-11-23`` → ``2026-11-24``), or "" when it is not a date."""
    try:
        return (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    except ValueError:
        return ""


def format_alert(event: Mapping[str, Any]) -> str:
    """One line for an alert CloudEvent (decoded JSON): status, severity, model, metric, window."""
    alert = event["data"]
    status = alert["status"].upper()
    observed = alert["observed"]
    shown = "-" if observed is None else f"{observed:.3f}"
    start, end = alert["window"]["start"], alert["window"]["end"]
    # the time of day when the window lies within one day, else the dates too (windows of 1d, 30d)
    within_a_day = start[:10] == end[:10] or (end[11:19] == "00:00:00" and _next_day(start[:10]) == end[:10])
    start, end = (start[11:19], end[11:19]) if within_a_day and start[11:19] != end[11:19] else (start[:19], end[:19])
    return (
        f"ALERT {status:<8} {alert['severity']:<8} {alert['model_id']} {alert['monitor']}/{alert['metric']} "
        f"subject={alert['subject']} observed={shown} {alert['comparator']} {alert['threshold']:.4g} "
        f"window={start}-{end} n={alert['window']['n']}"
    )


def _text(value: str | bytes | None) -> str:
    return value if isinstance(value, str) else (value or b"").decode("utf-8", "backslashreplace")


def _headers(message: Message) -> dict[str, str]:
    raw = message.headers() or []  # a consumed message's headers are a list of pairs
    pairs = raw.items() if isinstance(raw, dict) else raw
    return {name: _text(value) for name, value in pairs}


def format_dead_letter(headers: Mapping[str, str], value: bytes | None) -> str:
    """One line for a dead letter: where the record came from, why it was rejected, its value shortened."""
    source = f"topic={_escape(headers.get('source.topic', '?'))}"
    if "source.partition" in headers:
        source += f" partition={_escape(headers['source.partition'])}"
        source += f" offset={_escape(headers.get('source.offset', '?'))}"
    if "truncated.original_bytes" in headers:
        source += f" truncated.original_bytes={_escape(headers['truncated.original_bytes'])}"
    reason = _escape(json.dumps(headers.get("reason", ""), ensure_ascii=False))
    text = (value or b"").decode("utf-8", "backslashreplace")
    shown = _escape(text[:VALUE_CHARS]) + ("…" if len(text) > VALUE_CHARS else "")
    return f"DEADLETTER {source} reason={reason} value={shown}"


def _json_object(value: bytes | None) -> dict[str, Any]:
    """The value decoded when it is a JSON object, else an empty dict."""
    try:
        decoded = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _render_alert(message: Message, model: str | None, as_json: bool) -> str | None:
    value = message.value() or b""
    event = _json_object(value)
    data = event.get("data")
    if model is not None and (not isinstance(data, dict) or data.get("model_id") != model):
        return None
    if as_json:
        return value.decode("utf-8", "backslashreplace")
    try:
        return format_alert(event)
    except (KeyError, TypeError, ValueError):
        shown = _escape(value[:VALUE_CHARS].decode("utf-8", "backslashreplace"))
        return f"NOT AN ALERT partition={message.partition()} offset={message.offset()} value={shown}"


def _render_dead_letter(message: Message, model: str | None, as_json: bool) -> str | None:
    value = message.value()
    if model is not None and _json_object(value).get("model_id") != model:
        return None
    headers = _headers(message)
    if as_json:
        record = {
            "partition": message.partition(),
            "offset": message.offset(),
            "headers": headers,
            "value": (value or b"").decode("utf-8", "backslashreplace"),
        }
        return orjson.dumps(record).decode()
    return format_dead_letter(headers, value)


def tail_topic(
    settings: Settings,
    topic: str,
    render: Callable[[Message], str | None],
    from_beginning: bool = False,
    idle_exit: float | None = None,
) -> None:
    """Print ``render(message)`` for every committed record (None: skip it).

    Every partition of ``topic`` is assigned at its start or end; runs until Ctrl-C or until
    ``idle_exit`` seconds pass without a record. A topic that does not exist: :class:`typer.Exit` (2).
    """
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"watchkeeper-tail-{os.getpid()}",  # required by the client; never joined or committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=BROKER_TIMEOUT)
        except KafkaException as exc:
            fail(f"topic {topic!r}: no metadata from {settings.bootstrap_servers}: {exc.args[0]}")
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            fail(f"topic {topic!r} does not exist on {settings.bootstrap_servers} (watchkeeper topics create)")
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        consumer.assign([TopicPartition(topic, p, start) for p in sorted(described.partitions)])
        last = time.monotonic()
        while idle_exit is None or time.monotonic() - last < idle_exit:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                typer.echo(f"kafka: {error}", err=True)
                continue
            last = time.monotonic()
            line = render(message)
            if line is not None:
                typer.echo(line)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _settings(bootstrap_servers: str | None, timeout: float) -> Settings:
    """The settings with ``--bootstrap-servers`` applied, once a broker answers within ``timeout``
    seconds (else exit 2, one line)."""
    settings = settings_for(bootstrap_servers)
    try:
        check_broker(settings, bootstrap_origin(bootstrap_servers), timeout)
    except BrokerUnreachable as exc:
        fail(str(exc))
    return settings


@alerts_app.command("tail")
def alerts_tail(
    from_beginning: FromBeginningOpt = False,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    bootstrap_servers: BootstrapOption = None,
    kafka_timeout: KafkaTimeoutOption = BROKER_TIMEOUT,
    idle_exit: IdleExitOpt = None,
) -> None:
    """Print alerts as they arrive (topic: WATCHKEEPER_TOPIC_ALERTS), in the demo's one-line format."""
    settings = _settings(bootstrap_servers, kafka_timeout)
    tail_topic(
        settings,
        settings.topic_alerts,
        lambda message: _render_alert(message, model, as_json),
        from_beginning=from_beginning,
        idle_exit=idle_exit,
    )


@deadletter_app.command("tail")
def deadletter_tail(
    from_beginning: FromBeginningOpt = False,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    bootstrap_servers: BootstrapOption = None,
    kafka_timeout: KafkaTimeoutOption = BROKER_TIMEOUT,
    idle_exit: IdleExitOpt = None,
) -> None:
    """Print dead letters (topic: WATCHKEEPER_TOPIC_DEADLETTER): source, reason, value shortened.

    ``--model`` keeps the records whose value is JSON naming that ``model_id`` (not truncated ones).
    """
    settings = _settings(bootstrap_servers, kafka_timeout)
    tail_topic(
        settings,
        settings.topic_deadletter,
        lambda message: _render_dead_letter(message, model, as_json),
        from_beginning=from_beginning,
        idle_exit=idle_exit,
    )
