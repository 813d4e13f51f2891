"""Nothing silent: what stage 1 does not monitor is counted per model and reason, and logged once.

The pure core reports it (:attr:`Stage1Result.ignored`); the worker's stage 1 counts it in
``watchkeeper_ignored_total{model_id, reason}`` and logs each reason once per model.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import orjson
import pytest

from watchkeeper.config import parse_config
from watchkeeper.metrics import WorkerMetrics
from watchkeeper.monitor.columns import unknown_names
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.monitor.stage1_result import Ignored
from watchkeeper.stream.ingest import IgnoredReporter

T0 = 1_767_225_600.0
CONFIG = {
    "models": [
        {
            "model_id": "m",
            "features": {"x": "numeric", "c": "categorical", "gone": "numeric"},
            "reference": {"profile": "unused.json"},
            "window": {"size": "1m"},
            "drift": {"monitor_prediction": False, "sequential": False},
        },
        {
            "model_id": "labelled",
            "features": {"x": "numeric"},
            "reference": {"learn_from_first": 1000},
            "window": {"size": "1m"},
            "classes": ["no", "yes"],
            "accuracy": {"label_horizon": "1h"},
        },
    ]
}


def _runtime() -> MonitorRuntime:
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.build(  # without "gone": configured, not in the profile
        "m", {"x": ("numeric", rng.normal(size=500)), "c": ("categorical", rng.choice(["a", "b"], 500).tolist())}
    )
    return MonitorRuntime(parse_config(CONFIG), profiles={"m": profile})


def _prediction(i: int, model: str = "m", **features: Any) -> bytes:
    event = {"event_id": f"{model}-{i}", "model_id": model, "timestamp": T0 + i, "features": features}
    if model == "labelled":
        event["prediction"] = {"label": "maybe"} if i == 0 else {"label": "yes", "score": 0.9}
    return orjson.dumps(event)


def _by_reason(ignored: list[Ignored]) -> dict[tuple[str, str], Ignored]:
    return {(item.model_id, item.reason): item for item in ignored}


def test_unknown_features_unprofiled_columns_and_invalid_values_are_reported_per_batch() -> None:
    raw = [_prediction(i, x=float(i), c="a", gone=1.0) for i in range(6)]
    raw += [_prediction(6, x="12 kg", c="a", gone=1.0, extra=1), _prediction(7, x="n/a", c="b", gone=2.0, extra=2)]
    raw.append(_prediction(8, x=None, c="b", gone=None, other="z"))  # null: missing, not invalid
    result = _runtime().stage1(raw, ["in:0"] * len(raw), list(range(len(raw))))
    assert result.rejected == []
    assert _by_reason(result.ignored) == {
        ("m", "unknown_feature"): Ignored("m", "unknown_feature", 3, ("extra", "other")),
        ("m", "not_in_profile"): Ignored("m", "not_in_profile", 9, ("gone",)),
        ("m", "invalid"): Ignored("m", "invalid", 2, ("x",)),
    }
    (window,) = result.partials[0]["windows"]
    assert window["invalid"] == {"x": 2}  # and the window counts them apart from the missing one


def test_an_ordinary_batch_reports_nothing() -> None:
    raw = [_prediction(i, x=float(i), c="a", gone=1.0) for i in range(5)]
    runtime = _runtime()
    runtime.profiles["m"] = ReferenceProfile.build(
        "m", {name: ("numeric", np.arange(10.0)) for name in ("x", "gone")} | {"c": ("categorical", ["a", "b"] * 5)}
    )
    assert runtime.stage1(raw, ["in:0"] * 5, list(range(5))).ignored == []


def test_outcome_labels_not_among_the_classes_are_reported() -> None:
    raw = [_prediction(i, "labelled", x=1.0) for i in range(4)]
    outcomes = [
        {"prediction_id": "labelled-0", "label": "yes"},  # its prediction has no class: unusable
        {"prediction_id": "labelled-1", "label": "YES"},  # not one of the classes
        {"prediction_id": "labelled-2", "label": "1"},
        {"prediction_id": "labelled-3", "label": "yes"},  # counted
    ]
    raw += [orjson.dumps({**o, "model_id": "labelled", "timestamp": T0 + 30}) for o in outcomes]
    flags = [False] * 4 + [True] * 4
    result = _runtime().stage1(raw, ["in:0"] * len(raw), list(range(len(raw))), is_outcome=flags)
    assert result.outcomes["joined"] == 4  # (joined: the join is not what drops them)
    ignored = _by_reason(result.ignored)
    assert ignored["labelled", "unknown_label"] == Ignored("labelled", "unknown_label", 2, ("YES", "1"))
    assert ignored["labelled", "unusable_prediction"] == Ignored("labelled", "unusable_prediction", 1, ("maybe",))


def test_unknown_names_compare_key_sets() -> None:
    features = [{"a": 1, "b": 2}, {"a": 1}, {"a": 1, "z": 0, "y": None}, {"z": 1}]
    assert unknown_names(features, frozenset({"a", "b"})) == {"y": 1, "z": 2}
    assert unknown_names(features, frozenset({"a", "b", "y", "z"})) == {}
    assert unknown_names([], frozenset()) == {}


def test_the_worker_counts_every_batch_and_logs_each_reason_once(caplog: pytest.LogCaptureFixture) -> None:
    runtime = _runtime()
    metrics = WorkerMetrics()
    reporter = IgnoredReporter(metrics, runtime.models)
    batch = [
        Ignored("m", "unknown_feature", 3, ("extra",)),
        Ignored("m", "invalid", 2, ("x",)),
        Ignored("m", "not_in_profile", 9, ("gone",)),
        Ignored("labelled", "unknown_label", 2, ("YES", "1")),
        Ignored("labelled", "unusable_prediction", 1, ("maybe",)),
    ]
    with caplog.at_level(logging.WARNING, logger="watchkeeper.worker"):
        reporter.report(batch)
        reporter.report(batch)  # counted again, not logged again
    for item in batch:
        labels = {"model_id": item.model_id, "reason": item.reason}
        assert metrics.registry.get_sample_value("watchkeeper_ignored_total", labels) == 2 * item.count
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == len(batch)
    assert lines[0] == (
        "model 'm': events carry features 'extra' that are not in the models config: ignored; add them to the "
        "model's features to monitor them (3 in this batch; counted in "
        'watchkeeper_ignored_total{reason="unknown_feature"}; logged once)'
    )
    assert "numeric columns 'x' received values that are not numbers (e.g. text): counted as invalid" in lines[1]
    assert "columns 'gone' of the models config are not in its reference profile: not monitored" in lines[2]
    assert "outcome labels 'YES', '1' are not among its classes ['no', 'yes']: left out of accuracy" in lines[3]
    assert "prediction's label ('maybe') is not among its classes ['no', 'yes'] and has no score" in lines[4]
