"""ADWIN on the error stream: quiet on a stable error rate, fires when it rises, then resolves."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable

import numpy as np
import orjson
from river.drift import ADWIN

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


def test_state_is_plain_json_data() -> None:
    detector = ErrorStreamDetector(CONFIG)
    detector.update([0, 1, 0, 0] * 300, 0.0, "v")
    state = detector.state_dict()
    assert isinstance(state["adwin"], dict) and state["adwin"]["version"] == 1
    restored = ErrorStreamDetector(CONFIG, orjson.loads(orjson.dumps(state)))
    assert restored.state_dict() == state
    more = [1, 1, 0, 1] * 300
    continued = [(e.observed, e.threshold) for e in restored.update(more, 60.0, "v")]
    assert continued and continued == [(e.observed, e.threshold) for e in detector.update(more, 60.0, "v")]
    assert restored.state_dict() == detector.state_dict()


_UNPICKLED: list[str] = []


def _record_unpickling() -> list[str]:
    _UNPICKLED.append("code ran")
    return _UNPICKLED


class _Payload:
    """Unpickling this runs a function: what a forged changelog record could do."""

    def __reduce__(self) -> tuple[Callable[[], list[str]], tuple[()]]:
        return _record_unpickling, ()


def test_legacy_base64_adwin_state_is_ignored_not_unpickled() -> None:
    river_adwin = ADWIN()
    for error in [0, 1] * 100:
        river_adwin.update(error)
    for blob in (pickle.dumps(river_adwin), pickle.dumps(_Payload())):
        legacy = {"adwin": base64.b64encode(blob).decode(), "alarmed": [0.0], "seen": 200}
        detector = ErrorStreamDetector(CONFIG, legacy)
        assert _UNPICKLED == []
        assert detector.adwin.width == 0 and detector.adwin.estimation == 0.0  # a fresh detector
        assert detector.seen == 200 and detector.alarmed == [0.0]
        assert isinstance(detector.state_dict()["adwin"], dict)
    pickle.loads(pickle.dumps(_Payload()))  # the payload is live: the check above is meaningful
    assert _UNPICKLED == ["code ran"]
