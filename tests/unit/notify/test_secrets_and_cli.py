"""Secrets never reach logs, errors or repr; structured log lines; the Typer commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from watchkeeper.logs import LogFormatter
from watchkeeper.notify.cli import notify_app
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.fake import FakeReceiver, Reply, sample_event, slack_error
from watchkeeper.notify.receivers import PagerDutyNotifier, SlackNotifier
from watchkeeper.notify.routing import Receiver

HOOK_SECRET = "T0AAA/B0BBB/XyZsEcReTtOkEn"
PD_KEY = "R0UTINGKEYs3cr3t0000000000000000"


def test_secrets_never_in_logs_results_or_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="watchkeeper")
    policy = RetryPolicy(base=0.01, cap=0.01, max_attempts=2)
    with FakeReceiver("slack") as slack, FakeReceiver("pagerduty") as pd:
        slack.script(slack_error(500, "rollup_error"), slack_error(403, "invalid_token"))
        # a hostile/buggy endpoint echoing the routing key back must not leak it either
        pd.script(Reply(400, json.dumps({"status": "invalid event", "errors": [f"bad key {PD_KEY}"]})))
        hook = SecretStr(f"{slack.url}/services/{HOOK_SECRET}")
        slack_n = SlackNotifier(
            [Receiver(name="team", type="slack", webhook_url_env="X", min_interval=0)],
            {"team": hook},
            Delivery(policy),
        )
        pd_n = PagerDutyNotifier(
            [Receiver(name="oncall", type="pagerduty", routing_key_env="K")],
            {"oncall": SecretStr(PD_KEY)},
            Delivery(policy),
            endpoint=pd.url,
        )
        results = slack_n.handle(sample_event()) + pd_n.handle(sample_event())
    gone = SlackNotifier(
        [Receiver(name="gone", type="slack", webhook_url_env="X", min_interval=0)],
        {"gone": SecretStr(f"http://127.0.0.1:9/{HOOK_SECRET}")},
        Delivery(policy),
    )
    results += gone.handle(sample_event())
    assert [r.outcome for _, r in results] == ["rejected", "rejected", "exhausted"]
    rendered = [LogFormatter("json").format(r) for r in caplog.records]
    everything = "\n".join([caplog.text, *rendered, repr(results), repr(slack_n.__dict__), repr(pd_n.__dict__)])
    assert "rejected" in everything and "retry" in everything
    for secret in (HOOK_SECRET, PD_KEY):
        assert secret not in everything
    assert "***" in results[1][1].body


def test_log_lines_are_structured() -> None:
    record = logging.LogRecord("watchkeeper.notify", logging.INFO, __file__, 1, "delivered", None, None)
    record.__dict__.update({"receiver": "team", "status": 200, "summary": "a b"})  # (as extra= sets them)
    line = LogFormatter("text").format(record)
    assert line.endswith(' INFO watchkeeper.notify delivered receiver=team status=200 summary="a b"')
    parsed = json.loads(LogFormatter("json").format(record))
    assert (parsed["message"], parsed["level"], parsed["receiver"], parsed["status"]) == (
        "delivered",
        "info",
        "team",
        200,
    )


def test_cli_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(notify_app, ["slack"])
    assert result.exit_code == 2
    assert "environment variable SLACK_WEBHOOK_URL is unset or empty" in result.output


def test_cli_bad_routes_name_field_and_value(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("receivers:\n  - {name: x, type: sms, webhook_url_env: X}\n")
    result = CliRunner().invoke(notify_app, ["pagerduty", "--routes", str(routes)])
    assert result.exit_code == 2
    assert "notify.receivers[0].type: 'sms'" in result.output


def test_cli_routes_without_receiver_of_the_type(tmp_path: Path) -> None:
    config = tmp_path / "wk.yaml"
    config.write_text("models: []\nnotify:\n  receivers:\n    - {name: am, type: alertmanager, endpoint: 'http://x'}\n")
    result = CliRunner().invoke(notify_app, ["slack", "--config", str(config)])
    assert result.exit_code == 2
    assert "expected at least one receiver of type 'slack'" in result.output


def test_cli_rejects_non_http_webhook_without_echoing_it(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.write_text(f"hooks.slack.com/{HOOK_SECRET}")
    result = CliRunner().invoke(notify_app, ["slack", "--webhook-url-file", str(hook)])
    assert result.exit_code == 2
    assert "must start with https://" in result.output and HOOK_SECRET not in result.output
