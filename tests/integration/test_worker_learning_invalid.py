"""Through the real worker: text in a numeric feature is invalid, not missing, while the model learns too.

A model learning its reference from its first 3,000 events, with text in a numeric feature
in every 7th event and null in every 11th: the windows the worker publishes count the
texts as ``invalid`` and only the nulls as missing, also the window whose first events
stage 1 shipped as raw rows before the reference existed, and
``watchkeeper_ignored_total{reason="invalid"}`` counts every text, those of the windows the
reference was learned from included.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from .conftest import RunningWorker, read_topic
from .streams import produce

MODEL = "learner"
T0 = 1_770_000_000.0
N = 9_000  # 100 per second: 9 windows of 10 s, the first 3 learned from


def _stream() -> tuple[list[tuple[str, bytes, bytes]], Counter[float], Counter[float]]:
    rng = np.random.default_rng(6)
    records, texts, nulls = [], Counter[float](), Counter[float]()
    for i in range(N):
        t = T0 + i * 0.01
        start = t // 10 * 10
        a: Any = float(rng.normal())
        if i % 7 == 0:
            a, texts[start] = "n/a", texts[start] + 1
        elif i % 11 == 0:
            a, nulls[start] = None, nulls[start] + 1
        event = {"event_id": f"l{i}", "model_id": MODEL, "timestamp": t, "features": {"a": a, "c": "x"}}
        records.append(("predictions", f"l{i}".encode(), orjson.dumps(event)))
    return records, texts, nulls


def _ignored_invalid(worker: RunningWorker) -> float:
    body = urllib.request.urlopen(f"http://localhost:{worker.metrics_port}/metrics", timeout=5).read().decode()
    lines = [x for x in body.splitlines() if x.startswith("watchkeeper_ignored_total{") and 'reason="invalid"' in x]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines)


@pytest.mark.timeout(300)
def test_text_sent_while_learning_is_counted_invalid(start_worker: Callable[..., RunningWorker]) -> None:
    config = {
        "models": [
            {
                "model_id": MODEL,
                "features": {"a": "numeric", "c": "categorical"},
                "reference": {"learn_from_first": 3000},
                "window": {"size": "10s", "allowed_lateness": "1s", "idle_close": "3s"},
                "drift": {"sequential": False},
            }
        ]
    }
    stream, texts, nulls = _stream()
    worker = start_worker(config, partitions=2, spawn=False)
    produce(worker.settings, stream)
    worker.spawn()
    messages = read_topic(
        worker.settings,
        worker.settings.topic_windows,
        lambda m: sum(orjson.loads(x.value())["kind"] == "window" for x in m) >= 6,
        timeout=180,
    )
    windows = [r for m in messages if (r := orjson.loads(m.value()))["kind"] == "window"]
    assert len(windows) == 6, worker.log_tail()  # the 3 learned from are the reference, not reported
    for window in windows:
        start, a = window["window_start"], window["columns"]["a"]
        assert (a["invalid"], a["missing_rate"]) == (texts[start], nulls[start] / window["n"]), start
    deadline = time.monotonic() + 30
    while _ignored_invalid(worker) < sum(texts.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ignored_invalid(worker) == sum(texts.values())  # every text, before and after learning
    assert worker.process.poll() is None, worker.log_tail()
