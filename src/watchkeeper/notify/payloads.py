"""Pure payload builders: Slack Block Kit, PagerDuty Events API v2, Alertmanager API v2.

No I/O here; the notifiers serialize these dicts and POST them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from watchkeeper.events import Alert, CloudEvent

__all__ = ["alertmanager_alert", "pagerduty_event", "slack_message"]

_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_SLACK_BUTTON_MAX = 75
_PD_SUMMARY_MAX = 1024


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    """Escape the three characters Slack mrkdwn reserves."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _web_links(alert: Alert) -> list[tuple[str, str]]:
    return [(t, u) for t, u in alert.links.items() if u.startswith(("https://", "http://"))]


def _comparison(alert: Alert) -> str:
    text = f"{_num(alert.observed)} {alert.comparator} {_num(alert.threshold)}"
    ci = alert.confidence_interval
    if ci is not None:
        text += f" ({ci.level:.0%} CI {_num(ci.low)} – {_num(ci.high)})"
    return text


def _window(alert: Alert) -> str:
    w = alert.window
    return f"{_ts(w.start)} → {_ts(w.end)} (n={w.n})"


def slack_message(alert: Alert, event_id: str) -> dict[str, Any]:
    """A Block Kit message with a fallback ``text``; firing and resolved look different."""
    firing = alert.status == "firing"
    mark = ("🔁 STILL FIRING" if alert.details.get("repeat") else "🔴 FIRING") if firing else "✅ RESOLVED"
    subject = "" if alert.subject == "*" else f" ({alert.subject})"
    title = f"{mark} [{alert.severity}] {alert.model_id}: {alert.monitor} {alert.metric}{subject}"
    fields = [
        f"*Severity*\n{alert.severity}",
        f"*Model*\n`{alert.model_id}` v{alert.model_version}",
        f"*Monitor / metric*\n{alert.monitor} / {alert.metric}",
        f"*Subject*\n{alert.subject}",
    ]
    if firing:
        fields += [f"*Observed vs threshold*\n{_comparison(alert)}", f"*Window*\n{_window(alert)}"]
    else:
        ended = _ts(alert.ends_at) if alert.ends_at else _ts(alert.window.end)
        fields += [
            f"*Now*\n{_num(alert.observed)} (threshold {alert.comparator} {_num(alert.threshold)})",
            f"*Fired*\n{_ts(alert.starts_at)} → {ended}",
        ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, _SLACK_HEADER_MAX), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_esc(alert.summary), _SLACK_TEXT_MAX)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _esc(f)} for f in fields]},
    ]
    if firing and alert.description:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _clip(_esc(alert.description), _SLACK_TEXT_MAX)},
            }
        )
    links = _web_links(alert)
    if links:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": _clip(text, _SLACK_BUTTON_MAX)},
                        "url": url,
                        **({"style": "danger"} if firing and i == 0 else {}),
                    }
                    for i, (text, url) in enumerate(links[:5])
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"fingerprint `{alert.fingerprint}` · event `{event_id}`"}],
        }
    )
    text = _esc(f"{title}: {alert.summary}")
    if links:
        text += " | " + " ".join(f"<{url}|{name}>" for name, url in links[:5])
    return {"text": _clip(text, _SLACK_TEXT_MAX), "blocks": blocks}


def pagerduty_event(event: CloudEvent[Alert], routing_key: str, client_url: str | None = None) -> dict[str, Any]:
    """An Events API v2 ``trigger`` (firing) or ``resolve`` (resolved), deduplicated by fingerprint."""
    alert = event.data
    if alert.status == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.fingerprint}
    details: dict[str, Any] = {
        "observed": alert.observed,
        "threshold": alert.threshold,
        "comparator": alert.comparator,
        "subject": alert.subject,
        "model_version": alert.model_version,
        "window": {"start": _ts(alert.window.start), "end": _ts(alert.window.end), "n": alert.window.n},
        "description": alert.description,
        "cloudevent_id": event.id,
    }
    if alert.confidence_interval is not None:
        details["confidence_interval"] = alert.confidence_interval.model_dump()
    if alert.details:
        details["details"] = alert.details
    links = _web_links(alert)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": _clip(alert.summary or f"{alert.model_id} {alert.metric}", _PD_SUMMARY_MAX),
            "source": event.source,
            "severity": alert.severity,
            "timestamp": _ts(alert.starts_at),
            "component": alert.model_id,
            "group": alert.monitor,
            "class": alert.metric,
            "custom_details": details,
        },
        "links": [{"href": url, "text": text} for text, url in links],
        "client": "watchkeeper",
    }
    url = client_url or (links[0][1] if links else None)
    if url:
        body["client_url"] = url
    return body


def alertmanager_alert(alert: Alert, now: datetime, resend_interval: float) -> dict[str, Any]:
    """One Alertmanager v2 alert; firing ones expire after 4 resend intervals unless re-sent."""
    expires = now + timedelta(seconds=4 * resend_interval)
    ends = (alert.ends_at or now) if alert.status == "resolved" else expires
    links = _web_links(alert)
    result: dict[str, Any] = {
        "labels": {
            "alertname": f"watchkeeper_{alert.monitor}",
            "model_id": alert.model_id,
            "monitor": alert.monitor,
            "metric": alert.metric,
            "subject": alert.subject,
            "severity": alert.severity,
            "fingerprint": alert.fingerprint,
        },
        "annotations": {
            "summary": alert.summary,
            "description": alert.description,
            "observed": _num(alert.observed),
            "threshold": f"{alert.comparator} {_num(alert.threshold)}",
        },
        "startsAt": _ts(alert.starts_at),
        "endsAt": _ts(ends),
    }
    if links:
        result["generatorURL"] = links[0][1]
    return result
