"""Payload shapes: Slack Block Kit (firing vs resolved), PagerDuty v2, Alertmanager v2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watchkeeper.notify.fake import sample_alert, sample_event
from watchkeeper.notify.payloads import alertmanager_alert, pagerduty_event, slack_message


def _texts(message: dict) -> str:
    return repr(message["blocks"])


def test_slack_firing_block_kit() -> None:
    event = sample_event(sample_alert(severity="critical"))
    message = slack_message(event.data, event.id)
    assert message["text"].startswith("🔴 FIRING [critical] credit-risk")
    types = [b["type"] for b in message["blocks"]]
    assert types == ["header", "section", "section", "section", "actions", "context"]
    header = message["blocks"][0]["text"]
    assert header["type"] == "plain_text" and "🔴 FIRING" in header["text"]
    fields = [f["text"] for f in message["blocks"][2]["fields"]]
    assert "*Severity*\ncritical" in fields
    assert any("0.312 &gt; 0.2" in f and "95% CI" in f for f in fields)  # observed vs threshold, escaped
    assert any("n=4812" in f for f in fields)  # the window
    buttons = message["blocks"][4]["elements"]
    assert [b["text"]["text"] for b in buttons] == ["dashboard", "runbook"]
    assert buttons[0]["url"].startswith("https://grafana")
    assert event.id in _texts(message)
    assert "<https://grafana.example.com" in message["text"]  # markdown links in the fallback


def test_slack_resolved_looks_different() -> None:
    event = sample_event(sample_alert(status="resolved", window_end=datetime(2025, 3, 14, 13, tzinfo=UTC)))
    message = slack_message(event.data, event.id)
    assert message["text"].startswith("✅ RESOLVED")
    assert "✅ RESOLVED" in message["blocks"][0]["text"]["text"]
    fields = [f["text"] for f in message["blocks"][2]["fields"]]
    assert any(f.startswith("*Fired*") and "2025-03-14T13:00:00Z" in f for f in fields)
    assert not any(b.get("style") == "danger" for b in message["blocks"][3].get("elements", []))
    assert "Observed vs threshold" not in _texts(message)


def test_slack_limits_and_unsafe_links() -> None:
    alert = sample_alert(summary="x" * 5000, subject="s" * 300, links={"evil": "javascript:alert(1)"})
    message = slack_message(alert, "id")
    assert len(message["blocks"][0]["text"]["text"]) <= 150
    assert len(message["blocks"][1]["text"]["text"]) <= 3000
    assert len(message["text"]) <= 3000
    assert "actions" not in [b["type"] for b in message["blocks"]]


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
def test_pagerduty_trigger(severity: str) -> None:
    event = sample_event(sample_alert(severity=severity))
    body = pagerduty_event(event, "R0UTINGKEY")
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == event.data.fingerprint
    assert body["routing_key"] == "R0UTINGKEY"
    payload = body["payload"]
    assert payload["severity"] == severity
    assert payload["component"] == "credit-risk" and payload["group"] == "drift" and payload["class"] == "psi"
    assert payload["source"] == "watchkeeper/test"
    assert payload["timestamp"] == "2025-03-14T12:05:00Z"
    assert payload["custom_details"]["observed"] == 0.312
    assert payload["custom_details"]["cloudevent_id"] == event.id
    assert body["links"][0] == {"href": event.data.links["dashboard"], "text": "dashboard"}
    assert body["client"] == "watchkeeper" and body["client_url"].startswith("https://")


def test_pagerduty_summary_clipped_to_1024() -> None:
    body = pagerduty_event(sample_event(sample_alert(summary="y" * 3000)), "k")
    assert len(body["payload"]["summary"]) == 1024


def test_pagerduty_resolve_is_minimal() -> None:
    event = sample_event(sample_alert(status="resolved"))
    assert pagerduty_event(event, "k") == {
        "routing_key": "k",
        "event_action": "resolve",
        "dedup_key": event.data.fingerprint,
    }


def test_alertmanager_alert() -> None:
    now = datetime(2025, 3, 14, 12, 10, tzinfo=UTC)
    firing = alertmanager_alert(sample_alert(), now, resend_interval=60)
    assert firing["labels"] == {
        "alertname": "watchkeeper_drift",
        "model_id": "credit-risk",
        "monitor": "drift",
        "metric": "psi",
        "subject": "income",
        "severity": "warning",
        "fingerprint": "fp-credit-risk-income",
    }
    assert firing["endsAt"] == (now + timedelta(minutes=4)).isoformat().replace("+00:00", "Z")
    assert firing["annotations"]["threshold"] == "> 0.2"
    assert firing["generatorURL"].startswith("https://grafana")
    resolved_at = datetime(2025, 3, 14, 12, 7, tzinfo=UTC)
    resolved = alertmanager_alert(sample_alert(status="resolved", window_end=resolved_at), now, 60)
    assert resolved["endsAt"] == "2025-03-14T12:07:00Z"
