"""Routes: validation, matching, secrets from env / file, error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.notify.fake import sample_alert
from watchkeeper.notify.routing import NotifyConfig, Receiver, RoutingError, load_routes, parse_routes

EXAMPLE = {
    "receivers": [
        {
            "name": "team-slack",
            "type": "slack",
            "webhook_url_env": "SLACK_WEBHOOK_URL",
            "match": {"models": ["*"], "monitors": ["drift"], "severities": ["warning", "error", "critical"]},
        },
        {
            "name": "oncall",
            "type": "pagerduty",
            "routing_key_env": "PAGERDUTY_ROUTING_KEY",
            "match": {"severities": ["critical", "error"]},
        },
    ]
}


def test_example_routes_match_by_monitor_and_severity() -> None:
    routes = parse_routes(EXAMPLE)
    slack, oncall = routes.receivers
    assert slack.matches(sample_alert(severity="warning"))
    assert not slack.matches(sample_alert(monitor="accuracy"))
    assert not slack.matches(sample_alert(severity="info"))
    assert oncall.matches(sample_alert(severity="critical"))
    assert not oncall.matches(sample_alert(severity="warning"))
    assert [r.name for r in routes.of_type("pagerduty")] == ["oncall"]
    assert slack.interval == 1.0 and oncall.interval == 0.0


def test_model_globs() -> None:
    r = Receiver(name="r", type="slack", webhook_url_env="X", match={"models": ["credit-*"]})
    assert r.matches(sample_alert(model_id="credit-risk"))
    assert not r.matches(sample_alert(model_id="churn"))


def test_errors_name_field_value_and_expectation() -> None:
    bad = {"receivers": [{"name": "x", "type": "slack", "webhook_url_env": "E", "match": {"severities": ["loud"]}}]}
    with pytest.raises(RoutingError) as info:
        parse_routes(bad, source="wk.yaml")
    message = str(info.value)
    assert "wk.yaml: notify.receivers[0].match.severities[0]: 'loud'" in message
    assert "critical" in message  # what was expected


def test_slack_receiver_needs_exactly_one_secret_source() -> None:
    with pytest.raises(RoutingError, match="exactly one of 'webhook_url_env' or 'webhook_url_file'"):
        parse_routes({"receivers": [{"name": "s", "type": "slack"}]})


def test_duplicate_names_rejected() -> None:
    r = {"name": "a", "type": "pagerduty", "routing_key_env": "K"}
    with pytest.raises(RoutingError, match="repeated: \\['a'\\]"):
        parse_routes({"receivers": [r, r]})


def test_secret_from_env_and_file_never_in_repr_or_errors(tmp_path: Path) -> None:
    secret = "https://hooks.slack.com/services/T000/B000/SUPERSECRET"
    r = Receiver(name="s", type="slack", webhook_url_env="HOOK")
    value = r.secret({"HOOK": secret})
    assert value.get_secret_value() == secret
    assert secret not in repr(value) and secret not in str(value)
    with pytest.raises(RoutingError, match="environment variable HOOK is unset") as info:
        r.secret({})
    assert secret not in str(info.value)
    file = tmp_path / "hook"
    file.write_text(secret + "\n")
    from_file = Receiver(name="f", type="slack", webhook_url_file=file).secret({})
    assert from_file.get_secret_value() == secret
    with pytest.raises(RoutingError, match="cannot read secret file"):
        Receiver(name="f", type="slack", webhook_url_file=tmp_path / "missing").secret({})


def test_load_from_models_yaml_or_routes_file(tmp_path: Path) -> None:
    models = tmp_path / "watchkeeper.yaml"
    models.write_text("models: []\nnotify:\n  receivers:\n    - {name: oncall, type: pagerduty, routing_key_env: PD}\n")
    assert [r.name for r in load_routes(models).receivers] == ["oncall"]
    only = tmp_path / "routes.yaml"
    only.write_text("receivers:\n  - {name: am, type: alertmanager, endpoint: 'http://am:9093'}\n")
    assert load_routes(only).receivers[0].endpoint == "http://am:9093"
    no_notify = tmp_path / "plain.yaml"
    no_notify.write_text("models: []\n")
    assert load_routes(no_notify) == NotifyConfig()
    with pytest.raises(RoutingError, match="cannot read routes"):
        load_routes(tmp_path / "absent.yaml")
