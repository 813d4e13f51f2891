"""Implausible event times are dead-lettered with a reason, never windowed or silently dropped.

A timestamp at or before the Unix epoch (0, -86400, -1e15 were accepted, then dropped as
late without a trace, or opened a window at -1e15 in replay), and a prediction stamped more
than ``window.max_past`` behind the latest event of its model in its partition, are
rejected; the verdict is the same wherever the batches are cut.
"""

from __future__ import annotations

import itertools

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from watchkeeper.config import parse_config
from watchkeeper.monitor.runtime import MonitorRuntime

DAY = 86_400.0
T0 = 1_750_000_000.0


def _runtime() -> MonitorRuntime:
    model = {
        "model_id": "m",
        "features": {"x": "numeric"},
        "window": {"size": "60s", "max_past": "30d"},
        "reference": {"learn_from_first": 100},
    }
    return MonitorRuntime(parse_config({"models": [model]}))


def _event(i: int, timestamp: float) -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "model_id": "m", "timestamp": timestamp, "features": {"x": 1.0}})


def _rejected(runtime: MonitorRuntime, times: list[float], sources: list[str], cuts: list[int]) -> dict[int, str]:
    """Reasons of the rejected events, by position in ``times``, fed in batches cut at ``cuts``."""
    raw = [_event(i, t) for i, t in enumerate(times)]
    bounds = [0, *sorted(set(cuts)), len(raw)]
    out: dict[int, str] = {}
    for first, last in itertools.pairwise(bounds):
        if first >= last:
            continue
        result = runtime.stage1(raw[first:last], sources[first:last], list(range(first, last)))
        out.update({first + r.index: r.reason for r in result.rejected})
    return out


def test_timestamps_at_or_before_the_epoch_are_rejected_with_a_reason() -> None:
    times = [T0, 0.0, -DAY, -1e15, T0 + 1]
    reasons = _rejected(_runtime(), times, ["p:0"] * len(times), [])
    assert sorted(reasons) == [1, 2, 3]
    assert reasons[1] == reasons[2].replace("-86400.0", "0.0")
    assert reasons[2] == "timestamp: -86400.0: expected a time after 1970-01-01T00:00:00Z"
    assert reasons[3].startswith("timestamp: -1000000000000000.0: expected epoch seconds")  # (the parser's)


def test_a_prediction_far_behind_its_partition_is_rejected_but_not_one_in_another_partition() -> None:
    times = [T0, T0 - 29 * DAY, T0 - 31 * DAY, T0 - 31 * DAY]
    sources = ["p:0", "p:0", "p:0", "p:1"]
    reasons = _rejected(_runtime(), times, sources, [])
    assert list(reasons) == [2]
    assert "more than 2.592e+06 s behind the latest event time of model 'm' in its partition" in reasons[2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-40, 5), min_size=2, max_size=30),
    st.lists(st.integers(0, 30), max_size=6),
)
def test_the_verdicts_do_not_depend_on_where_batches_are_cut(days: list[float], cuts: list[int]) -> None:
    times = [T0 + d * DAY for d in days]
    sources = [f"p:{i % 2}" for i in range(len(times))]
    whole = _rejected(_runtime(), times, sources, [])
    assert _rejected(_runtime(), times, sources, cuts) == whole
    for i, t in enumerate(times):  # and it is the rule: behind the running latest of its partition
        earlier = [times[j] for j in range(i) if sources[j] == sources[i] and j not in whole]
        assert (i in whole) == bool(earlier and t < max(earlier) - 30 * DAY)
