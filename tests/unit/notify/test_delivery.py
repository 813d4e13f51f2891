"""Retries, Retry-After, rate limit, rejections, timeouts and connection reuse against a local fake
Slack / PagerDuty answering as their documentation says."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Message
from pydantic import SecretStr
from tenacity import RetryCallState, Retrying

from watchkeeper.config import Settings
from watchkeeper.notify.delivery import (
    Delivery,
    HttpClient,
    RateLimiter,
    RetryPolicy,
    TransportError,
    parse_retry_after,
)
from watchkeeper.notify.fake import (
    SLACK_OK,
    FakeReceiver,
    Reply,
    pagerduty_invalid,
    rate_limited,
    sample_alert,
    sample_event,
    slack_error,
)
from watchkeeper.notify.receivers import PagerDutyNotifier, SlackNotifier
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import Aborted, NotifyRunner

FAST = RetryPolicy(base=0.05, cap=0.2, max_attempts=5, max_elapsed=10)
SECRET_PATH = "/services/T0/B0/SECRET"


class RecordingStop(threading.Event):
    """A stop event that records every wait (the backoff and Retry-After sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(timeout)


def slack_notifier(
    url: str, policy: RetryPolicy = FAST, interval: float = 0.0, timeout: float = 10.0
) -> tuple[SlackNotifier, RecordingStop]:
    stop = RecordingStop()
    receiver = Receiver(name="team", type="slack", webhook_url_env="X", min_interval=interval)
    delivery = Delivery(policy=policy, stop=stop)
    hook = SecretStr(url + SECRET_PATH)
    return SlackNotifier([receiver], {"team": hook}, delivery, timeout=timeout), stop


def pagerduty_notifier(url: str, policy: RetryPolicy = FAST) -> tuple[PagerDutyNotifier, RecordingStop]:
    stop = RecordingStop()
    receiver = Receiver(name="oncall", type="pagerduty", routing_key_env="K")
    notifier = PagerDutyNotifier([receiver], {"oncall": SecretStr("k" * 32)}, Delivery(policy, stop=stop), endpoint=url)
    return notifier, stop


def _state(attempt: int) -> RetryCallState:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    return state


# --- the policy ---------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    backoff = RetryPolicy(base=1.0, cap=8.0).backoff()
    samples = {n: [backoff(_state(n)) for _ in range(300)] for n in (1, 2, 3, 4, 6)}
    assert max(samples[1]) <= 1.0 and max(samples[2]) <= 2.0 and max(samples[3]) <= 4.0
    assert max(samples[6]) <= 8.0 and max(samples[6]) > 6.0  # capped, but uses the whole range
    assert min(samples[4]) < 1.0  # full jitter: can be close to zero


@pytest.mark.parametrize(
    ("field", "value"), [("base", -1.0), ("cap", float("nan")), ("max_attempts", 0), ("max_elapsed", -5.0)]
)
def test_policy_rejects_bad_values_naming_them(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{field}: {value!r}: expected a number >= "):
        RetryPolicy(**{field: value})


NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("0", 0.0),
        ("Fri, 14 Mar 2025 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Friday, 14-Mar-25 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Fri Mar 14 12:00:07 2025", 7.0),  # obsolete asctime form (no zone: GMT)
        ("Fri, 14 Mar 2025 11:59:00 GMT", 0.0),  # in the past: at once
        (None, None),
        ("", None),
        ("-3", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Fri, 14 Mar 2025", None),
    ],
)
def test_parse_retry_after_both_forms(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


# --- the documented answers, through a notifier -----------------------------------------


def test_5xx_retried_with_backoff_then_delivered() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"), slack_error(503, "unavailable"), SLACK_OK)
        notifier, stop = slack_notifier(slack.url)
        assert notifier.handle(sample_event()) == []
        assert len(slack.requests) == 3
        assert slack.requests[0].path == SECRET_PATH
        assert len(stop.waits) == 2 and all(0 <= w <= 0.2 for w in stop.waits)


def test_429_honours_retry_after_seconds() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(rate_limited(retry_after=1), SLACK_OK)
        notifier, stop = slack_notifier(slack.url)
        assert notifier.handle(sample_event()) == []
        first, second = slack.requests
        assert second.at - first.at >= 0.95
        assert stop.waits == [1.0]


def test_429_honours_retry_after_http_date() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(rate_limited(retry_after=datetime.now(UTC) + timedelta(seconds=2)), SLACK_OK)
        notifier, stop = slack_notifier(slack.url)
        assert notifier.handle(sample_event()) == []
        first, second = slack.requests
        [wait] = stop.waits
        assert 0.9 <= wait <= 2.0  # the date has whole seconds: now + 2 s truncated
        assert second.at - first.at >= wait - 0.01


def test_503_with_retry_after_waits_that_long_not_the_backoff() -> None:
    with FakeReceiver("pagerduty") as pd:
        past = datetime.now(UTC) - timedelta(minutes=1)
        pd.script(rate_limited(0.7, "unavailable", status=503), rate_limited(past, "unavailable", status=503))
        notifier, stop = pagerduty_notifier(pd.url)
        assert notifier.handle(sample_event()) == []
        assert len(pd.requests) == 3
        assert stop.waits == [0.7, 0.0]  # an HTTP-date in the past: retry at once


def test_retry_after_beyond_max_elapsed_is_exhausted_at_once() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(rate_limited(retry_after=120))
        notifier, stop = slack_notifier(slack.url, RetryPolicy(base=0.01, cap=0.01, max_attempts=5, max_elapsed=60))
        [(_, result)] = notifier.handle(sample_event())
        assert (result.outcome, result.attempts, result.status) == ("exhausted", 1, 429)
        assert result.reason == "retries-exhausted: 1 attempts, last HTTP 429"
        assert stop.waits == [] and len(slack.requests) == 1


def test_retry_after_counts_against_max_attempts() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(*[rate_limited(retry_after=0)] * 3)
        notifier, stop = slack_notifier(slack.url, RetryPolicy(base=5, cap=5, max_attempts=3))
        [(_, result)] = notifier.handle(sample_event())
        assert (result.outcome, result.attempts) == ("exhausted", 3)
        assert stop.waits == [0.0, 0.0]  # Retry-After: 0, never the 5 s backoff


def test_429_without_retry_after_backs_off() -> None:
    with FakeReceiver("pagerduty") as pd:
        pd.script(rate_limited(None))
        notifier, stop = pagerduty_notifier(pd.url)
        assert notifier.handle(sample_event()) == []
        assert len(pd.requests) == 2 and pd.requests[1].path == "/v2/enqueue"
        assert 0 <= stop.waits[0] <= FAST.base


def test_rate_limit_one_message_per_second_per_webhook() -> None:
    with FakeReceiver("slack") as slack:
        notifier, _ = slack_notifier(slack.url, interval=1.0)
        for i in range(3):
            notifier.handle(sample_event(sample_alert(fingerprint=f"fp{i}")))
        times = [r.at for r in slack.requests]
        assert len(times) == 3
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times))


def test_rate_limiter_is_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.delay("a", 1.0) == 0.0
    assert limiter.delay("b", 1.0) == 0.0
    assert limiter.delay("a", 1.0) == pytest.approx(1.0)
    now[0] = 5.0
    assert limiter.delay("a", 1.0) == 0.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "invalid_token"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ],
)
def test_slack_4xx_is_rejected_without_retry(status: int, body: str) -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(status, body))
        notifier, stop = slack_notifier(slack.url)
        [(receiver, result)] = notifier.handle(sample_event())
        assert receiver == "team" and result.outcome == "rejected"
        assert (result.status, result.body) == (status, body)
        assert result.reason == f"rejected: HTTP {status}"
        assert len(slack.requests) == 1 and stop.waits == []


def test_redirect_is_rejected_not_followed() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(Reply(308, "", {"Location": "http://127.0.0.1:9/elsewhere"}))
        notifier, _ = slack_notifier(slack.url)
        [(_, result)] = notifier.handle(sample_event())
        assert (result.outcome, result.status, len(slack.requests)) == ("rejected", 308, 1)


def test_pagerduty_400_invalid_event_rejected() -> None:
    with FakeReceiver("pagerduty") as pd:
        pd.script(pagerduty_invalid("'payload.severity' is invalid"))
        notifier, stop = pagerduty_notifier(pd.url)
        [(_, result)] = notifier.handle(sample_event())
        assert result.status == 400 and "Event object is invalid" in result.body
        assert len(pd.requests) == 1 and stop.waits == []


@pytest.mark.parametrize("kind", ["slack", "pagerduty"])
def test_400_is_deadlettered_at_once_and_the_offset_may_be_committed(
    kind: str, kafka_message: Callable[[bytes, int], Message], recording_producer: Any
) -> None:
    with FakeReceiver(kind) as receiver:  # type: ignore[arg-type]
        if kind == "slack":
            receiver.script(slack_error(400, "invalid_payload"))
            notifier, stop = slack_notifier(receiver.url)
        else:
            receiver.script(pagerduty_invalid("'payload.severity' is invalid"))
            notifier, stop = pagerduty_notifier(receiver.url)
        runner = NotifyRunner(Settings(), notifier, "g-400")
        event = sample_event()
        assert runner._process(kafka_message(event.model_dump_json().encode(), 7), recording_producer)
    [record] = recording_producer.records
    headers = {name: value.decode() for name, value in record["headers"]}
    assert record["value"] == event.model_dump_json().encode()  # the original bytes
    assert headers["reason"] == "rejected: HTTP 400" and headers["http.status"] == "400"
    assert headers["source.offset"] == "7" and headers["receiver"] == notifier.receivers[0].name
    assert len(receiver.requests) == 1 and stop.waits == []
    assert runner.stats.deadlettered == 1


def test_exhausted_after_max_attempts() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(*[slack_error(500, "rollup_error")] * 3)
        notifier, _ = slack_notifier(slack.url, RetryPolicy(base=0.01, cap=0.01, max_attempts=3))
        [(_, result)] = notifier.handle(sample_event())
        assert result.outcome == "exhausted" and result.attempts == 3
        assert result.reason == "retries-exhausted: 3 attempts, last HTTP 500"


def test_connection_errors_retried_and_redacted() -> None:
    with FakeReceiver("slack") as slack:
        url = slack.url
    notifier, stop = slack_notifier(url, RetryPolicy(base=0.01, cap=0.01, max_attempts=3))
    [(_, result)] = notifier.handle(sample_event())  # the server is gone: connection refused
    assert result.outcome == "exhausted" and result.status is None
    assert result.error.startswith("ConnectError: ") and "SECRET" not in result.error
    assert result.reason.startswith("retries-exhausted: 3 attempts, last ConnectError: ")
    assert len(stop.waits) == 2


def test_timeout_is_retried_then_delivered() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(Reply(200, "ok", delay=1.0), SLACK_OK)
        notifier, stop = slack_notifier(slack.url, timeout=0.2)
        started = time.monotonic()
        assert notifier.handle(sample_event()) == []
        assert time.monotonic() - started < 0.9  # the slow answer was not waited for
        assert len(slack.requests) == 2 and len(stop.waits) == 1


def test_connections_are_reused_between_deliveries_and_retries() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"))
        notifier, _ = slack_notifier(slack.url)
        with notifier:
            for i in range(3):
                assert notifier.handle(sample_event(sample_alert(fingerprint=f"fp{i}"))) == []
        assert len(slack.requests) == 4
        assert len({r.peer for r in slack.requests}) == 1  # one keep-alive connection


def test_stop_during_backoff_aborts() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"))
        notifier, stop = slack_notifier(slack.url, RetryPolicy(base=30, cap=30))
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Aborted):
            notifier.handle(sample_event())
        assert time.monotonic() - started < 5


def test_stop_during_retry_after_aborts() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(rate_limited(retry_after=30))
        notifier, stop = slack_notifier(slack.url, RetryPolicy(max_elapsed=60))
        threading.Timer(0.2, stop.set).start()
        with pytest.raises(Aborted):
            notifier.handle(sample_event())
        assert stop.waits == [30.0] and len(slack.requests) == 1


def test_same_event_id_is_delivered_once_per_process_and_order_kept() -> None:
    with FakeReceiver("slack") as slack:
        notifier, _ = slack_notifier(slack.url)
        firing = sample_event(sample_alert(status="firing"))
        resolved = sample_event(sample_alert(status="resolved"))
        for event in (firing, firing, resolved, resolved):
            assert notifier.handle(event) == []
        headers = [b["blocks"][0]["text"]["text"].split(" [")[0] for b in slack.bodies()]
        assert headers == ["🔴 FIRING", "✅ RESOLVED"]


def test_post_json_hides_secret_url_in_errors() -> None:
    secret = SecretStr("hooks.example/SECRET")
    with HttpClient() as client, pytest.raises(TransportError) as info:
        client.post_json(secret, b"{}")
    assert "SECRET" not in str(info.value)
