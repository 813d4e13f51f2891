"""Delayed outcomes and fairness through the real broker, on the COMPAS data.

Predictions (decile_score >= 5, score decile_score / 10, attributes race, sex, age_cat) and
their outcomes (two_year_recid) go through a worker process with outcomes shuffled,
delayed, duplicated and some before their prediction. Asserts what a user relies on:
/metrics shows accuracy equal to scikit-learn and per-group rates and disparities equal
to Fairlearn on the same rows (1e-9), the African-American/Caucasian FPR gap raises a
fairness alert, the 18-row Native American group is reported as insufficient data, and an
outcome with no prediction lands in the dead-letter topic once the horizon passes.
"""

from __future__ import annotations

import csv
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn import metrics as skm

from .conftest import RunningWorker, read_topic

MODEL = "compas"
T0 = 1_699_999_200.0  # a multiple of the 2 h window (in the past): every COMPAS row falls in one window


def _rows(data_dir: Path) -> list[dict[str, str]]:
    with (data_dir / "compas-two-years.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def worker(start_worker: Callable[[dict[str, Any]], RunningWorker]) -> RunningWorker:
    return start_worker(
        {
            "models": [
                {
                    "model_id": MODEL,
                    "features": {"age": "numeric", "priors_count": "numeric", "c_charge_degree": "categorical"},
                    "sensitive_attributes": ["race", "sex", "age_cat"],
                    "reference": {"learn_from_first": 1000},
                    "window": {"size": "2h", "allowed_lateness": "1m", "idle_close": "1h"},
                    "drift": {"sequential": False},
                    "accuracy": {"label_horizon": "1h", "min_labeled": 200},
                }
            ]
        }
    )


def _gauges(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in body.splitlines():
        match = re.match(r"^(\w+\{[^}]*\}|\w+) (\S+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def test_compas_outcomes_metrics_and_fairness_alert(worker: RunningWorker, data_dir: Path) -> None:
    settings = worker.settings
    rows = _rows(data_dir)
    rng = np.random.default_rng(2)
    timeline: list[tuple[float, str, dict[str, Any]]] = []
    for i, row in enumerate(rows):
        t = T0 + i * 0.5  # 7,214 predictions within one hour of event time: one 2 h window
        decile = int(row["decile_score"])
        prediction = {
            "model_id": MODEL,
            "event_id": f"c{i}",
            "timestamp": t,
            "features": {
                "age": float(row["age"]),
                "priors_count": float(row["priors_count"]),
                "c_charge_degree": row["c_charge_degree"],
            },
            "prediction": {"score": decile / 10, "label": int(decile >= 5)},
            "attributes": {"race": row["race"], "sex": row["sex"], "age_cat": row["age_cat"]},
        }
        timeline.append((t, "p", prediction))
        delay = float(rng.uniform(-30, 1800))  # up to 30 min late; some before the prediction
        outcome = {
            "prediction_id": f"c{i}",
            "model_id": MODEL,
            "timestamp": t + delay,
            "label": int(row["two_year_recid"]),
        }
        timeline.append((t + delay, "o", outcome))
        if rng.uniform() < 0.03:
            timeline.append((t + delay + 1, "o", outcome))  # duplicated delivery
    timeline.append((T0 + 600, "o", {"prediction_id": "ghost", "model_id": MODEL, "timestamp": T0 + 600, "label": 1}))
    timeline.sort(key=lambda item: item[0])
    # later predictions and their outcomes move event time past the window's last label
    # checkpoint (its end plus the 1 h horizon) on both topics
    clock: list[tuple[float, str, dict[str, Any]]] = []
    for k in range(50):
        t = T0 + 4 * 3600 + k
        clock.append(
            (
                t,
                "p",
                {
                    "model_id": MODEL,
                    "event_id": f"late{k}",
                    "timestamp": t,
                    "features": {"age": 30.0, "priors_count": 0.0, "c_charge_degree": "F"},
                    "prediction": {"score": 0.1, "label": 0},
                    "attributes": {},
                },
            )
        )
        clock.append((t + 1, "o", {"prediction_id": f"late{k}", "model_id": MODEL, "timestamp": t + 1, "label": 0}))
    producer = Producer(
        {**settings.kafka_client_config(), "partitioner": "murmur2_random", "enable.idempotence": True, "linger.ms": 20}
    )

    def send(events: list[tuple[float, str, dict[str, Any]]]) -> None:
        for _, kind, event in events:
            topic = settings.topic_predictions if kind == "p" else settings.topic_outcomes
            key = event.get("prediction_id") or event["event_id"]
            producer.produce(topic, key=key.encode(), value=orjson.dumps(event))
            producer.poll(0)
        producer.flush(30)

    send(timeline)
    # the clock moves on once the outcomes are in (not needed for the verdicts, which count
    # each label at its checkpoint by event time, but the gauges show the latest checkpoint)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            gauges = _gauges(worker.metrics_port)
        except OSError:
            gauges = {}
        counted = sum(gauges.get(f'watchkeeper_outcomes_total{{status="{s}"}}', 0.0) for s in ("joined", "waiting"))
        if counted + gauges.get('watchkeeper_outcomes_total{status="duplicate"}', 0.0) >= len(timeline) - len(rows):
            break
        time.sleep(0.5)
    send(clock)

    def final_gauges() -> dict[str, float]:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert worker.process.poll() is None, worker.log_tail()
            try:
                gauges = _gauges(worker.metrics_port)
            except OSError:  # the worker is still starting
                time.sleep(1)
                continue
            if gauges.get(f'watchkeeper_label_coverage{{model_id="{MODEL}"}}') == 1.0:  # all 7,214 labelled
                return gauges
            time.sleep(1)
        raise AssertionError(f"no fully labelled window in /metrics; log: {worker.log_tail()}")

    gauges = final_gauges()
    y_true = np.asarray([int(r["two_year_recid"]) for r in rows])
    y_pred = np.asarray([int(int(r["decile_score"]) >= 5) for r in rows])
    scores = np.asarray([int(r["decile_score"]) / 10 for r in rows])
    race = np.asarray([r["race"] for r in rows])

    def gauge(name: str, **labels: str) -> float:
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        assert key in gauges, (key, sorted(k for k in gauges if k.startswith(name)))
        return gauges[key]

    accuracy = lambda metric: gauge("watchkeeper_accuracy_metric", model_id=MODEL, metric=metric)  # noqa: E731
    assert accuracy("accuracy") == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-9)
    assert accuracy("f1") == pytest.approx(skm.f1_score(y_true, y_pred), abs=1e-9)
    assert accuracy("brier") == pytest.approx(skm.brier_score_loss(y_true, scores), abs=1e-9)
    assert accuracy("roc_auc") == pytest.approx(skm.roc_auc_score(y_true, scores), abs=1e-9)  # scores on the grid
    assert accuracy("n_labeled") == len(rows)

    frame = MetricFrame(
        metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=race,
    )
    for group, values in frame.by_group.iterrows():
        for metric in ("selection_rate", "tpr", "fpr"):
            got = gauge(
                "watchkeeper_fairness_group_rate", model_id=MODEL, attribute="race", group=str(group), metric=metric
            )
            assert got == pytest.approx(values[metric], abs=1e-9), (group, metric)
    disparity = lambda metric: gauge(  # noqa: E731
        "watchkeeper_fairness_disparity", model_id=MODEL, attribute="race", metric=metric, groups="all"
    )
    assert disparity("demographic_parity_difference") == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=race), abs=1e-9
    )
    assert disparity("equalized_odds_difference") == pytest.approx(
        equalized_odds_difference(y_true, y_pred, sensitive_features=race), abs=1e-9
    )
    sufficient = lambda group: gauge(  # noqa: E731
        "watchkeeper_fairness_group_sufficient", model_id=MODEL, attribute="race", group=group
    )
    assert sufficient("Native American") == 0.0 and sufficient("African-American") == 1.0

    alerts = read_topic(settings, settings.topic_alerts)
    fairness = [orjson.loads(m.value())["data"] for m in alerts]
    fairness = [a for a in fairness if a["monitor"] == "fairness" and a["status"] == "firing"]
    odds = [a for a in fairness if a["metric"] == "equalized_odds_difference" and a["subject"] == "race"]
    assert odds, [a["summary"] for a in fairness]
    assert all(
        "Native American" not in (a["details"].get("group_max"), a["details"].get("group_min")) for a in fairness
    )
    low, high = odds[0]["confidence_interval"]["low"], odds[0]["confidence_interval"]["high"]
    assert low > odds[0]["threshold"] and low <= odds[0]["observed"] <= high

    dead = [m for m in read_topic(settings, settings.topic_deadletter) if m.key() == settings.topic_outcomes.encode()]
    assert [orjson.loads(m.value())["prediction_id"] for m in dead] == ["ghost"]
    assert "label horizon" in dict(dead[0].headers())["reason"].decode()
