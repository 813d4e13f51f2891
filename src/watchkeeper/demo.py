"""`watchkeeper demo`: the whole pipeline on this machine, with drift injected part-way.

Starts (or reuses) the local broker, creates the topics, builds a reference profile for a
demo credit model from synthetic training data, starts a worker process, sends prediction
traffic through the SDK, injects drift in ``income`` and ``region`` after
``drift_after`` seconds for ``drift_for`` seconds (then the traffic is normal again, so the
alerts resolve), and prints alerts from the alerts topic as they arrive. Stops on
Ctrl-C, SIGTERM or after ``duration`` seconds and leaves no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from watchkeeper.client import WatchkeeperClient
from watchkeeper.config import Settings
from watchkeeper.dev.kafka import LocalKafka
from watchkeeper.dev.processes import stop_process
from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, ReferenceProfile
from watchkeeper.stream.topics import ensure_topics
from watchkeeper.tail import format_alert

__all__ = ["DemoModel", "run_demo"]

MODEL_ID = "demo-credit"
REGIONS = np.array(["north", "south", "east", "west"])
CHANNELS = np.array(["web", "app", "branch"])


class DemoModel:
    """A small credit model: 3 numeric and 2 categorical features, a logistic score."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int, drifted: bool = False) -> dict[str, np.ndarray]:
        rng = self.rng
        income = rng.lognormal(mean=10.8 + (0.35 if drifted else 0.0), sigma=0.4, size=n)
        age = rng.normal(42, 12, size=n).clip(18, 90)
        debt_ratio = rng.beta(2, 5, size=n)
        region_p = [0.4, 0.3, 0.2, 0.1] if not drifted else [0.15, 0.3, 0.2, 0.35]
        region = rng.choice(REGIONS, size=n, p=region_p)
        channel = rng.choice(CHANNELS, size=n, p=[0.5, 0.35, 0.15])
        logit = -1.0 + 2.5 * debt_ratio - 0.00001 * (income - 50000) + 0.01 * (age - 42)
        score = 1.0 / (1.0 + np.exp(-logit))
        return {
            "income": income,
            "age": age,
            "debt_ratio": debt_ratio,
            "region": region,
            "channel": channel,
            "score": score,
            "label": (score >= 0.5).astype(int),
        }

    def profile(self, n: int = 10_000) -> ReferenceProfile:
        data = self.sample(n)
        columns: dict[str, tuple[str, Any]] = {
            "income": ("numeric", data["income"]),
            "age": ("numeric", data["age"]),
            "debt_ratio": ("numeric", data["debt_ratio"]),
            "region": ("categorical", data["region"].tolist()),
            "channel": ("categorical", data["channel"].tolist()),
            PREDICTION_SCORE: ("numeric", data["score"]),
            PREDICTION_LABEL: ("categorical", [str(v) for v in data["label"]]),
        }
        return ReferenceProfile.build(
            MODEL_ID, columns, metadata={"data": "synthetic training sample"}, sequential_arl_events=2e6
        )


def demo_config(profile_path: Path) -> dict[str, Any]:
    return {
        "models": [
            {
                "model_id": MODEL_ID,
                "task": "binary",
                "features": {
                    "income": "numeric",
                    "age": "numeric",
                    "debt_ratio": "numeric",
                    "region": "categorical",
                    "channel": "categorical",
                },
                "reference": {"profile": str(profile_path)},
                "window": {"size": "10s", "allowed_lateness": "2s", "idle_close": "15s"},
                "drift": {"for_windows": 1, "resolve_windows": 2},
                "alerts": {"links": {"dashboard": "http://localhost:3000/d/watchkeeper?var-model={model_id}"}},
            }
        ]
    }


def _send_traffic(
    client: WatchkeeperClient,
    model: DemoModel,
    rate: float,
    drift: tuple[float, float],
    stop: threading.Event,
    sent: list[int],
) -> None:
    tick = 0.1
    while not stop.is_set():
        started = time.monotonic()
        drifted = drift[0] <= time.time() < drift[1]
        batch = model.sample(max(1, int(rate * tick)), drifted=drifted)
        for i in range(len(batch["score"])):
            client.log_prediction(
                model_id=MODEL_ID,
                model_version="1",
                features={
                    "income": float(batch["income"][i]),
                    "age": float(batch["age"][i]),
                    "debt_ratio": float(batch["debt_ratio"][i]),
                    "region": str(batch["region"][i]),
                    "channel": str(batch["channel"][i]),
                },
                prediction={"score": float(batch["score"][i]), "label": int(batch["label"][i])},
            )
        sent[0] += len(batch["score"])
        stop.wait(max(0.0, tick - (time.monotonic() - started)))


def run_demo(
    duration: float,
    rate: float,
    drift_after: float,
    drift_for: float,
    metrics_port: int,
    bootstrap_servers: str | None = None,
) -> int:
    """The demo on ``bootstrap_servers``, or on the local broker (started if need be, then stopped)."""
    from confluent_kafka import Consumer

    workdir = Path(".watchkeeper/demo")
    workdir.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka()
    if bootstrap_servers is None:
        print(f"starting the local Kafka broker on {kafka.bootstrap} (first run downloads it with Maven)...")
        outcome = kafka.up()
        bootstrap = kafka.bootstrap
        print(f"kafka {outcome} on {bootstrap}")
    else:
        outcome, bootstrap = "given", bootstrap_servers
        print(f"using Kafka at {bootstrap}")
    settings = Settings(bootstrap_servers=bootstrap)
    ensure_topics(settings)

    model = DemoModel()
    print("building the reference profile (quantile bins, calibrated CUSUM thresholds)...")
    profile_path = workdir / "demo-credit.profile.json"
    profile_path.write_bytes(orjson.dumps(model.profile().to_dict()))
    config_path = workdir / "watchkeeper.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(profile_path.resolve())))

    env = {
        **os.environ,
        "WATCHKEEPER_BOOTSTRAP_SERVERS": bootstrap,
        "WATCHKEEPER_APP_ID": f"watchkeeper-demo-{int(time.time())}",
        "WATCHKEEPER_AUTO_OFFSET_RESET": "latest",
        "WATCHKEEPER_DATA_DIR": str(workdir / "worker"),
    }
    log_path = workdir / "worker.log"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watchkeeper",
            "worker",
            "--config",
            str(config_path),
            "--metrics-port",
            str(metrics_port),
        ],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"watchkeeper-demo-printer-{os.getpid()}",
            "auto.offset.reset": "latest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topic_alerts])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.time()
    sent = [0]
    client = WatchkeeperClient(bootstrap)
    traffic = threading.Thread(
        target=_send_traffic,
        args=(client, model, rate, (started + drift_after, started + drift_after + drift_for), stop, sent),
        daemon=True,
    )
    traffic.start()
    print(f"worker pid {worker.pid} (log: {log_path}); metrics: http://localhost:{metrics_port}/metrics")
    print(f"alerts from another terminal: watchkeeper alerts tail --bootstrap-servers {bootstrap}")
    print(
        f"sending ~{rate:.0f} predictions/s for model {MODEL_ID}; drift in income and region from "
        f"{drift_after:.0f}s to {drift_after + drift_for:.0f}s; stopping after {duration:.0f}s (Ctrl-C stops earlier)"
    )
    last_status = 0.0
    try:
        while not stop.is_set() and time.time() - started < duration:
            if worker.poll() is not None:
                print(f"the worker exited with code {worker.returncode}; see {log_path}")
                return 1
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                print(f"  {format_alert(orjson.loads(message.value() or b'{}'))}", flush=True)
            elapsed = time.time() - started
            if elapsed - last_status >= 15:
                last_status = elapsed
                phase = "DRIFTED" if drift_after <= elapsed < drift_after + drift_for else "stationary"
                now = datetime.now(UTC).strftime("%H:%M:%S")
                print(f"[{now}] t={elapsed:4.0f}s sent={sent[0]} traffic={phase}", flush=True)
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        stop.set()
        traffic.join(timeout=5)
        client.flush(timeout=10)
        del client  # close the producer before the broker goes away
        consumer.close()
        stop_process(worker)
        if outcome == "started":
            kafka.down()
            print("kafka stopped")
    print(f"demo finished: {sent[0]} predictions sent")
    return 0
