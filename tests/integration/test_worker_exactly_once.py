"""The worker is as exact as replay: across processes, partitions, and kill -9.

On the real broker, a 15-feature model that learns its reference from its first 10,000
events, with delayed outcomes and a fairness attribute:

* two worker processes over four partitions publish the same drift, CUSUM,
  data-quality, accuracy and fairness alerts, the same window statistics and label
  checkpoint reports, and the same retraining triggers (a drift policy and a label policy)
  as ``replay`` of the same records (outcomes 0–10 min late, a 15 min label horizon, the
  model worse from half-way);
* a worker killed with SIGKILL at five random moments and restarted each time publishes
  exactly what an uninterrupted run would (every window's ``n`` and statistics, every label
  checkpoint report, every drift, CUSUM, data-quality, accuracy and fairness alert once),
  and its committed offsets reach the end of the input.
"""

from __future__ import annotations

import random
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from tests.rounding import rounded
from watchkeeper.config import Settings, parse_config
from watchkeeper.monitor.engine import AlertRaised, LabelsEvaluated, TriggerRaised
from watchkeeper.monitor.output_records import evaluation_record
from watchkeeper.monitor.runtime import MonitorRuntime

from .conftest import RunningWorker, read_topic
from .streams import loan_config, loan_stream, produce

DRIFT_MONITORS = {"drift", "data_quality"}
LABEL_MONITORS = {"accuracy", "fairness"}


def _replay(
    config: dict[str, Any], stream: list[tuple[str, bytes, bytes]], monitors: set[str] = DRIFT_MONITORS
) -> tuple[list[Any], list[Any]]:
    """Replay's window records and alerts of ``monitors``, as a worker publishes them.

    Drift windows still open at the end are closed as a worker closes them once every
    partition is idle (replay's flush). Label checkpoints are taken as far as the data
    carries them: an idle worker evaluates those before the latest prediction time, and so
    does replay before its flush, which evaluates all the rest (the end of the file): those
    are left out.
    """
    runtime = MonitorRuntime(parse_config(config))
    values = [v for _, _, v in stream]
    outputs = [
        o for k in range(0, len(values), 2000) for o in runtime.run_batch(values[k : k + 2000], "replay:0", k)[0]
    ]
    outputs += [o for o in runtime.flush() if not _label_checkpoint(o)]
    kinds = {"window", "labels"} if monitors & LABEL_MONITORS else {"window"}
    windows = [r for o in outputs if (r := evaluation_record(o)) is not None and r["kind"] in kinds]
    alerts = [o.alert.model_dump(mode="json") for o in outputs if isinstance(o, AlertRaised)]
    return _windows(windows), _alerts(alerts, monitors)


def _replay_triggers(config: dict[str, Any], stream: list[tuple[str, bytes, bytes]]) -> tuple[dict[str, Any], set[str]]:
    """Replay's retraining triggers by id (as JSON), and the ids of those released before its flush.

    A trigger waits until the label watermark passes its decision time; replay's flush (the
    end of the file) releases the rest, which a worker releases only once the outcomes of
    every partition are idle: so the worker publishes at least the first and at most all.
    """
    # the config as the worker reads it from its YAML file (sorted keys: the trigger's config hash)
    runtime = MonitorRuntime(parse_config(yaml.safe_load(yaml.safe_dump(config))))
    values = [v for _, _, v in stream]
    outputs = [
        o for k in range(0, len(values), 2000) for o in runtime.run_batch(values[k : k + 2000], "replay:0", k)[0]
    ]
    before = {o.trigger.id for o in outputs if isinstance(o, TriggerRaised)}
    outputs += runtime.flush()
    triggers = {o.trigger.id: o.trigger.model_dump(mode="json") for o in outputs if isinstance(o, TriggerRaised)}
    return triggers, before


def _label_checkpoint(output: Any) -> bool:
    """A label checkpoint's report or alert (not a drift window closing)."""
    if isinstance(output, AlertRaised):
        return output.alert.monitor in LABEL_MONITORS
    return isinstance(output, LabelsEvaluated) and output.report.checkpoint is not None


def _windows(records: list[dict[str, Any]]) -> list[Any]:
    """Records comparable across runs: floats of label reports (sums) to 10 digits."""
    return sorted(
        orjson.dumps(rounded(r) if r["kind"] == "labels" else r, option=orjson.OPT_SORT_KEYS) for r in records
    )


def _alerts(alerts: list[dict[str, Any]], monitors: set[str] = DRIFT_MONITORS) -> list[Any]:
    return sorted(
        (a["fingerprint"], a["status"], a["window"]["start"][:19], a["metric"], a["subject"], rounded(a["observed"]))
        for a in alerts
        if a["monitor"] in monitors
    )


def _published(
    settings: Settings, n_records: int, timeout: float, monitors: set[str] = DRIFT_MONITORS
) -> tuple[list[Any], list[Any], list[str]]:
    """Window (and, for label monitors, label) records and alerts, once ``n_records`` are there."""
    kinds = {"window", "labels"} if monitors & LABEL_MONITORS else {"window"}
    windows = read_topic(
        settings,
        settings.topic_windows,
        lambda m: sum(orjson.loads(x.value())["kind"] in kinds for x in m) >= n_records,
        timeout=timeout,
    )
    records = [r for m in windows if (r := orjson.loads(m.value()))["kind"] in kinds]
    alerts = [orjson.loads(m.value()) for m in read_topic(settings, settings.topic_alerts, timeout=8)]
    ids = [a["id"] for a in alerts]
    return _windows(records), _alerts([a["data"] for a in alerts], monitors), ids


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
    config = loan_config(
        accuracy={"label_horizon": "15m", "baseline_windows": 1, "min_labeled": 100},
        retraining=[
            {"name": "drift-retrain", "monitors": ["drift"], "cooldown": "30m"},
            {"name": "label-retrain", "monitors": ["accuracy", "fairness"], "cooldown": "30m"},
        ],
    )
    stream = loan_stream(60_000, seed=2, max_delay=600, worse_after=0.5)
    monitors = DRIFT_MONITORS | LABEL_MONITORS
    expected_windows, expected_alerts = _replay(config, stream, monitors)
    expected_triggers, released_before_flush = _replay_triggers(config, stream)
    assert any(a[3] == "cusum" for a in expected_alerts)
    assert any(a[3] == "accuracy" and a[1] == "firing" for a in expected_alerts)
    rules = {t["reason"]["rule"] for i, t in expected_triggers.items() if i in released_before_flush}
    assert rules == {"drift-retrain", "label-retrain"}
    first = start_worker(config, partitions=4, spawn=False)
    produce(first.settings, stream)  # a backlog: no partition looks idle while another is read
    first.spawn()
    second = start_worker(config, partitions=4)
    windows, alerts, ids = _published(first.settings, len(expected_windows), timeout=300, monitors=monitors)
    for worker in (first, second):
        assert worker.process.poll() is None, worker.log_tail()

    assert windows == expected_windows
    assert alerts == expected_alerts
    assert len(ids) == len(set(ids))
    triggers = [orjson.loads(m.value()) for m in read_topic(first.settings, first.settings.topic_retraining, timeout=5)]
    published = {t["id"]: t["data"] for t in triggers}
    assert len(published) == len(triggers)  # each published once
    assert released_before_flush <= set(published) <= set(expected_triggers)
    for trigger_id, data in published.items():
        assert rounded(data) == rounded(expected_triggers[trigger_id])


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
    config = loan_config(accuracy={"label_horizon": "15m", "baseline_windows": 1, "min_labeled": 100})
    stream = loan_stream(200_000, seed=3, max_delay=600, worse_after=0.5)
    monitors = DRIFT_MONITORS | LABEL_MONITORS
    expected_windows, expected_alerts = _replay(config, stream, monitors)
    assert any(a[3] == "accuracy" and a[1] == "firing" for a in expected_alerts)
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
    windows, alerts, ids = _published(worker.settings, len(expected_windows), timeout=600, monitors=monitors)
    assert worker.process.poll() is None, worker.log_tail()
    assert windows == expected_windows  # every window's n and statistics, every label checkpoint
    assert alerts == expected_alerts
    assert len(ids) == len(set(ids))  # each alert published once
    deadline = time.monotonic() + 30
    while _committed(worker.settings)[0] < len(stream) and time.monotonic() < deadline:
        time.sleep(1)
    assert _committed(worker.settings) == (len(stream), len(stream))  # offsets reach the end
