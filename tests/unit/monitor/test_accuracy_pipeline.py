"""Accuracy through the whole core (join → partials → label windows) equals scikit-learn.

Outcomes arrive shuffled, delayed, duplicated and even before their prediction; every
final window's metrics must equal scikit-learn's on the same joined rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics

from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import LabelsEvaluated
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

WINDOW = 60.0


def _stream(seed: int, n: int = 2400) -> tuple[list[bytes], dict[float, list[tuple[int, float, int]]]]:
    rng = np.random.default_rng(seed)
    timed: list[tuple[float, bytes]] = []
    truth: dict[float, list[tuple[int, float, int]]] = {}
    for i in range(n):
        t = 1_000.0 + i * 0.25
        score = float(np.floor(rng.uniform() * 100) / 100)  # one score per bin of 100: binned AUC is exact
        event = {
            "event_id": f"p{i}",
            "model_id": "m",
            "timestamp": t,
            "features": {"x": float(rng.normal())},
            "prediction": {"score": score, "label": int(score >= 0.5)},
        }
        timed.append((t, orjson.dumps(event)))
        if rng.uniform() < 0.85:
            label = int(rng.uniform() < score)
            delay = float(rng.uniform(-20, 400))  # some outcomes come before their prediction
            outcome = orjson.dumps({"prediction_id": f"p{i}", "model_id": "m", "timestamp": t + delay, "label": label})
            timed.append((t + delay, outcome))
            if rng.uniform() < 0.05:
                timed.append((t + delay + 5, outcome))  # a duplicate delivery
            truth.setdefault(np.floor(t / WINDOW) * WINDOW, []).append((int(score >= 0.5), score, label))
    timed.sort(key=lambda item: item[0])
    return [line for _, line in timed], truth


def _config() -> Any:
    return parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"x": "numeric"},
                    "window": {"size": "60s", "allowed_lateness": "5s"},
                    "reference": {"learn_from_first": 100},
                    "drift": {"sequential": False},
                    "accuracy": {"label_horizon": "30m", "min_labeled": 20},
                }
            ]
        }
    )


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([97, 500, 2000]))
def test_final_window_metrics_equal_scikit_learn(seed: int, batch: int) -> None:
    lines, truth = _stream(seed)
    runtime = MonitorRuntime(_config())
    outputs = [o for out, _, _ in replay_lines(runtime, lines, batch_size=batch) for o in out]
    finals = {o.report.window_start: o.report for o in outputs if isinstance(o, LabelsEvaluated) and o.report.final}
    assert set(finals) == set(truth)
    for start, rows in truth.items():
        report = finals[start]
        pred, score, label = (np.asarray(c) for c in zip(*rows, strict=True))
        got = report.accuracy.metrics  # type: ignore[union-attr]
        assert report.n_labeled == len(rows)
        assert got["accuracy"] == pytest.approx(metrics.accuracy_score(label, pred), abs=1e-9)
        assert got["precision"] == pytest.approx(metrics.precision_score(label, pred, zero_division=0), abs=1e-9)
        assert got["recall"] == pytest.approx(metrics.recall_score(label, pred, zero_division=0), abs=1e-9)
        assert got["f1"] == pytest.approx(metrics.f1_score(label, pred, zero_division=0), abs=1e-9)
        assert got["brier"] == pytest.approx(metrics.brier_score_loss(label, score), abs=1e-9)
        assert got["log_loss"] == pytest.approx(metrics.log_loss(label, score, labels=[0, 1]), abs=1e-9)
        if len(set(label.tolist())) == 2:
            assert got["roc_auc"] == pytest.approx(metrics.roc_auc_score(label, score), abs=1e-9)
        assert got["label_coverage"] == pytest.approx(len(rows) / report.n_predictions, abs=1e-12)


def test_orphan_outcomes_expire_to_the_dead_letter_and_lapsed_predictions_lower_coverage() -> None:
    runtime = MonitorRuntime(_config())
    predictions = [
        orjson.dumps(
            {
                "event_id": f"p{i}",
                "model_id": "m",
                "timestamp": 1_000.0 + i,
                "features": {"x": 0.1 * i},
                "prediction": {"score": 0.9, "label": 1},
            }
        )
        for i in range(120)
    ]
    ghost = orjson.dumps({"prediction_id": "ghost", "model_id": "m", "timestamp": 1_005.0, "label": 1})
    outcomes = [
        orjson.dumps({"prediction_id": f"p{i}", "model_id": "m", "timestamp": 1_300.0, "label": 1})
        for i in range(0, 120, 2)
    ]
    later = [
        orjson.dumps({"event_id": f"q{i}", "model_id": "m", "timestamp": 9_000.0 + i, "features": {"x": 0.0}})
        for i in range(3)
    ]  # event time moves past the 30 min horizon, on both topics: the join's clock is the slower one
    later_outcome = orjson.dumps({"prediction_id": "q0", "model_id": "m", "timestamp": 9_001.0, "label": 1})
    batches = [
        ([*predictions, ghost], [False] * 120 + [True]),
        (outcomes, [True] * 60),
        ([*later, later_outcome], [False] * 3 + [True]),
    ]
    expired: list[bytes] = []
    reports = []
    offset = 0
    for raw, flags in batches:
        result = runtime.stage1(raw, ["in:0"] * len(raw), list(range(offset, offset + len(raw))), flags)
        offset += len(raw)
        expired += result.expired_outcomes
        for partial in result.partials:
            reports += [o.report for o in runtime.stage2(partial) if isinstance(o, LabelsEvaluated)]
    assert [orjson.loads(e)["prediction_id"] for e in expired] == ["ghost"]
    finals = [r for r in reports if r.final]
    assert sum(r.n_predictions for r in finals) == 120 and sum(r.n_labeled for r in finals) == 60
    assert sum(r.expired for r in finals) == 60  # the odd predictions never got an outcome


def test_events_far_ahead_of_the_worker_clock_are_rejected_not_windowed() -> None:
    runtime = MonitorRuntime(_config())
    good = orjson.dumps({"event_id": "a", "model_id": "m", "timestamp": 1_000.0, "features": {"x": 1.0}})
    future = orjson.dumps({"event_id": "b", "model_id": "m", "timestamp": 1_000.0 + 86_400, "features": {"x": 1.0}})
    result = runtime.stage1([good, future], ["in:0", "in:0"], [0, 1], wall_clock=1_000.0)
    assert [r.index for r in result.rejected] == [1]
    assert "ahead of the worker's clock" in result.rejected[0].reason
    assert sum(w["n"] for p in result.partials for w in p["windows"]) == 1


def test_a_binary_prediction_without_a_score_is_labelled_not_a_failed_batch() -> None:
    """One prediction with a label and no score must not stop the batch it is in (it did)."""
    lines, truth = _stream(3, 800)
    unscored = {"event_id": "no-score", "model_id": "m", "timestamp": 1_010.0, "features": {"x": 0.1}}
    lines = [
        *lines[:20],
        orjson.dumps({**unscored, "prediction": {"label": 1}}),
        orjson.dumps({"prediction_id": "no-score", "model_id": "m", "timestamp": 1_011.0, "label": 0}),
        *lines[20:],
    ]
    outputs = [o for out, _, _ in replay_lines(MonitorRuntime(_config()), lines, batch_size=100) for o in out]
    finals = {o.report.window_start: o.report for o in outputs if isinstance(o, LabelsEvaluated) and o.report.final}
    report = finals[960.0]
    rows = truth[960.0]
    assert report.n_labeled == len(rows) + 1  # counted as a labelled (wrong) prediction
    pred, score, label = (np.asarray(c) for c in zip(*rows, strict=True))
    got = report.accuracy.metrics  # type: ignore[union-attr]
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score([*label, 0], [*pred, 1]), abs=1e-9)
    assert got["brier"] == pytest.approx(metrics.brier_score_loss(label, score), abs=1e-9)  # scored rows only
