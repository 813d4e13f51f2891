"""A scriptable local HTTP receiver that answers like Slack or PagerDuty (tests, demos).

Answers come from a queue of scripted responses, then from a responder function, then
from the receiver's documented success answer (Slack ``200 ok``; PagerDuty ``202
{"status":"success",...}``; anything else ``200 {}``). Every request is recorded.

    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"), SLACK_OK)
        ...  # POST to slack.url
        assert len(slack.requests) == 2
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from watchkeeper.events import Alert, AlertWindow, CloudEvent, ConfidenceInterval, alert_cloudevent

__all__ = [
    "SLACK_OK",
    "FakeReceiver",
    "Recorded",
    "Reply",
    "pagerduty_invalid",
    "rate_limited",
    "sample_alert",
    "sample_event",
    "slack_error",
]


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    path: str
    body: bytes
    at: float  # time.monotonic() when received

    def json(self) -> Any:
        return json.loads(self.body)


SLACK_OK = Reply(200, "ok")


def slack_error(status: int, body: str) -> Reply:
    """Slack's documented errors: 400 invalid_payload, 403 invalid_token, 404 channel_not_found,
    410 channel_is_archived, 500 rollup_error."""
    return Reply(status, body)


def rate_limited(retry_after: float | None = None, body: str = "rate_limited") -> Reply:
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    return Reply(429, body, headers)


def pagerduty_invalid(*errors: str) -> Reply:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return Reply(400, json.dumps(body), {"Content-Type": "application/json"})


def _pagerduty_accepted(request: Recorded) -> Reply:
    try:
        dedup_key = request.json().get("dedup_key")
    except ValueError:
        dedup_key = None
    body = {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
    return Reply(202, json.dumps(body), {"Content-Type": "application/json"})


class FakeReceiver:
    """A threaded HTTP server on 127.0.0.1 (free port) answering scripted replies."""

    def __init__(
        self,
        kind: Literal["slack", "pagerduty", "generic"] = "slack",
        responder: Callable[[Recorded], Reply | None] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.kind = kind
        self.responder = responder
        self.delay = delay
        self.requests: list[Recorded] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.requests]

    def __enter__(self) -> FakeReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
        if self.responder is not None:
            reply = self.responder(request)
            if reply is not None:
                return reply
        if self.kind == "slack":
            return SLACK_OK
        if self.kind == "pagerduty":
            return _pagerduty_accepted(request)
        return Reply(200, "{}", {"Content-Type": "application/json"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Recorded(self.path, self.rfile.read(length), time.monotonic())
                reply = fake._reply(request)
                if reply.delay or fake.delay:
                    time.sleep(reply.delay or fake.delay)
                data = reply.body.encode()
                self.send_response(reply.status)
                for name, value in {"Content-Type": "text/plain", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler


def sample_alert(
    fingerprint: str = "fp-credit-risk-income",
    status: Literal["firing", "resolved"] = "firing",
    severity: Literal["critical", "error", "warning", "info"] = "warning",
    window_end: datetime | None = None,
    **changes: Any,
) -> Alert:
    """A realistic drift alert for tests, docs and demos."""
    end = window_end or datetime(2025, 3, 14, 12, 5, tzinfo=UTC)
    values: dict[str, Any] = {
        "fingerprint": fingerprint,
        "status": status,
        "severity": severity,
        "model_id": "credit-risk",
        "model_version": "3",
        "monitor": "drift",
        "metric": "psi",
        "subject": "income",
        "observed": 0.312 if status == "firing" else 0.041,
        "threshold": 0.2,
        "comparator": ">",
        "confidence_interval": ConfidenceInterval(low=0.27, high=0.35),
        "window": AlertWindow(start=end - timedelta(minutes=5), end=end, n=4812),
        "starts_at": datetime(2025, 3, 14, 12, 5, tzinfo=UTC),
        "ends_at": end if status == "resolved" else None,
        "summary": f"credit-risk: drift in income (PSI {0.312 if status == 'firing' else 0.041:.3f} vs threshold 0.2)",
        "description": "Population stability index of feature income against the reference profile.",
        "links": {
            "dashboard": "https://grafana.example.com/d/watchkeeper?var-model=credit-risk",
            "runbook": "https://wiki.example.com/runbooks/drift",
        },
    }
    values.update(changes)
    return Alert(**values)


def sample_event(alert: Alert | None = None, source: str = "watchkeeper/test") -> CloudEvent[Alert]:
    return alert_cloudevent(alert or sample_alert(), source)
