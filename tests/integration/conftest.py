"""Integration fixtures: a real worker process on the test broker, and topic readers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, Message

from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.dev.processes import stop_process
from watchkeeper.stream.topics import ensure_topics

TOPICS = ("predictions", "outcomes", "partials", "alerts", "retraining", "deadletter", "references", "windows")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningWorker:
    settings: Settings
    config_path: Path
    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path
    env: dict[str, str]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def spawn(self) -> None:
        """(Re)start the process with the same settings and instance id (after a crash)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "worker", "--config", str(self.config_path), "--loglevel", "info"],
            env={**os.environ, **self.env},
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def start_worker(kafka: LocalKafka, topic_prefix: str, tmp_path: Path) -> Iterator[Callable[..., RunningWorker]]:
    """Start `watchkeeper worker` for a models config, on topics private to the test.

    Every call starts one more process of the same application (same app id and topics,
    its own instance id): ``start(config, partitions=4)`` twice gives two workers.
    """
    started: list[RunningWorker] = []

    def start(config: dict[str, Any], partitions: int = 2, spawn: bool = True) -> RunningWorker:
        config_path = tmp_path / "watchkeeper.yaml"
        config_path.write_text(yaml.safe_dump(config))
        port = free_port()
        env = {
            "WATCHKEEPER_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "WATCHKEEPER_APP_ID": f"{topic_prefix}app",
            "WATCHKEEPER_DATA_DIR": str(tmp_path / f"worker{len(started)}"),
            "WATCHKEEPER_INPUT_PARTITIONS": str(partitions),
            "WATCHKEEPER_INSTANCE_ID": f"w{len(started)}",
            "WATCHKEEPER_METRICS_PORT": str(port),
            "WATCHKEEPER_METRICS_ADDRESS": "127.0.0.1",
            "WATCHKEEPER_METRICS_GROUP_LABELS": "50",  # test_worker_outcomes reads the per-group gauges
            **{f"WATCHKEEPER_TOPIC_{name.upper()}": f"{topic_prefix}{name}" for name in TOPICS},
        }
        settings = Settings(**{k.removeprefix("WATCHKEEPER_").lower(): v for k, v in env.items()})
        ensure_topics(settings)
        log = tmp_path / f"worker{len(started)}.log"
        log.write_bytes(b"")
        worker = RunningWorker(settings, config_path, None, port, log, env)  # type: ignore[arg-type]
        if spawn:  # else the test produces its backlog first, then calls worker.spawn()
            worker.spawn()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process is not None:
            stop_process(worker.process)


def read_topic(
    settings: Settings, topic: str, until: Callable[[list[Message]], bool] = lambda _: False, timeout: float = 5.0
) -> list[Message]:
    """Committed messages of a topic from the start, until ``until`` holds or ``timeout`` passes."""
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"reader-{topic}-{time.time()}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(messages):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
    finally:
        consumer.close()
    return messages
