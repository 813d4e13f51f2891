"""The Alertmanager notifier against a real Alertmanager (Debian ``prometheus-alertmanager``)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from watchkeeper.config import Settings
from watchkeeper.notify.alertmanager import AlertmanagerNotifier, rebuild_firing
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.fake import sample_alert, sample_event
from watchkeeper.notify.routing import Receiver
from watchkeeper.notify.runner import NotifyRunner

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("Alertmanager not installed: apt-get install -y prometheus-alertmanager")
    (tmp_path / "am.yml").write_text(CONFIG)
    port = _free_port()
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"alertmanager did not start: {proc.stderr.read()!r}") from None  # type: ignore[union-attr]
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as r:
        return list(json.load(r))


def _by_fingerprint(url: str, fingerprint: str) -> dict[str, Any] | None:
    return next((a for a in _alerts(url) if a["labels"].get("fingerprint") == fingerprint), None)


def _notifier(url: str, interval: float = 60.0) -> AlertmanagerNotifier:
    receiver = Receiver(name="am", type="alertmanager", endpoint=url)
    return AlertmanagerNotifier([receiver], Delivery(RetryPolicy(base=0.05, cap=0.1)), resend_interval=interval)


def _run(settings: Settings, notifier: AlertmanagerNotifier, group: str, n: int) -> None:
    runner = NotifyRunner(settings, notifier, group, max_messages=n, session_timeout=6, from_beginning=True)
    watchdog = threading.Timer(30, notifier.delivery.stop.set)
    watchdog.start()
    try:
        runner.run()
    finally:
        watchdog.cancel()
    assert runner.stats.processed == n


def test_firing_then_resolved_in_real_alertmanager(
    settings: Settings, produce: Callable[..., None], alertmanager: str
) -> None:
    group = f"g-am-{uuid.uuid4().hex[:6]}"
    fp = f"fp-am-{uuid.uuid4().hex[:6]}"
    produce(settings, [sample_event(sample_alert(fingerprint=fp, severity="critical"))])
    notifier = _notifier(alertmanager)
    _run(settings, notifier, group, 1)
    active = _by_fingerprint(alertmanager, fp)
    assert active is not None and active["status"]["state"] == "active"
    assert active["labels"]["alertname"] == "watchkeeper_drift" and active["labels"]["severity"] == "critical"
    assert active["annotations"]["observed"] == "0.312"

    # resolved with another severity label: the notifier resolves the alert that fired
    produce(settings, [sample_event(sample_alert(fingerprint=fp, status="resolved", severity="warning"))])
    notifier.delivery.stop.clear()
    _run(settings, notifier, group, 1)
    assert _by_fingerprint(alertmanager, fp) is None  # endsAt in the past: no longer listed as active


def test_rebuild_on_start_and_periodic_resend(
    settings: Settings, produce: Callable[..., None], alertmanager: str
) -> None:
    still, gone = f"fp-still-{uuid.uuid4().hex[:6]}", f"fp-gone-{uuid.uuid4().hex[:6]}"
    produce(
        settings,
        [
            sample_event(sample_alert(fingerprint=still)),
            sample_event(sample_alert(fingerprint=gone)),
            sample_event(sample_alert(fingerprint=gone, status="resolved")),
        ],
    )
    firing = rebuild_firing(settings, timeout=15)
    assert [e.data.fingerprint for e in firing] == [still]
    notifier = _notifier(alertmanager, interval=0.5)
    notifier.restore(firing)
    assert notifier.tick() == pytest.approx(0.5, abs=0.1)  # re-sent at once, next in one interval
    first = _by_fingerprint(alertmanager, still)
    assert first is not None and first["status"]["state"] == "active"
    assert _by_fingerprint(alertmanager, gone) is None
    time.sleep(0.6)
    notifier.tick()  # the periodic re-send pushes endsAt forward
    second = _by_fingerprint(alertmanager, still)
    assert second is not None and second["endsAt"] > first["endsAt"]
