"""Label-free estimates (CBPE) track the realised metrics of a calibrated model before labels come."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from sklearn import metrics

from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import LabelsEvaluated
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines
from watchkeeper.stats.cbpe import estimated_metrics, expected_confusion


def test_expected_confusion_of_calibrated_scores_matches_realised_metrics() -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(2, 2, size=200_000)
    labels = (rng.uniform(size=scores.size) < scores).astype(int)  # calibrated by construction
    predicted = (scores >= 0.5).astype(int)
    estimate = estimated_metrics(expected_confusion(scores, predicted))
    assert estimate["accuracy"] == pytest.approx(metrics.accuracy_score(labels, predicted), abs=0.005)
    assert estimate["precision"] == pytest.approx(metrics.precision_score(labels, predicted), abs=0.005)
    assert estimate["recall"] == pytest.approx(metrics.recall_score(labels, predicted), abs=0.005)
    assert estimate["f1"] == pytest.approx(metrics.f1_score(labels, predicted), abs=0.005)


def test_the_estimate_drops_with_a_covariate_shift_before_any_label_arrives() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"x": "numeric"},
                    "window": {"size": "60s"},
                    "reference": {"learn_from_first": 100},
                    "drift": {"sequential": False},
                    "accuracy": {"label_horizon": "1d"},
                }
            ]
        }
    )
    rng = np.random.default_rng(5)
    lines = []
    for i in range(2400):
        # the second half comes from a region where the model is unsure (scores near 0.5)
        score = (
            float(rng.beta(8, 2) if rng.uniform() < 0.5 else rng.beta(2, 8)) if i < 1200 else float(rng.beta(20, 20))
        )
        lines.append(
            orjson.dumps(
                {
                    "event_id": f"p{i}",
                    "model_id": "m",
                    "timestamp": 1_000_020.0 + i * 0.1,
                    "features": {"x": score},
                    "prediction": {"score": score, "label": int(score >= 0.5)},
                }
            )
        )
    runtime = MonitorRuntime(config)
    reports = [
        o.report
        for out, _, _ in replay_lines(runtime, lines, batch_size=300)
        for o in out
        if isinstance(o, LabelsEvaluated) and not o.report.final
    ]
    assert all(r.n_labeled == 0 for r in reports)
    estimated = {r.window_start: r.estimated["accuracy"] for r in reports if r.estimated}
    early, late = estimated[min(estimated)], estimated[max(estimated)]
    assert early > 0.75 and late < 0.6
