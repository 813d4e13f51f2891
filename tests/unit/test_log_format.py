"""Worker log lines carry their context (stage, model, topic, partition) as text or JSON, redacted."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from watchkeeper.config import KAFKA_CLIENT_LOGGER
from watchkeeper.logs import ContextFilter, LogFormat, configure_logging, log_context
from watchkeeper.redact import MASK, RedactingFilter, install_log_redaction, register_secrets

Capture = Callable[..., tuple[logging.Logger, io.StringIO]]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A logger of its own writing to a buffer, set up as the worker sets up the root logger."""
    used: list[logging.Logger] = []

    def make(log_format: LogFormat, name: str = "watchkeeper.test_log_format") -> tuple[logging.Logger, io.StringIO]:
        logger = logging.getLogger(name)
        buffer = io.StringIO()
        logger.handlers[:] = [logging.StreamHandler(buffer)]
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        configure_logging(log_format, logger)
        used.append(logger)
        return logger, buffer

    yield make
    for logger in used:
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def test_text_lines_end_with_the_fields(capture: Capture) -> None:
    log, out = capture("text")
    with log_context(stage="stage2", model="credit risk", topic="wk.partials", partition=3):
        log.warning("alert %s %s", "firing", "credit", extra={"partitions": ["wk.partials:0", "wk.partials:1"]})
    log.warning("no context")
    first, second = out.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING watchkeeper.test_log_format alert firing credit "
        r'stage=stage2 model="credit risk" topic=wk.partials partition=3 partitions=wk.partials:0,wk.partials:1',
        first,
    ), first
    assert second.endswith("WARNING watchkeeper.test_log_format no context")


def test_json_lines_are_objects_with_time_level_logger_message_and_fields(capture: Capture) -> None:
    log, out = capture("json")
    with log_context(stage="stage1", topic="wk.predictions", partition=0):
        log.info("partitions assigned", extra={"partitions": ["wk.predictions:0"], "nothing": None})
    line = json.loads(out.getvalue())
    assert list(line) == ["time", "level", "logger", "message", "stage", "topic", "partition", "partitions"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)
    assert line["level"] == "info" and line["logger"] == "watchkeeper.test_log_format"
    assert line["message"] == "partitions assigned"
    assert (line["stage"], line["topic"], line["partition"]) == ("stage1", "wk.predictions", 0)
    assert line["partitions"] == ["wk.predictions:0"]


def test_extra_fields_win_over_the_context(capture: Capture) -> None:
    log, out = capture("json")
    with log_context(stage="main"):
        log.warning("metrics basic auth without TLS", extra={"stage": "metrics"})
    assert json.loads(out.getvalue())["stage"] == "metrics"


def test_an_exception_is_one_json_line_with_exc_and_text_lines_below(capture: Capture) -> None:
    for log_format in ("json", "text"):
        log, out = capture(log_format)
        with log_context(stage="main"):
            try:
                raise ValueError("broken\npartial")
            except ValueError:
                log.critical("worker stopped by an error", exc_info=True)
        text = out.getvalue()
        if log_format == "json":
            assert text.count("\n") == 1
            line = json.loads(text)
            assert line["level"] == "critical" and line["stage"] == "main"
            assert line["exc"].startswith("Traceback") and "ValueError: broken\npartial" in line["exc"]
        else:
            first, *rest = text.splitlines()
            assert first.endswith("worker stopped by an error stage=main") and rest[0].startswith("Traceback")


def test_context_is_per_thread_and_ends_with_its_block(capture: Capture) -> None:
    """Stage 1 and stage 2 run in threads of their own: neither sees the other's fields, nor the main thread's."""
    log, out = capture("json")
    both_inside = threading.Barrier(3)

    def stage(name: str, model: str | None) -> None:
        with log_context(stage=name):
            both_inside.wait(5)  # both threads hold their context at the same time
            for i in range(20):
                if model is None:
                    log.warning("batch %d", i)
                else:
                    with log_context(model=model, topic="wk.partials", partition=i % 2):
                        log.warning("batch %d", i)
                    log.warning("after the model %d", i)

    def bare() -> None:
        both_inside.wait(5)
        log.warning("a thread without context")

    with log_context(stage="main", model="leaky"):
        threads = [
            threading.Thread(target=stage, args=("stage1", None)),
            threading.Thread(target=stage, args=("stage2", "m")),
            threading.Thread(target=bare),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        log.warning("main")
    log.warning("after")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    fields = {tuple(sorted(set(line) - {"time", "level", "logger", "message"})) for line in lines}
    assert fields == {(), ("stage",), ("model", "stage"), ("model", "partition", "stage", "topic")}
    stage1 = [line for line in lines if line.get("stage") == "stage1"]
    stage2 = [line for line in lines if line.get("stage") == "stage2"]
    assert len(stage1) == 20 and len(stage2) == 40 and all("model" not in line for line in stage1)
    assert [line["partition"] for line in stage2 if "model" in line] == [i % 2 for i in range(20)]
    assert all(line["model"] == "m" for line in stage2 if line["message"].startswith("batch"))
    assert {line["message"]: line.get("stage") for line in lines if "stage" not in line or line["stage"] == "main"} == {
        "a thread without context": None,
        "main": "main",
        "after": None,
    }
    assert next(line for line in lines if line["message"] == "main")["model"] == "leaky"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_in_fields_and_message_never_reach_the_output(capture: Capture, log_format: LogFormat) -> None:
    secret = "s3cr3t-Kv9QpX2mLw"
    register_secrets(secret)
    log, out = capture(log_format)
    with log_context(stage="stage1", model=f"m-{secret}", topic=secret):
        log.warning(
            "login as %s failed",
            secret,
            extra={"error": f"auth {secret}", "nested": {secret: [secret]}, "sasl.password": "plain"},
        )
        try:
            raise RuntimeError(f"refused {secret}")
        except RuntimeError:
            log.exception("fatal %s", secret)
    text = out.getvalue()
    assert secret not in text and "plain" not in text
    assert text.count(MASK) >= 8, text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["model"] == f"m-{MASK}" and lines[0]["topic"] == MASK and lines[0]["sasl.password"] == MASK
        assert MASK in lines[1]["exc"]


def test_the_context_filter_comes_before_the_redaction_whatever_the_order_of_setup() -> None:
    handler = logging.StreamHandler(io.StringIO())
    logger = logging.getLogger("watchkeeper.test_log_format.order")
    logger.handlers[:] = [handler]
    try:
        install_log_redaction(logger)  # as main() does before the worker command chooses its format
        configure_logging("json", logger)
        configure_logging("text", logger)  # idempotent: one of each
        assert [type(f) for f in handler.filters] == [ContextFilter, RedactingFilter]
    finally:
        logger.handlers[:] = []


def test_librdkafka_lines_carry_the_client_name(capture: Capture) -> None:
    log, out = capture("json", KAFKA_CLIENT_LOGGER)  # the logger with the KafkaLogThrottle filter
    with log_context(stage="stage2"):
        log.error("%s [%s] %s", "FAIL", "rdkafka#consumer-test-log-format", "Connection refused")
    line = json.loads(out.getvalue())
    assert line["message"] == "FAIL [rdkafka#consumer-test-log-format] Connection refused"
    assert (line["stage"], line["client"]) == ("stage2", "rdkafka#consumer-test-log-format")


def test_a_worker_stopped_by_an_error_logs_its_traceback_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import watchkeeper.broker
    import watchkeeper.logs
    import watchkeeper.stream.app
    import watchkeeper.stream.topics
    from watchkeeper.cli import app

    class FailingWorker:
        def __init__(self, *args: object) -> None:
            pass

        def run(self) -> None:
            raise RuntimeError("fenced")

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models.yaml").write_text("models:\n- model_id: m\n  features: {x: numeric}\n")
    monkeypatch.setattr(watchkeeper.broker, "wait_for_broker", lambda *args: True)
    monkeypatch.setattr(watchkeeper.stream.topics, "ensure_topics", lambda settings: [])
    monkeypatch.setattr(watchkeeper.stream.app, "Worker", FailingWorker)
    monkeypatch.setattr(watchkeeper.logs, "configure_logging", lambda log_format: None)  # keep pytest's handlers
    monkeypatch.setattr(logging, "captureWarnings", lambda capture: None)
    caplog.set_level(logging.WARNING)
    result = CliRunner().invoke(
        app, ["worker", "--config", "models.yaml", "--metrics-port", "0", "--log-format", "json"]
    )
    assert result.exit_code == 1, result.output
    (record,) = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == "worker stopped by an error"
    assert "RuntimeError: fenced" in caplog.text  # the traceback (as exc_info, or exc_text once redacted)


def test_an_unknown_log_format_is_refused() -> None:
    from watchkeeper.cli import app

    result = CliRunner().invoke(app, ["worker", "--log-format", "xml"])
    assert result.exit_code == 2 and "xml" in result.output


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_worker_that_cannot_start_says_why_in_the_log_format(tmp_path: Path, log_format: str) -> None:
    """With --log-format json even the fatal one-line error is a JSON object (log shippers parse it)."""
    import subprocess
    import sys

    (tmp_path / "models.yaml").write_text("models:\n- model_id: m\n  features: {x: numeric}\n  windw: {}\n")
    expected = "models.yaml: models[0].windw: dict: Extra inputs are not permitted; did you mean `window`?"
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "worker", "--config", "models.yaml", "--log-format", log_format],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    if log_format == "text":
        assert lines == [expected]
        return
    (line,) = lines
    record = json.loads(line)
    assert record["level"] == "critical" and record["logger"] == "watchkeeper"
    assert record["message"] == expected


def test_a_notifier_that_cannot_start_says_why_in_json_too(tmp_path: Path) -> None:
    """The notifiers log through the ``watchkeeper`` logger's own handler: their fatal line is JSON too."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SLACK_WEBHOOK_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "watchkeeper", "notify", "slack", "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    record = json.loads(line)
    assert record["level"] == "critical" and "SLACK_WEBHOOK_URL is unset or empty" in record["message"]
