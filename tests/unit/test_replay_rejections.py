"""`watchkeeper replay` says why events were rejected: the top reasons with their counts."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from watchkeeper.cli import app
from watchkeeper.config import parse_config
from watchkeeper.monitor.reasons import reason_shape
from watchkeeper.monitor.runtime import MonitorRuntime

runner = CliRunner()


def _replay(tmp_path: Path, bad: list[bytes]) -> Result:
    """``watchkeeper replay`` of 300 valid events of model ``m`` followed by the ``bad`` lines."""
    good = [
        {"event_id": str(i), "model_id": "m", "timestamp": 1e9 + i, "features": {"a": float(i % 7)}} for i in range(300)
    ]
    (tmp_path / "events.jsonl").write_bytes(b"\n".join([*map(orjson.dumps, good), *bad]) + b"\n")
    (tmp_path / "m.yaml").write_text(
        "models:\n- model_id: m\n  features: {a: numeric}\n  reference: {learn_from_first: 100}\n"
        "  window: {size: 60s}\n"
    )
    return runner.invoke(
        app, ["replay", str(tmp_path / "events.jsonl"), "-c", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "o.jsonl")]
    )


def test_replay_prints_the_top_rejection_reasons(tmp_path: Path) -> None:
    unknown = [{"event_id": f"u{i}", "model_id": "other", "timestamp": 1e9, "features": {"a": 1.0}} for i in range(3)]
    bad_time = {"event_id": "t", "model_id": "m", "timestamp": "yesterday", "features": {"a": 1.0}}
    no_features = {"event_id": "f", "model_id": "m", "timestamp": 1e9}
    no_id = {"event_id": "", "model_id": "m", "timestamp": 1e9, "features": {"a": 1.0}}
    bad = [*[orjson.dumps(e) for e in [*unknown, bad_time, no_features, no_id]], *[b"garbage", b"garbage", b"[1]"] * 2]
    result = _replay(tmp_path, bad)
    assert result.exit_code == 0, result.output
    assert "12 rejected events" in result.output
    assert result.output.splitlines()[-7:] == [
        "top rejection reasons:",
        "        4  invalid JSON: JSON is malformed: invalid character (byte 0)",
        "        3  model_id: 'other': not a configured model",
        "        2  event: list: expected a JSON object",
        "        1  timestamp: 'yesterday': expected an RFC 3339 date-time with offset",
        "        1  features: missing: expected an object of numbers, strings, bools or nulls",
        "        1  (1 other reason)",
    ]


def test_reasons_that_differ_only_in_the_value_count_as_one(tmp_path: Path) -> None:
    bad_times = [
        {"event_id": f"t{i}", "model_id": "m", "timestamp": f"day {i}", "features": {"a": 1.0}} for i in range(7)
    ]
    unknown = {"event_id": "u", "model_id": "other", "timestamp": 1e9, "features": {"a": 1.0}}
    result = _replay(tmp_path, [orjson.dumps(e) for e in [*bad_times, unknown]])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-3:] == [
        "top rejection reasons:",
        "        7  timestamp: …: expected an RFC 3339 date-time with offset  (7 values, e.g. timestamp: 'day 0': "
        "expected an RFC 3339 date-time with offset)",
        "        1  model_id: 'other': not a configured model",
    ]


@given(st.text(max_size=40), st.floats(allow_nan=False), st.lists(st.integers(), max_size=3))
def test_a_reason_shape_hides_the_value_shown(text: str, number: float, items: list[int]) -> None:
    shapes = {
        reason_shape(f"features.x1: {value!r}: expected a number, string, bool or null")
        for value in (text, number, items, {"k": text})
    }
    assert shapes == {"features.x1: …: expected a number, string, bool or null"}


def test_replay_judges_an_outcome_line_as_an_outcome_even_when_a_value_is_out_of_range() -> None:
    """Replay tells outcomes from predictions by their top-level keys alone, as the worker tells them
    by topic: an outcome whose value is 1e400 gets the outcome's reason, not a prediction's."""
    config = parse_config(
        {"models": [{"model_id": "m", "features": {"a": "numeric"}, "reference": {"learn_from_first": 100}}]}
    )
    line = b'{"prediction_id": "p1", "model_id": "m", "timestamp": 1e9, "value": 1e400}'
    _, rejected = MonitorRuntime(config).run_batch([line], "replay:0", 0)
    assert [r.reason.split(":")[0] for r in rejected] == ["value"]
