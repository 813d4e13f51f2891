"""Configuration errors name the field, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchkeeper.config import ConfigError, Settings, format_duration, load_config, parse_config, parse_duration


@given(st.integers(1, 10**6), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800)]))
def test_durations_in_every_unit(amount: int, unit: tuple[str, int]) -> None:
    assert parse_duration(f"{amount}{unit[0]}") == amount * unit[1]


@given(st.integers(1, 10**10))
def test_a_formatted_duration_reads_back_as_itself(milliseconds: int) -> None:
    seconds = milliseconds / 1000  # a duration a user writes (to the millisecond)
    assert parse_duration(format_duration(seconds)) == seconds


def test_durations_are_formatted_in_their_largest_whole_unit() -> None:
    written = [format_duration(s) for s in (0.0, 0.25, 1.5, 90.0, 3600.0, 2592000.0, 1209600.0)]
    assert written == ["0s", "250ms", "1.5s", "90s", "1h", "30d", "2w"]


def test_short_feature_form_and_defaults() -> None:
    config = parse_config(
        {"models": [{"model_id": "m", "features": {"a": "numeric", "b": {"type": "categorical", "max_categories": 5}}}]}
    )
    model = config.models[0]
    assert [(f.name, f.type, f.max_categories) for f in model.features] == [
        ("a", "numeric", 50),
        ("b", "categorical", 5),
    ]
    assert model.window.size == 60.0 and model.drift.alpha == 0.01 and model.drift.min_psi == 0.1


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"model_id": "m", "features": {"a": "numeric"}, "window": {"size": "10 parsecs"}},
            "models[0].window.size: '10 parsecs': Value error, '10 parsecs' is not a duration; expected e.g. 30s, 5m",
        ),
        (
            {"model_id": "m", "features": {"a": "numerc"}},
            "models[0].features[0].type: 'numerc': Input should be 'numeric' or 'categorical'",
        ),
        (
            {"model_id": "m", "features": {"a": "numeric"}, "drift": {"alpha": 2}},
            "models[0].drift.alpha: 2: Input should be less than 1",
        ),
        (
            {"model_id": "m", "features": {"a": "numeric"}, "drfit": {}},
            "models[0].drfit: dict: Extra inputs are not permitted",
        ),
    ],
)
def test_errors_name_field_value_and_expectation(model: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config({"models": [model]}, source="models.yaml")
    assert f"models.yaml: {message}" in str(error.value)


def test_repeated_model_ids_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"model_id must be unique; repeated: \['m'\]"):
        parse_config({"models": [{"model_id": "m", "features": {"a": "numeric"}}] * 2})


def test_relative_profile_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        "models:\n- model_id: m\n  features: {a: numeric}\n  reference: {profile: profiles/m.json}\n"
    )
    config = load_config(tmp_path / "models.yaml")
    assert config.models[0].reference.profile == tmp_path / "profiles" / "m.json"


def test_worker_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHKEEPER_BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("WATCHKEEPER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("WATCHKEEPER_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("WATCHKEEPER_SASL_USERNAME", "svc")
    monkeypatch.setenv("WATCHKEEPER_SASL_PASSWORD", "s3cret")
    settings = Settings()
    assert settings.kafka_client_config()["sasl.password"] == "s3cret"
    assert "s3cret" not in repr(settings)
