"""The README's commands that talk to Kafka, run as written against the test broker.

``topics create``, ``worker``, the kcat examples, ``alerts tail`` (all four), ``deadletter
tail``, ``report --from-topics`` and the SDK example (the README's ``python`` block) run in a
sandbox with the README's models YAML, a profile built by its ``profile build`` command, and
``WATCHKEEPER_*`` variables naming the test broker and topics private to the test. The kcat
lines get the test broker and topic names in place of ``localhost:9092`` and
``watchkeeper.*``, and ``-e`` (exit at the end of the topic) on the consumers. The sample
lines under "Reading alerts" are what the tails print for the same records.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests import doc_commands as docs
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.dev.processes import stop_process
from watchkeeper.events import Alert, AlertWindow, alert_cloudevent

from .conftest import TOPICS, free_port

README_ALERT, README_DEADLETTER = docs.after(docs.README, "--idle-exit 5   # rejected input").splitlines()


def _on_test_broker(line: str, bootstrap: str, prefix: str) -> str:
    """A kcat line for the test broker and topics; consumers stop at the end of the topic."""
    line = re.sub(r"-t watchkeeper\.(\w+)", rf"-t {prefix}\1", line.replace("localhost:9092", bootstrap))
    return line.replace("kcat -C ", "kcat -C -e ")


def _readme_alert(model_id: str = "credit-risk", fingerprint: str = "readme-1") -> bytes:
    """The alert of the README's sample `alerts tail` line, as the worker publishes it."""
    start, end = datetime(2026, 11, 23, 12, 0, tzinfo=UTC), datetime(2026, 11, 23, 12, 5, tzinfo=UTC)
    alert = Alert(
        fingerprint=fingerprint,
        sequence=1,
        status="firing",
        severity="warning",
        model_id=model_id,
        model_version="1",
        monitor="drift",
        metric="psi",
        subject="income",
        observed=0.312,
        threshold=0.2,
        comparator=">",
        window=AlertWindow(start=start, end=end, n=4812),
        starts_at=end,
        summary=f"{model_id}: income drifted (PSI 0.312 > 0.2)",
        description="sample",
    )
    return alert_cloudevent(alert, "watchkeeper").model_dump_json().encode()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _metric(port: int, sample: str) -> float:
    """A sample's value on the worker's /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, flags=re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _has_a_line(path: Path) -> bool:
    return path.read_text().endswith("\n")


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make system-deps installs it)")
def test_readme_broker_commands(kafka: LocalKafka, topic_prefix: str, tmp_path: Path) -> None:
    here = docs.sandbox(tmp_path / "readme")
    docs.readme_files(here)
    port = free_port()
    env = docs.environment(
        WATCHKEEPER_BOOTSTRAP_SERVERS=kafka.bootstrap,
        WATCHKEEPER_APP_ID=f"{topic_prefix}app",  # (its changelog topics are deleted with the others)
        WATCHKEEPER_INSTANCE_ID="readme",
        WATCHKEEPER_DATA_DIR=str(here / "worker-state"),
        WATCHKEEPER_METRICS_PORT=str(port),
        WATCHKEEPER_METRICS_ADDRESS="127.0.0.1",
        **{f"WATCHKEEPER_TOPIC_{name.upper()}": f"{topic_prefix}{name}" for name in TOPICS},
    )
    created = docs.run(docs.command(".venv/bin/watchkeeper topics create"), here, env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created: ") and f"{topic_prefix}predictions" in created.stdout
    built = docs.run(docs.command(".venv/bin/watchkeeper profile build"), here, env)
    assert built.returncode == 0, built.stderr

    log = (here / "worker.log").open("wb")
    worker = subprocess.Popen(
        ["bash", "-c", f"exec {docs.command('.venv/bin/watchkeeper worker')}"],
        cwd=here,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    try:
        _wait(lambda: _ready(port), "the worker's /readyz")
        rejected = b'{"event_id":"e1","model_id":"nope","timestamp":"2026-11-23T16:00:00Z","features":{}}'
        producer.produce(f"{topic_prefix}predictions", key=b"e1", value=rejected)
        producer.flush(10)
        for line in [c for c in docs.commands() if c.startswith("echo '{")]:
            sent = docs.run(_on_test_broker(line, kafka.bootstrap, topic_prefix), here, env)
            assert sent.returncode == 0, sent.stderr
        accepted = 'watchkeeper_events_total{model_id="credit-risk",outcome="accepted"}'
        _wait(lambda: _metric(port, accepted) == 1, "the README's prediction to be accepted")
        _wait(lambda: _metric(port, 'watchkeeper_outcomes_total{status="joined"}') == 1, "its outcome joined")
        _wait(lambda: _metric(port, 'watchkeeper_events_total{model_id="-",outcome="rejected"}') == 1, "the reject")

        producer.produce(f"{topic_prefix}alerts", key=b"other", value=_readme_alert("fraud", "other"))
        producer.produce(f"{topic_prefix}alerts", key=b"readme-1", value=_readme_alert())
        producer.flush(10)
        consumed = {}
        for line in [c for c in docs.commands() if c.startswith("kcat -C")]:
            result = docs.run(_on_test_broker(line, kafka.bootstrap, topic_prefix), here, env, timeout=60)
            assert result.returncode == 0, result.stderr
            consumed[line.split(" -t ")[1].split()[0]] = result.stdout
        assert '"fingerprint":"readme-1"' in consumed["watchkeeper.alerts"]
        assert consumed["watchkeeper.windows"] == ""  # (one event: no window closed)
        assert consumed["watchkeeper.deadletter"].startswith(f"{topic_prefix}predictions reason=model_id: 'nope'")

        tail = docs.run(docs.command(".venv/bin/watchkeeper alerts tail --from-beginning"), here, env, timeout=60)
        assert (tail.returncode, tail.stdout) == (0, README_ALERT + "\n"), tail.stderr  # (the fraud alert: filtered)
        dead = docs.run(docs.command(".venv/bin/watchkeeper deadletter tail"), here, env, timeout=60)
        assert dead.returncode == 0, dead.stderr
        shown = README_DEADLETTER.replace("watchkeeper.predictions", f"{topic_prefix}predictions")
        expected = re.escape(shown.removesuffix("...")).replace("partition=2", r"partition=\d+")
        assert re.match(expected.replace("offset=1041", r"offset=\d+"), dead.stdout), dead.stdout

        followers = []  # the two that run until Ctrl-C, from the end of the topic
        for line in (".venv/bin/watchkeeper alerts tail --json", ".venv/bin/watchkeeper alerts tail"):
            assert line in docs.commands()
            output = here / f"follower{len(followers)}.out"
            with output.open("wb") as sink:
                process = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=here, env=env, stdout=sink)
            followers.append((process, output))
        time.sleep(5)  # (they start at the end of the topic: give them time to get there)
        producer.produce(f"{topic_prefix}alerts", key=b"readme-2", value=_readme_alert(fingerprint="readme-2"))
        producer.flush(10)
        for process, output in followers:
            _wait(partial(_has_a_line, output), "the followed alert", timeout=30)
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert process.wait(timeout=30) == 0
        json_lines, text_lines = (output.read_text().splitlines() for _, output in followers)
        assert [line.count('"fingerprint":"readme-2"') for line in json_lines] == [1]
        assert text_lines == [README_ALERT]

        report = docs.run(docs.command(".venv/bin/watchkeeper report --from-topics"), here, env, timeout=120)
        assert report.returncode == 0, report.stderr
        assert "credit-risk" in (here / "report.html").read_text()

        (here / "sdk_example.py").write_text(docs.sdk_example())  # the SDK example, as written (now: its time)
        sdk = docs.run(".venv/bin/python sdk_example.py", here, env, timeout=60)
        assert sdk.returncode == 0, sdk.stderr
        _wait(lambda: _metric(port, accepted) == 2, "the SDK example's prediction to be accepted")
        _wait(lambda: _metric(port, 'watchkeeper_outcomes_total{status="joined"}') == 2, "its outcome joined")
    finally:
        stop_process(worker)
        log.close()
    assert "Traceback" not in (here / "worker.log").read_text()
