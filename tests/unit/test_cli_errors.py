"""Mistakes a new user makes get one line on stderr that names the fix, and exit code 2.

The Kafka cases run the command as a user does (a subprocess), so that anything librdkafka
writes straight to the process's stderr would be seen too. 127.0.0.1:1 refuses connections.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import KAFKA_CLIENT_LOGGER, KafkaLogThrottle, Settings

runner = CliRunner()
NOWHERE = "127.0.0.1:1"
MODELS = "models:\n- model_id: credit-risk\n  features: {income: numeric, region: categorical}\n"


def _watchkeeper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_topics_create_names_the_address_its_flag_and_the_wait() -> None:
    started = time.monotonic()
    result = _watchkeeper("topics", "create", "--bootstrap-servers", NOWHERE, "--kafka-timeout", "2")
    assert result.returncode == 2
    assert time.monotonic() - started < 20
    line = _one_line(result.stderr)
    assert line.startswith(f"cannot reach Kafka at {NOWHERE} (from --bootstrap-servers) after 2 s: ")
    assert "Connection refused" in line and "watchkeeper dev kafka up" in line


def test_topics_create_names_the_environment_variable() -> None:
    result = _watchkeeper("topics", "create", "--kafka-timeout", "1", env={"WATCHKEEPER_BOOTSTRAP_SERVERS": NOWHERE})
    assert result.returncode == 2
    assert f"cannot reach Kafka at {NOWHERE} (from WATCHKEEPER_BOOTSTRAP_SERVERS) after 1 s" in _one_line(result.stderr)


@pytest.mark.parametrize("topic", ["alerts", "deadletter"])
def test_the_tails_wait_as_long_as_kafka_timeout_says(topic: str) -> None:
    started = time.monotonic()
    result = _watchkeeper(topic, "tail", "--bootstrap-servers", NOWHERE, "--kafka-timeout", "1")
    assert result.returncode == 2
    assert time.monotonic() - started < 9  # (the default wait is 10 s)
    expected = f"cannot reach Kafka at {NOWHERE} (from --bootstrap-servers) after 1 s: "
    assert _one_line(result.stderr).startswith(expected)


def test_demo_with_an_unreachable_broker_fails_in_one_line() -> None:
    result = _watchkeeper("demo", "--bootstrap-servers", NOWHERE, "--kafka-timeout", "1")
    assert result.returncode == 2
    assert f"cannot reach Kafka at {NOWHERE} (from --bootstrap-servers)" in _one_line(result.stderr)


def _run_for(seconds: float, *args: str, cwd: Path) -> str:
    process = subprocess.Popen([sys.executable, "-m", "watchkeeper", *args], stderr=subprocess.PIPE, text=True, cwd=cwd)
    time.sleep(seconds)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return stderr


@pytest.mark.parametrize(
    "command",
    [
        ["worker", "--config", "models.yaml", "--metrics-port", "0"],
        ["notify", "alertmanager", "--url", "http://127.0.0.1:1"],
    ],
    ids=["worker", "notify"],
)
def test_long_running_commands_warn_once_while_they_retry(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(MODELS)
    stderr = _run_for(12, *command, "--bootstrap-servers", NOWHERE, cwd=tmp_path)
    assert "Traceback" not in stderr
    warnings = [line for line in stderr.splitlines() if "cannot reach Kafka" in line]
    assert len(warnings) == 1, stderr  # ~3 attempts in 12 s, one warning
    assert f"at {NOWHERE} (from --bootstrap-servers)" in warnings[0] and "retrying" in warnings[0]
    assert "FAIL" not in stderr


def test_librdkafka_lines_of_a_running_client_are_throttled(caplog: pytest.LogCaptureFixture) -> None:
    from confluent_kafka import Producer

    producer = Producer(Settings(bootstrap_servers=NOWHERE).kafka_client_config())
    producer.produce("t", b"x")
    with caplog.at_level(logging.WARNING, logger=KAFKA_CLIENT_LOGGER):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            producer.poll(0.2)  # librdkafka hands its log lines over on poll (several a second here)
    failures = [r for r in caplog.records if r.name == KAFKA_CLIENT_LOGGER and "Connection refused" in r.getMessage()]
    assert len(failures) == 1
    producer.purge()


def test_throttled_kafka_lines_say_how_many_were_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    throttle = KafkaLogThrottle(interval=60)

    def line(client: str, level: int = logging.ERROR) -> logging.LogRecord:
        args = ("FAIL", client, "Connection refused")
        return logging.LogRecord(KAFKA_CLIENT_LOGGER, level, __file__, 1, "%s [%s] %s", args, None)

    assert throttle.filter(line("rdkafka#consumer-1"))
    assert not throttle.filter(line("rdkafka#consumer-1")) and not throttle.filter(line("rdkafka#consumer-1"))
    assert throttle.filter(line("rdkafka#producer-2"))  # another client
    assert throttle.filter(line("rdkafka#consumer-1", logging.DEBUG))  # debug output passes whole
    clock[0] += 61
    again = line("rdkafka#consumer-1")
    assert throttle.filter(again)
    shown = "FAIL [rdkafka#consumer-1] Connection refused (2 similar lines in the last 61 s not shown)"
    assert again.getMessage() == shown


def test_missing_profile_names_the_path_and_the_command_that_builds_it(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(MODELS + "  reference: {profile: credit.profile.json}\n")
    (tmp_path / "events.jsonl").write_text("")
    result = runner.invoke(app, ["replay", str(tmp_path / "events.jsonl"), "-c", str(config)])
    assert result.exit_code == 2
    assert _one_line(result.stderr) == (
        f"{config}: models[0].reference.profile: {tmp_path / 'credit.profile.json'} does not exist; build it with: "
        f"watchkeeper profile build TRAINING.csv --model credit-risk -c {config} -o {tmp_path / 'credit.profile.json'}"
    )


@pytest.mark.parametrize("flag", ["--score-column", "--label-column"])
def test_unknown_prediction_column_lists_the_csv_columns(flag: str, tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("income,region,score\n50000,north,0.3\n")
    result = runner.invoke(
        app, ["profile", "build", str(tmp_path / "train.csv"), "-m", "m", "-o", str(tmp_path / "p.json"), flag, "proba"]
    )
    assert result.exit_code == 2
    assert _one_line(result.stderr) == (
        f"{tmp_path / 'train.csv'}: {flag} 'proba' is not a column; the CSV's columns: ['income', 'region', 'score']"
    )


def test_numeric_feature_without_numbers_names_the_column_and_a_value(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("income,region\nhigh,north\n,south\nlow,east\n")
    (tmp_path / "models.yaml").write_text(MODELS)
    result = runner.invoke(
        app,
        [
            "profile",
            "build",
            str(tmp_path / "train.csv"),
            "-m",
            "credit-risk",
            "-c",
            str(tmp_path / "models.yaml"),
            "-o",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 2
    assert _one_line(result.stderr) == (
        f"{tmp_path / 'train.csv'}: column 'income' is numeric in the models config but has no numeric value "
        "(e.g. 'high'); fix it or declare the feature categorical"
    )


def test_score_column_without_numbers_names_a_value(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("income,p\n1,yes\n2,no\n")
    result = runner.invoke(
        app,
        [
            "profile",
            "build",
            str(tmp_path / "train.csv"),
            "-m",
            "m",
            "-o",
            str(tmp_path / "p.json"),
            "--score-column",
            "p",
        ],
    )
    assert result.exit_code == 2
    assert "--score-column 'p' has no numeric value (e.g. 'yes')" in _one_line(result.stderr)


def test_misspelt_yaml_key_suggests_the_real_one(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(MODELS + "  windw: {size: 5m}\n")
    result = runner.invoke(app, ["replay", str(tmp_path / "none.jsonl"), "-c", str(config)])
    assert result.exit_code == 2
    assert _one_line(result.stderr) == (
        f"{config}: models[0].windw: dict: Extra inputs are not permitted; did you mean `window`?"
    )


def test_a_misspelt_required_key_is_one_line(tmp_path: Path) -> None:
    """`model:` for `models:` is one mistake: the suggestion, without a second "Field required" line."""
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(MODELS.replace("models:", "model:"))
    result = runner.invoke(app, ["replay", str(tmp_path / "none.jsonl"), "-c", str(config)])
    assert result.exit_code == 2
    assert _one_line(result.stderr) == f"{config}: model: list: Extra inputs are not permitted; did you mean `models`?"


def test_a_missing_required_key_without_a_near_miss_is_still_named(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text(MODELS.replace("models:", "pipelines:"))
    result = runner.invoke(app, ["replay", str(tmp_path / "none.jsonl"), "-c", str(config)])
    assert result.exit_code == 2
    assert f"{config}: models: dict: Field required" in result.stderr.splitlines()


def test_missing_input_files_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(MODELS)
    csv_file, events = tmp_path / "train.csv", tmp_path / "events.jsonl"
    built = runner.invoke(app, ["profile", "build", str(csv_file), "-m", "credit-risk", "-o", str(tmp_path / "p.json")])
    assert built.exit_code == 2
    assert _one_line(built.stderr) == f"{csv_file}: cannot read the CSV (No such file or directory)"
    replayed = runner.invoke(app, ["replay", str(events), "-c", str(tmp_path / "models.yaml")])
    assert replayed.exit_code == 2
    expected = f"{events}: no such file (the recorded events to replay, one JSON object a line)"
    assert _one_line(replayed.stderr) == expected


def test_unknown_model_fails_before_the_prediction_column_notes(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("income,region,score\n50000,north,0.3\n")
    (tmp_path / "models.yaml").write_text(MODELS)
    args = ["profile", "build", str(tmp_path / "train.csv"), "-m", "fraud", "-c", str(tmp_path / "models.yaml")]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert _one_line(result.stderr) == f"--model: 'fraud': not in {tmp_path / 'models.yaml'}"


def test_text_among_the_numbers_of_a_numeric_column_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("income,region\n50000,north\nunknown,south\n61000,east\n,west\n")
    (tmp_path / "models.yaml").write_text(MODELS)
    args = ["profile", "build", str(tmp_path / "train.csv"), "-m", "credit-risk", "-c", str(tmp_path / "models.yaml")]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "p.json"), "--no-sequential"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "not numbers" in line]
    assert warnings == [
        f"warning: {tmp_path / 'train.csv'}: column 'income': 1 of 4 values are not numbers (e.g. 'unknown'); "
        "the profile leaves them out, as it does empty ones"
    ]
