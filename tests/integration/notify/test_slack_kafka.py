"""Slack notifier through the real broker: delivery, order, dead-letter, commit, no secrets."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import Message
from pydantic import SecretStr

from watchkeeper.config import Settings
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.fake import FakeReceiver, Recorded, Reply, sample_alert, sample_event, slack_error
from watchkeeper.notify.receivers import SlackNotifier
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import NotifyRunner

SECRET = "T000/B000/ThisIsTheWebhookSecret"


def _archived(request: Recorded) -> Reply | None:
    return slack_error(410, "channel_is_archived") if b"fp-archived" in request.body else None


def _run(settings: Settings, url: str, group: str, max_messages: int) -> NotifyRunner:
    receiver = Receiver(name="team-slack", type="slack", webhook_url_env="X", min_interval=0.0)
    stop = threading.Event()
    delivery = Delivery(RetryPolicy(base=0.05, cap=0.1, max_attempts=4), stop=stop)
    notifier = SlackNotifier([receiver], {"team-slack": SecretStr(f"{url}/services/{SECRET}")}, delivery)
    runner = NotifyRunner(settings, notifier, group, max_messages=max_messages, idle_exit=8.0, from_beginning=True)
    watchdog = threading.Timer(40, stop.set)
    watchdog.start()
    try:
        runner.run()
    finally:
        watchdog.cancel()
    return runner


def test_deliver_in_order_deadletter_and_commit(
    settings: Settings, produce: Callable[..., None], read_all: Callable[..., list[Message]]
) -> None:
    group = f"g-slack-{uuid.uuid4().hex[:6]}"
    fingerprints = [f"fp-{i}" for i in range(4)]
    events = [sample_event(sample_alert(fingerprint=f, status=s)) for s in ("firing", "resolved") for f in fingerprints]
    archived = sample_event(sample_alert(fingerprint="fp-archived"))
    garbage = b'{"specversion": "1.0", "type": "something.else"}'
    produce(settings, [*events, archived, garbage])

    with FakeReceiver("slack", responder=_archived) as slack:
        slack.script(slack_error(500, "rollup_error"))  # the first request is retried
        runner = _run(settings, slack.url, group, max_messages=10)
        assert runner.stats.processed == 10 and runner.stats.deadlettered == 2

        delivered = [b for b in slack.bodies() if "fp-archived" not in str(b)]
        assert len(delivered) == 9  # 8 alerts + 1 retried request
        seen: dict[str, list[str]] = defaultdict(list)
        for body in delivered[1:]:
            fingerprint = body["blocks"][-1]["elements"][0]["text"].split("`")[1]
            seen[fingerprint].append(body["text"].split(" ")[1])
        assert dict(seen) == {f: ["FIRING", "RESOLVED"] for f in fingerprints}

        dead = read_all(settings, settings.topic_deadletter, expected=2)
        assert len(dead) == 2
        by_reason = {dict(m.headers())["reason"].decode(): m for m in dead}
        invalid = next(m for r, m in by_reason.items() if r.startswith("invalid-event"))
        assert invalid.value() == garbage and invalid.key() == settings.topic_alerts.encode()
        rejected = by_reason["rejected: HTTP 410"]
        headers = {k: v.decode() for k, v in rejected.headers()}
        assert rejected.value() == archived.model_dump_json().encode()  # the original bytes
        assert headers["receiver"] == "team-slack" and headers["http.status"] == "410"
        assert headers["http.body"] == "channel_is_archived"
        assert headers["source.topic"] == settings.topic_alerts
        assert {"source.partition", "source.offset"} <= headers.keys()
        for message in dead:
            assert SECRET not in repr(message.headers())

        # offsets were committed: the same group resumes after them, with only the new alert
        before = len(slack.requests)
        produce(settings, [sample_event(sample_alert(fingerprint="fp-new"))])
        again = _run(settings, slack.url, group, max_messages=1)
        assert again.stats.processed == 1
        assert len(slack.requests) == before + 1 and b"fp-new" in slack.requests[-1].body
