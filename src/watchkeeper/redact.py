"""One redaction layer: secrets never leave the process in logs, error texts or dead-letter headers.

:data:`SECRETS` is the process's :class:`Redactor`. Every secret that watchkeeper hands out
in clear (a webhook URL or routing key to a notifier, the SASL password to librdkafka) is
registered there first (:func:`register_secrets`), and every text that leaves the process
goes through :func:`redact`: each log record (:class:`RedactingFilter`, put on the log
handlers by :func:`install_log_redaction`), the notifiers' error texts and their
dead-letter headers.

A registered secret is masked verbatim and in the forms it can be echoed back in
(percent-encoded, JSON-escaped, ``repr``-escaped); for a URL also its path (with and without
the query), every trailing run of its path segments (Slack's ``T…/B…/XXXX``, ``B…/XXXX`` and
``XXXX``), its query values and its userinfo password. Parts shorter than
:data:`MIN_FRAGMENT` characters are masked only as part of the whole value. Patterns
(:data:`PATTERNS`) catch credentials that were never registered.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from pydantic import SecretStr

__all__ = [
    "MASK",
    "MIN_FRAGMENT",
    "PATTERNS",
    "SECRETS",
    "SECRET_KEY",
    "RedactingFilter",
    "Redactor",
    "install_log_redaction",
    "redact",
    "register_secrets",
]

MASK = "***"
MIN_FRAGMENT = 8
"""Characters a part of a secret (URL path segments, query values) needs to be masked on its own."""

_SECRET_KEY = (
    r"[\w.-]*?(?:password|passwd|secret|token|api[_-]?key|routing[_-]?key|integration[_-]?key|webhook[_-]?url)"
)
SECRET_KEY = re.compile(_SECRET_KEY, re.IGNORECASE)
"""A field name whose value is a secret (``sasl.password``, ``routing_key``, ``access_token``...)."""

PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        # Slack incoming webhooks and workflow triggers: the whole path is the credential
        (r"(hooks\.slack(?:-gov)?\.com/)[^\s\"'<>]+", rf"\1{MASK}"),
        (r"/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Z0-9]+", f"/services/{MASK}"),
        (r"\bT[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Z0-9]{12,}", MASK),
        (r"\bxox[abposr]-[A-Z0-9-]{10,}", MASK),
        # Authorization / Proxy-Authorization headers (the rest of the line), bearer tokens
        (r"\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]+", rf"\1{MASK}"),
        (r"\b(bearer\s+)[A-Z0-9._~+/=-]{8,}", rf"\1{MASK}"),
        # key=value, key: value, "key": "value" where the key names a secret
        (rf"\b({_SECRET_KEY}[\"']?\s*[:=]\s*(?:b?[\"'])?)(?!\*)[^\s\"'&,;}}\]]+", rf"\1{MASK}"),
        # user:password@host in URLs
        (r"(://[^/\s:@]+:)[^/\s@]+@", rf"\1{MASK}@"),
        # SASL PLAIN / SCRAM authentication bytes as client libraries print them
        (r"(auth_bytes=b?)([\"']).*?(?<!\\)\2", rf"\1\2{MASK}\2"),
    )
)


def _fragments(secret: str) -> set[str]:
    """The parts of ``secret`` that are secret on their own; for a URL its path, segments, query."""
    parts = {secret}
    try:
        url = urlsplit(secret)
    except ValueError:
        return parts
    if url.scheme in ("http", "https") and url.netloc:
        segments = [s for s in url.path.split("/") if s]
        parts.update((url.path, f"{url.path}?{url.query}"))
        parts.update("/".join(segments[i:]) for i in range(len(segments)))
        parts.update(value for _, value in parse_qsl(url.query))
        if url.password:
            parts.add(url.password)
    return {p for p in parts if p == secret or len(p) >= MIN_FRAGMENT}


def _forms(fragment: str) -> set[str]:
    """``fragment`` as a receiver or a library may echo it: verbatim, percent-, JSON- or repr-escaped."""
    as_json = json.dumps(fragment)[1:-1]
    return {
        fragment,
        quote(fragment, safe=""),
        quote(fragment, safe="/"),
        quote_plus(fragment),
        as_json,
        as_json.replace("/", "\\/"),
        json.dumps(fragment, ensure_ascii=False)[1:-1],
        repr(fragment)[1:-1],
        repr(fragment.encode())[2:-1],
    }


class Redactor:
    """Masks registered secret values (and their echoes) and the credential :data:`PATTERNS`."""

    def __init__(self, secrets: Iterable[SecretStr | str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *secrets: SecretStr | str | None) -> None:
        """Register secret values (``None`` and empty values are ignored); cheap when already known."""
        values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets} - {None, ""}
        with self._lock:
            new = {v for v in values if v is not None} - self._secrets
            if not new:
                return
            self._secrets |= new
            forms = {form for secret in self._secrets for part in _fragments(secret) for form in _forms(part)}
            ordered = sorted(forms, key=len, reverse=True)  # the longest echo wins at a position
            self._known = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)

    def redact(self, text: str) -> str:
        """``text`` with every registered secret and every credential pattern replaced by ``***``."""
        known = self._known
        if known is not None:
            text = known.sub(MASK, text)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: object, key: str = "") -> object:
        """A log field's value, redacted: strings and containers recursively, secret-named keys whole."""
        if key and SECRET_KEY.fullmatch(key):
            return MASK
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self.redact_value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        if isinstance(value, bytes):
            return self.redact(value.decode("utf-8", errors="replace"))
        return self.redact(str(value))


SECRETS = Redactor()
"""The process's redactor: every secret watchkeeper hands out is registered here."""


def register_secrets(*secrets: SecretStr | str | None) -> None:
    """Register secret values with the process's redactor (see :data:`SECRETS`)."""
    SECRETS.add(*secrets)


def redact(text: str) -> str:
    """``text`` redacted by the process's redactor."""
    return SECRETS.redact(text)


_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts a log record in place: message with its arguments, traceback, stack, ``extra`` fields.

    Installed on a handler, it protects that handler and every handler called after it for the
    record (the record is changed, not copied). It never drops a record.
    """

    def __init__(self, redactor: Redactor = SECRETS) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a broken format string or __str__ must not escape from logging
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redactor.redact(message), None
        if record.exc_info:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        for key in vars(record).keys() - _RECORD_ATTRIBUTES:
            setattr(record, key, redactor.redact_value(getattr(record, key), key))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put a :class:`RedactingFilter` on every handler of ``logger`` (default: the root logger), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
