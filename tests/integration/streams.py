"""A realistic recorded stream for the worker tests: 15 features, delayed labels, a fairness attribute.

A binary "loan-approval" model with 12 numeric and 3 categorical features, a sensitive
attribute ``group`` (70 / 25 / 5 %), one prediction every 50 ms of event time (with up
to 0.5 s of jitter), drift in ``x1`` and ``c1`` from 70 % of the stream on, and outcomes
for 97 % of the predictions arriving 0–6 h later. Records come in event-time order of
arrival (predictions and outcomes interleaved), as a model service would produce them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Producer

from watchkeeper.config import Settings
from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, ReferenceProfile

__all__ = ["MODEL", "T0", "drift_reference", "drift_rows", "loan_config", "loan_stream", "produce"]

MODEL = "loan-approval"
T0 = 1_750_000_000.0


def drift_rows(rng: np.random.Generator, n: int, shift: float) -> list[dict[str, Any]]:
    """Rows of a small drift model: x1..x3 normal (x2 shifted by ``shift``), c1 in a/b/c, score = sigmoid(x1)."""
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n) + shift, rng.normal(size=n)
    c1 = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    score = 1 / (1 + np.exp(-x1))
    return [
        {"x1": float(x1[i]), "x2": float(x2[i]), "x3": float(x3[i]), "c1": str(c1[i]), "score": float(score[i])}
        for i in range(n)
    ]


def drift_reference(path: Path, model_id: str, **build: Any) -> Path:
    """Write the reference profile of 5,000 :func:`drift_rows` (seed 11) to ``path``."""
    reference = drift_rows(np.random.default_rng(11), 5000, 0.0)
    columns = {name: ("numeric", [r[name] for r in reference]) for name in ("x1", "x2", "x3")}
    columns["c1"] = ("categorical", [r["c1"] for r in reference])
    columns[PREDICTION_SCORE] = ("numeric", [r["score"] for r in reference])
    columns[PREDICTION_LABEL] = ("categorical", [str(int(r["score"] >= 0.5)) for r in reference])
    path.write_bytes(orjson.dumps(ReferenceProfile.build(model_id, columns, **build).to_dict()))
    return path


def loan_config(**overrides: Any) -> dict[str, Any]:
    features = {f"x{j}": "numeric" for j in range(12)} | {f"c{j}": "categorical" for j in range(1, 4)}
    model: dict[str, Any] = {
        "model_id": MODEL,
        "features": features,
        "reference": {"learn_from_first": 10_000},
        "window": {"size": "5m", "allowed_lateness": "30s", "idle_close": "5s"},
        "accuracy": {"label_horizon": "7h"},
        "sensitive_attributes": ["group"],
        **overrides,
    }
    return {"models": [model]}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def loan_stream(
    n: int, seed: int = 1, max_delay: float = 6 * 3600, worse_after: float | None = None
) -> list[tuple[str, bytes, bytes]]:
    """(topic kind "predictions"/"outcomes", key, value) in arrival order.

    Outcomes arrive 0–``max_delay`` s after their prediction; from the ``worse_after``
    fraction of the stream on, a fifth of the labels are flipped (the model got worse).
    """
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 12))
    drifted = np.arange(n) >= int(0.7 * n)
    numeric[drifted, 1] += 0.5
    c1 = np.where(
        drifted,
        rng.choice(["a", "b", "c"], size=n, p=[0.2, 0.3, 0.5]),
        rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]),
    )
    c2 = rng.choice(["web", "app", "branch"], size=n, p=[0.5, 0.35, 0.15])
    c3 = rng.choice(["n", "s", "e", "w"], size=n)
    group = rng.choice(["A", "B", "C"], size=n, p=[0.7, 0.25, 0.05])
    score = 1 / (1 + np.exp(-(numeric[:, 0] + 0.5 * numeric[:, 2])))
    truth = rng.uniform(size=n) < score
    if worse_after is not None:
        truth ^= (np.arange(n) >= int(worse_after * n)) & (rng.uniform(size=n) < 0.2)
    times = T0 + np.arange(n) * 0.05 + rng.uniform(0, 0.5, size=n)
    labelled = rng.uniform(size=n) < 0.97
    delays = rng.uniform(0, max_delay, size=n)
    records: list[tuple[float, int, str, bytes, bytes]] = []
    for i in range(n):
        pid = f"p{seed}-{i}"
        features: dict[str, Any] = {f"x{j}": float(numeric[i, j]) for j in range(12)}
        features |= {"c1": str(c1[i]), "c2": str(c2[i]), "c3": str(c3[i])}
        event = {
            "event_id": pid,
            "model_id": MODEL,
            "model_version": "3",
            "timestamp": _iso(float(times[i])),
            "features": features,
            "prediction": {"score": float(score[i]), "label": int(score[i] >= 0.5)},
            "attributes": {"group": str(group[i])},
        }
        records.append((float(times[i]), 0, "predictions", pid.encode(), orjson.dumps(event)))
        if labelled[i]:
            t = float(times[i] + delays[i])
            outcome = {"prediction_id": pid, "model_id": MODEL, "timestamp": _iso(t), "label": int(truth[i])}
            records.append((t, 1, "outcomes", pid.encode(), orjson.dumps(outcome)))
    records.sort(key=lambda r: (r[0], r[1]))
    return [(kind, key, value) for _, _, kind, key, value in records]


def produce(settings: Settings, stream: list[tuple[str, bytes, bytes]]) -> None:
    """Produce the stream with murmur2 keys, idempotently (as Java clients and the SDK do).

    Idempotence keeps each partition in the order produced when a request is retried (as
    right after the topics are created, under load): without it a retried batch can land
    behind later ones, and its events are then late for the worker but not for replay.
    """
    producer = Producer(
        {
            **settings.kafka_client_config(),
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    topics = {"predictions": settings.topic_predictions, "outcomes": settings.topic_outcomes}
    for kind, key, value in stream:
        while True:
            try:
                producer.produce(topics[kind], key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0
