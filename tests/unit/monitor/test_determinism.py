"""Verdicts are a function of the events: not of batch sizes, partitions or consumption order.

The worker's stage 1 reads partitions in whatever order and batch sizes Kafka gives it;
``watchkeeper replay`` reads one file. Both must give the same drift, CUSUM and
data-quality alerts (fingerprint, status, window, numbers and CloudEvent id) and the same
window statistics, also while the model learns its reference from its first windows.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchkeeper.config import parse_config
from watchkeeper.events import alert_cloudevent
from watchkeeper.monitor.engine import AlertRaised, Output, WindowClosed
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

T0 = 1_700_000_000.0
N = 9000


def _events(seed: int = 3) -> list[bytes]:
    """A 15-feature model; x1 shifts and c1 changes mix from event 6000 on; times jitter by < 1 s."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(N):
        shifted = i >= 6000
        features: dict[str, Any] = {f"x{j}": float(rng.normal()) for j in range(12)}
        features["x1"] += 0.6 if shifted else 0.0
        features["c1"] = str(rng.choice(["a", "b", "c"], p=[0.2, 0.3, 0.5] if shifted else [0.5, 0.3, 0.2]))
        features["c2"] = str(rng.choice(["u", "v"]))
        features["c3"] = str(rng.choice(["p", "q", "r"]))
        score = float(1 / (1 + np.exp(-features["x0"])))
        t = T0 + i * 0.02 + float(rng.uniform(0, 0.8))
        event = {
            "event_id": f"e{i}",
            "model_id": "m",
            "model_version": "1",
            "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
            "features": features,
            "prediction": {"score": score, "label": int(score >= 0.5)},
        }
        lines.append(orjson.dumps(event))
    return lines


LINES = _events()


def _config() -> Any:
    features = {f"x{j}": "numeric" for j in range(12)} | {"c1": "categorical", "c2": "categorical", "c3": "categorical"}
    model: dict[str, Any] = {
        "model_id": "m",
        "features": features,
        "window": {"size": "20s", "allowed_lateness": "2s"},
        "reference": {"learn_from_first": 1500},
        "drift": {"sequential_arl_events": 1e5},
    }
    return parse_config({"models": [model]})


def _summary(outputs: list[Output]) -> tuple[list[Any], list[Any]]:
    alerts = sorted(
        (
            o.alert.fingerprint,
            o.alert.status,
            o.alert.window.start.isoformat(),
            o.alert.metric,
            o.alert.subject,
            round(o.alert.observed or 0.0, 9),
            alert_cloudevent(o.alert, "watchkeeper").id,
        )
        for o in outputs
        if isinstance(o, AlertRaised)
    )
    windows = sorted(
        (o.report.window_start, o.report.n, tuple(round(c.psi, 12) for c in o.report.columns))
        for o in outputs
        if isinstance(o, WindowClosed)
    )
    return alerts, windows


def _replay(batch_size: int, profiles: dict[str, ReferenceProfile] | None = None) -> tuple[list[Any], list[Any]]:
    runtime = MonitorRuntime(_config(), profiles)
    outputs = [o for batch, _, _ in replay_lines(runtime, LINES, batch_size=batch_size) for o in batch]
    LEARNED.update(runtime.profiles)
    return _summary(outputs)


LEARNED: dict[str, ReferenceProfile] = {}
REFERENCE = _replay(1000)  # learns the reference from its first two windows
WITH_PROFILE = _replay(1000, dict(LEARNED))  # the same reference given from the start


def test_the_stream_raises_alerts_at_all() -> None:
    alerts, windows = REFERENCE
    assert len(windows) >= 6
    assert any(a[3] == "cusum" and a[4] == "x1" and a[1] == "firing" for a in alerts)
    assert any(a[3] == "psi" and a[4] == "c1" and a[1] == "firing" for a in alerts)


def test_every_alert_id_is_unique_and_the_same_at_any_batch_size() -> None:
    ids = [a[-1] for a in REFERENCE[0]]
    assert len(set(ids)) == len(ids)
    for batch_size in (50, 5000):
        assert [a[-1] for a in _replay(batch_size)[0]] == ids


def test_replay_batch_size_does_not_change_alerts_windows_or_the_learned_reference() -> None:
    learned = LEARNED["m"].reference_id
    assert _replay(5000) == REFERENCE
    assert LEARNED["m"].reference_id == learned
    assert _replay(50, dict(LEARNED)) == WITH_PROFILE


def _partitioned(
    order_seed: int, partitions: int, batch_sizes: list[int], profiles: dict[str, ReferenceProfile] | None = None
) -> tuple[list[Any], list[Any]]:
    """Like the worker: records spread over partitions by key, read in random batches and order."""
    runtime = MonitorRuntime(_config(), profiles)
    runtime.partitions = partitions
    queues: list[list[tuple[int, bytes]]] = [[] for _ in range(partitions)]
    for offset, line in enumerate(LINES):
        key = orjson.loads(line)["event_id"].encode()
        queues[zlib.crc32(key) % partitions].append((offset, line))
    rng = np.random.default_rng(order_seed)
    outputs: list[Output] = []
    step = 0
    while any(queues):
        partition = int(rng.choice([p for p in range(partitions) if queues[p]]))
        size = batch_sizes[step % len(batch_sizes)]
        step += 1
        batch, queues[partition] = queues[partition][:size], queues[partition][size:]
        result = runtime.stage1(
            [line for _, line in batch], [f"predictions:{partition}"] * len(batch), [o for o, _ in batch]
        )
        for partial in result.partials:
            outputs += runtime.stage2(partial)
    return _summary(outputs + runtime.flush())


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order_seed=st.integers(0, 10_000),
    partitions=st.sampled_from([2, 4]),
    batch_sizes=st.lists(st.integers(20, 3000), min_size=1, max_size=4),
)
def test_partitions_batches_and_consumption_order_do_not_change_alerts(
    order_seed: int, partitions: int, batch_sizes: list[int]
) -> None:
    assert _partitioned(order_seed, partitions, batch_sizes, dict(LEARNED)) == WITH_PROFILE


def test_a_reference_learned_from_partitions_read_in_any_order_is_the_same() -> None:
    assert _partitioned(order_seed=7, partitions=4, batch_sizes=[700, 90, 2500]) == REFERENCE
