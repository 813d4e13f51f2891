"""Throughput of one watchkeeper worker against a bare consume + parse ceiling.

One run, one broker, one topic of pre-produced prediction events (20 numeric and 2
categorical features), measured three ways:

* ``ceiling``: a bare confluent-kafka consumer that reads every event and ``orjson.loads``
  it: what any Python consumer on this machine and broker can reach at best;
* ``worker``: a real ``watchkeeper worker`` process (Faust, stage 1 and stage 2) reading the
  same topic; progress is scraped from its ``/metrics``;
* ``core``: :meth:`MonitorRuntime.run_batch` over the same bytes with no Kafka at all,
  which shows what the Kafka/Faust shell costs on top of the monitor core.

Each rate is printed with its ratio to the ceiling measured in the same run, so that the
ratios stay comparable on a noisy, shared machine even when the absolute rates do not.

    .venv/bin/python load-tests/throughput.py --events 200000 --json load-tests/results/throughput.json

Speed targets belong here (and in the JSON it writes), never as timed test assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

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
TOPIC_FIELDS = ("predictions", "outcomes", "partials", "alerts", "retraining", "deadletter", "references")

ROWS = {
    "ceiling": "bare consume + orjson parse (ceiling)",
    "worker_steady_state": "watchkeeper worker, steady state",
    "worker_including_startup": "watchkeeper worker, incl. startup",
    "core_in_process": "core in-process (run_batch, no Kafka)",
}


# -- synthetic model and events ------------------------------------------------------
def sample(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """n rows: N(0, 1) numeric features, uniform categories, a logistic score and label."""
    numeric = rng.standard_normal((n, N_NUMERIC))
    categorical = rng.integers(0, len(CATEGORIES), size=(n, N_CATEGORICAL))
    logit = numeric[:, :5] @ np.array([0.8, -0.5, 0.3, 0.2, -0.1]) + 0.2 * (categorical[:, 0] - 2)
    score = 1.0 / (1.0 + np.exp(-logit))
    return {"numeric": numeric, "categorical": categorical, "score": score, "label": (score >= 0.5).astype(int)}


def build_profile(rng: np.random.Generator, n: int = 10_000) -> ReferenceProfile:
    data = sample(rng, n)
    columns: dict[str, tuple[str, Any]] = {}
    for j, name in enumerate(NUMERIC):
        columns[name] = ("numeric", data["numeric"][:, j])
    for j, name in enumerate(CATEGORICAL):
        columns[name] = ("categorical", [CATEGORIES[c] for c in data["categorical"][:, j]])
    columns[PREDICTION_SCORE] = ("numeric", data["score"])
    columns[PREDICTION_LABEL] = ("categorical", [str(v) for v in data["label"]])
    return ReferenceProfile.build(MODEL_ID, columns, metadata={"data": "load-tests/throughput.py"})


def model_config(profile_path: Path, window: str) -> dict[str, Any]:
    features = {name: "numeric" for name in NUMERIC} | {name: "categorical" for name in CATEGORICAL}
    return {
        "models": [
            {
                "model_id": MODEL_ID,
                "task": "binary",
                "features": features,
                "reference": {"profile": str(profile_path)},
                # generous lateness: the 4 input partitions are consumed unevenly, so the
                # event time of one partition can run well ahead of another's
                "window": {"size": window, "allowed_lateness": "60s", "idle_close": "30s"},
            }
        ]
    }


def make_events(rng: np.random.Generator, n: int, per_second: float) -> tuple[list[bytes], list[bytes]]:
    """(keys, values): n serialised PredictionEvents, ``per_second`` per second of event time."""
    data = sample(rng, n)
    numeric = data["numeric"].tolist()
    categorical = data["categorical"].tolist()
    scores = data["score"].tolist()
    labels = data["label"].tolist()
    start = float(int(time.time() - n / per_second) // 60 * 60)
    keys: list[bytes] = []
    values: list[bytes] = []
    for i in range(n):
        event_id = uuid.uuid4().hex
        features: dict[str, Any] = dict(zip(NUMERIC, numeric[i], strict=True))
        features.update((name, CATEGORIES[c]) for name, c in zip(CATEGORICAL, categorical[i], strict=True))
        event = {
            "event_id": event_id,
            "prediction_id": event_id,
            "model_id": MODEL_ID,
            "model_version": "1",
            "timestamp": datetime.fromtimestamp(start + i / per_second, UTC).isoformat(),
            "features": features,
            "prediction": {"score": scores[i], "label": labels[i]},
            "attributes": {},
            "metadata": {},
        }
        keys.append(event_id.encode())
        values.append(orjson.dumps(event))
    return keys, values


# -- Kafka helpers ---------------------------------------------------------------------
def produce(bootstrap: str, topic: str, keys: list[bytes], values: list[bytes]) -> float:
    """Produce everything (the SDK's partitioner and compression); returns seconds taken."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }
    )
    failed: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    started = time.perf_counter()
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"producing failed: {remaining} undelivered, {len(failed)} errors ({failed[:1]})")
    return time.perf_counter() - started


def consume_ceiling(bootstrap: str, topic: str, n: int, group: str, timeout: float) -> dict[str, float]:
    """A bare consumer: read and orjson-parse n messages; rate from the first message on."""
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
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(message.error())
                value = message.value()
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


def delete_topics(bootstrap: str, prefixes: list[str], groups: list[str]) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    names = [t for t in admin.list_topics(timeout=10).topics if any(t.startswith(p) for p in prefixes)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else []:
        with contextlib.suppress(KafkaException):
            future.result()
    if groups:
        with contextlib.suppress(Exception):  # groups are cheap leftovers; never fail a run on them
            for future in admin.delete_consumer_groups(groups, request_timeout=10).values():
                with contextlib.suppress(KafkaException):
                    future.result()
    return names


# -- the worker ------------------------------------------------------------------------
_EVENTS = re.compile(r"^watchkeeper_events_total\{([^}]*)\}\s+(\S+)", re.MULTILINE)
_WINDOWS = re.compile(r"^watchkeeper_windows_closed_total\{[^}]*\}\s+(\S+)", re.MULTILINE)
_LATE = re.compile(r"^watchkeeper_late_events\{[^}]*\}\s+(\S+)", re.MULTILINE)


def scrape(port: int) -> dict[str, float] | None:
    """accepted / rejected events, windows closed and late events, or None if not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    out = {"accepted": 0.0, "rejected": 0.0, "windows": 0.0, "late": 0.0}
    for labels, value in _EVENTS.findall(text):
        for outcome in ("accepted", "rejected"):
            if f'outcome="{outcome}"' in labels:
                out[outcome] += float(value)
    out["windows"] = sum(float(v) for v in _WINDOWS.findall(text))
    out["late"] = sum(float(v) for v in _LATE.findall(text))
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


@dataclass
class WorkerRun:
    samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, accepted)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, worker CPU seconds)
    final: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    metrics_up_s: float | None = None


def crossing(samples: list[tuple[float, float]], level: float) -> float:
    """Time at which the accepted count reached ``level`` (linear between scrapes)."""
    previous = (0.0, 0.0)
    for t, value in samples:
        if value >= level:
            t0, v0 = previous
            return t0 + (t - t0) * (level - v0) / max(value - v0, 1e-9)
        previous = (t, value)
    raise ValueError(f"the accepted count never reached {level}")


def value_at(samples: list[tuple[float, float]], when: float) -> float:
    """The sampled value at time ``when`` (linear between samples)."""
    previous = samples[0]
    for t, value in samples:
        if t >= when:
            t0, v0 = previous
            return v0 + (value - v0) * (when - t0) / max(t - t0, 1e-9)
        previous = (t, value)
    return samples[-1][1]


def run_worker(
    config_path: Path, env: dict[str, str], n: int, guarantee: str, log_path: Path, timeout: float, every: float
) -> WorkerRun:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "watchkeeper",
        "worker",
        "--config",
        str(config_path),
        "--metrics-port",
        str(port),
        "--processing-guarantee",
        guarantee,
    ]
    run = WorkerRun()
    with log_path.open("wb") as log:
        started = time.perf_counter()
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                elapsed = time.perf_counter() - started
                if worker.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"the worker exited with code {worker.returncode}:\n{tail}")
                if elapsed > timeout:
                    got = run.samples[-1][1] if run.samples else 0
                    raise RuntimeError(f"the worker accepted {got:.0f} of {n} events within {timeout:.0f}s")
                metrics = scrape(port)
                if metrics is not None:
                    if run.metrics_up_s is None:
                        run.metrics_up_s = elapsed
                    now = time.perf_counter() - started
                    run.samples.append((now, metrics["accepted"]))
                    cpu = cpu_seconds(worker.pid)
                    if cpu is not None:
                        run.cpu.append((now, cpu))
                    run.final = metrics
                    if metrics["rejected"]:
                        raise RuntimeError(f"the worker rejected {metrics['rejected']:.0f} events; see {log_path}")
                    if metrics["accepted"] >= n:
                        run.seconds = run.samples[-1][0]
                        break
                time.sleep(every)
            # give stage 2 a moment to close the windows the last partials completed
            deadline = time.perf_counter() + 5
            while time.perf_counter() < deadline:
                time.sleep(0.5)
                metrics = scrape(port) or run.final
                if metrics["windows"] == run.final["windows"] and metrics["windows"] > 0:
                    break
                run.final = metrics
        finally:
            stop(worker)
    return run


def stop(process: subprocess.Popen[bytes], wait: float = 30.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the in-process core ---------------------------------------------------------------
def run_core(config_path: Path, values: list[bytes], batch_size: int) -> dict[str, float]:
    runtime = MonitorRuntime(load_config(config_path))
    windows = 0
    started = time.perf_counter()
    for offset in range(0, len(values), batch_size):
        outputs, rejected = runtime.run_batch(values[offset : offset + batch_size], "bench:0", offset)
        if rejected:
            raise RuntimeError(f"the core rejected {len(rejected)} events: {rejected[0].reason}")
        windows += len(outputs)
    seconds = time.perf_counter() - started
    return {"events_per_s": len(values) / seconds, "seconds": seconds, "outputs": windows}


# -- report ----------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import confluent_kafka
    import faust

    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model or platform.processor(),
        "load_average_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "faust": faust.__version__,
    }


def table(results: dict[str, dict[str, float]]) -> str:
    width = max(len(label) for label in ROWS.values())
    lines = [f"{'':<{width}}  {'events/s':>10}  {'vs ceiling':>10}", "-" * (width + 24)]
    for key, label in ROWS.items():
        if key in results:
            row = results[key]
            lines.append(f"{label:<{width}}  {row['events_per_s']:>10,.0f}  {row['ratio_to_ceiling']:>10.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="prediction events to push through")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second of event time")
    parser.add_argument("--window", default="10s", help="tumbling window size (event time)")
    parser.add_argument("--processing-guarantee", choices=["exactly_once", "at_least_once"], default="exactly_once")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=int(os.environ.get("WATCHKEEPER_BATCH_SIZE", Settings.model_fields["batch_size"].default)),
        help="stage-1 batch size (WATCHKEEPER_BATCH_SIZE); also the core's run_batch size",
    )
    parser.add_argument("--partitions", type=int, default=4, help="input partitions")
    parser.add_argument("--bootstrap-servers", help="use this broker instead of the local one")
    parser.add_argument("--kafka-port", type=int, default=int(os.environ.get("WATCHKEEPER_BENCH_KAFKA_PORT", "29092")))
    parser.add_argument("--kafka-data-dir", type=Path, default=Path(".watchkeeper/bench-kafka"))
    parser.add_argument("--keep-kafka", action="store_true", help="leave a broker this run started running")
    parser.add_argument("--scrape-interval", type=float, default=0.2, help="seconds between /metrics scrapes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for each phase")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    n = args.events
    rng = np.random.default_rng(args.seed)
    run_id = f"bench-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix=f"watchkeeper-{run_id}-"))
    info = machine()

    kafka: LocalKafka | None = None
    kafka_started = False
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        kafka = LocalKafka(port=args.kafka_port, controller_port=args.kafka_port + 1, data_dir=args.kafka_data_dir)
        print(f"kafka: starting or reusing the local broker on {kafka.bootstrap} ...", flush=True)
        kafka_started = kafka.up() == "started"
        bootstrap = kafka.bootstrap

    topics = {f"topic_{name}": f"{run_id}.{name}" for name in TOPIC_FIELDS}
    settings = Settings(
        bootstrap_servers=bootstrap,
        app_id=run_id,
        input_partitions=args.partitions,
        batch_size=args.batch_size,
        data_dir=workdir / "worker",
        **topics,
    )
    ceiling_group = f"{run_id}-ceiling"
    results: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {}
    try:
        ensure_topics(settings)
        profile_path = workdir / "profile.json"
        profile_path.write_bytes(orjson.dumps(build_profile(rng).to_dict()))
        config_path = workdir / "watchkeeper.yaml"
        config_path.write_text(yaml.safe_dump(model_config(profile_path, args.window)))

        t = time.perf_counter()
        keys, values = make_events(rng, n, args.rate)
        mean_size = sum(map(len, values)) / n
        print(f"generated {n:,} events ({mean_size:.0f} bytes each) in {time.perf_counter() - t:.1f}s", flush=True)
        seconds = produce(bootstrap, settings.topic_predictions, keys, values)
        print(f"produced them to {settings.topic_predictions} in {seconds:.1f}s ({n / seconds:,.0f}/s)", flush=True)
        del keys

        ceiling = consume_ceiling(bootstrap, settings.topic_predictions, n, ceiling_group, args.timeout)
        details["ceiling"] = ceiling
        print(f"ceiling: {ceiling['events_per_s']:,.0f} events/s (group join {ceiling['startup_s']:.1f}s)", flush=True)

        core = run_core(config_path, values, args.batch_size)
        details["core_in_process"] = core
        print(f"core in-process: {core['events_per_s']:,.0f} events/s", flush=True)
        del values

        env = {
            **os.environ,
            "WATCHKEEPER_BOOTSTRAP_SERVERS": bootstrap,
            "WATCHKEEPER_APP_ID": run_id,
            "WATCHKEEPER_DATA_DIR": str(settings.data_dir),
            "WATCHKEEPER_BATCH_SIZE": str(args.batch_size),
            "WATCHKEEPER_INPUT_PARTITIONS": str(args.partitions),
            **{f"WATCHKEEPER_{key.upper()}": value for key, value in topics.items()},
        }
        print(f"worker ({args.processing_guarantee}, batch size {args.batch_size}): consuming ...", flush=True)
        worker = run_worker(
            config_path,
            env,
            n,
            args.processing_guarantee,
            workdir / "worker.log",
            args.timeout,
            args.scrape_interval,
        )
        t10, t90 = crossing(worker.samples, 0.1 * n), crossing(worker.samples, 0.9 * n)
        first = crossing(worker.samples, 1)
        details["worker"] = {
            "seconds_to_all_events": worker.seconds,
            "metrics_up_s": worker.metrics_up_s,
            "first_events_counted_s": first,
            "seconds_10_to_90_percent": t90 - t10,
            "windows_closed": worker.final.get("windows", 0.0),
            "late_events_last_window": worker.final.get("late", 0.0),
        }
        if worker.cpu:
            steady_cpu = value_at(worker.cpu, t90) - value_at(worker.cpu, t10)
            details["worker"]["cpu_utilisation_steady_state"] = steady_cpu / (t90 - t10)
            details["worker"]["cpu_us_per_event_steady_state"] = 1e6 * steady_cpu / (0.8 * n)
            details["worker"]["cpu_seconds_total"] = worker.cpu[-1][1]
        results["ceiling"] = {"events_per_s": ceiling["events_per_s"]}
        results["worker_steady_state"] = {"events_per_s": 0.8 * n / (t90 - t10)}
        results["worker_including_startup"] = {"events_per_s": n / worker.seconds}
        results["core_in_process"] = {"events_per_s": core["events_per_s"]}
        for row in results.values():
            row["ratio_to_ceiling"] = row["events_per_s"] / ceiling["events_per_s"]
    finally:
        with contextlib.suppress(Exception):
            deleted = delete_topics(bootstrap, [run_id], [ceiling_group, run_id])
            print(f"deleted {len(deleted)} topics of this run", flush=True)
        if kafka is not None and kafka_started and not args.keep_kafka:
            kafka.down()
            print("kafka stopped", flush=True)
        shutil.rmtree(workdir, ignore_errors=True)

    w = details["worker"]
    print()
    print(
        f"{n:,} events, {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features, {args.partitions} partitions, "
        f"{args.processing_guarantee}, batch size {args.batch_size}, {info['usable_cores']} cores"
    )
    print(table(results))
    print(
        f"worker: metrics up after {w['metrics_up_s']:.1f}s, first events counted after "
        f"{w['first_events_counted_s']:.1f}s, all {n:,} after {w['seconds_to_all_events']:.1f}s; "
        f"{w['windows_closed']:.0f} windows closed"
        + (
            f"; steady state CPU {w['cpu_utilisation_steady_state']:.0%} of a core, "
            f"{w['cpu_us_per_event_steady_state']:.0f} us/event"
            if "cpu_utilisation_steady_state" in w
            else ""
        )
    )
    if args.json:
        report = {
            "events": n,
            "features": {"numeric": N_NUMERIC, "categorical": N_CATEGORICAL},
            "results": results,
            "details": details,
            "settings": {
                "processing_guarantee": args.processing_guarantee,
                "batch_size": args.batch_size,
                "partitions": args.partitions,
                "window": args.window,
                "events_per_second_of_event_time": args.rate,
                "event_bytes_mean": round(mean_size, 1),
            },
            "machine": info,
            "run_id": run_id,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"results -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
