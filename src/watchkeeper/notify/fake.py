"""A scriptable local HTTP receiver that answers like Slack or PagerDuty (tests, demos).

Answers come from a queue of scripted responses, then from a responder function, then
from the receiver's documented success answer (Slack ``200 ok``; PagerDuty ``202
{"status":"success",...}``; anything else ``200 {}``). Every request is recorded, with
the client's port so that a test can tell whether connections were reused (the server
speaks HTTP/1.1 with keep-alive, like Slack and PagerDuty).

    with FakeReceiver("slack") as slack:
        slack.script(slack_error(500, "rollup_error"), SLACK_OK)
        ...  # POST to slack.url
        assert len(slack.requests) == 2
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from watchkeeper.events import Alert, AlertWindow, CloudEvent, ConfidenceInterval, alert_cloudevent

__all__ = [
    "SLACK_OK",
    "FakeReceiver",
    "Recorded",
    "Reply",
    "hostile_echo",
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
    reason: str | None = None  # the status line's reason phrase (default: the standard one)
    raw: bytes | None = None  # sent instead of an HTTP answer (a broken or hostile server)


@dataclass(frozen=True)
class Recorded:
    path: str
    body: bytes
    at: float  # time.monotonic() when received
    host: str = ""  # the Host header
    peer: int = 0  # the client's port: one per connection

    def json(self) -> Any:
        return json.loads(self.body)


SLACK_OK = Reply(200, "ok")


def slack_error(status: int, body: str) -> Reply:
    """Slack's documented errors: 400 invalid_payload, 403 invalid_token, 404 channel_not_found,
    410 channel_is_archived, 500 rollup_error."""
    return Reply(status, body)


def rate_limited(retry_after: float | datetime | None = None, body: str = "rate_limited", status: int = 429) -> Reply:
    """A 429 (or ``status``, e.g. 503) with ``Retry-After`` as delta-seconds or, for a datetime, an HTTP-date."""
    if retry_after is None:
        return Reply(status, body)
    if isinstance(retry_after, datetime):
        return Reply(status, body, {"Retry-After": format_datetime(retry_after.astimezone(UTC), usegmt=True)})
    return Reply(status, body, {"Retry-After": f"{retry_after:g}"})


def pagerduty_invalid(*errors: str) -> Reply:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    return Reply(400, json.dumps(body), {"Content-Type": "application/json"})


def hostile_echo(statuses: Iterable[int], *quoted: str) -> Callable[[Recorded], Reply]:
    """A receiver that echoes the request back in every way it can, answering ``statuses`` in turn.

    The full URL, the path, the query and the body (verbatim and JSON-escaped), plus the
    ``quoted`` strings (credentials a proxy or upstream might quote, e.g. an Authorization
    header) go into the body, the reason phrase and the response headers; status 0 answers
    with a malformed status line holding the path instead of HTTP.
    """
    cycle: Iterator[int] = iter(statuses)

    def reply(request: Recorded) -> Reply:
        status = next(cycle, 500)
        url = f"http://{request.host}{request.path}"
        query = request.path.partition("?")[2]
        body = request.body.decode("utf-8", errors="replace")
        echoes = [url, request.path, query, body, *quoted]
        text = json.dumps({"error": "invalid_token", "url": url, "echo": echoes}) + "\n" + "\n".join(echoes)
        if status == 0:
            return Reply(0, raw=f"HTTP/1.1 {request.path} {' '.join(quoted)}\r\n\r\n".encode())
        one_line = json.dumps(echoes)  # ASCII: header values and the reason phrase are Latin-1
        headers = {"Retry-After": "0", "Location": url, "X-Echo": one_line, "WWW-Authenticate": f"Bearer {query}"}
        return Reply(status, text, headers, reason=f"Bad {request.path} {one_line}")

    return reply


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
        self._connections: set[socket.socket] = set()
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
        with self._lock:  # kept-alive connections too: the receiver is gone
            for connection in self._connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)

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
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._lock:
                    fake._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                host = self.headers.get("Host", "")
                request = Recorded(self.path, body, time.monotonic(), host, self.client_address[1])
                reply = fake._reply(request)
                if reply.delay or fake.delay:
                    time.sleep(reply.delay or fake.delay)
                if reply.raw is not None:
                    self.wfile.write(reply.raw)
                    self.close_connection = True
                    return
                data = reply.body.encode()
                self.send_response(reply.status, reply.reason)
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
