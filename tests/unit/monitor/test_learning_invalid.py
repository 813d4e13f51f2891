"""Values of the wrong type are counted as invalid while the reference is being learned too.

A model that learns its reference ships raw rows to stage 2 until the reference exists;
text in a numeric feature in those windows must reach the window statistics as
``invalid`` (not as missing) and the ``invalid`` ignored counter of stage 1, exactly as it
does once the profile exists. In the learned reference itself such a value counts as
missing, as ``watchkeeper profile build`` counts text in a numeric CSV column.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import orjson

from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import ProfileLearned, WindowClosed
from watchkeeper.monitor.runtime import MonitorRuntime

CONFIG = {
    "models": [
        {
            "model_id": "m",
            "features": {"a": "numeric", "c": "categorical"},
            "reference": {"learn_from_first": 3000},
            "window": {"size": "10s", "allowed_lateness": "1s"},
            "drift": {"sequential": False},
        }
    ]
}


def _events(n: int) -> tuple[list[bytes], Counter[float], Counter[float]]:
    """Events 100 per second; every 7th sends text in ``a``, every 11th null. Per window start: texts, nulls."""
    rng = np.random.default_rng(5)
    lines, texts, nulls = [], Counter[float](), Counter[float]()
    for i in range(n):
        t = 1_000_000.0 + i * 0.01
        a: Any = float(rng.normal())
        if i % 7 == 0:
            a, texts[t // 10 * 10] = "n/a", texts[t // 10 * 10] + 1
        elif i % 11 == 0:
            a, nulls[t // 10 * 10] = None, nulls[t // 10 * 10] + 1
        event = {"event_id": str(i), "model_id": "m", "timestamp": t, "features": {"a": a, "c": "x"}}
        lines.append(orjson.dumps(event))
    return lines, texts, nulls


def test_text_in_a_numeric_feature_is_invalid_in_the_windows_learned_from_and_after() -> None:
    runtime = MonitorRuntime(parse_config(CONFIG))
    lines, texts, nulls = _events(9000)  # 9 windows of 1000: 3 learned from, then 6 reported
    outputs: list[Any] = []
    ignored: Counter[tuple[str, ...]] = Counter()
    for k in range(0, len(lines), 500):  # (what run_batch does, keeping stage 1's ignored values)
        batch = lines[k : k + 500]
        result = runtime.stage1(batch, ["replay:0"] * len(batch), list(range(k, k + len(batch))))
        outputs += [o for partial in result.partials for o in runtime.stage2(partial)]
        for item in result.ignored:
            if item.reason == "invalid":
                ignored[item.names] += item.count
    outputs += runtime.flush()
    [learned] = [o.profile for o in outputs if isinstance(o, ProfileLearned)]
    reports = {o.report.window_start: o.report for o in outputs if isinstance(o, WindowClosed)}
    assert len(reports) == 6  # the first after the reference came partly as raw rows (sent before it existed)
    for start, report in reports.items():
        [a] = [c for c in report.columns if c.column == "a"]
        assert (a.invalid, a.missing_rate) == (texts[start], nulls[start] / report.n), start
    assert ignored == Counter({("a",): sum(texts.values())})  # every text counted, before and after learning
    first = sorted(texts)[:3]
    assert learned.columns["a"].missing == sum(texts[s] + nulls[s] for s in first)  # as `profile build` counts it
