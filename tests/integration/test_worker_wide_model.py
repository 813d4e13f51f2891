"""A wide model learning a large reference: no stored state record grows with it.

200 columns (150 numeric, 50 categorical), ``learn_from_first: 100000``, outcomes with a
fairness attribute, through the real broker. The worker learns the reference, publishes
it, monitors the windows after it, and the largest state record it wrote stays under
256 KB (the old worker wrote the whole model state as one record, which grew past Kafka's
1 MB limit with the reference sample and crashed).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pytest

from watchkeeper.monitor.profile import ReferenceProfile

from .conftest import RunningWorker, read_topic
from .streams import produce

MODEL = "wide"
T0 = 1_760_000_000.0
N = 106_000


def _stream() -> list[tuple[str, bytes, bytes]]:
    rng = np.random.default_rng(4)
    numeric = np.round(rng.normal(size=(N, 150)), 2)
    categories = rng.integers(0, 6, size=(N, 50))
    group = rng.choice(["A", "B", "C"], size=N, p=[0.7, 0.25, 0.05])
    records = []
    for i in range(N):
        t = T0 + i * 0.01
        features: dict[str, Any] = {f"n{j}": float(numeric[i, j]) for j in range(150)}
        features |= {f"c{j}": f"v{categories[i, j]}" for j in range(50)}
        event = {
            "event_id": f"w{i}",
            "model_id": MODEL,
            "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
            "features": features,
            "prediction": {"score": 0.3, "label": 0},
            "attributes": {"group": str(group[i])},
        }
        records.append(("predictions", f"w{i}".encode(), orjson.dumps(event)))
        if i % 3 == 0:
            outcome = {"prediction_id": f"w{i}", "model_id": MODEL, "timestamp": event["timestamp"], "label": i % 2}
            records.append(("outcomes", f"w{i}".encode(), orjson.dumps(outcome)))
    return records


@pytest.mark.timeout(900)
def test_learning_a_wide_reference_keeps_every_state_record_small(
    start_worker: Callable[..., RunningWorker],
) -> None:
    features = {f"n{j}": "numeric" for j in range(150)} | {f"c{j}": "categorical" for j in range(50)}
    config = {
        "models": [
            {
                "model_id": MODEL,
                "features": features,
                "reference": {"learn_from_first": 100_000},
                "window": {"size": "100s", "allowed_lateness": "5s", "idle_close": "5s"},
                "accuracy": {"label_horizon": "1h"},
                "sensitive_attributes": ["group"],
            }
        ]
    }
    worker = start_worker(config, partitions=2, spawn=False)
    produce(worker.settings, _stream())
    worker.spawn()
    references = read_topic(worker.settings, worker.settings.topic_references, lambda m: len(m) >= 1, timeout=600)
    assert references, worker.log_tail()
    profile = ReferenceProfile.from_dict(orjson.loads(references[0].value()))
    assert profile.n_rows >= 100_000 and len(profile.columns) >= 200
    windows = read_topic(
        worker.settings,
        worker.settings.topic_windows,
        lambda m: any(orjson.loads(x.value())["kind"] == "window" for x in m),
        timeout=300,
    )
    assert any(orjson.loads(m.value())["kind"] == "window" for m in windows), worker.log_tail()
    assert worker.process.poll() is None, worker.log_tail()
    body = urllib.request.urlopen(f"http://localhost:{worker.metrics_port}/metrics", timeout=5).read().decode()
    (line,) = [x for x in body.splitlines() if x.startswith("watchkeeper_state_record_max_bytes ")]
    largest = float(line.split()[1])
    assert 0 < largest < 256 * 1024
