"""What `watchkeeper report` reads: which evaluation of a label window it draws, where thresholds and
reference histograms come from without a config or events, and its one-line errors (exit code 2).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.notify.fake import sample_alert
from watchkeeper.report.histograms import histogram
from watchkeeper.report.records import group_records
from watchkeeper.report.timeline import episodes

from .conftest import Replayed

runner = CliRunner()
WINDOW: dict[str, Any] = {
    "kind": "window",
    "model_id": "m",
    "model_version": "1",
    "window_start": 0.0,
    "window_end": 60.0,
    "n": 500,
    "evaluated": True,
    "drifted": [],
    "columns": {
        "a": {
            "kind": "numeric",
            "n": 500,
            "psi": 0.01,
            "p_value": 0.5,
            "p_adjusted": 0.9,
            "significant": False,
            "large_effect": False,
        }
    },
}


def _labels(final: bool, n_labeled: int) -> dict[str, Any]:
    return {
        "kind": "labels",
        "model_id": "m",
        "window_start": 0.0,
        "window_end": 60.0,
        "final": final,
        "n_predictions": 100,
        "n_labeled": n_labeled,
        "label_coverage": n_labeled / 100,
    }


def _report(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["report", *args, "-o", str(tmp_path / "r.html")])
    return result.exit_code, result.output


def _lines(tmp_path: Path, *records: Any) -> Path:
    path = tmp_path / "o.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_a_label_window_is_drawn_from_its_final_evaluation() -> None:
    records = [_labels(False, 10), _labels(True, 90), _labels(False, 95)]  # a late re-evaluation after the final
    (model,) = group_records((f"line {i}", r) for i, r in enumerate(records)).values()
    assert [r.n_labeled for r in model.labels.values()] == [90]


def test_an_episode_runs_from_firing_to_resolved_or_to_the_end() -> None:
    fired = sample_alert(fingerprint="f1", sequence=1)
    resolved = sample_alert(
        fingerprint="f1", sequence=2, status="resolved", window_end=datetime(2025, 3, 14, 13, tzinfo=UTC)
    )
    still = sample_alert(fingerprint="f2", sequence=1, subject="age")
    end = datetime(2025, 3, 15, tzinfo=UTC)
    found = {e.row: e for e in episodes([resolved, still, fired], end)}
    income, age = found["drift/psi · income"], found["drift/psi · age"]
    assert (income.start, income.end, income.resolved) == (fired.window.start, resolved.window.end, True)
    assert (age.start, age.end, age.resolved) == (still.window.start, end, False)


def test_a_column_constant_in_the_reference_has_bins_below_at_and_above_it() -> None:
    profile = ReferenceProfile.build("m", {"v": ("numeric", [0.5] * 100)})
    column = profile.columns["v"]
    window = np.zeros(column.counts.size, dtype=np.int64)
    window[0], window[-1] = 30, 10  # below and above the constant
    drawn = histogram("v", column, window)
    assert drawn.bins == ["< 0.5", "= 0.5", ">= 0.5"]
    assert drawn.reference == [0.0, 1.0, 0.0] and drawn.window == [0.75, 0.0, 0.25]


def test_without_config_and_events_thresholds_come_from_alerts_and_histograms_from_the_profile(
    replayed: Replayed, tmp_path: Path
) -> None:
    profile = replayed.directory / "elec2.profile.json"
    code, output = _report(tmp_path, str(replayed.output), "--profile", str(profile), "-m", "elec2")
    assert code == 0, output
    page = (tmp_path / "r.html").read_text()
    assert "min_psi 0.1 (alerts)" in page and "alpha 0.01 (alerts)" in page  # the PSI alerts carry both
    assert "reference (window side: pass --events)" in page
    assert "reference: profile elec2.profile.json" in page and 'id="model-compas"' not in page


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([WINDOW, "not json"], "o.jsonl:2: expected one JSON object per line"),
        (
            [{**WINDOW, "window_start": "soon"}],
            "o.jsonl:1: window record: field 'window_start': input should be a valid number",
        ),
        (
            [{**WINDOW, "kind": "windows"}],
            "o.jsonl:1: field 'kind': expected one of window, labels, alert, retraining (got 'windows')",
        ),
        ([{"kind": "alert", "model_id": "m"}], "o.jsonl:1: alert record: field 'fingerprint': missing"),
        ([["a list"]], "o.jsonl:1: expected a JSON object (got list)"),
        ([], "o.jsonl: no window, labels, alert or retraining records"),
    ],
)
def test_a_record_that_does_not_fit_is_named_in_one_line(tmp_path: Path, records: list[Any], message: str) -> None:
    code, output = _report(tmp_path, str(_lines(tmp_path, *records)))
    assert code == 2
    assert message in output and len(output.strip().splitlines()) == 1, output


def test_bad_options_and_files_are_named_in_one_line(tmp_path: Path) -> None:
    records = str(_lines(tmp_path, WINDOW))
    (tmp_path / "p.json").write_text('{"format": "something else"}')
    cases = [
        ((), "report: expected replay output files or --from-topics (one of the two)"),
        ((records, "--from-topics"), "report: expected replay output files or --from-topics (one of the two)"),
        ((str(tmp_path / "missing.jsonl"),), "missing.jsonl: cannot read (No such file or directory)"),
        ((records, "-m", "nope"), "--model nope: no records in"),
        ((records, "--events", str(tmp_path / "none.jsonl")), "none.jsonl: no such file"),
        ((records, "--profile", str(tmp_path / "p.json")), "p.json: expected a watchkeeper.profile/v1 profile"),
    ]
    for args, message in cases:
        code, output = _report(tmp_path, *args)
        assert code == 2 and message in output and len(output.strip().splitlines()) == 1, (args, output)


def test_a_profile_missing_from_the_config_is_named_with_the_command_that_builds_it(tmp_path: Path) -> None:
    config = tmp_path / "watchkeeper.yaml"
    config.write_text("models:\n- model_id: m\n  features: {a: numeric}\n  reference: {profile: m.profile.json}\n")
    code, output = _report(tmp_path, str(_lines(tmp_path, WINDOW)), "-c", str(config))
    assert code == 2
    assert output == (
        f"{config}: models[0].reference.profile: {tmp_path / 'm.profile.json'} does not exist; build it with: "
        f"watchkeeper profile build TRAINING.csv --model m -c {config} -o {tmp_path / 'm.profile.json'}\n"
    )


def test_window_option_chooses_the_histograms_window(replayed: Replayed, tmp_path: Path) -> None:
    """`--window TIME`: the histograms of the judged window holding TIME, its drifted columns, or all of
    them when it drifted in none; a time no window holds is a note, a time that is not one an error."""
    windows = [r for r in replayed.records if r["kind"] == "window" and r["evaluated"]]
    calm, drifted = next(w for w in windows if not w["drifted"]), next(w for w in reversed(windows) if w["drifted"])

    def histograms(window: dict[str, Any], at: str | None = None) -> tuple[set[str], str]:
        model = window["model_id"]
        middle = datetime.fromtimestamp((window["window_start"] + window["window_end"]) / 2, UTC).isoformat()
        args = [str(replayed.output), "-c", str(replayed.config), "--events", str(replayed.events), "-m", model]
        code, output = _report(tmp_path, *args, "--window", at or middle)
        assert code == 0, output
        page = (tmp_path / "r.html").read_text()
        return set(re.findall(rf'<div id="{model}-hist-([^"]+)" class="plotly-graph-div', page)), page

    def slugs(columns: Any) -> set[str]:
        return {c.replace(".", "-") for c in columns if not c.startswith("multivariate.")}

    shown, page = histograms(calm)
    assert "The window of --window" in page and "drifted in no column: all" in page
    assert shown == slugs(calm["columns"]) and shown
    shown, page = histograms(drifted)
    assert "The window of --window" in page and "drifted in no column" not in page
    assert shown == slugs(drifted["drifted"]) and shown
    shown, page = histograms(drifted, at="1990-01-01")
    assert shown == set() and "No drift window holds --window 1990-01-01 00:00." in page

    code, output = _report(tmp_path, str(replayed.output), "--window", "soon")
    assert code == 2
    assert output == "--window 'soon': expected a time in the window, e.g. 2026-11-23 or 2026-11-23T12:00:00Z\n"
