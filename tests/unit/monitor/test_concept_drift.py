"""ADWIN on the error stream: quiet on a stable error rate, fires when it rises, then resolves."""

from __future__ import annotations

import numpy as np

from watchkeeper.config import parse_config
from watchkeeper.monitor.concept_drift import ErrorStreamDetector

CONFIG = parse_config({"models": [{"model_id": "m", "features": {"x": "numeric"}, "accuracy": {}}]}).models[0]


def test_stable_error_rate_raises_nothing_and_a_rise_is_detected_fast() -> None:
    rng = np.random.default_rng(1)
    detector = ErrorStreamDetector(CONFIG)
    stable = (rng.uniform(size=20_000) < 0.1).astype(int).tolist()
    assert detector.update(stable, 0.0, "v") == []
    worse = (rng.uniform(size=2_000) < 0.3).astype(int).tolist()
    detections = [(i, e) for i in range(0, 2_000, 100) for e in detector.update(worse[i : i + 100], 60.0, "v")]
    assert detections, "a 10% -> 30% error rate rise went unnoticed"
    first_batch, evaluation = detections[0]
    assert first_batch < 500 and evaluation.breached and evaluation.observed > evaluation.threshold


def test_state_round_trip_and_clearing_after_a_quiet_window() -> None:
    detector = ErrorStreamDetector(CONFIG)
    detector.update([0, 1] * 50, 0.0, "v")
    restored = ErrorStreamDetector(CONFIG, detector.state_dict())
    assert restored.seen == 100 and restored.adwin.estimation == detector.adwin.estimation
    cleared = restored.window_closed(0.0, "v")
    assert [e.cleared for e in cleared] == [True]
