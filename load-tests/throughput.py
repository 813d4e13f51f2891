"""Throughput, memory and alert latency of the watchkeeper worker against a bare consumer ceiling.

One run, one broker, one topic of pre-produced prediction events (20 numeric and 2
categorical features, a sensitive attribute ``group``), measured in these rows:

* ``ceiling``: a bare confluent-kafka consumer that reads every event and ``orjson.loads``
  it: what any Python consumer on this machine and broker can reach at best;
* ``worker``: a real ``python -m watchkeeper worker`` process (stage 1 and stage 2, each a
  transactional consume → process → produce loop) with a reference profile as ``watchkeeper
  profile build`` makes it (calibrated CUSUMs on), predictions only; progress is scraped
  from its ``/metrics``;
* ``outcomes``: the same worker configuration plus accuracy (``label_horizon: 7h``) and
  fairness (``sensitive_attributes: [group]``), reading the predictions *and* a
  pre-produced outcomes topic (outcomes for 97 % of the predictions, up to 6 h after them,
  in outcome-time order, so most arrive before their prediction: 88 % in a default run);
* ``two-workers``: two worker processes of one app (distinct ``WATCHKEEPER_INSTANCE_ID``)
  sharing the input partitions, CUSUM setup of ``worker``; rates summed over both;
* ``core``: :meth:`MonitorRuntime.run_batch` over the same bytes with no Kafka at all
  (CUSUM on), which shows what the Kafka shell costs on top of the monitor core;
* ``soak``: one worker over ``--soak-events`` events produced while it runs, at a paced
  rate with event time ≈ wall time, a drift switched on and off window by window: its RSS
  at 1M events and at the end, and the latency from a window's close (the moment the
  producer sent the first event at or past the window end + allowed lateness) to its
  alert on the alerts topic (read_committed), p50 / p99 over windows.

Each rate is printed with its ratio to the ceiling measured in the same run, so that the
ratios stay comparable on a noisy, shared machine even when the absolute rates do not.
Speed targets are printed (PASS / FAIL) and written to the JSON, never asserted.

    .venv/bin/python load-tests/throughput.py --json load-tests/results/throughput.json
    .venv/bin/python load-tests/throughput.py --rows soak --soak-events 10000000   # ~35 min
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from watchkeeper.config import Settings, load_config
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.stream.topics import ensure_topics

MODEL_ID = "bench-model"
N_NUMERIC = 20
N_CATEGORICAL = 2
CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo"]
NUMERIC = [f"num_{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = [f"cat_{i}" for i in range(N_CATEGORICAL)]
GROUPS = ("a", "b", "c")
GROUP_SHARES = (0.70, 0.25, 0.05)
OUTCOME_SHARE = 0.97
OUTCOME_DELAY_MAX = 6 * 3600.0  # outcomes arrive up to 6 h (event time) after their prediction
LABEL_HORIZON = "7h"
DRIFTED = ("num_00", "num_01")  # the soak shifts these by --soak-shift standard deviations
OUTPUT_TOPICS = ("partials", "alerts", "retraining", "deadletter", "references", "windows")
SEQUENTIAL_ARL_EVENTS = 2e6  # what `watchkeeper profile build` uses (DriftConfig defaults)
BUCKET_SIZE = 50

ALL_ROWS = ("ceiling", "worker", "outcomes", "two-workers", "core", "soak")
ROWS = {  # result key → label, in print order
    "ceiling": "ceiling: bare consume + orjson.loads",
    "worker_cusum": "worker (CUSUM on), steady state",
    "worker_cusum_including_startup": "worker (CUSUM on), incl. startup",
    "worker_outcomes_fairness": "worker + outcomes + fairness, steady state",
    "worker_outcomes_fairness_including_startup": "worker + outcomes + fairness, incl. startup",
    "two_workers": "two workers (sum), steady state",
    "two_workers_including_startup": "two workers (sum), incl. startup",
    "core_in_process": "core in-process (run_batch, CUSUM on)",
}
MIN_STEADY_SHARE = 0.3  # a steady state over fewer of the events is reported as not one
TARGETS = {"worker_cusum": 0.5, "worker_outcomes_fairness": 0.35}  # ratio to the ceiling, at least
SOAK_RSS_TARGET = 1.10  # RSS at the end / RSS at 1M events, at most


# -- synthetic model and events ------------------------------------------------------
def sample(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """n rows: N(0, 1) numeric features, uniform categories, a logistic score and label, a group."""
    numeric = rng.standard_normal((n, N_NUMERIC))
    categorical = rng.integers(0, len(CATEGORIES), size=(n, N_CATEGORICAL))
    logit = numeric[:, :5] @ np.array([0.8, -0.5, 0.3, 0.2, -0.1]) + 0.2 * (categorical[:, 0] - 2)
    score = 1.0 / (1.0 + np.exp(-logit))
    group = rng.choice(len(GROUPS), size=n, p=GROUP_SHARES)
    return {
        "numeric": numeric,
        "categorical": categorical,
        "score": score,
        "label": (score >= 0.5).astype(int),
        "group": group,
    }


def build_profile(rng: np.random.Generator, n: int) -> ReferenceProfile:
    """The reference as ``watchkeeper profile build`` makes it: 10 bins, calibrated CUSUMs."""
    data = sample(rng, n)
    columns: dict[str, tuple[str, Any]] = {}
    for j, name in enumerate(NUMERIC):
        columns[name] = ("numeric", data["numeric"][:, j])
    for j, name in enumerate(CATEGORICAL):
        columns[name] = ("categorical", [CATEGORIES[c] for c in data["categorical"][:, j]])
    columns[PREDICTION_SCORE] = ("numeric", data["score"])
    columns[PREDICTION_LABEL] = ("categorical", [str(v) for v in data["label"]])
    return ReferenceProfile.build(
        MODEL_ID,
        columns,
        bins=10,
        metadata={"data": "load-tests/throughput.py"},
        sequential_arl_events=SEQUENTIAL_ARL_EVENTS,
        bucket_size=BUCKET_SIZE,
    )


def model_config(
    profile_path: Path, window: str, lateness: str, labels: bool = False, resolve_windows: int | None = None
) -> dict[str, Any]:
    features = {name: "numeric" for name in NUMERIC} | {name: "categorical" for name in CATEGORICAL}
    model: dict[str, Any] = {
        "model_id": MODEL_ID,
        "task": "binary",
        "features": features,
        "reference": {"profile": str(profile_path)},
        "window": {"size": window, "allowed_lateness": lateness, "idle_close": "30s"},
    }
    if labels:
        model["accuracy"] = {"label_horizon": LABEL_HORIZON}
        model["sensitive_attributes"] = ["group"]
    if resolve_windows is not None:
        model["drift"] = {"resolve_windows": resolve_windows}
    return {"models": [model]}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def make_predictions(
    rng: np.random.Generator, times: np.ndarray, shift: np.ndarray | None = None
) -> tuple[list[bytes], list[bytes], dict[str, Any]]:
    """(keys, values, data): one serialised PredictionEvent per event time.

    ``shift`` (one value per event) is added to the :data:`DRIFTED` features.
    """
    n = len(times)
    data = sample(rng, n)
    numeric = data["numeric"]
    if shift is not None:
        for name in DRIFTED:
            numeric[:, NUMERIC.index(name)] += shift
    rows = numeric.tolist()
    categorical = data["categorical"].tolist()
    scores = data["score"].tolist()
    labels = data["label"].tolist()
    groups = data["group"].tolist()
    ids = rng.bytes(16 * n).hex()
    keys: list[bytes] = []
    values: list[bytes] = []
    for i, t in enumerate(times.tolist()):
        event_id = ids[32 * i : 32 * i + 32]
        features: dict[str, Any] = dict(zip(NUMERIC, rows[i], strict=True))
        for name, c in zip(CATEGORICAL, categorical[i], strict=True):
            features[name] = CATEGORIES[c]
        event = {
            "event_id": event_id,
            "prediction_id": event_id,
            "model_id": MODEL_ID,
            "model_version": "1",
            "timestamp": _iso(t),
            "features": features,
            "prediction": {"score": scores[i], "label": labels[i]},
            "attributes": {"group": GROUPS[groups[i]]},
            "metadata": {},
        }
        keys.append(event_id.encode())
        values.append(orjson.dumps(event))
    return keys, values, data


def make_outcomes(
    rng: np.random.Generator, keys: Sequence[bytes], times: np.ndarray, scores: np.ndarray
) -> tuple[list[bytes], list[bytes], np.ndarray]:
    """Outcomes of :data:`OUTCOME_SHARE` of the predictions, delayed up to 6 h, in outcome-time order.

    The true label is drawn with the predicted score as its probability (a calibrated model).
    """
    n = len(keys)
    chosen = np.flatnonzero(rng.random(n) < OUTCOME_SHARE)
    at = times[chosen] + rng.uniform(0.0, OUTCOME_DELAY_MAX, size=chosen.size)
    truth = (rng.random(chosen.size) < scores[chosen]).astype(int)
    order = np.argsort(at, kind="stable")
    ids = rng.bytes(16 * chosen.size).hex()
    out_keys: list[bytes] = []
    out_values: list[bytes] = []
    for k, j in enumerate(order.tolist()):
        i = int(chosen[j])
        event = {
            "event_id": ids[32 * k : 32 * k + 32],
            "prediction_id": keys[i].decode(),
            "model_id": MODEL_ID,
            "timestamp": _iso(float(at[j])),
            "label": int(truth[j]),
        }
        out_keys.append(keys[i])
        out_values.append(orjson.dumps(event))
    return out_keys, out_values, at[order]


# -- Kafka helpers ---------------------------------------------------------------------
def producer_config(bootstrap: str, linger_ms: int = 50) -> dict[str, Any]:
    """As the SDK: murmur2 partitioner (co-partitions predictions and outcomes), lz4, idempotent."""
    return {
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": linger_ms,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }


def _produce_one(producer: Producer, topic: str, key: bytes, value: bytes, on_delivery: Callable[..., None]) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> float:
    """Produce everything; returns seconds taken."""
    producer = Producer(producer_config(bootstrap))
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    started = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        _produce_one(producer, topic, key, value, on_delivery)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"producing failed: {remaining} undelivered, {len(failed)} errors ({failed[:1]})")
    return time.perf_counter() - started


def consume_ceiling(bootstrap: str, topic: str, n: int, group: str, timeout: float) -> dict[str, float]:
    """A bare consumer: read and orjson-parse n messages; rate between 10 % and 90 % of them."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    started = time.perf_counter()
    first = marks_10 = marks_90 = None
    count = parsed_bytes = 0
    try:
        while count < n:
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"ceiling consumer: only {count} of {n} messages within {timeout:.0f}s")
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                value = message.value() or b""
                event = orjson.loads(value)
                parsed_bytes += len(value) if event else 0
                count += 1
            now = time.perf_counter()
            if first is None and count:
                first = now
            if marks_10 is None and count >= 0.1 * n:
                marks_10 = (now, count)
            if marks_90 is None and count >= 0.9 * n:
                marks_90 = (now, count)
        done = time.perf_counter()
    finally:
        consumer.close()
    assert first is not None and marks_10 is not None and marks_90 is not None
    steady = (marks_90[1] - marks_10[1]) / max(marks_90[0] - marks_10[0], 1e-9)
    return {
        "events_per_s": steady,
        "first_message_to_last_per_s": n / max(done - first, 1e-9),
        "including_group_join_per_s": n / (done - started),
        "startup_s": first - started,
        "seconds": done - started,
        "mb_per_s": parsed_bytes / 1e6 / max(done - first, 1e-9),
    }


def delete_run(bootstrap: str, prefix: str, wait: float) -> tuple[list[str], list[str], list[str]]:
    """Delete every topic and consumer group whose name starts with ``prefix`` (this run's).

    The workers' consumers are static members (``group.instance.id``): they do not leave
    their group on close, the broker drops them after the session timeout, and a group with
    members cannot be deleted. So groups are retried for up to ``wait`` seconds. Returns
    (topics deleted, groups deleted, groups left).
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else []:
        with contextlib.suppress(KafkaException):
            future.result()
    deleted: list[str] = []
    left: list[str] = []
    deadline = time.monotonic() + wait
    while True:
        try:
            listing = admin.list_consumer_groups(request_timeout=10).result()
        except Exception:  # groups are cheap leftovers; never fail a run on them
            break
        left = sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix) and g.group_id not in deleted)
        for group, future in admin.delete_consumer_groups(left, request_timeout=10).items() if left else []:
            with contextlib.suppress(KafkaException):
                future.result()
                deleted.append(group)
        left = [g for g in left if g not in deleted]
        if not left or time.monotonic() > deadline:
            return names, deleted, left
        time.sleep(5)
    return names, deleted, left


def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1) for name in names], operation_timeout=30).values():
        future.result()


# -- the worker ------------------------------------------------------------------------
_EVENTS = re.compile(r"^watchkeeper_events_total\{([^}]*)\}\s+(\S+)", re.MULTILINE)
_OUTCOMES = re.compile(r"^watchkeeper_outcomes_total\{([^}]*)\}\s+(\S+)", re.MULTILINE)
_WINDOWS = re.compile(r"^watchkeeper_windows_closed_total\{[^}]*\}\s+(\S+)", re.MULTILINE)
_LATE = re.compile(r"^watchkeeper_late_events\{[^}]*\}\s+(\S+)", re.MULTILINE)
_ALERTS = re.compile(r"^watchkeeper_alerts_total\{[^}]*\}\s+(\S+)", re.MULTILINE)
_DEADLETTER = re.compile(r"^watchkeeper_deadletter_total\{[^}]*\}\s+(\S+)", re.MULTILINE)
_PARTIALS = re.compile(r"^watchkeeper_partials_total\{[^}]*\}\s+(\S+)", re.MULTILINE)


def scrape(port: int) -> dict[str, float] | None:
    """Counters of one worker's /metrics, or None if it is not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    out = {"accepted": 0.0, "rejected": 0.0}
    for labels, value in _EVENTS.findall(text):
        for outcome in ("accepted", "rejected"):
            if f'outcome="{outcome}"' in labels:
                out[outcome] += float(value)
    for labels, value in _OUTCOMES.findall(text):
        status = labels.split('status="', 1)[1].split('"', 1)[0] if 'status="' in labels else "other"
        out[f"outcomes_{status}"] = out.get(f"outcomes_{status}", 0.0) + float(value)
    out["outcomes"] = sum(float(v) for _, v in _OUTCOMES.findall(text))
    out["windows"] = sum(float(v) for v in _WINDOWS.findall(text))
    out["late"] = sum(float(v) for v in _LATE.findall(text))
    out["alerts"] = sum(float(v) for v in _ALERTS.findall(text))
    out["deadletter"] = sum(float(v) for v in _DEADLETTER.findall(text))
    out["partials"] = sum(float(v) for v in _PARTIALS.findall(text))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB (Linux /proc), None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def crossing(samples: list[tuple[float, float]], level: float) -> float:
    """Time at which a sampled counter reached ``level`` (linear between samples)."""
    previous = (0.0, 0.0)
    for t, value in samples:
        if value >= level:
            t0, v0 = previous
            return t0 + (t - t0) * (level - v0) / max(value - v0, 1e-9)
        previous = (t, value)
    raise ValueError(f"the counter never reached {level}")


def value_at(samples: list[tuple[float, float]], when: float) -> float:
    """The sampled value at time ``when`` (linear between samples)."""
    previous = samples[0]
    for t, value in samples:
        if t >= when:
            t0, v0 = previous
            return v0 + (value - v0) * (when - t0) / max(t - t0, 1e-9)
        previous = (t, value)
    return samples[-1][1]


def log_text(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")
    return ""


def log_tail(path: Path, chars: int = 3000) -> str:
    return log_text(path)[-chars:]


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    instance: str
    started: float
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (seconds since row start, CPU seconds)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since row start, MB)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_up_s: float | None = None
    stop_s: float | None = None


def worker_settings(bootstrap: str, app_id: str, topics: dict[str, str], partitions: int) -> Settings:
    """The settings a worker of ``app_id`` gets from :func:`worker_env` (to create its topics)."""
    fields = {"bootstrap_servers": bootstrap, "app_id": app_id, "input_partitions": partitions}
    return Settings.model_validate(fields | {f"topic_{name}": topic for name, topic in topics.items()})


def worker_env(bootstrap: str, app_id: str, topics: dict[str, str], args: argparse.Namespace) -> dict[str, str]:
    """The environment of a worker of ``app_id``: inherited WATCHKEEPER_* dropped, ours set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env.update(
        {
            "WATCHKEEPER_BOOTSTRAP_SERVERS": bootstrap,
            "WATCHKEEPER_APP_ID": app_id,
            "WATCHKEEPER_BATCH_SIZE": str(args.batch_size),
            "WATCHKEEPER_INPUT_PARTITIONS": str(args.partitions),
            **{f"WATCHKEEPER_TOPIC_{name.upper()}": topic for name, topic in topics.items()},
        }
    )
    return env


def start_worker(
    config_path: Path, env: dict[str, str], instance: str, data_dir: Path, log_path: Path, loglevel: str = "warning"
) -> WorkerProcess:
    port = free_port()
    command = [sys.executable, "-m", "watchkeeper", "worker", "--config", str(config_path), "--metrics-port", str(port)]
    command += ["--loglevel", loglevel]
    env = {**env, "WATCHKEEPER_INSTANCE_ID": instance, "WATCHKEEPER_DATA_DIR": str(data_dir)}
    log = log_path.open("wb")
    try:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    return WorkerProcess(process, port, log_path, instance, time.perf_counter())


def stop(worker: WorkerProcess, wait: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``wait`` seconds; records how long a clean stop took."""
    process = worker.process
    if process.poll() is not None:
        return
    began = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=wait)
        worker.stop_s = time.perf_counter() - began
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        worker.stop_s = None


def check_alive(workers: Sequence[WorkerProcess]) -> None:
    for w in workers:
        if w.process.poll() is not None:
            raise RuntimeError(
                f"worker {w.instance} exited with code {w.process.returncode}; log tail ({w.log_path}):\n"
                + log_tail(w.log_path)
            )


def sample_workers(workers: Sequence[WorkerProcess], t0: float) -> float:
    """Scrape every worker, record CPU and RSS; returns seconds since ``t0``."""
    now = time.perf_counter() - t0
    for w in workers:
        metrics = scrape(w.port)
        if metrics is not None:
            if w.metrics_up_s is None:
                w.metrics_up_s = time.perf_counter() - t0
            w.metrics = metrics
        cpu = cpu_seconds(w.process.pid)
        if cpu is not None:
            w.cpu.append((now, cpu))
        rss = rss_mb(w.process.pid)
        if rss is not None:
            w.rss.append((now, rss))
    return now


@dataclass
class WorkerRun:
    workers: list[WorkerProcess]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (s since start, counted total)
    seconds: float = 0.0
    all_counting_s: float | None = None  # first sample at which every worker had counted events
    py_spy: dict[str, Any] | None = None


def run_workers(
    config_path: Path,
    env: dict[str, str],
    instances: Sequence[str],
    workdir: Path,
    target: int,
    count: Callable[[dict[str, float]], float],
    timeout: float,
    every: float,
    py_spy: Path | None = None,
    loglevel: str = "warning",
) -> WorkerRun:
    """Start the workers together; scrape until ``count`` summed over them reaches ``target``."""
    t0 = time.perf_counter()
    workers = [
        start_worker(config_path, env, instance, workdir / instance, workdir / f"{instance}.log", loglevel)
        for instance in instances
    ]
    run = WorkerRun(workers)
    spy: subprocess.Popen[bytes] | None = None
    try:
        while True:
            check_alive(workers)
            now = sample_workers(workers, t0)
            if all(w.metrics for w in workers):
                if py_spy is not None and spy is None:
                    spy = start_py_spy(workers[0].process.pid, py_spy)
                for w in workers:
                    if w.metrics.get("rejected"):
                        raise RuntimeError(
                            f"worker {w.instance} rejected {w.metrics['rejected']:.0f} events; see {w.log_path}"
                        )
                total = sum(count(w.metrics) for w in workers)
                run.samples.append((now, total))
                if run.all_counting_s is None and all(count(w.metrics) > 0 for w in workers):
                    run.all_counting_s = now
                if total >= target:
                    run.seconds = now
                    break
            if now > timeout:
                got = run.samples[-1][1] if run.samples else 0
                tails = "\n".join(f"--- {w.instance} ({w.log_path}):\n{log_tail(w.log_path)}" for w in workers)
                raise RuntimeError(
                    f"the workers counted {got:.0f} of {target} within {timeout:.0f}s; log tails:\n{tails}"
                )
            time.sleep(every)
        if spy is not None:
            run.py_spy = stop_py_spy(spy, py_spy)  # type: ignore[arg-type]
            spy = None
        # a moment for stage 2 to close the windows the last partials completed
        deadline = time.perf_counter() + 5
        windows = sum(w.metrics.get("windows", 0.0) for w in workers)
        while time.perf_counter() < deadline:
            time.sleep(0.5)
            sample_workers(workers, t0)
            now_windows = sum(w.metrics.get("windows", 0.0) for w in workers)
            if now_windows == windows and now_windows > 0:
                break
            windows = now_windows
    finally:
        if spy is not None:
            stop_py_spy(spy, py_spy)  # type: ignore[arg-type]
        for w in workers:
            stop(w)
    return run


def start_py_spy(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("  py-spy not found; not profiling", flush=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--threads", "--idle"]
    command += ["-o", str(path)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(spy: subprocess.Popen[bytes] | None, path: Path) -> dict[str, Any] | None:
    if spy is None:
        return None
    spy.send_signal(signal.SIGINT)
    try:
        _, err = spy.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    return {"path": str(path), "returncode": spy.returncode, "stderr_tail": err.decode(errors="replace")[-500:]}


def summarise_run(run: WorkerRun, target: int) -> dict[str, Any]:
    start, t90 = crossing(run.samples, 0.1 * target), crossing(run.samples, 0.9 * target)
    if run.all_counting_s is not None and start < run.all_counting_s < t90:  # (a worker joined late: from then on)
        start = run.all_counting_s
    counted = 0.9 * target - value_at(run.samples, start)
    out: dict[str, Any] = {
        "events_per_s": counted / (t90 - start),
        # with big batches the first worker can count nearly everything before the group
        # rebalances for the second: then the window where both count is too short to mean much
        "steady_share": counted / target,
        "steady_state_from_s": start,
        "all_workers_counting_s": run.all_counting_s,
        "including_startup_per_s": target / run.seconds,
        "seconds_to_all": run.seconds,
        "first_counted_s": crossing(run.samples, 1),
        "seconds_steady_state": t90 - start,
        "processes": [],
    }
    for w in run.workers:
        proc: dict[str, Any] = {
            "instance": w.instance,
            "metrics_up_s": w.metrics_up_s,
            "final": w.metrics,
            "clean_stop_s": w.stop_s,
            "rss_mb_max": max((r for _, r in w.rss), default=None),
        }
        if len(w.cpu) > 1:
            cpu = value_at(w.cpu, t90) - value_at(w.cpu, start)
            proc["cpu_utilisation_steady_state"] = cpu / (t90 - start)
            proc["cpu_seconds_total"] = w.cpu[-1][1]
        out["processes"].append(proc)
    cpus = [p["cpu_utilisation_steady_state"] for p in out["processes"] if "cpu_utilisation_steady_state" in p]
    if len(cpus) == len(run.workers):
        out["cpu_utilisation_steady_state"] = sum(cpus)
        out["cpu_us_per_record_steady_state"] = 1e6 * sum(cpus) * (t90 - start) / counted
    if run.py_spy is not None:
        out["py_spy"] = run.py_spy
    return out


# -- the in-process core ---------------------------------------------------------------
def run_core(config_path: Path, values: list[bytes], batch_size: int) -> dict[str, float]:
    runtime = MonitorRuntime(load_config(config_path))
    outputs = 0
    started = time.perf_counter()
    for offset in range(0, len(values), batch_size):
        produced, rejected = runtime.run_batch(values[offset : offset + batch_size], "bench:0", offset)
        if rejected:
            raise RuntimeError(f"the core rejected {len(rejected)} events: {rejected[0].reason}")
        outputs += len(produced)
    seconds = time.perf_counter() - started
    return {"events_per_s": len(values) / seconds, "seconds": seconds, "outputs": outputs}


# -- the soak --------------------------------------------------------------------------
class AlertReader(threading.Thread):
    """Reads the alerts topic (read_committed) and records when each alert became visible."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        super().__init__(name="alerts", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 20,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.alerts: list[tuple[float, float, dict[str, Any]]] = []  # (wall time received, record timestamp, alert)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for message in self.consumer.consume(num_messages=100, timeout=0.05):
                    received = time.time()
                    if message.error() is not None:
                        continue
                    envelope = orjson.loads(message.value() or b"{}")
                    _, stamp = message.timestamp()
                    self.alerts.append((received, stamp / 1000.0, envelope.get("data", {})))
        finally:
            self.consumer.close()


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q, method="higher")) if values else None


def run_soak(
    args: argparse.Namespace, bootstrap: str, run_id: str, profile_path: Path, workdir: Path, rng: np.random.Generator
) -> dict[str, Any]:
    """One worker over a paced stream with a drift switched on in every other window."""
    n = args.soak_events
    rate = args.soak_rate
    size = float(args.soak_window)
    lateness = float(args.soak_lateness)
    checkpoint = args.soak_rss_at if args.soak_rss_at < n else n // 2
    app_id = f"{run_id}-soak"
    topics = {name: f"{run_id}.soak.{name}" for name in ("predictions", "outcomes", *OUTPUT_TOPICS)}
    config_path = workdir / "soak.yaml"
    config_path.write_text(
        yaml.safe_dump(model_config(profile_path, f"{size:g}s", f"{lateness:g}s", resolve_windows=1))
    )
    ensure_topics(worker_settings(bootstrap, app_id, topics, args.partitions))
    reader = AlertReader(bootstrap, topics["alerts"], f"{run_id}-soak-alerts")
    reader.start()
    env = worker_env(bootstrap, app_id, topics, args)
    t0 = time.perf_counter()
    loglevel = "debug" if args.worker_loglevel == "debug" else "info"  # info: "partitions assigned"
    worker = start_worker(config_path, env, "soak-1", workdir / "soak-1", workdir / "soak-1.log", loglevel)
    samples: list[tuple[float, float, float]] = []  # (s since start, produced, accepted)
    rss_checkpoint: tuple[float, float] | None = None  # (accepted, MB)
    produced = 0
    production_s = float("nan")
    close_sent: dict[float, float] = {}  # window end → wall time the first event >= end + lateness was sent
    drift_sent: dict[float, float] = {}  # drifted window start → wall time its first event was sent
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    producer = Producer(producer_config(bootstrap, linger_ms=5))
    try:
        # produce only once both stages own their partitions and restored their state (logged at info
        # level after the restore): the worker's startup is not the point here
        while log_text(worker.log_path).count("partitions assigned") < 2:
            check_alive([worker])
            sample_workers([worker], t0)
            if time.perf_counter() - t0 > args.timeout:
                raise RuntimeError(f"the soak worker did not join its groups; log tail:\n{log_tail(worker.log_path)}")
            time.sleep(0.5)
        ready_s = time.perf_counter() - t0
        start = time.time()
        started = time.perf_counter()
        last_sample = 0.0
        chunk_max = max(1, int(rate * 0.2))
        while produced < n or worker.metrics.get("accepted", 0.0) < n:
            now = time.time()
            due = min(n, int((now - start) * rate))
            if due > produced:
                k = min(due - produced, chunk_max)
                times = start + (produced + np.arange(k)) / rate
                index = np.floor(times / size)
                shift = np.where(index % 2 == 1, args.soak_shift, 0.0)
                keys, values, _ = make_predictions(rng, times, shift)
                # window ends (and drifted-window starts) crossed by this chunk, at their first event
                marks: dict[int, list[tuple[str, float]]] = {}
                closing = np.floor((times - lateness) / size) * size  # the window end this event is past
                previous_close = math.floor((start + (produced - 1) / rate - lateness) / size) * size
                for i in np.flatnonzero(np.diff(np.concatenate(([previous_close], closing))) > 0).tolist():
                    marks.setdefault(i, []).append(("close", float(closing[i])))
                previous_index = math.floor((start + (produced - 1) / rate) / size)
                for i in np.flatnonzero(np.diff(np.concatenate(([previous_index], index))) > 0).tolist():
                    if index[i] % 2 == 1:
                        marks.setdefault(i, []).append(("drift", float(index[i] * size)))
                for i, (key, value) in enumerate(zip(keys, values, strict=True)):
                    for kind, when in marks.get(i, ()):
                        (close_sent if kind == "close" else drift_sent)[when] = time.time()
                    _produce_one(producer, topics["predictions"], key, value, on_delivery)
                producer.poll(0)
                produced += k
                if produced >= n:
                    production_s = time.perf_counter() - started
            else:
                producer.poll(0.005)
            elapsed = time.perf_counter() - t0
            if elapsed - last_sample >= args.scrape_interval * 2.5:
                check_alive([worker])
                sample_workers([worker], t0)
                accepted = worker.metrics.get("accepted", 0.0)
                samples.append((elapsed, float(produced), accepted))
                if rss_checkpoint is None and accepted >= checkpoint and worker.rss:
                    rss_checkpoint = (accepted, worker.rss[-1][1])
                last_sample = elapsed
                if failed:
                    raise RuntimeError(f"producing failed: {failed[:1]}")
                if produced >= n:
                    producer.flush(30)
                    if time.perf_counter() - started > args.timeout + n / rate:
                        raise RuntimeError(
                            f"the soak worker accepted {accepted:.0f} of {n} events; log tail:\n"
                            + log_tail(worker.log_path)
                        )
        rss_end = worker.rss[-1][1] if worker.rss else None
        seconds = time.perf_counter() - started
        # the alert of the last window that closed may still be on its way
        last_close = max(close_sent, default=None)
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline:
            if last_close is not None and any(_window_end(a) == last_close for _, _, a in list(reader.alerts)):
                break
            time.sleep(0.2)
        sample_workers([worker], t0)
    finally:
        producer.flush(10)
        stop(worker)
        reader.stopping.set()
        reader.join(timeout=10)

    # latencies: window close (producer side) → alert visible (read_committed consumer)
    per_window: dict[float, float] = {}
    per_window_stamp: dict[float, float] = {}
    cusum_firing: list[float] = []
    cusum_elsewhere = 0  # CUSUM alarms on columns the soak does not drift (false alarms)
    onsets = sorted(drift_sent.values())
    unmatched = 0
    for received, stamp, alert in reader.alerts:
        end = _window_end(alert)
        if alert.get("metric") == "cusum" and alert.get("status") == "firing":
            if alert.get("subject") not in DRIFTED:
                cusum_elsewhere += 1
                continue
            before = [o for o in onsets if o <= received]  # the latest drift onset before the alarm
            if before:
                cusum_firing.append(received - before[-1])
            continue
        sent = close_sent.get(end) if end is not None else None
        if end is None or sent is None:
            unmatched += 1
            continue
        per_window[end] = max(per_window.get(end, float("-inf")), received - sent)
        per_window_stamp[end] = max(per_window_stamp.get(end, float("-inf")), stamp - sent)
    latencies = sorted(per_window.values())
    stamps = sorted(per_window_stamp.values())
    lags = [(p - a) / rate for _, p, a in samples]
    return {
        "events": n,
        "rate_per_s": rate,
        "achieved_rate_per_s": n / production_s,
        "seconds_producing": production_s,
        "seconds": seconds,
        "window_s": size,
        "allowed_lateness_s": lateness,
        "drift": {"features": list(DRIFTED), "shift_sd": args.soak_shift, "windows": "every other window"},
        "rss_checkpoint_events": checkpoint,
        "rss_mb_at_checkpoint": rss_checkpoint[1] if rss_checkpoint else None,
        "rss_mb_at_end": rss_end,
        "rss_ratio": (rss_end / rss_checkpoint[1]) if rss_checkpoint and rss_end else None,
        "rss_mb_max": max((r for _, r in worker.rss), default=None),
        "rss_series_mb": [(round(t, 1), round(r, 1)) for t, r in worker.rss[:: max(1, len(worker.rss) // 200)]],
        "latency_s": {
            "p50": _percentile(latencies, 50),
            "p99": _percentile(latencies, 99),
            "max": latencies[-1] if latencies else None,
            "windows": len(latencies),
            "windows_closed_by_producer": len(close_sent),
            "record_timestamp_p50": _percentile(stamps, 50),
            "record_timestamp_p99": _percentile(stamps, 99),
        },
        "cusum_firing_after_drift_onset_s": {
            "p50": _percentile(cusum_firing, 50),
            "p99": _percentile(cusum_firing, 99),
            "alerts": len(cusum_firing),
            "alarms_on_undrifted_columns": cusum_elsewhere,
        },
        "alerts_received": len(reader.alerts),
        "alerts_without_close_mark": unmatched,
        "lag_s_max": max(lags, default=None),
        "lag_s_p50": _percentile(lags, 50),
        "worker": {
            "metrics_up_s": worker.metrics_up_s,
            "final": worker.metrics,
            "clean_stop_s": worker.stop_s,
            "cpu_seconds_total": worker.cpu[-1][1] if worker.cpu else None,
            "cpu_utilisation": (worker.cpu[-1][1] / worker.cpu[-1][0]) if worker.cpu else None,
        },
        "worker_ready_s": ready_s,
        "log_tail": log_tail(worker.log_path, 1500),
    }


def _window_end(alert: dict[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(alert["window"]["end"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return None


# -- report ----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import confluent_kafka

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model or platform.processor(),
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.__version__,
        "librdkafka": confluent_kafka.libversion()[0],
    }


def source_state() -> dict[str, Any]:
    """The commit and the files changed in the work tree (read-only git calls)."""
    root = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["commit"] = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        out["changed_files"] = [line[3:] for line in status.splitlines() if line.strip()]
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    width = max(len(label) for label in ROWS.values())
    lines = [f"{'':<{width}}  {'events/s':>10}  {'vs ceiling':>10}  target", "-" * (width + 40)]
    for key, label in ROWS.items():
        if key in results:
            row = results[key]
            ratio = row.get("ratio_to_ceiling")
            target = ""
            if key in TARGETS and ratio is not None:
                target = f">= {TARGETS[key]:.2f} {'PASS' if ratio >= TARGETS[key] else 'FAIL'}"
            shown = f"{ratio:>10.3f}" if ratio is not None else f"{'-':>10}"
            share = row.get("steady_share", 1.0)
            if share < MIN_STEADY_SHARE:
                target = f"not a steady state: {share:.0%} of the events counted in it (use more --events)"
            lines.append(f"{label:<{width}}  {row['events_per_s']:>10,.0f}  {shown}  {target}".rstrip())
    return "\n".join(lines)


def soak_lines(soak: dict[str, Any]) -> list[str]:
    lat = soak["latency_s"]
    cusum = soak["cusum_firing_after_drift_onset_s"]
    ratio = soak["rss_ratio"]
    verdict = f"(target <= {SOAK_RSS_TARGET:.2f} {'PASS' if ratio <= SOAK_RSS_TARGET else 'FAIL'})" if ratio else ""

    def mb(value: float | None) -> str:
        return f"{value:.1f} MB" if value is not None else "-"

    def s(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else "-"

    return [
        f"soak: {soak['events']:,} events at {soak['achieved_rate_per_s']:,.0f}/s, {soak['window_s']:g} s windows, "
        f"lateness {soak['allowed_lateness_s']:g} s; lag p50 {s(soak['lag_s_p50'])}, max {s(soak['lag_s_max'])}",
        f"  RSS at {soak['rss_checkpoint_events']:,} events {mb(soak['rss_mb_at_checkpoint'])}, at the end "
        f"{mb(soak['rss_mb_at_end'])}, ratio {ratio:.3f} {verdict}"
        if ratio
        else "  RSS: not measured",
        f"  window close -> alert visible: p50 {s(lat['p50'])}, p99 {s(lat['p99'])}, max {s(lat['max'])} over "
        f"{lat['windows']} windows (of {lat['windows_closed_by_producer']} closed)",
        f"  CUSUM alarm of a drifted column after the drift onset: p50 {s(cusum['p50'])}, p99 {s(cusum['p99'])} "
        f"({cusum['alerts']} alarms; {cusum['alarms_on_undrifted_columns']} on undrifted columns)",
        f"  worker ready (partitions assigned, state restored) {s(soak['worker_ready_s'])} after its start; "
        f"CPU {soak['worker']['cpu_utilisation']:.0%} of a core over its life",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="prediction events of the throughput rows")
    parser.add_argument(
        "--rows",
        default=",".join(ALL_ROWS),
        help=f"comma-separated rows, of {','.join(ALL_ROWS)} (the ceiling runs with any worker or core row)",
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second of event time (throughput topic)")
    parser.add_argument("--window", default="10s", help="tumbling window size (event time) of the throughput rows")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=int(os.environ.get("WATCHKEEPER_BATCH_SIZE", Settings.model_fields["batch_size"].default)),
        help="stage-1 batch size (WATCHKEEPER_BATCH_SIZE); also the core's run_batch size",
    )
    parser.add_argument("--partitions", type=int, default=4, help="input partitions")
    parser.add_argument("--reference-rows", type=int, default=100_000, help="rows the reference profile is built from")
    parser.add_argument("--soak-events", type=int, default=1_000_000, help="events of the soak row")
    parser.add_argument("--soak-rate", type=float, default=5000.0, help="events per second produced in the soak")
    parser.add_argument("--soak-window", type=float, default=5.0, help="window size of the soak model, seconds")
    parser.add_argument("--soak-lateness", type=float, default=2.0, help="allowed lateness of the soak model, seconds")
    parser.add_argument("--soak-shift", type=float, default=0.5, help="drift: shift of num_00 and num_01 in SDs")
    parser.add_argument("--soak-rss-at", type=int, default=1_000_000, help="first RSS sample (half the soak if larger)")
    parser.add_argument("--bootstrap-servers", help="use this broker instead of the local one")
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("WATCHKEEPER_BENCH_KAFKA_PORT", "29092")))
    parser.add_argument("--kafka-data-dir", type=Path, default=Path(".watchkeeper/bench-kafka"))
    parser.add_argument("--keep-kafka", action="store_true", help="leave a broker this run started running")
    parser.add_argument("--scrape-interval", type=float, default=0.2, help="seconds between /metrics scrapes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for each phase")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--py-spy", type=Path, help="record the `worker` row's process with py-spy (raw) to this file")
    parser.add_argument("--worker-loglevel", default="warning", help="--loglevel of the workers")
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' logs to this directory")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ALL_ROWS))
    if unknown:
        parser.error(f"--rows: unknown {unknown}; expected some of {','.join(ALL_ROWS)}")
    if set(rows) & {"worker", "outcomes", "two-workers", "core"} and "ceiling" not in rows:
        rows.insert(0, "ceiling")
    throughput_rows = set(rows) - {"soak"}

    n = args.events
    rng = np.random.default_rng(args.seed)
    run_id = f"bench-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"watchkeeper-{run_id}-"))
    info = machine()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    print(f"run {run_id}: rows {','.join(rows)}; load average {info['load_average_at_start']}", flush=True)

    kafka: LocalKafka | None = None
    kafka_started = False
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        kafka = LocalKafka(port=args.kafka_port, controller_port=args.kafka_port + 1, data_dir=args.kafka_data_dir)
        print(f"kafka: starting or reusing the local broker on {kafka.bootstrap} ...", flush=True)
        kafka_started = kafka.up() == "started"
        bootstrap = kafka.bootstrap

    inputs = {"predictions": f"{run_id}.predictions", "outcomes": f"{run_id}.outcomes"}

    def row_env(row: str, outcomes: bool) -> dict[str, str]:
        """A row's worker environment; its own app id and output topics, created beforehand
        (its partials must not reach another row's stage 2; topic creation is not startup)."""
        app_id = f"{run_id}-{row}"
        topics = {
            "predictions": inputs["predictions"],
            "outcomes": inputs["outcomes"] if outcomes else f"{run_id}.{row}.outcomes",
            **{name: f"{run_id}.{row}.{name}" for name in OUTPUT_TOPICS},
        }
        ensure_topics(worker_settings(bootstrap, app_id, topics, args.partitions))
        return worker_env(bootstrap, app_id, topics, args)

    results: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    mean_size = mean_outcome = 0.0
    n_outcomes = 0
    try:
        t = time.perf_counter()
        profile = build_profile(rng, args.reference_rows)
        details["profile_build_s"] = time.perf_counter() - t
        profile_path = workdir / "profile.json"
        profile_path.write_bytes(orjson.dumps(profile.to_dict()))
        print(f"reference profile with calibrated CUSUMs built in {details['profile_build_s']:.1f}s", flush=True)
        configs = {
            "cusum": workdir / "cusum.yaml",
            "fairness": workdir / "fairness.yaml",
        }
        configs["cusum"].write_text(yaml.safe_dump(model_config(profile_path, args.window, "60s")))
        configs["fairness"].write_text(yaml.safe_dump(model_config(profile_path, args.window, "60s", labels=True)))

        values: list[bytes] = []
        if throughput_rows:
            # all before now - 6 h, so that no outcome is stamped in the future
            start = float(int(time.time() - OUTCOME_DELAY_MAX - 600 - n / args.rate) // 60 * 60)
            times = start + np.arange(n) / args.rate
            t = time.perf_counter()
            keys, values, data = make_predictions(rng, times)
            mean_size = sum(map(len, values)) / n
            print(
                f"generated {n:,} predictions ({mean_size:.0f} bytes each) in {time.perf_counter() - t:.1f}s",
                flush=True,
            )
            create_topics(bootstrap, list(inputs.values()), args.partitions)
            seconds = produce(bootstrap, inputs["predictions"], keys, values)
            print(f"produced them to {inputs['predictions']} in {seconds:.1f}s ({n / seconds:,.0f}/s)", flush=True)
            if "outcomes" in rows:
                out_keys, out_values, _ = make_outcomes(rng, keys, times, data["score"])
                n_outcomes = len(out_values)
                mean_outcome = sum(map(len, out_values)) / max(n_outcomes, 1)
                seconds = produce(bootstrap, inputs["outcomes"], out_keys, out_values)
                print(
                    f"produced {n_outcomes:,} outcomes ({mean_outcome:.0f} bytes each) to {inputs['outcomes']} "
                    f"in {seconds:.1f}s",
                    flush=True,
                )
                del out_keys, out_values
            del keys, data

        if "ceiling" in rows:
            ceiling = consume_ceiling(bootstrap, inputs["predictions"], n, f"{run_id}-ceiling", args.timeout)
            details["ceiling"] = ceiling
            results["ceiling"] = {"events_per_s": ceiling["events_per_s"]}
            print(
                f"ceiling: {ceiling['events_per_s']:,.0f} events/s (group join {ceiling['startup_s']:.1f}s)", flush=True
            )

        if "worker" in rows:
            print(f"worker (CUSUM on), batch size {args.batch_size}: consuming ...", flush=True)
            env = row_env("w1", False)
            run = run_workers(
                configs["cusum"],
                env,
                ["w1-1"],
                workdir,
                n,
                lambda m: m["accepted"],
                args.timeout,
                args.scrape_interval,
                args.py_spy,
                args.worker_loglevel,
            )
            summary = summarise_run(run, n)
            details["worker_cusum"] = summary
            results["worker_cusum"] = {"events_per_s": summary["events_per_s"]}
            results["worker_cusum_including_startup"] = {"events_per_s": summary["including_startup_per_s"]}
            print(f"  {summary['events_per_s']:,.0f} events/s steady state", flush=True)

        if "outcomes" in rows:
            target = n + n_outcomes
            print(
                f"worker + outcomes + fairness: consuming {n:,} predictions + {n_outcomes:,} outcomes ...", flush=True
            )
            env = row_env("w3", True)
            run = run_workers(
                configs["fairness"],
                env,
                ["w3-1"],
                workdir,
                target,
                lambda m: m["accepted"] + m["outcomes"],
                args.timeout,
                args.scrape_interval,
                loglevel=args.worker_loglevel,
            )
            summary = summarise_run(run, target)
            details["worker_outcomes_fairness"] = summary
            results["worker_outcomes_fairness"] = {"events_per_s": summary["events_per_s"]}
            results["worker_outcomes_fairness_including_startup"] = {"events_per_s": summary["including_startup_per_s"]}
            print(f"  {summary['events_per_s']:,.0f} records/s steady state", flush=True)

        if "two-workers" in rows:
            print(f"two workers, {args.partitions} partitions: consuming ...", flush=True)
            env = row_env("w4", False)
            run = run_workers(
                configs["cusum"],
                env,
                ["w4-1", "w4-2"],
                workdir,
                n,
                lambda m: m["accepted"],
                args.timeout,
                args.scrape_interval,
                loglevel=args.worker_loglevel,
            )
            summary = summarise_run(run, n)
            details["two_workers"] = summary
            results["two_workers"] = {"events_per_s": summary["events_per_s"], "steady_share": summary["steady_share"]}
            results["two_workers_including_startup"] = {"events_per_s": summary["including_startup_per_s"]}
            print(f"  {summary['events_per_s']:,.0f} events/s steady state (sum)", flush=True)

        if "core" in rows:
            core = run_core(configs["cusum"], values, args.batch_size)
            details["core_in_process"] = core
            results["core_in_process"] = {"events_per_s": core["events_per_s"]}
            print(f"core in-process: {core['events_per_s']:,.0f} events/s", flush=True)
        del values

        if "soak" in rows:
            print(
                f"soak: {args.soak_events:,} events at {args.soak_rate:,.0f}/s "
                f"(~{args.soak_events / args.soak_rate / 60:.1f} min) ...",
                flush=True,
            )
            details["soak"] = run_soak(args, bootstrap, run_id, profile_path, workdir, rng)

        if "ceiling" in results:
            for row in results.values():
                row["ratio_to_ceiling"] = row["events_per_s"] / results["ceiling"]["events_per_s"]
        for key, minimum in TARGETS.items():
            if key in results:
                results[key]["target_ratio_at_least"] = minimum
                results[key]["pass"] = results[key]["ratio_to_ceiling"] >= minimum
    finally:
        with contextlib.suppress(Exception):
            print("deleting this run's topics and consumer groups (static members expire first) ...", flush=True)
            topics, groups, left = delete_run(bootstrap, run_id, Settings.model_fields["session_timeout"].default + 20)
            print(
                f"deleted {len(topics)} topics and {len(groups)} consumer groups of this run"
                + (f"; left: {left}" if left else ""),
                flush=True,
            )
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in workdir.glob("*.log"):
                shutil.copy(log, args.keep_logs / log.name)
        if kafka is not None and kafka_started and not args.keep_kafka:
            kafka.down()
            print("kafka stopped", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    if throughput_rows:
        print(
            f"{n:,} predictions ({n_outcomes:,} outcomes), {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features, "
            f"{args.partitions} partitions, batch size {args.batch_size}, {info['usable_cores']} cores, "
            f"load average at start {info['load_average_at_start'][0]:.2f}"
        )
    if results:
        print(table(results))
    for key in ("worker_cusum", "worker_outcomes_fairness", "two_workers"):
        if key in details:
            d = details[key]
            cpu = ", ".join(
                f"{p['instance']} CPU {p.get('cpu_utilisation_steady_state', float('nan')):.0%}" for p in d["processes"]
            )
            print(
                f"{ROWS[key].split(',')[0]}: first counted after {d['first_counted_s']:.1f}s, all after "
                f"{d['seconds_to_all']:.1f}s; steady state {cpu}"
                + (
                    f", {d['cpu_us_per_record_steady_state']:.0f} us CPU per record"
                    if "cpu_us_per_record_steady_state" in d
                    else ""
                )
            )
    if "soak" in details:
        print("\n".join(soak_lines(details["soak"])))
    if args.json:
        report = {
            "events": n,
            "outcomes": n_outcomes,
            "features": {"numeric": N_NUMERIC, "categorical": N_CATEGORICAL, "sensitive": ["group"]},
            "rows": rows,
            "results": results,
            "details": details,
            "settings": {
                "batch_size": args.batch_size,
                "partitions": args.partitions,
                "window": args.window,
                "allowed_lateness": "60s",
                "events_per_second_of_event_time": args.rate,
                "event_bytes_mean": round(mean_size, 1),
                "outcome_bytes_mean": round(mean_outcome, 1),
                "label_horizon": LABEL_HORIZON,
                "group_shares": dict(zip(GROUPS, GROUP_SHARES, strict=True)),
                "profile": {
                    "rows": args.reference_rows,
                    "sequential_arl_events": SEQUENTIAL_ARL_EVENTS,
                    "bucket_size": BUCKET_SIZE,
                    "bins": 10,
                },
                "soak": {
                    "events": args.soak_events,
                    "rate": args.soak_rate,
                    "window_s": args.soak_window,
                    "lateness_s": args.soak_lateness,
                    "shift_sd": args.soak_shift,
                },
            },
            "machine": info,
            "source": source_state(),
            "run_id": run_id,
            "started_at": started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "load_average_at_end": list(os.getloadavg()),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        print(f"results -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
