"""The worker says, per model, what it monitors and against what (one line at the default level)."""

from __future__ import annotations

from watchkeeper.config import parse_config
from watchkeeper.stream.app import describe_model


def test_a_learning_model_with_labels_and_a_sensitive_attribute() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "model_id": "loan",
                    "features": {"income": "numeric", "region": "categorical"},
                    "reference": {"learn_from_first": 10000},
                    "window": {"size": "1h", "allowed_lateness": "1m"},
                    "accuracy": {"label_horizon": "7h"},
                    "sensitive_attributes": ["group"],
                }
            ]
        }
    )
    assert describe_model(config.models[0]) == (
        "model loan (binary): 2 features, reference learned from the first 10000 events, "
        "windows of 1h (lateness 1m), monitors: drift, CUSUM, data quality, accuracy, fairness"
    )


def test_a_profiled_model_without_labels_or_cusum() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"x": "numeric"},
                    "reference": {"profile": "m.profile.json"},
                    "drift": {"sequential": False},
                }
            ]
        }
    )
    line = describe_model(config.models[0])
    assert line.startswith("model m (binary): 1 features, reference profile m.profile.json, windows of 1m")
    assert line.endswith("monitors: drift, data quality")
