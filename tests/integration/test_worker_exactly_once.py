"""The worker is as exact as replay: across processes, partitions, and kill -9.

On the real broker, a 15-feature model that learns its reference from its first 10,000
events, with delayed outcomes and a fairness attribute:

* two worker processes over four partitions publish the same drift, CUSUM and
  data-quality alerts, and the same window statistics, as ``replay`` of the same records;
* a worker killed with SIGKILL at five random moments and restarted each time publishes
  exactly what an uninterrupted run would (every window's ``n`` and statistics, every
  alert once), and its committed offsets reach the end of the input.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from watchkeeper.config import Settings, parse_config
from watchkeeper.monitor.engine import AlertRaised
from watchkeeper.monitor.output_records import evaluation_record
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

from .conftest import RunningWorker, read_topic
from .streams import loan_config, loan_stream, produce

DRIFT_MONITORS = {"drift", "data_quality"}  # label alerts: see the label-checkpoint issue


def _replay(config: dict[str, Any], stream: list[tuple[str, bytes, bytes]]) -> tuple[list[Any], list[Any]]:
    runtime = MonitorRuntime(parse_config(config))
    outputs = [o for batch, _, _ in replay_lines(runtime, [v for _, _, v in stream], batch_size=2000) for o in batch]
    windows = [r for o in outputs if (r := evaluation_record(o)) is not None and r["kind"] == "window"]
    alerts = [o.alert.model_dump(mode="json") for o in outputs if isinstance(o, AlertRaised)]
    return _windows(windows), _alerts(alerts)


def _windows(records: list[dict[str, Any]]) -> list[Any]:
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def _alerts(alerts: list[dict[str, Any]]) -> list[Any]:
    return sorted(
        (a["fingerprint"], a["status"], a["window"]["start"][:19], a["metric"], a["subject"], a["observed"])
        for a in alerts
        if a["monitor"] in DRIFT_MONITORS
    )


def _published(settings: Settings, n_windows: int, timeout: float) -> tuple[list[Any], list[Any], list[str]]:
    """Window records and alerts on the output topics, once ``n_windows`` windows are there."""
    windows = read_topic(
        settings,
        settings.topic_windows,
        lambda m: sum(orjson.loads(x.value())["kind"] == "window" for x in m) >= n_windows,
        timeout=timeout,
    )
    records = [orjson.loads(m.value()) for m in windows]
    alerts = [orjson.loads(m.value()) for m in read_topic(settings, settings.topic_alerts, timeout=8)]
    ids = [a["id"] for a in alerts]
    drift = [r for r in records if r["kind"] == "window"]
    return _windows(drift), _alerts([a["data"] for a in alerts]), ids


def _accepted(worker: RunningWorker) -> float:
    try:
        body = urllib.request.urlopen(f"http://localhost:{worker.metrics_port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    lines = [line for line in body.splitlines() if line.startswith("watchkeeper_events_total{") and "accepted" in line]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_two_workers_over_four_partitions_publish_what_replay_writes(
    start_worker: Callable[..., RunningWorker],
) -> None:
    config = loan_config()
    stream = loan_stream(60_000, seed=2)
    expected_windows, expected_alerts = _replay(config, stream)
    assert expected_alerts and any(a[3] == "cusum" for a in expected_alerts)
    first = start_worker(config, partitions=4, spawn=False)
    produce(first.settings, stream)  # a backlog: no partition looks idle while another is read
    first.spawn()
    second = start_worker(config, partitions=4)
    windows, alerts, ids = _published(first.settings, len(expected_windows), timeout=300)
    for worker in (first, second):
        assert worker.process.poll() is None, worker.log_tail()

    assert windows == expected_windows
    assert alerts == expected_alerts
    assert len(ids) == len(set(ids))


def _committed(settings: Settings) -> tuple[int, int]:
    """(records committed by stage 1, records in the input topics)."""
    consumer = Consumer({**settings.kafka_client_config(), "group.id": f"{settings.app_id}-stage1"})
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (settings.topic_predictions, settings.topic_outcomes)
            for p in range(settings.input_partitions)
        ]
        committed = consumer.committed(partitions, timeout=10)
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        return sum(max(c.offset, 0) for c in committed), sum(ends)
    finally:
        consumer.close()


@pytest.mark.timeout(900)
def test_five_sigkills_change_nothing(start_worker: Callable[..., RunningWorker]) -> None:
    config = loan_config()
    stream = loan_stream(200_000, seed=3)
    expected_windows, expected_alerts = _replay(config, stream)
    worker = start_worker(config, partitions=4, spawn=False)
    produce(worker.settings, stream)
    worker.spawn()
    rng = random.Random(11)
    # kill at five random points of the input, from the learning phase to the last windows
    for fraction in sorted(rng.uniform(0.03, 0.9) for _ in range(5)):
        deadline = time.monotonic() + 180
        while _accepted(worker) < 1 and time.monotonic() < deadline:  # it accepted events since it started
            time.sleep(0.2)
        while _committed(worker.settings)[0] < fraction * len(stream) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.0))
        assert worker.process.poll() is None, worker.log_tail()
        worker.process.kill()
        worker.process.wait()
        worker.spawn()
    windows, alerts, ids = _published(worker.settings, len(expected_windows), timeout=600)
    assert worker.process.poll() is None, worker.log_tail()
    assert windows == expected_windows  # every window's n and statistics
    assert alerts == expected_alerts
    assert len(ids) == len(set(ids))  # each alert published once
    deadline = time.monotonic() + 30
    while _committed(worker.settings)[0] < len(stream) and time.monotonic() < deadline:
        time.sleep(1)
    assert _committed(worker.settings) == (len(stream), len(stream))  # offsets reach the end
