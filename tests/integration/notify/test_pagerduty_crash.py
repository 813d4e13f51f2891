"""A PagerDuty notifier process killed mid-stream and restarted loses nothing.

Why redelivery after a crash is harmless: the notifier commits an offset only after
PagerDuty accepted the event, so a SIGKILL between the HTTP 202 and the commit makes the
restarted process send that event (and any other uncommitted ones) again. PagerDuty
deduplicates on ``dedup_key`` (the alert fingerprint): a second ``trigger`` of an open
incident only appends to it and a second ``resolve`` of a resolved one is a no-op, and
because a partition is processed in order the last event per fingerprint is still the
right one. So the receiver sees every alert at least once and, keyed by dedup_key +
action (+ CloudEvent id in custom_details), exactly once. Within one process the notifier
also skips a CloudEvent id it has already delivered. A graceful SIGTERM finishes the
in-flight delivery and commits it, so a restart after SIGTERM sends no duplicate at all.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from watchkeeper.config import Settings
from watchkeeper.notify.fake import FakeReceiver, sample_alert, sample_event

from .conftest import PAGERDUTY_ROUTING_KEY as ROUTING_KEY
from .conftest import StartPagerDuty

FINGERPRINTS = [f"fp-{i:02d}" for i in range(12)]
# the alerts are produced before the group's first start
OPTIONS = ("--idle-exit", "4", "--from-beginning")


def _events() -> list:
    return [sample_event(sample_alert(fingerprint=f, status=s)) for s in ("firing", "resolved") for f in FINGERPRINTS]


def _wait_for(pd: FakeReceiver, n: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(pd.requests) < n and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if len(pd.requests) < n:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"only {len(pd.requests)} requests arrived:\n{err.decode()[-3000:]}")


def _actions(pd: FakeReceiver) -> list[tuple[str, str]]:
    return [(b["dedup_key"], b["event_action"]) for b in pd.bodies()]


def test_sigkill_and_restart_delivers_every_alert(
    settings: Settings, produce: Callable[..., None], tmp_path: Path, start_pagerduty: StartPagerDuty
) -> None:
    group = f"g-pd-kill-{uuid.uuid4().hex[:6]}"
    produce(settings, _events())
    expected = {(f, a) for f in FINGERPRINTS for a in ("trigger", "resolve")}
    with FakeReceiver("pagerduty", delay=0.05) as pd:
        first = start_pagerduty(settings, pd.url, group, tmp_path, *OPTIONS)
        _wait_for(pd, 8, first)
        first.kill()  # SIGKILL: no chance to commit
        first.wait(10)
        killed_at = len(pd.requests)
        assert killed_at < len(expected)
        second = start_pagerduty(settings, pd.url, group, tmp_path, *OPTIONS)
        _, stderr = second.communicate(timeout=40)
        assert second.returncode == 0, stderr.decode()[-2000:]
        actions = _actions(pd)
        assert set(actions) == expected  # every alert at least once
        assert len(actions) - len(expected) <= 3  # only the uncommitted in-flight ones again
        last: dict[str, str] = {}
        for fingerprint, action in actions:
            last[fingerprint] = action
        assert set(last.values()) == {"resolve"}  # order per fingerprint preserved
        assert ROUTING_KEY not in stderr.decode()
        assert all(b["routing_key"] == ROUTING_KEY for b in pd.bodies())


def test_sigterm_finishes_in_flight_commits_and_closes(
    settings: Settings, produce: Callable[..., None], tmp_path: Path, start_pagerduty: StartPagerDuty
) -> None:
    group = f"g-pd-term-{uuid.uuid4().hex[:6]}"
    produce(settings, _events())
    with FakeReceiver("pagerduty", delay=0.1) as pd:
        first = start_pagerduty(settings, pd.url, group, tmp_path, *OPTIONS)
        _wait_for(pd, 5, first)
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=15)
        assert first.returncode == 0, stderr.decode()[-2000:]
        assert b" stopping signal=SIGTERM" in stderr and b" stopped " in stderr
        second = start_pagerduty(settings, pd.url, group, tmp_path, *OPTIONS)
        second.communicate(timeout=40)
        actions = _actions(pd)
        assert sorted(actions) == sorted({(f, a) for f in FINGERPRINTS for a in ("trigger", "resolve")})
