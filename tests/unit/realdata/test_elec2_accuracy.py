"""Elec2 (NSW electricity market, 1996-98) replayed as predictions and outcomes.

A logistic regression trained on the first two weeks predicts UP/DOWN for the rest of
the stream; outcomes arrive one half-hour period later. As the market drifts, the
model's accuracy falls below its baseline (the first three labelled weeks) by more than
the tolerance, and the accuracy monitor raises an alert (docs/accuracy-elec2.md).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.linear_model import LogisticRegression

from watchkeeper.config import parse_config
from watchkeeper.events import alert_cloudevent
from watchkeeper.monitor.engine import AlertRaised, LabelsEvaluated
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

FEATURES = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
T0 = 820_454_400.0  # 1996-01-01T00:00:00Z, a multiple of one week
HALF_HOUR = 1800.0
TRAIN = 672  # two weeks of half-hours


def elec2_events(data_dir: Path) -> tuple[list[bytes], int]:
    with (data_dir / "electricity.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    x = np.asarray([[float(r[f]) for f in FEATURES] for r in rows])
    y = np.asarray([r["class"] == "UP" for r in rows], dtype=int)
    model = LogisticRegression().fit(x[:TRAIN], y[:TRAIN])
    scores = model.predict_proba(x)[:, 1]
    lines: list[bytes] = []
    for i in range(TRAIN, len(rows)):
        t = T0 + i * HALF_HOUR
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "model_id": "elec2",
            "model_version": "lr-2w",
            "timestamp": t,
            "features": {f: float(x[i, j]) for j, f in enumerate(FEATURES)},
            "prediction": {"score": float(scores[i]), "label": int(scores[i] >= 0.5)},
        }
        lines.append(orjson.dumps(event))
        outcome = {"prediction_id": f"e{i}", "model_id": "elec2", "timestamp": t + HALF_HOUR, "label": int(y[i])}
        lines.append(orjson.dumps(outcome))
    return lines, len(rows)


def elec2_config() -> Any:
    return parse_config(
        {
            "models": [
                {
                    "model_id": "elec2",
                    "features": {f: "numeric" for f in FEATURES},
                    "reference": {"learn_from_first": 336},
                    "window": {"size": "7d", "allowed_lateness": "1h", "idle_close": "1d"},
                    "drift": {"min_count": 300, "sequential": False},
                    "accuracy": {"label_horizon": "1d", "min_labeled": 300, "baseline_windows": 3},
                }
            ]
        }
    )


def test_accuracy_alert_fires_as_the_market_drifts(data_dir: Path) -> None:
    lines, _ = elec2_events(data_dir)
    runtime = MonitorRuntime(elec2_config())
    outputs = [o for out, _, _ in replay_lines(runtime, lines, batch_size=2000) for o in out]
    finals = [o.report for o in outputs if isinstance(o, LabelsEvaluated) and o.report.final]
    accuracy = {r.window_start: r.accuracy.metrics["accuracy"] for r in finals if r.accuracy}  # type: ignore[union-attr]
    alerts = [o.alert for o in outputs if isinstance(o, AlertRaised) and o.alert.monitor == "accuracy"]
    firing = [a for a in alerts if a.status == "firing"]
    assert len(finals) >= 120  # two years of weekly windows, every one closed with its labels
    assert all(r.n_labeled == r.n_predictions for r in finals)  # every prediction got its outcome
    assert firing, f"no accuracy alert; weekly accuracy: {sorted(accuracy.items())[:10]}"
    drops = [a for a in firing if a.metric == "accuracy"]
    assert drops, [(a.metric, a.window.start) for a in firing]
    first = drops[0]
    assert first.observed is not None and first.observed < first.threshold  # baseline minus the tolerance
    assert first.confidence_interval is not None and first.confidence_interval.high < first.threshold
    assert any(a.status == "resolved" and a.fingerprint == first.fingerprint for a in alerts)  # and recovers
    ids = [alert_cloudevent(o.alert, "watchkeeper").id for o in outputs if isinstance(o, AlertRaised)]
    assert len(ids) > 100 and len(set(ids)) == len(ids)  # every transition its own id (docs/events.md#alert-ids)


def test_adwin_on_the_error_stream_fires_before_the_weekly_verdict(data_dir: Path) -> None:
    lines, _ = elec2_events(data_dir)
    runtime = MonitorRuntime(elec2_config())
    outputs = [o for out, _, _ in replay_lines(runtime, lines, batch_size=2000) for o in out]
    alerts = [o.alert for o in outputs if isinstance(o, AlertRaised) and o.alert.status == "firing"]
    adwin = [a for a in alerts if a.metric == "error_rate_adwin"]
    weekly = [a for a in alerts if a.metric == "accuracy"]
    assert adwin and weekly
    assert adwin[0].window.start < weekly[0].window.start
    assert all(a.observed is not None and a.observed > a.threshold for a in adwin)  # the error rate rose
