"""Late predictions are counted per model (and can be dead-lettered), never dropped silently.

A prediction is late when its window ended ``window.allowed_lateness`` or more before the
latest event time of its model in its input partition (earlier events of the same batch
included): stage 1 leaves it out of the windows, says why, and counts it in the model's
partial, which stage 2 adds to the model's ``late_events`` (gauge, replay summary). The
verdict is the same wherever the batches are cut, so the windows are too.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import parse_config
from watchkeeper.monitor.engine import WindowClosed
from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

T0 = 1_750_000_000.0
SIZE, LATENESS = 10.0, 2.0


def _model(**window: object) -> dict[str, object]:
    return {
        "model_id": "m",
        "features": {"x": "numeric"},
        "window": {"size": SIZE, "allowed_lateness": LATENESS, **window},
        "reference": {"learn_from_first": 50},
    }


def _runtime() -> MonitorRuntime:
    return MonitorRuntime(parse_config({"models": [_model()]}))


def _event(i: int, t: float) -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "model_id": "m", "timestamp": t, "features": {"x": float(i % 5)}})


def _late(runtime: MonitorRuntime, times: list[float], sources: list[str], cuts: list[int]) -> dict[int, str]:
    """Reasons of the late events, by position in ``times``, fed in batches cut at ``cuts``."""
    raw = [_event(i, t) for i, t in enumerate(times)]
    bounds = [0, *sorted(set(cuts)), len(raw)]
    out: dict[int, str] = {}
    for first, last in itertools.pairwise(bounds):
        if first < last:
            result = runtime.stage1(raw[first:last], sources[first:last], list(range(first, last)))
            assert not result.rejected
            out.update({first + late.index: late.reason for late in result.late})
            assert sum(p.get("late", 0) for p in result.partials) == len(result.late)
    return out


def test_a_prediction_behind_its_closed_window_is_late_in_its_partition_only() -> None:
    runtime = _runtime()
    times = [T0 + 1, T0 + 13, T0 + 5, T0 + 5, T0 + 11.5]
    sources = ["p:0", "p:0", "p:0", "p:1", "p:0"]
    late = _late(runtime, times, sources, [])
    assert list(late) == [2]  # p:0 is at T0 + 13 ≥ the window's end + lateness; p:1 is not; T0 + 11.5 is in time
    assert late[2] == (
        "late: timestamp 1750000005.000: its window [1750000000.000, 1750000010.000) of model 'm' closed at "
        "1750000012.000 (end + window.allowed_lateness), behind the latest event time in its partition "
        "(1750000013.000)"
    )


def test_late_predictions_stay_out_of_the_windows_and_are_counted_in_the_partial() -> None:
    runtime = _runtime()
    runtime.stage1([_event(0, T0 + 30)], ["p:0"], [0])
    result = runtime.stage1([_event(1, T0 + 1), _event(2, T0 + 2)], ["p:0", "p:0"], [1, 2])
    (partial,) = result.partials
    assert partial["kind"] == "labels" and partial["windows"] == []  # nothing windowed: a windowless partial
    assert partial["late"] == 2 and partial["source"] == {"p:0": [1, 2]}  # its offsets, for stage 2's dedup
    assert [late.index for late in result.late] == [0, 1] and {late.model_id for late in result.late} == {"m"}
    monitor = runtime.monitor("m")
    runtime.stage2(partial)
    assert monitor.late_events == 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 60), min_size=2, max_size=40),
    st.lists(st.integers(0, 40), max_size=6),
)
def test_the_verdicts_do_not_depend_on_where_batches_are_cut(offsets: list[float], cuts: list[int]) -> None:
    times = [T0 + s for s in offsets]
    sources = [f"p:{i % 2}" for i in range(len(times))]
    whole = _late(_runtime(), times, sources, [])
    assert _late(_runtime(), times, sources, cuts) == whole
    for i, t in enumerate(times):  # and it is the rule: behind the running latest of its partition
        earlier = [times[j] for j in range(i) if sources[j] == sources[i]]
        end = (t // SIZE + 1) * SIZE
        assert (i in whole) == bool(earlier and end + LATENESS <= max(earlier))


def _stream() -> list[bytes]:
    """600 events 0.1 s apart with 20 stragglers stamped 25 s behind the stream."""
    times = [T0 + i * 0.1 for i in range(600)]
    for i in range(300, 600, 15):
        times[i] -= 25.0
    return [_event(i, t) for i, t in enumerate(times)]


def test_replay_windows_and_late_counts_do_not_depend_on_the_batch_size() -> None:
    results = []
    for batch_size in (1, 13, 1000):
        runtime = _runtime()
        outputs = [out for batch, _, _ in replay_lines(runtime, _stream(), batch_size=batch_size) for out in batch]
        windows = [(o.report.window_start, o.report.n) for o in outputs if isinstance(o, WindowClosed)]
        results.append((windows, runtime.monitors["m"].late_events))
    assert results[0] == results[1] == results[2]
    windows, late = results[0]
    assert late == 20 and sum(n for _, n in windows) == 600 - 20 - 100  # (the first window taught the reference)


def test_replay_prints_the_late_events_per_model(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(_stream()) + b"\n")
    (tmp_path / "m.yaml").write_text(orjson.dumps({"models": [_model()]}).decode())
    result = CliRunner().invoke(
        app, ["replay", str(tmp_path / "events.jsonl"), "-c", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "0 rejected events, 20 late events (m: 20)" in result.output


def test_dead_letter_late_is_off_by_default() -> None:
    assert not parse_config({"models": [_model()]}).models[0].window.dead_letter_late
    assert parse_config({"models": [_model(dead_letter_late=True)]}).models[0].window.dead_letter_late
