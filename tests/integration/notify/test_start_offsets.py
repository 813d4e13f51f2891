"""Where `watchkeeper notify` starts, through the real broker: a new group at the end of the alerts
topic (committed at its first assignment), a known group at its committed offsets, and
`--from-beginning` at the oldest alert."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from watchkeeper.config import Settings
from watchkeeper.notify.fake import FakeReceiver, sample_alert, sample_event

from .conftest import StartPagerDuty

PARTITIONS = range(3)  # the alerts topic of the fixture


def _offsets(settings: Settings, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offsets and the topic's end offsets (read_committed), per partition."""
    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": group, "isolation.level": "read_committed"}
    )  # never subscribes: does not join the group
    try:
        partitions = [TopicPartition(settings.topic_alerts, p) for p in PARTITIONS]
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in partitions}
    finally:
        consumer.close()
    return committed, ends


def _wait(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"{what}: not reached; notifier stderr:\n{err.decode()[-3000:]}")
        time.sleep(0.1)


def _finish(proc: subprocess.Popen[bytes]) -> str:
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err.decode()[-3000:]
    return err.decode()


def _dedup_keys(pd: FakeReceiver, start: int = 0) -> list[str]:
    return [body["dedup_key"] for body in pd.bodies()[start:]]


def test_first_run_starts_at_the_end_then_resumes_and_from_beginning_reads_all(
    settings: Settings, produce: Callable[..., None], tmp_path: Path, start_pagerduty: StartPagerDuty
) -> None:
    group = f"g-start-{uuid.uuid4().hex[:6]}"
    old = [f"fp-old-{i}" for i in range(3)]
    new = [f"fp-new-{i}" for i in range(2)]
    produce(settings, [sample_event(sample_alert(fingerprint=f)) for f in old])
    with FakeReceiver("pagerduty") as pd:
        first = start_pagerduty(settings, pd.url, group, tmp_path, "--idle-exit", "60")

        def at_end() -> bool:
            committed, ends = _offsets(settings, group)
            return committed == ends

        _wait(at_end, first, "the first assignment commits the end offsets")
        time.sleep(1.0)
        assert pd.requests == []  # the first run delivers none of the 3 older alerts

        produce(settings, [sample_event(sample_alert(fingerprint=f)) for f in new])
        _wait(lambda: len(pd.requests) >= 2, first, "the 2 new alerts delivered")
        time.sleep(1.0)  # an older alert would follow now
        first.send_signal(signal.SIGTERM)
        stderr = _finish(first)
        assert sorted(_dedup_keys(pd)) == new, stderr[-3000:]
        assert " starting-at-end " in stderr

        # a restart of the same group resumes from its committed offsets: nothing again
        _finish(start_pagerduty(settings, pd.url, group, tmp_path, "--idle-exit", "2"))
        assert len(pd.requests) == 2

        # a new group with --from-beginning: all five
        other = f"g-begin-{uuid.uuid4().hex[:6]}"
        _finish(start_pagerduty(settings, pd.url, other, tmp_path, "--idle-exit", "2", "--from-beginning"))
        assert sorted(_dedup_keys(pd, start=2)) == sorted(old + new)


def test_restart_before_the_first_delivery_loses_nothing(
    settings: Settings, produce: Callable[..., None], tmp_path: Path, start_pagerduty: StartPagerDuty
) -> None:
    """The group was assigned partitions but never delivered (so never committed a message) when
    it stopped; alerts published while it was down must still be delivered by the restart."""
    group = f"g-gap-{uuid.uuid4().hex[:6]}"
    produce(settings, [sample_event(sample_alert(fingerprint=f"fp-before-{i}")) for i in range(2)])
    with FakeReceiver("pagerduty") as pd:
        _finish(start_pagerduty(settings, pd.url, group, tmp_path, "--idle-exit", "1"))
        assert pd.requests == []
        gap = [f"fp-gap-{i}" for i in range(2)]
        produce(settings, [sample_event(sample_alert(fingerprint=f)) for f in gap])
        _finish(start_pagerduty(settings, pd.url, group, tmp_path, "--idle-exit", "3"))
        assert sorted(_dedup_keys(pd)) == gap
