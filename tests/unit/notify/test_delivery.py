"""Retries, Retry-After, rate limit and rejections against a local fake Slack / PagerDuty."""

from __future__ import annotations

import itertools
import random
import threading

import pytest
from pydantic import SecretStr

from watchkeeper.notify.delivery import Delivery, RateLimiter, RetryPolicy, post_json
from watchkeeper.notify.fake import (
    SLACK_OK,
    FakeReceiver,
    pagerduty_invalid,
    rate_limited,
    sample_alert,
    sample_event,
    slack_error,
)
from watchkeeper.notify.receivers import PagerDutyNotifier, SlackNotifier
from watchkeeper.notify.routing import Receiver

FAST = RetryPolicy(base=0.05, cap=0.2, max_attempts=5, max_elapsed=10)


class RecordingStop(threading.Event):
    """A stop event that records every wait (the backoff sleeps)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(timeout)


def slack_notifier(url: str, policy: RetryPolicy = FAST, interval: float = 0.0) -> tuple[SlackNotifier, RecordingStop]:
    stop = RecordingStop()
    receiver = Receiver(name="team", type="slack", webhook_url_env="X", min_interval=interval)
    delivery = Delivery(policy=policy, stop=stop, rng=random.Random(7))
    return SlackNotifier([receiver], {"team": SecretStr(url + "/services/T0/B0/SECRET")}, delivery), stop


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(1)
    samples = {n: [policy.backoff(n, rng) for _ in range(300)] for n in (1, 2, 3, 4, 6)}
    assert max(samples[1]) <= 1.0 and max(samples[2]) <= 2.0 and max(samples[3]) <= 4.0
    assert max(samples[6]) <= 8.0 and max(samples[6]) > 6.0  # capped, but uses the whole range
    assert min(samples[4]) < 1.0  # full jitter: can be close to zero


def test_5xx_retried_with_backoff_then_delivered() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"), slack_error(503, "unavailable"), SLACK_OK)
        notifier, stop = slack_notifier(slack.url)
        assert notifier.handle(sample_event()) == []
        assert len(slack.requests) == 3
        assert slack.requests[0].path == "/services/T0/B0/SECRET"
        assert len(stop.waits) == 2 and all(0 <= w <= 0.2 for w in stop.waits)


def test_429_honours_retry_after() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(rate_limited(retry_after=1), SLACK_OK)
        notifier, stop = slack_notifier(slack.url)
        assert notifier.handle(sample_event()) == []
        first, second = slack.requests
        assert second.at - first.at >= 0.95
        assert stop.waits == [1.0]


def test_429_without_retry_after_backs_off() -> None:
    with FakeReceiver("pagerduty") as pd:
        pd.script(rate_limited(None))
        stop = RecordingStop()
        receiver = Receiver(name="oncall", type="pagerduty", routing_key_env="K")
        notifier = PagerDutyNotifier(
            [receiver], {"oncall": SecretStr("k" * 32)}, Delivery(FAST, stop=stop), endpoint=pd.url
        )
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


def test_pagerduty_400_invalid_event_rejected() -> None:
    with FakeReceiver("pagerduty") as pd:
        pd.script(pagerduty_invalid("'payload.severity' is invalid"))
        receiver = Receiver(name="oncall", type="pagerduty", routing_key_env="K")
        notifier = PagerDutyNotifier([receiver], {"oncall": SecretStr("KEY123")}, Delivery(FAST), endpoint=pd.url)
        [(_, result)] = notifier.handle(sample_event())
        assert result.status == 400 and "Event object is invalid" in result.body


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
    assert ("SECRET" not in result.error and "Connection" in result.error) or "refused" in result.error
    assert len(stop.waits) == 2


def test_stop_during_backoff_aborts() -> None:
    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"))
        notifier, stop = slack_notifier(slack.url, RetryPolicy(base=30, cap=30))
        threading.Timer(0.2, stop.set).start()
        from watchkeeper.notify.runner import Aborted

        with pytest.raises(Aborted):
            notifier.handle(sample_event())


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
    with pytest.raises(Exception) as info:
        post_json(secret, b"{}")
    assert "SECRET" not in str(info.value)
