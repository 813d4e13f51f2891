"""Multivariate drift: a flipped correlation, invisible to every marginal test, is caught."""

from __future__ import annotations

import numpy as np
import orjson

from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import AlertRaised
from watchkeeper.monitor.profile import MULTIVARIATE
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines


def _lines(n: int, flip_from: int, seed: int = 2) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = float(rng.normal())
        sign = -1.0 if i >= flip_from else 1.0
        b = sign * (0.9 * a) + float(np.sqrt(1 - 0.81) * rng.normal())  # corr 0.9 → −0.9, same marginals
        c = float(rng.normal())
        out.append(
            orjson.dumps(
                {"event_id": str(i), "model_id": "m", "timestamp": 1e6 + i * 0.01, "features": {"a": a, "b": b, "c": c}}
            )
        )
    return out


def _alerts(multivariate: bool) -> set[tuple[str, str]]:
    config = parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"a": "numeric", "b": "numeric", "c": "numeric"},
                    "window": {"size": "10s"},
                    "reference": {"learn_from_first": 5000},
                    "drift": {"multivariate": multivariate},
                }
            ]
        }
    )
    runtime = MonitorRuntime(config)
    lines = _lines(16_000, flip_from=10_000)
    return {
        (o.alert.subject, o.alert.metric)
        for out, _, _ in replay_lines(runtime, lines)
        for o in out
        if isinstance(o, AlertRaised) and o.alert.status == "firing"
    }


def test_a_flipped_correlation_is_seen_only_by_the_multivariate_column() -> None:
    assert _alerts(multivariate=False) == set()  # every marginal stays N(0, 1)
    alerts = _alerts(multivariate=True)
    assert {subject for subject, _ in alerts} == {MULTIVARIATE}
    assert (MULTIVARIATE, "cusum") in alerts and (MULTIVARIATE, "psi") in alerts
