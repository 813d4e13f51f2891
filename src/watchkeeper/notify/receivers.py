"""Slack (incoming webhook) and PagerDuty (Events API v2) notifiers."""

from __future__ import annotations

import orjson
from pydantic import SecretStr

from watchkeeper.events import Alert, CloudEvent
from watchkeeper.notify.delivery import Delivery, HttpResponse
from watchkeeper.notify.payloads import pagerduty_event, slack_message
from watchkeeper.notify.routing import Receiver, RoutingError
from watchkeeper.notify.runner import Notifier

__all__ = ["DEFAULT_PAGERDUTY_URL", "PagerDutyNotifier", "SlackNotifier"]

DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com"


def _check_url(receiver: str, url: SecretStr, what: str) -> None:
    if not url.get_secret_value().startswith(("https://", "http://")):
        raise RoutingError(f"receiver {receiver!r}: the {what} must start with https:// or http://")


class SlackNotifier(Notifier):
    """Posts Block Kit messages to Slack incoming webhooks (one message per second per webhook)."""

    kind = "slack"

    def __init__(
        self,
        receivers: list[Receiver],
        secrets: dict[str, SecretStr],
        delivery: Delivery,
        timeout: float = 10.0,
    ) -> None:
        for name, url in secrets.items():
            _check_url(name, url, "webhook URL")
        super().__init__(receivers, secrets, delivery, timeout)

    def send(self, receiver: Receiver, event: CloudEvent[Alert]) -> HttpResponse:
        url: SecretStr = self.targets[receiver.name]
        body = orjson.dumps(slack_message(event.data, event.id))
        return self.http.post_json(url, body)


class PagerDutyNotifier(Notifier):
    """Sends Events API v2 trigger/resolve events with ``dedup_key`` = alert fingerprint."""

    kind = "pagerduty"

    def __init__(
        self,
        receivers: list[Receiver],
        secrets: dict[str, SecretStr],
        delivery: Delivery,
        endpoint: str = DEFAULT_PAGERDUTY_URL,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(receivers, secrets, delivery, timeout)
        self.endpoint = endpoint

    def url(self, receiver: Receiver) -> str:
        return (receiver.endpoint or self.endpoint).rstrip("/") + "/v2/enqueue"

    def send(self, receiver: Receiver, event: CloudEvent[Alert]) -> HttpResponse:
        key: SecretStr = self.targets[receiver.name]
        body = orjson.dumps(pagerduty_event(event, key.get_secret_value()))
        return self.http.post_json(self.url(receiver), body, secrets=[key])
