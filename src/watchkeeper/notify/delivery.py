"""HTTP delivery with retries, Retry-After, a per-receiver rate limit and secret redaction.

The policy, shared by all receivers:

- a 2xx answer is a delivery;
- HTTP 429 waits ``Retry-After`` seconds (when given, else the backoff below) and retries;
- HTTP 5xx, 408 and connection errors/timeouts retry with exponential backoff and full
  jitter: ``sleep = uniform(0, min(cap, base * 2**attempt))``;
- any other 4xx is a permanent rejection: the message is dead-lettered with the response;
- when ``max_attempts`` or ``max_elapsed`` is exhausted the message is dead-lettered too
  (reason ``retries-exhausted``), so that one broken receiver cannot stall the partition
  forever; the dead-letter topic keeps the original bytes for a replay.

Every wait is interruptible by the stop event: a stop during a wait abandons the delivery
(``aborted``) and the message is not committed, so the next run delivers it again.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from watchkeeper.redact import redact, register_secrets

__all__ = [
    "DeliveryResult",
    "HttpResponse",
    "RateLimiter",
    "RetryPolicy",
    "deliver",
    "post_json",
]

log = logging.getLogger("watchkeeper.notify")

USER_AGENT = "watchkeeper-notify/0.1"
BODY_LIMIT = 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    retry_after: float | None = None


class TransportError(Exception):
    """The request did not get an HTTP answer (refused, reset, timeout, DNS...)."""


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def post_json(
    url: SecretStr | str,
    body: bytes,
    timeout: float = 10.0,
    secrets: Iterable[SecretStr | None] = (),
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """POST JSON; raises :class:`TransportError` on no answer.

    A :class:`SecretStr` ``url`` and ``secrets`` are registered with the redactor first; the
    answer's body and any error text are redacted (:mod:`watchkeeper.redact`).
    """
    secret_url = url if isinstance(url, SecretStr) else SecretStr(url)
    register_secrets(*secrets, url if isinstance(url, SecretStr) else None)
    try:
        request = urllib.request.Request(
            secret_url.get_secret_value(),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read(64 * 1024).decode("utf-8", errors="replace")
            return HttpResponse(response.status, redact(text))
    except urllib.error.HTTPError as exc:
        text = exc.read(64 * 1024).decode("utf-8", errors="replace")
        return HttpResponse(exc.code, redact(text), _retry_after(exc.headers.get("Retry-After")))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad URL
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise TransportError(f"{type(reason).__name__}: {redact(str(reason))}") from None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and elapsed time."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int = 10
    max_elapsed: float = 600.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


class RateLimiter:
    """At most one request per ``min_interval`` seconds per key (a webhook / receiver)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}

    def delay(self, key: str, min_interval: float) -> float:
        """Seconds to wait before the next request for ``key`` may start (and reserve it)."""
        now = self._clock()
        start = max(now, self._next.get(key, now))
        self._next[key] = start + min_interval
        return start - now


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Literal["delivered", "rejected", "exhausted", "aborted"]
    attempts: int
    status: int | None = None
    body: str = ""
    error: str = ""

    @property
    def reason(self) -> str:
        """The dead-letter ``reason`` header."""
        if self.outcome == "rejected":
            return f"rejected: HTTP {self.status}"
        last = f"HTTP {self.status}" if self.status is not None else self.error
        return f"retries-exhausted: {self.attempts} attempts, last {last}"


@dataclass
class Delivery:
    """The knobs of one :func:`deliver` call (shared by a notifier)."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    stop: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


def deliver(
    send: Callable[[], HttpResponse],
    receiver: str,
    min_interval: float,
    ctx: Delivery,
    log_fields: dict[str, object] | None = None,
) -> DeliveryResult:
    """Call ``send`` until it succeeds, is rejected, runs out of retries or stop is requested."""
    fields = {"receiver": receiver, **(log_fields or {})}
    started = ctx.clock()
    attempt = 0
    while True:
        wait = ctx.limiter.delay(receiver, min_interval)
        if wait > 0 and ctx.stop.wait(wait):
            return DeliveryResult("aborted", attempt)
        attempt += 1
        status: int | None = None
        body = error = ""
        retry_after: float | None = None
        try:
            response = send()
            status, body, retry_after = response.status, response.body, response.retry_after
        except TransportError as exc:
            error = str(exc)
        if status is not None and 200 <= status < 300:
            _log(logging.INFO, "delivered", fields, attempt=attempt, http_status=status)
            return DeliveryResult("delivered", attempt, status, body[:BODY_LIMIT])
        if status is not None and not _retryable(status):
            _log(logging.WARNING, "rejected", fields, attempt=attempt, http_status=status, body=body[:200])
            return DeliveryResult("rejected", attempt, status, body[:BODY_LIMIT])
        wait = retry_after if status == 429 and retry_after is not None else ctx.policy.backoff(attempt, ctx.rng)
        elapsed = ctx.clock() - started
        if attempt >= ctx.policy.max_attempts or elapsed + wait > ctx.policy.max_elapsed:
            _log(logging.ERROR, "retries-exhausted", fields, attempt=attempt, http_status=status, error=error)
            return DeliveryResult("exhausted", attempt, status, body[:BODY_LIMIT], error)
        _log(logging.WARNING, "retry", fields, attempt=attempt, http_status=status, error=error, wait=round(wait, 3))
        if ctx.stop.wait(wait):
            return DeliveryResult("aborted", attempt, status, body[:BODY_LIMIT], error)


def _log(level: int, event: str, fields: dict[str, object], **more: object) -> None:
    log.log(level, event, extra={"fields": {**fields, **{k: v for k, v in more.items() if v not in (None, "")}}})
