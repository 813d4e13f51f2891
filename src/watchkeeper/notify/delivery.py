"""HTTP delivery: httpx for the requests, tenacity for the retries, plus a rate limit and redaction.

The policy, shared by all receivers:

- a 2xx answer is a delivery;
- HTTP 408, 429, 5xx and transport errors (refused, reset, timeout, malformed answer) are
  retried. The wait is the answer's ``Retry-After`` when it has one, in either form of
  RFC 9110 §10.2.3 (delta-seconds or an HTTP-date), else exponential backoff with full
  jitter: ``uniform(0, min(cap, base * 2**(attempt - 1)))``;
- any other answer (4xx, or a 3xx: redirects are not followed) is a permanent rejection:
  the message is dead-lettered with the response;
- when ``max_attempts`` is reached, or the next wait (a ``Retry-After`` too) would pass
  ``max_elapsed``, the message is dead-lettered (reason ``retries-exhausted``), so that
  one broken receiver cannot stall the partition forever; the dead-letter topic keeps the
  original bytes for a replay. A ``Retry-After`` is never shortened: retrying before the
  receiver asked only earns another 429.

Every wait is interruptible by the stop event: a stop during a wait abandons the delivery
(``aborted``) and the message is not committed, so the next run delivers it again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Literal

import httpx
from pydantic import SecretStr
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from watchkeeper.redact import RedactingFilter, redact, register_secrets

__all__ = [
    "Delivery",
    "DeliveryResult",
    "HttpClient",
    "HttpResponse",
    "RateLimiter",
    "RetryPolicy",
    "TransportError",
    "deliver",
    "parse_retry_after",
]

log = logging.getLogger("watchkeeper.notify")

# httpx logs every request with its full URL (a Slack webhook URL is the secret itself) at
# INFO, httpcore the answers' status lines and headers at DEBUG: mask them on the libraries'
# own loggers (a logger's filter sees its own records only), whatever handler writes them.
for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy", "httpcore.socks"):
    logging.getLogger(_name).addFilter(RedactingFilter())

USER_AGENT = "watchkeeper-notify/0.1"
BODY_LIMIT = 1024  # what a result, a log line or a dead-letter header keeps of an answer
_READ_LIMIT = 64 * 1024  # what is read of an answer at most (a hostile receiver may stream forever)


@dataclass(frozen=True)
class HttpResponse:
    """A receiver's answer: status, body (redacted) and ``Retry-After`` in seconds if it gave one."""

    status: int
    body: str
    retry_after: float | None = None


class TransportError(Exception):
    """The request did not get an HTTP answer (refused, reset, timeout, DNS, malformed answer...)."""


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (RFC 9110 §10.2.3), or None if absent or invalid.

    Both forms: delta-seconds (``120``; decimals are tolerated) and an HTTP-date
    (``Wed, 21 Oct 2015 07:28:00 GMT``), counted from ``now``; a date in the past is 0.
    Invalid values (negative, not finite, unparsable) give None: the backoff applies.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": an HTTP-date is always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HttpClient:
    """POSTs JSON for one notifier over a pool of keep-alive connections (``httpx.Client``).

    ``timeout`` (seconds) bounds connecting, every read and write, and the wait for a pooled
    connection. Secrets are registered with the redactor before each request; answers and
    error texts come back redacted. Close it (or use it as a context manager) when done.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False)

    def post_json(self, url: SecretStr | str, body: bytes, secrets: Iterable[SecretStr | None] = ()) -> HttpResponse:
        """POST ``body`` as JSON; raises :class:`TransportError` (redacted text) when no answer came.

        A :class:`SecretStr` ``url`` and ``secrets`` are registered with the redactor first; the
        answer's body and any error text are redacted (:mod:`watchkeeper.redact`).
        """
        secret_url = url if isinstance(url, SecretStr) else SecretStr(url)
        register_secrets(*secrets, url if isinstance(url, SecretStr) else None)
        headers = {"Content-Type": "application/json"}
        try:
            with self._client.stream("POST", secret_url.get_secret_value(), content=body, headers=headers) as answer:
                data = bytearray()
                for chunk in answer.iter_bytes():
                    data += chunk
                    if len(data) >= _READ_LIMIT:
                        break
                retry_after = parse_retry_after(answer.headers.get("Retry-After"), datetime.now(UTC))
                text = bytes(data[:_READ_LIMIT]).decode("utf-8", errors="replace")
                return HttpResponse(answer.status_code, redact(text), retry_after)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # refused, reset, timeout, bad URL, bad answer
            raise TransportError(f"{type(exc).__name__}: {redact(str(exc))}") from None

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and elapsed time."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int = 10
    max_elapsed: float = 600.0

    def __post_init__(self) -> None:
        for name, value, least in (
            ("base", self.base, 0.0),
            ("cap", self.cap, 0.0),
            ("max_attempts", self.max_attempts, 1),
            ("max_elapsed", self.max_elapsed, 0.0),
        ):
            if not value >= least:  # also rejects NaN
                raise ValueError(f"RetryPolicy.{name}: {value!r}: expected a number >= {least}")

    def backoff(self) -> wait_base:
        """The wait before retry number ``n``: ``uniform(0, min(cap, base * 2**(n - 1)))``."""
        return wait_random_exponential(multiplier=self.base, max=self.cap)

    def stop(self) -> stop_base:
        """Give up after ``max_attempts``, or when the next wait would pass ``max_elapsed``."""
        return stop_after_attempt(self.max_attempts) | stop_before_delay(self.max_elapsed)


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
    """How one delivery to one receiver ended, with the last answer (or transport error)."""

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


class _Interrupted(Exception):
    """The stop event was set during a wait."""


def _retryable(response: HttpResponse) -> bool:
    return response.status >= 500 or response.status in (408, 429)


def _retry_after_or(backoff: wait_base) -> Callable[[RetryCallState], float]:
    """The answer's ``Retry-After`` if it gave one, else ``backoff``."""

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            retry_after: float | None = outcome.result().retry_after
            if retry_after is not None:
                return retry_after
        return float(backoff(state))

    return wait


def _last(state: RetryCallState) -> dict[str, object]:
    """Log fields of the last attempt: its status or transport error."""
    outcome = state.outcome
    if outcome is None:
        return {}
    if outcome.failed:
        return {"error": str(outcome.exception())}
    return {"http_status": outcome.result().status}


def deliver(
    send: Callable[[], HttpResponse],
    receiver: str,
    min_interval: float,
    ctx: Delivery,
    log_fields: dict[str, object] | None = None,
) -> DeliveryResult:
    """Call ``send`` until it succeeds, is rejected, runs out of retries or stop is requested."""
    fields = {"receiver": receiver, **(log_fields or {})}
    attempts = 0

    def sleep(seconds: float) -> None:
        if ctx.stop.wait(seconds):
            raise _Interrupted

    def attempt() -> HttpResponse:
        nonlocal attempts
        wait = ctx.limiter.delay(receiver, min_interval)  # retries count as requests
        if wait > 0:
            sleep(wait)
        attempts += 1
        return send()

    def before_sleep(state: RetryCallState) -> None:
        _log(logging.WARNING, "retry", fields, attempt=attempts, wait=round(state.upcoming_sleep, 3), **_last(state))

    retrying = Retrying(
        stop=ctx.policy.stop(),
        wait=_retry_after_or(ctx.policy.backoff()),
        retry=retry_if_exception_type(TransportError) | retry_if_result(_retryable),
        sleep=sleep,
        before_sleep=before_sleep,
    )
    try:
        response = retrying(attempt)
    except _Interrupted:
        return DeliveryResult("aborted", attempts)
    except RetryError as exc:
        last = exc.last_attempt
        if last.failed:
            status, body, error, retry_after = None, "", str(last.exception()), None
        else:
            answer: HttpResponse = last.result()
            status, body, error, retry_after = answer.status, answer.body, "", answer.retry_after
        _log(
            logging.ERROR,
            "retries-exhausted",
            fields,
            attempt=attempts,
            http_status=status,
            error=error,
            retry_after=retry_after,
        )
        return DeliveryResult("exhausted", attempts, status, body[:BODY_LIMIT], error)
    if 200 <= response.status < 300:
        _log(logging.INFO, "delivered", fields, attempt=attempts, http_status=response.status)
        return DeliveryResult("delivered", attempts, response.status, response.body[:BODY_LIMIT])
    body = response.body[:BODY_LIMIT]
    _log(logging.WARNING, "rejected", fields, attempt=attempts, http_status=response.status, body=body[:200])
    return DeliveryResult("rejected", attempts, response.status, body)


def _log(level: int, event: str, fields: dict[str, object], **more: object) -> None:
    log.log(level, event, extra={**fields, **{k: v for k, v in more.items() if v not in (None, "")}})
