"""Data-quality alerts: a missing-value spike, text in a numeric column (invalid, not missing) and a
new category alert; ordinary noise does not."""

from __future__ import annotations

import re

import numpy as np
import orjson

from watchkeeper.config import parse_config
from watchkeeper.events import Alert
from watchkeeper.monitor.engine import AlertRaised
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

CONFIG = {
    "models": [
        {
            "model_id": "m",
            "features": {"x": "numeric", "c": "categorical"},
            "window": {"size": "10s"},
            "reference": {"learn_from_first": 5000},
            "drift": {"sequential": False},
        }
    ]
}


def _raised(
    missing_from: int = 10**9, unseen_from: int = 10**9, text_from: int = 10**9, n: int = 20_000
) -> list[Alert]:
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        x: float | str | None = None if i >= missing_from and rng.uniform() < 0.2 else float(rng.normal())
        if i >= text_from and rng.uniform() < 0.2:
            x = "12 kg"
        c = "brand-new" if i >= unseen_from and rng.uniform() < 0.1 else str(rng.choice(["a", "b", "c"]))
        lines.append(
            orjson.dumps(
                {"event_id": str(i), "model_id": "m", "timestamp": 1e6 + i * 0.01, "features": {"x": x, "c": c}}
            )
        )
    runtime = MonitorRuntime(parse_config(CONFIG))
    return [o.alert for out, _, _ in replay_lines(runtime, lines) for o in out if isinstance(o, AlertRaised)]


def _alerts(missing_from: int = 10**9, unseen_from: int = 10**9) -> list[tuple[str, str, str]]:
    return [(a.subject, a.metric, a.status) for a in _raised(missing_from, unseen_from)]


def test_stationary_traffic_raises_no_data_quality_alert() -> None:
    assert [a for a in _alerts() if a[1].endswith("_rate")] == []


def test_a_missing_value_spike_alerts_on_that_column_only() -> None:
    assert ("x", "missing_rate", "firing") in _alerts(missing_from=12_000)
    assert all(a[0] == "x" for a in _alerts(missing_from=12_000) if a[1] == "missing_rate")


def test_a_new_category_alerts_as_unseen() -> None:
    alerts = _alerts(unseen_from=12_000)
    assert ("c", "unseen_rate", "firing") in alerts


def test_text_in_a_numeric_column_alerts_as_invalid_not_missing() -> None:
    alerts = _raised(text_from=12_000)
    (first, *_) = [a for a in alerts if a.metric == "invalid_rate" and a.status == "firing"]
    assert first.subject == "x"
    invalid = r"m: x has \d+\.\d% invalid values \(not numbers, e\.g\. text, in a numeric column\) \(reference 0\.02%\)"
    assert re.fullmatch(invalid, first.summary), first.summary
    assert not [a for a in alerts if a.metric == "missing_rate"]
