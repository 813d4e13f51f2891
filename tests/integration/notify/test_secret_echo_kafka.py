"""Each notifier through the real broker against a receiver echoing its secrets: none in any output."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Message
from pydantic import SecretStr

from watchkeeper.config import Settings
from watchkeeper.logs import setup_logging
from watchkeeper.notify.alertmanager import AlertmanagerNotifier
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.fake import FakeReceiver, hostile_echo, sample_alert, sample_event
from watchkeeper.notify.receivers import PagerDutyNotifier, SlackNotifier
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import Notifier, NotifyRunner

SLACK_TOKEN = "KafkaEchoedWebhookToken7"
SLACK_PATH = f"/services/T0KAFKA001/B0KAFKA002/{SLACK_TOKEN}"
ROUTING_KEY = "R0UT1NGKEYkafkaECHO0000000000007"
BEARER = "eyJhbGciOiJIUzI1NiJ9.KafkaEchoedBearer"
SECRETS = (SLACK_PATH, SLACK_TOKEN, ROUTING_KEY, BEARER)


def _slack(url: str, delivery: Delivery) -> Notifier:
    receiver = Receiver(name="team", type="slack", webhook_url_env="X", min_interval=0)
    return SlackNotifier([receiver], {"team": SecretStr(f"{url}{SLACK_PATH}")}, delivery)


def _pagerduty(url: str, delivery: Delivery) -> Notifier:
    receiver = Receiver(name="oncall", type="pagerduty", routing_key_env="K")
    return PagerDutyNotifier([receiver], {"oncall": SecretStr(ROUTING_KEY)}, delivery, endpoint=url)


def _alertmanager(url: str, delivery: Delivery) -> Notifier:
    receiver = Receiver(name="am", type="alertmanager", endpoint=url)
    return AlertmanagerNotifier([receiver], delivery)


@pytest.fixture
def watchkeeper_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("watchkeeper")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize("build", [_slack, _pagerduty, _alertmanager], ids=["slack", "pagerduty", "alertmanager"])
def test_runner_keeps_echoed_secrets_out_of_logs_and_deadletters(
    build: Callable[[str, Delivery], Notifier],
    settings: Settings,
    produce: Callable[..., None],
    read_all: Callable[..., list[Message]],
    watchkeeper_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("DEBUG", "json")
    produce(settings, [sample_event(sample_alert(fingerprint=f"fp-echo-{i}", severity="critical")) for i in range(2)])
    stop = threading.Event()
    delivery = Delivery(RetryPolicy(base=0.001, cap=0.001, max_attempts=3), stop=stop)
    echoing = hostile_echo((500, 429, 0, 503, 400), f"Authorization: Bearer {BEARER}")
    with FakeReceiver("generic", responder=echoing) as echo:
        group = f"g-echo-{uuid.uuid4().hex[:6]}"
        runner = NotifyRunner(settings, build(echo.url, delivery), group, max_messages=2, from_beginning=True)
        watchdog = threading.Timer(40, stop.set)
        watchdog.start()
        try:
            stats = runner.run()
        finally:
            watchdog.cancel()
    assert stats.processed == 2 and stats.deadlettered == 2
    dead = read_all(settings, settings.topic_deadletter, expected=2)
    headers = [dict(m.headers() or []) for m in dead]
    assert sorted(h["reason"].decode().split(":")[0] for h in headers) == ["rejected", "retries-exhausted"]
    captured = capsys.readouterr()
    everything = "\n".join(
        [captured.err, captured.out, *(f"{k}={v.decode()}" for h in headers for k, v in h.items() if v is not None)]
    )
    assert '"message":"deadlettered"' in captured.err and "***" in everything
    assert [secret for secret in SECRETS if secret in everything] == []
