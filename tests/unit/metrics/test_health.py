"""/healthz and /readyz, the stages' consumer-lag and assignment gauges, the window-size gauge,
and the notifier's counters."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from watchkeeper.config import Settings
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.metrics_server import MetricsServer, readiness, start_metrics_server
from watchkeeper.monitor.drift import DriftReport
from watchkeeper.notify.delivery import Delivery
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import Notifier, NotifyRunner

PREDICTIONS, OUTCOMES, PARTIALS = "watchkeeper.predictions", "watchkeeper.outcomes", "watchkeeper.partials"


class FakeProbe:
    """The probe consumer of a stage's group: committed offsets and high watermarks per partition."""

    committed_offsets: ClassVar[dict[tuple[str, int], int]] = {}
    highs: ClassVar[dict[tuple[str, int], int]] = {}
    groups: ClassVar[list[str]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.groups.append(config["group.id"])

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(p.topic, p.partition, self.committed_offsets.get((p.topic, p.partition), OFFSET_INVALID))
            for p in partitions
        ]

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        if (partition.topic, partition.partition) not in self.highs:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        return 0, self.highs[(partition.topic, partition.partition)]


@dataclass
class FakeStage:
    name: str
    assignment: set[tuple[str, int]] = field(default_factory=set)
    caught_up: set[int] = field(default_factory=set)
    settings: Settings = field(default_factory=lambda: Settings(app_id="wk"))


def _runtime(watermarks: dict[tuple[str, str], float]) -> Any:
    """The parts of MonitorRuntime the readiness check reads: window sizes, newest event time per source."""
    models = {name: SimpleNamespace(window=SimpleNamespace(size=size)) for name, size in (("a", 60.0), ("b", 3600.0))}
    return SimpleNamespace(models=models, watermarks=watermarks)


@pytest.fixture
def server() -> Iterator[tuple[MetricsServer, WorkerMetrics]]:
    metrics = WorkerMetrics()
    server = start_metrics_server(Settings(metrics_port=0, metrics_address="127.0.0.1"), metrics.registry)
    yield server, metrics
    server.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_endpoints_follow_the_stages(
    server: tuple[MetricsServer, WorkerMetrics], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, metrics = server
    base = endpoint.url.removesuffix("/metrics")
    assert _get(f"{base}/healthz") == (200, "ok\n")
    assert _get(f"{base}/readyz") == (503, "not ready: starting: no readiness check registered yet\n")

    stage1, stage2 = FakeStage("stage1"), FakeStage("stage2")
    now = 10_000.0
    watermarks: dict[tuple[str, str], float] = {}
    metrics.watch_stages(cast(Any, stage1), cast(Any, stage2), _runtime(watermarks), 2, clock=lambda: now)
    assert _get(f"{base}/readyz") == (503, "not ready: stage1 has no partitions assigned\n")
    stage1.assignment |= {(PREDICTIONS, 0), (PREDICTIONS, 1), (OUTCOMES, 0)}
    assert _get(f"{base}/readyz") == (503, "not ready: stage2 has no partitions assigned\n")
    stage2.assignment.add((PARTIALS, 0))
    stage1.caught_up.add(1)  # partition 1 read to its end (EOF)
    expected = f"stage1 is behind on {PREDICTIONS}[0]: nothing read yet (limit 2 windows of 60 s)"
    assert _get(f"{base}/readyz") == (503, f"not ready: {expected}\n")
    source = f"{PREDICTIONS}:0"
    watermarks[("a", source)], watermarks[("b", source)] = now - 500, now - 121  # the newest counts
    watermarks[("a", f"{PREDICTIONS}:1")] = now  # another partition's
    expected = f"stage1 is behind on {PREDICTIONS}[0]: its newest event read is 121 s old (limit 2 windows of 60 s)"
    assert _get(f"{base}/readyz") == (503, f"not ready: {expected}\n")
    watermarks[("b", source)] = now - 119  # within 2 windows of the shortest window.size
    assert _get(f"{base}/readyz") == (200, "ready\n")
    del watermarks[("b", source)]
    stage1.caught_up.add(0)
    assert _get(f"{base}/readyz") == (200, "ready\n")

    monkeypatch.setattr("watchkeeper.metrics.Consumer", FakeProbe)
    FakeProbe.committed_offsets = {(PREDICTIONS, 0): 90, (PREDICTIONS, 1): 50, (PARTIALS, 0): 7}
    FakeProbe.highs = {(PREDICTIONS, 0): 100, (PREDICTIONS, 1): 50, (PARTIALS, 0): 8}
    status, text = _get(endpoint.url)
    assert status == 200
    assert FakeProbe.groups == ["wk-stage1", "wk-stage2"]  # the stages' groups, asked without joining them
    assert 'watchkeeper_partitions_assigned{stage="stage1"} 3.0' in text
    assert f'watchkeeper_consumer_lag{{partition="0",stage="stage1",topic="{PREDICTIONS}"}} 10.0' in text
    assert f'watchkeeper_consumer_lag{{partition="1",stage="stage1",topic="{PREDICTIONS}"}} 0.0' in text
    assert f'watchkeeper_consumer_lag{{partition="0",stage="stage2",topic="{PARTIALS}"}} 1.0' in text
    assert f'topic="{OUTCOMES}"' not in text  # nothing committed there yet: no sample
    _get(endpoint.url)
    assert len(FakeProbe.groups) == 2  # the probes are made once

    del FakeProbe.highs[(PREDICTIONS, 0)]  # the broker does not answer: no lag, the scrape still works
    status, text = _get(endpoint.url)
    assert status == 200 and 'stage="stage1",topic' not in text
    assert 'watchkeeper_partitions_assigned{stage="stage1"} 3.0' in text


def test_health_bypasses_basic_auth_but_not_metrics() -> None:
    metrics = WorkerMetrics()
    settings = Settings(
        metrics_port=0, metrics_address="127.0.0.1", metrics_username="prometheus", metrics_password="s3cret"
    )
    endpoint = start_metrics_server(settings, metrics.registry)
    try:
        base = endpoint.url.removesuffix("/metrics")
        assert _get(endpoint.url)[0] == 401
        assert _get(f"{base}/healthz") == (200, "ok\n")
        assert _get(f"{base}/readyz")[0] == 503
        readiness(metrics.registry).set_check(lambda: None)
        assert _get(f"{base}/readyz") == (200, "ready\n")
    finally:
        endpoint.close()


def test_readiness_is_one_per_registry() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert readiness(first) is readiness(first)
    readiness(first).set_check(lambda: "busy")
    assert readiness(first).not_ready() == "busy"
    assert readiness(second).not_ready() == "starting: no readiness check registered yet"


def test_window_size_and_end_are_set_when_a_window_closes() -> None:
    metrics = WorkerMetrics()
    metrics.observe_drift(DriftReport("credit", "v1", 1_200.0, 1_260.0, 10, True, []), late_events=0)
    sample = metrics.registry.get_sample_value
    assert sample("watchkeeper_window_end_timestamp_seconds", {"model_id": "credit"}) == 1_260.0
    assert sample("watchkeeper_window_size_seconds", {"model_id": "credit"}) == 60.0
    metrics.forget_model("credit")  # the model moved to another worker: its gauges go
    assert sample("watchkeeper_window_size_seconds", {"model_id": "credit"}) is None


class _Message:
    def value(self) -> bytes:
        return b"not an alert"

    def topic(self) -> str:
        return "watchkeeper.alerts"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 3


class _Producer:
    def produce(self, topic: str, **record: Any) -> None:
        self.topic = topic

    def flush(self, _timeout: float) -> int:
        return 0


def test_notifier_counts_dead_letters_and_is_ready_once_assigned() -> None:
    notifier = Notifier([Receiver(name="am", type="alertmanager", endpoint="http://am:9093")], {}, Delivery())
    runner = NotifyRunner(Settings(), notifier, "g-health")
    assert runner.not_ready() == "no partition of watchkeeper.alerts assigned"
    runner.assigned.add(0)
    assert runner.not_ready() is None
    assert runner._process(cast(Message, _Message()), cast(Producer, _Producer()))
    labels = {"kind": "notifier", "receiver": "notifier"}  # an invalid event: dead-lettered for the notifier itself
    assert runner.registry.get_sample_value("watchkeeper_notify_deadlettered_total", labels) == 1.0
