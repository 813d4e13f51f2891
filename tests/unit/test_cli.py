"""The `watchkeeper` command as a user runs it: profile build and offline replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.monitor.profile import CategoricalProfile, NumericProfile, ReferenceProfile

runner = CliRunner()


def test_profile_build_from_real_training_data(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "elec.csv"
    source.write_text("".join((data_dir / "electricity.csv").read_text().splitlines(keepends=True)[:2001]))
    result = runner.invoke(app, ["profile", "build", str(source), "--model", "elec", "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    profile = ReferenceProfile.from_dict(json.loads((tmp_path / "p.json").read_text()))
    assert profile.n_rows == 2000
    assert isinstance(profile.columns["nswprice"], NumericProfile)
    assert isinstance(profile.columns["class"], CategoricalProfile)
    assert set(profile.columns["class"].encoder.vocabulary) == {"UP", "DOWN"}
    assert profile.columns["nswprice"].n_coarse == 10


def test_profile_build_names_missing_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    (tmp_path / "m.yaml").write_text("models:\n- model_id: m\n  features: {a: numeric, zz: numeric}\n")
    result = runner.invoke(
        app, ["profile", "build", str(tmp_path / "d.csv"), "-m", "m", "-c", str(tmp_path / "m.yaml"), "-o", "x.json"]
    )
    assert result.exit_code == 2
    assert "columns ['zz'] of model 'm' are not in the CSV header ['a', 'b']" in result.output


def test_replay_writes_windows_and_alerts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with (tmp_path / "events.jsonl").open("wb") as sink:
        for i in range(8000):
            shift = 1.5 if i >= 5000 else 0.0
            event = {
                "event_id": str(i),
                "model_id": "m",
                "timestamp": 1e9 + i * 0.01,
                "features": {"a": float(rng.normal() + shift), "b": float(rng.normal())},
            }
            sink.write(orjson.dumps(event) + b"\n")
        sink.write(b"garbage\n")
    (tmp_path / "m.yaml").write_text(
        "models:\n- model_id: m\n  features: {a: numeric, b: numeric}\n  reference: {learn_from_first: 2000}\n"
        "  window: {size: 10s}\n"
    )
    result = runner.invoke(
        app, ["replay", str(tmp_path / "events.jsonl"), "-c", str(tmp_path / "m.yaml"), "-o", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    windows = [r for r in records if r["kind"] == "window"]
    alerts = [r for r in records if r["kind"] == "alert"]
    assert len(windows) == 6 and all(w["n"] == 1000 for w in windows)
    assert sorted((a["subject"], a["status"], a["metric"]) for a in alerts) == [
        ("a", "firing", "cusum"),
        ("a", "firing", "out_of_range_rate"),  # a 1.5σ shift leaves the reference range too
        ("a", "firing", "psi"),
    ]
    assert windows[3]["drifted"] == ["a"] and windows[2]["drifted"] == []
    assert "6 windows, 0 label evaluations, 3 alerts, 0 retraining triggers, 1 rejected events" in result.output


def test_profile_build_takes_score_and_label_from_their_usual_names_and_says_so(tmp_path: Path) -> None:
    rows = "".join(f"{i / 100},{(i % 10) / 10},{int(i % 10 >= 5)}\n" for i in range(200))
    (tmp_path / "d.csv").write_text("x,score,prediction\n" + rows)
    command = ["profile", "build", str(tmp_path / "d.csv"), "-m", "m", "-o", str(tmp_path / "p.json")]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "using column 'score' as the prediction's (pass --score-column to choose another)" in result.output
    profile = ReferenceProfile.from_dict(json.loads((tmp_path / "p.json").read_text()))
    assert set(profile.columns) == {"x", "prediction.score", "prediction.label"}


def test_profile_build_warns_when_the_prediction_will_not_be_monitored(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(100)))
    command = ["profile", "build", str(tmp_path / "d.csv"), "-m", "m", "-o", str(tmp_path / "p.json")]
    result = runner.invoke(app, command)
    assert result.exit_code == 0
    assert "prediction.score and prediction.label will not be monitored" in result.stderr
    assert set(ReferenceProfile.from_dict(json.loads((tmp_path / "p.json").read_text())).columns) == {"x", "y"}
