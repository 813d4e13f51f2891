"""Every notifier at DEBUG against a receiver that echoes the secrets back: no secret in any output.

The receiver (:func:`hostile_echo`) answers 500, 429, a malformed status line, 503 and 400,
each echoing the full URL, path, query and body in the body, reason phrase and headers, and
quoting an Authorization header and the SASL password. Everything the notifier produces is
captured: the log handler's output (stderr), the log records, the delivery results (error
texts) and the dead-letter records with their headers, and the HTTP libraries' own log
records at DEBUG (httpx logs every request URL, httpcore every answer's status line and headers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Message
from pydantic import SecretStr

from watchkeeper.config import Settings
from watchkeeper.logs import LogFormatter, setup_logging
from watchkeeper.notify.alertmanager import AlertmanagerNotifier
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.fake import FakeReceiver, hostile_echo, sample_alert, sample_event
from watchkeeper.notify.receivers import PagerDutyNotifier, SlackNotifier
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import Notifier, NotifyRunner
from watchkeeper.redact import MASK

SLACK_TOKEN = "EchoedWebhookToken0042"
SLACK_PATH = f"/services/T0ECHO0001/B0ECHO0002/{SLACK_TOKEN}"
SLACK_QUERY_SECRET = "QueryS1gnatureEchoed"
ROUTING_KEY = "R0UT1NGKEYechoedBACK000000000042"
SASL_PASSWORD = "Sasl-Pa55word-Echoed"
BEARER = "eyJhbGciOiJIUzI1NiJ9.EchoedBearerToken"
SECRETS = (
    SLACK_PATH,
    "T0ECHO0001/B0ECHO0002/" + SLACK_TOKEN,
    SLACK_TOKEN,
    SLACK_QUERY_SECRET,
    ROUTING_KEY,
    SASL_PASSWORD,
    BEARER,
)
QUOTED = (f"Authorization: Bearer {BEARER}", f"sasl.password={SASL_PASSWORD}", f"upstream said {SASL_PASSWORD}")
STATUSES = (500, 429, 0, 503, 400)  # event 1: exhausted after 3 attempts; event 2: 503 then rejected
POLICY = RetryPolicy(base=0.001, cap=0.001, max_attempts=3)


def _slack(url: str) -> Notifier:
    hook = SecretStr(f"{url}{SLACK_PATH}?sig={SLACK_QUERY_SECRET}")
    receiver = Receiver(name="team", type="slack", webhook_url_env="X", min_interval=0)
    return SlackNotifier([receiver], {"team": hook}, Delivery(POLICY))


def _pagerduty(url: str) -> Notifier:
    receiver = Receiver(name="oncall", type="pagerduty", routing_key_env="K")
    return PagerDutyNotifier([receiver], {"oncall": SecretStr(ROUTING_KEY)}, Delivery(POLICY), endpoint=url)


def _alertmanager(url: str) -> Notifier:
    receiver = Receiver(name="am", type="alertmanager", endpoint=f"{url}/am")
    return AlertmanagerNotifier([receiver], Delivery(POLICY))


@pytest.fixture
def watchkeeper_logger() -> Iterator[logging.Logger]:
    """The ``watchkeeper`` logger, restored after the test changed its set-up."""
    logger = logging.getLogger("watchkeeper")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize("build", [_slack, _pagerduty, _alertmanager], ids=["slack", "pagerduty", "alertmanager"])
def test_no_secret_in_logs_errors_or_deadletters(
    build: Callable[[str], Notifier],
    watchkeeper_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    kafka_message: Callable[[bytes, int], Message],
    recording_producer: Any,
) -> None:
    setup_logging("DEBUG", "json")  # the notifier CLI's logging; its handler writes to the captured stderr
    watchkeeper_logger.addHandler(caplog.handler)  # after the CLI's handler: sees records as that leaves them
    caplog.set_level(logging.DEBUG)  # and every other logger's records (httpx, httpcore) through the root
    settings = Settings(
        security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="wk", sasl_password=SASL_PASSWORD
    )
    producer = recording_producer
    events = [sample_event(sample_alert(fingerprint=f"fp-echo-{i}", severity="critical")) for i in range(2)]
    with FakeReceiver("generic", responder=hostile_echo(STATUSES, *QUOTED)) as echo:
        notifier = build(echo.url)
        runner = NotifyRunner(settings, notifier, "g-echo")  # hands the SASL password to the (unused) clients
        results = [notifier.handle(event) for event in events[:1]]
        for offset, event in enumerate(events[1:], start=1):
            runner._process(kafka_message(event.model_dump_json().encode(), offset), producer)
        requests = echo.requests

    assert len(requests) == 5  # every scripted answer was given
    [[(_, exhausted)]] = results
    assert exhausted.outcome == "exhausted" and exhausted.error.startswith("RemoteProtocolError: ")
    assert MASK in exhausted.error  # the malformed status line quoted the credentials
    assert [r["headers"][0][1] for r in producer.records] == [b"rejected: HTTP 400"]
    logs = [LogFormatter("json").format(record) for record in caplog.records]
    captured = capsys.readouterr()
    everything = "\n".join(
        [
            captured.err,
            captured.out,
            caplog.text,
            *logs,
            repr(results),
            repr(producer.records),
            *(value.decode() for record in producer.records for _, value in record["headers"]),
        ]
    )
    assert '"message":"retry"' in captured.err and '"message":"deadlettered"' in captured.err
    assert {"httpx", "httpcore.http11"} <= {record.name for record in caplog.records}
    leaks = [secret for secret in SECRETS if secret in everything]
    assert leaks == []
