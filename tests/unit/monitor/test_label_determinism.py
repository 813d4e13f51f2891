"""Label verdicts are a function of the events, not of how they were read.

One stream of predictions and shuffled, late outcomes (0–2.5 h after the prediction, 3 %
never arriving, 2 % duplicated) for a binary model with a sensitive attribute; after a
change point its accuracy falls and group B's false-positive rate rises. Replayed with
batch sizes 50, 1000 and 5000, and with every outcome placed before every prediction, the
accuracy and fairness alerts (content, window, sequence, id) and the per-checkpoint label
reports must be identical — up to the last bits of floating-point sums, which depend on the
order they were added in (numbers are compared to 10 significant digits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from tests.rounding import rounded

from watchkeeper.config import parse_config
from watchkeeper.events import alert_cloudevent
from watchkeeper.monitor.engine import AlertRaised, LabelsEvaluated, TriggerRaised
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEP = 10.0  # one prediction every 10 s: 360 per hourly window
WINDOWS = 16
CHANGE = 9 * 3600.0  # from window 9 on, the model is worse and unfair to group B


def _stream(seed: int = 7) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
    """(predictions, outcomes) as (event time, JSON line)."""
    rng = np.random.default_rng(seed)
    predictions, outcomes = [], []
    for i in range(int(WINDOWS * 3600 / STEP)):
        t = T0 + i * STEP
        group = rng.choice(["A", "B", "C"], p=[0.7, 0.25, 0.05])
        truth = int(rng.random() < 0.5)
        changed = t - T0 >= CHANGE
        unfair = changed and group == "B"
        score = rng.beta(4, 2) if truth else rng.beta(5, 2) if unfair else rng.beta(2, 4)
        if changed and rng.random() < 0.12:
            score = 1.0 - score  # a worse model
        event = {
            "event_id": f"p{i}",
            "model_id": "m",
            "timestamp": t,
            "features": {"x": float(rng.normal()), "c": str(rng.integers(3))},
            "prediction": {"score": float(score), "label": int(score >= 0.5)},
            "attributes": {"group": str(group)},
        }
        predictions.append((t, orjson.dumps(event)))
        if rng.random() < 0.03:
            continue  # never labelled
        when = t + rng.uniform(0, 2.5 * 3600)
        outcome = orjson.dumps({"prediction_id": f"p{i}", "model_id": "m", "timestamp": when, "label": truth})
        outcomes.append((when, outcome))
        if rng.random() < 0.02:
            outcomes.append((when + rng.uniform(0, 600), outcome))  # a duplicate
    return predictions, outcomes


def _config() -> Any:
    return parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"x": "numeric", "c": "categorical"},
                    "sensitive_attributes": ["group"],
                    "reference": {"learn_from_first": 1000},
                    "window": {"size": "1h"},
                    "accuracy": {"label_horizon": "3h", "min_labeled": 100, "baseline_windows": 2},
                    "drift": {"enabled": False},
                }
            ]
        }
    )


def _label_verdicts(lines: list[bytes], batch_size: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runtime = MonitorRuntime(_config())
    alerts: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    for outputs, _, _ in replay_lines(runtime, lines, batch_size=batch_size):
        for output in outputs:
            if isinstance(output, AlertRaised) and output.alert.monitor in ("accuracy", "fairness"):
                event = alert_cloudevent(output.alert, "watchkeeper")
                alerts.append(rounded({"id": event.id, **output.alert.model_dump(mode="json")}))
            elif isinstance(output, LabelsEvaluated) and output.report.checkpoint is not None:
                report = output.report.to_dict()
                reports.append(rounded({k: report[k] for k in ("window_start", "checkpoint", "n_labeled", "accuracy")}))
    return alerts, reports


@pytest.fixture(scope="module")
def merged_by_time() -> tuple[list[bytes], list[bytes]]:
    predictions, outcomes = _stream()
    by_time = [line for _, line in sorted(predictions + outcomes, key=lambda pair: pair[0])]
    outcomes_first = [line for _, line in outcomes] + [line for _, line in predictions]
    return by_time, outcomes_first


def test_label_alerts_do_not_depend_on_batch_size_or_topic_order(
    merged_by_time: tuple[list[bytes], list[bytes]],
) -> None:
    by_time, outcomes_first = merged_by_time
    alerts, reports = _label_verdicts(by_time, 1000)
    fired = {(a["monitor"], a["metric"]) for a in alerts if a["status"] == "firing"}
    assert any(monitor == "accuracy" for monitor, _ in fired)  # the stream has something to find
    assert any(monitor == "fairness" for monitor, _ in fired)
    assert len(reports) == 3 * WINDOWS  # every window evaluated at each of its three checkpoints
    for lines, batch_size in ((by_time, 50), (by_time, 5000), (outcomes_first, 1000), (outcomes_first, 50)):
        other_alerts, other_reports = _label_verdicts(lines, batch_size)
        assert other_alerts == alerts, f"batch size {batch_size}, outcomes first: {lines is outcomes_first}"
        assert other_reports == reports


def _triggers(lines: list[bytes], batch_size: int) -> list[dict[str, Any]]:
    raw = _config().model_dump(mode="json")
    raw["models"][0]["retraining"] = [{"name": "any-alert", "cooldown": "1h"}]
    runtime = MonitorRuntime(parse_config(raw))
    return [
        rounded(output.trigger.model_dump(mode="json"))
        for outputs, _, _ in replay_lines(runtime, lines, batch_size=batch_size)
        for output in outputs
        if isinstance(output, TriggerRaised)
    ]


def test_retraining_triggers_do_not_depend_on_batch_size_or_topic_order(
    merged_by_time: tuple[list[bytes], list[bytes]],
) -> None:
    """A trigger counts the alerts decided by its window's end in event time (label alerts at
    their checkpoints), not those that happened to be decided when the window closed."""
    by_time, outcomes_first = merged_by_time
    triggers = _triggers(by_time, 1000)
    assert len(triggers) >= 2 and {t["reason"]["category"] for t in triggers} == {"accuracy"}
    for lines, batch_size in ((by_time, 50), (by_time, 5000), (outcomes_first, 1000), (outcomes_first, 50)):
        order = "outcomes first" if lines is outcomes_first else "by time"
        assert _triggers(lines, batch_size) == triggers, f"batch size {batch_size}, {order}"
