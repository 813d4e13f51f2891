"""A real replay to draw reports from: two models on the shared real data sets.

``elec2``: a logistic regression trained on two weeks of the Elec2 stream (NSW electricity)
predicts UP/DOWN for the following ~13 weeks, outcomes half an hour later; the Victorian
columns start to vary part-way (they were constant before), so drift, data-quality and
ADWIN alerts fire and a retraining policy sends triggers. ``compas``: COMPAS scores as
predictions (Jan 2013 – Apr 2014, 30-day windows), 90 % of the outcomes 2 to 40 days
later, sensitive attributes race and sex: fairness alerts, groups too small to judge
(e.g. Native American), label coverage below 1. Both profiles come from
``watchkeeper profile build``; the replay is the command's. Built once per session.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from watchkeeper.cli import app

ELEC2_FEATURES = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
ELEC2_T0 = 820_454_400.0  # 1996-01-01T00:00:00Z; the data set's rows are half-hours from here
ELEC2_TRAIN = range(13_656, 15_000)  # four weeks: the model's training data and its reference profile
ELEC2_SERVED = range(15_000, 19_500)  # ~13 weeks of predictions; row 17,424 is where vicprice starts to vary
COMPAS_FEATURES = {
    "age": "numeric",
    "priors_count": "numeric",
    "juv_fel_count": "numeric",
    "c_charge_degree": "categorical",
    "age_cat": "categorical",
}
COMPAS_UNTIL = "2014-05"  # screening dates before this month
DAY = 86_400.0


@dataclass(frozen=True)
class Replayed:
    directory: Path
    events: Path
    config: Path
    output: Path
    records: list[dict[str, Any]]


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _elec2(data_dir: Path, directory: Path) -> list[tuple[float, int, dict[str, Any]]]:
    with (data_dir / "electricity.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    x = np.asarray([[float(r[f]) for f in ELEC2_FEATURES] for r in rows])
    y = np.asarray([r["class"] == "UP" for r in rows], dtype=int)
    train = list(ELEC2_TRAIN)
    scores = LogisticRegression().fit(x[train], y[train]).predict_proba(x)[:, 1].round(4)
    training = [[*x[i], scores[i], int(scores[i] >= 0.5)] for i in train]
    _write_csv(directory / "elec2-train.csv", [*ELEC2_FEATURES, "score", "prediction"], training)
    lines = []
    for i in ELEC2_SERVED:
        t = ELEC2_T0 + i * 1800.0
        features = {f: float(x[i, j]) for j, f in enumerate(ELEC2_FEATURES)}
        prediction = {"score": float(scores[i]), "label": int(scores[i] >= 0.5)}
        event = {"event_id": f"e{i}", "model_id": "elec2", "model_version": "lr-4w", "timestamp": t}
        lines.append((t, 0, {**event, "features": features, "prediction": prediction}))
        lines.append(
            (
                t + 1800.0,
                1,
                {"prediction_id": f"e{i}", "model_id": "elec2", "timestamp": t + 1800.0, "label": int(y[i])},
            )
        )
    return lines


def _compas(data_dir: Path, directory: Path) -> list[tuple[float, int, dict[str, Any]]]:
    with (data_dir / "compas-two-years.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["compas_screening_date"] < COMPAS_UNTIL]
    rows.sort(key=lambda r: (r["compas_screening_date"], int(r["id"])))
    training = [
        [*(r[c] for c in COMPAS_FEATURES), int(r["decile_score"]) / 10, int(int(r["decile_score"]) >= 5)]
        for r in rows[:2000]
    ]
    _write_csv(directory / "compas-train.csv", [*COMPAS_FEATURES, "score", "prediction"], training)
    rng = np.random.default_rng(3)
    lines = []
    for k, r in enumerate(rows):
        day = datetime.fromisoformat(r["compas_screening_date"]).replace(tzinfo=UTC).timestamp()
        t = day + (k % 500) * 60.0  # spread a day's screenings over its hours
        decile = int(r["decile_score"])
        features = {c: float(r[c]) if kind == "numeric" else r[c] for c, kind in COMPAS_FEATURES.items()}
        lines.append(
            (
                t,
                0,
                {
                    "event_id": f"c{r['id']}",
                    "model_id": "compas",
                    "timestamp": t,
                    "features": features,
                    "prediction": {"score": decile / 10, "label": int(decile >= 5)},
                    "attributes": {"race": r["race"], "sex": r["sex"]},
                },
            )
        )
        if rng.random() < 0.9:
            known = t + float(rng.uniform(2, 40)) * DAY
            outcome = {"prediction_id": f"c{r['id']}", "model_id": "compas", "timestamp": known}
            lines.append((known, 1, {**outcome, "label": int(r["two_year_recid"])}))
    return lines


def _config() -> dict[str, Any]:
    return {
        "models": [
            {
                "model_id": "elec2",
                "task": "binary",
                "classes": ["0", "1"],
                "features": {f: "numeric" for f in ELEC2_FEATURES},
                "reference": {"profile": "elec2.profile.json"},
                "window": {"size": "7d", "allowed_lateness": "1h"},
                "drift": {"min_count": 300, "sequential": False},
                "accuracy": {"label_horizon": "1d", "min_labeled": 300, "metrics": ["accuracy", "roc_auc"]},
                "retraining": [{"name": "retrain-on-drift", "monitors": ["drift", "accuracy"], "cooldown": "14d"}],
            },
            {
                "model_id": "compas",
                "task": "binary",
                "classes": ["0", "1"],
                "features": COMPAS_FEATURES,
                "reference": {"profile": "compas.profile.json"},
                "window": {"size": "30d", "allowed_lateness": "1d"},
                "drift": {"min_count": 100, "sequential": False},
                "sensitive_attributes": ["race", "sex"],
                "accuracy": {"label_horizon": "30d", "min_labeled": 100, "metrics": ["accuracy"]},
                "fairness": {"min_support": 30},
            },
        ]
    }


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def replayed(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """The two models' events replayed by ``watchkeeper replay``, with their config and profiles."""
    directory = tmp_path_factory.mktemp("report-scenario")
    config = directory / "watchkeeper.yaml"
    config.write_text(yaml.safe_dump(_config(), sort_keys=False))
    lines = sorted(_elec2(data_dir, directory) + _compas(data_dir, directory), key=lambda line: line[:2])
    events = directory / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(event) + b"\n" for *_, event in lines))
    for model in ("elec2", "compas"):
        training = str(directory / f"{model}-train.csv")
        _invoke(
            "profile", "build", training, "-m", model, "-c", str(config), "-o", str(directory / f"{model}.profile.json")
        )
    output = directory / "out.jsonl"
    _invoke("replay", str(events), "-c", str(config), "-o", str(output))
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    return Replayed(directory, events, config, output, records)
