"""Stage 2: windows, watermarks, at-most-once application, learning, alerts, restore."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import AlertRaised, ModelMonitor, ProfileLearned, WindowClosed
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

CONFIG = {
    "models": [
        {
            "model_id": "m",
            "features": {"a": "numeric", "b": "numeric", "c": "categorical"},
            "reference": {"learn_from_first": 2000},
            "window": {"size": "10s", "allowed_lateness": "2s", "idle_close": "30s"},
            "drift": {"resolve_windows": 2, "sequential": False},
        }
    ]
}


def _lines(n: int, shift_from: int = 10**9, shift_to: int = 10**9, seed: int = 3) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shifted = shift_from <= i < shift_to
        event = {
            "event_id": str(i),
            "model_id": "m",
            "timestamp": 1_000_000.0 + i * 0.01,
            "features": {
                "a": float(rng.normal() + (1.0 if shifted else 0.0)),
                "b": float(rng.normal()),
                "c": str(rng.choice(["x", "y", "z"])),
            },
        }
        out.append(orjson.dumps(event))
    return out


def _run(runtime: MonitorRuntime, lines: list[bytes]) -> list[Any]:
    return [o for outputs, _, _ in replay_lines(runtime, lines, batch_size=500) for o in outputs]


def test_learns_reference_then_alerts_on_the_shifted_feature_only_and_resolves() -> None:
    runtime = MonitorRuntime(parse_config(CONFIG))
    outputs = _run(runtime, _lines(20_000, shift_from=8_000, shift_to=14_000))
    learned = [o for o in outputs if isinstance(o, ProfileLearned)]
    assert len(learned) == 1 and learned[0].profile.n_rows == 2000
    alerts = [
        (o.alert.subject, o.alert.status, o.alert.window.start.timestamp())
        for o in outputs
        if isinstance(o, AlertRaised)
    ]
    assert [(s, st) for s, st, _ in alerts] == [("a", "firing"), ("a", "resolved")]
    assert alerts[0][2] == 1_000_080.0  # the first window of shifted traffic
    assert alerts[1][2] == 1_000_150.0  # second clean window after the shift ended (resolve_windows=2)
    windows = [o.report for o in outputs if isinstance(o, WindowClosed)]
    assert [w.n for w in windows] == [1000] * 18


def _partial(src: str, first: int, last: int, start: float, t_max: float, n: int = 1) -> dict[str, Any]:
    return {
        "kind": "stats",
        "model_id": "m",
        "profile_id": None,
        "source": {src: [first, last]},
        "watermarks": {src: t_max},
        "windows": [{"start": start, "n": n, "t_max": t_max}],
    }


def _monitor() -> ModelMonitor:
    config = parse_config(CONFIG).models[0]
    runtime = MonitorRuntime(parse_config(CONFIG))
    _run(runtime, _lines(2000))  # learn a profile
    profile = runtime.profiles["m"]
    monitor = ModelMonitor(config, profile)
    return monitor


def test_a_partial_already_applied_is_skipped() -> None:
    monitor = _monitor()
    pid = monitor.profile.reference_id  # type: ignore[union-attr]
    partial = {**_partial("p:0", 0, 9, 0.0, 1.0, n=10), "profile_id": pid}
    monitor.apply(partial)
    monitor.apply(partial)  # redelivered after a crash
    assert monitor.windows[0.0].n == 10 and monitor.duplicates_skipped == 1


def _closed(outputs: list[Any]) -> list[float]:
    return sorted(o.report.window_start for o in outputs if isinstance(o, WindowClosed))


def test_the_slowest_partition_holds_the_watermark_until_it_is_reported_idle() -> None:
    monitor = _monitor()
    pid = monitor.profile.reference_id  # type: ignore[union-attr]
    two = {"profile_id": pid, "partitions": 2}
    monitor.apply({**_partial("p:0", 0, 9, 0.0, 5.0), **two})
    monitor.apply({**_partial("p:1", 0, 9, 40.0, 45.0), **two})
    assert 0.0 in monitor.windows  # p:0 is at 5 s: window [0, 10) stays open
    assert _closed(monitor.apply({**_partial("p:0", 10, 19, 10.0, 13.0), **two})) == [0.0]
    # stage 1 read p:0 to its end and saw no event of the model for idle_close: it stops holding back
    idle = {"kind": "watermark", "model_id": "m", "source": {}, "windows": [], "idle": {"p:0": True}, **two}
    assert _closed(monitor.apply(idle)) == [10.0]
    assert _closed(monitor.apply({**_partial("p:1", 10, 19, 50.0, 55.0), **two})) == [40.0]


def test_nothing_closes_before_every_partition_has_reported_and_no_wall_clock_counts() -> None:
    monitor = _monitor()
    pid = monitor.profile.reference_id  # type: ignore[union-attr]
    out = monitor.apply({**_partial("p:0", 0, 9, 0.0, 500.0), "profile_id": pid, "partitions": 2})
    assert _closed(out) == [] and monitor.watermark() is None
    out = monitor.apply({**_partial("p:1", 0, 9, 0.0, 3.0), "profile_id": pid, "partitions": 2})
    assert _closed(out) == [] and monitor.watermark() == 3.0


def test_events_for_a_closed_window_are_counted_late_not_merged() -> None:
    monitor = _monitor()
    pid = monitor.profile.reference_id  # type: ignore[union-attr]
    monitor.apply({**_partial("p:0", 0, 9, 0.0, 30.0, n=5), "profile_id": pid})
    monitor.apply({**_partial("p:0", 10, 19, 20.0, 30.0, n=5), "profile_id": pid})
    monitor.apply({**_partial("p:0", 20, 29, 0.0, 9.0, n=7), "profile_id": pid})
    assert monitor.late_events == 7 and 0.0 not in monitor.windows


def _apply_changes(records: dict[str, bytes], changes: dict[str, bytes | None]) -> None:
    for name, value in changes.items():
        if value is None:
            records.pop(name, None)
        else:
            records[name] = value


def test_state_restored_from_its_records_mid_stream_continues_identically() -> None:
    lines = _lines(12_000, shift_from=6_000, shift_to=12_000)
    straight = MonitorRuntime(parse_config(CONFIG))
    expected = [o.alert for o in _run(straight, lines) if isinstance(o, AlertRaised)]

    first = MonitorRuntime(parse_config(CONFIG))
    outputs = []
    records: dict[str, bytes] = {}
    for i in range(0, 7_000, 500):
        out, _ = first.run_batch(lines[i : i + 500], "replay:0", i)
        outputs += out
        _apply_changes(records, first.monitors["m"].take_changes())
    assert max(len(v) for v in records.values()) < 256 * 1024
    restored = MonitorRuntime(parse_config(CONFIG))  # the learned profile comes back with the records
    restored.monitor("m", records)
    assert restored.profiles["m"].reference_id == first.profiles["m"].reference_id
    for i in range(7_000, 12_000, 500):
        out, _ = restored.run_batch(lines[i : i + 500], "replay:0", i)
        outputs += out
    outputs += restored.flush()
    assert [o.alert for o in outputs if isinstance(o, AlertRaised)] == expected


def test_unchanged_state_writes_nothing() -> None:
    monitor = _monitor()
    pid = monitor.profile.reference_id  # type: ignore[union-attr]
    monitor.apply({**_partial("p:0", 0, 9, 0.0, 1.0, n=10), "profile_id": pid})
    assert monitor.take_changes()  # the window, the applied offsets...
    assert monitor.take_changes() == {}  # nothing happened since
    monitor.apply({**_partial("p:0", 0, 9, 0.0, 1.0, n=10), "profile_id": pid})  # a duplicate
    assert set(monitor.take_changes()) == {"meta"}  # only the duplicate counter moved


def test_the_sequential_detector_alerts_before_the_window_closes_and_resolves() -> None:
    config = {"models": [{**CONFIG["models"][0], "drift": {"resolve_windows": 2}}]}
    runtime = MonitorRuntime(parse_config(config))
    lines = _lines(20_000, shift_from=8_500, shift_to=14_000)
    cusum = []
    for i in range(0, len(lines), 250):
        outputs, _ = runtime.run_batch(lines[i : i + 250], "replay:0", i)
        cusum += [(i + 250, o.alert) for o in outputs if isinstance(o, AlertRaised) and o.alert.metric == "cusum"]
    outputs = runtime.flush()
    cusum += [(len(lines), o.alert) for o in outputs if isinstance(o, AlertRaised) and o.alert.metric == "cusum"]
    assert [(a.subject, a.status) for _, a in cusum] == [("a", "firing"), ("a", "resolved")]
    seen_at, firing = cusum[0]
    assert 8_500 < seen_at <= 9_000  # within 500 events of a 1σ shift, mid-window (windows close every 1,000)
    assert firing.window.start.timestamp() == 1_000_080.0
    assert cusum[1][1].window.start.timestamp() >= 1_000_150.0


def test_a_feature_can_opt_out_of_the_sequential_detector() -> None:
    model = {**CONFIG["models"][0], "drift": {"resolve_windows": 2}}
    model["features"] = {"a": {"type": "numeric", "sequential": False}, "b": "numeric", "c": "categorical"}
    runtime = MonitorRuntime(parse_config({"models": [model]}))
    outputs = _run(runtime, _lines(12_000, shift_from=8_000, shift_to=12_000))
    cusum = {o.alert.subject for o in outputs if isinstance(o, AlertRaised) and o.alert.metric == "cusum"}
    psi = {o.alert.subject for o in outputs if isinstance(o, AlertRaised) and o.alert.metric == "psi"}
    assert "a" not in cusum and "a" in psi  # the window test still watches it
