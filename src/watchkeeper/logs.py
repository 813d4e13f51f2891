"""Worker logs with context: ``stage``, ``model``, ``topic``, ``partition`` on every line, as text or JSON.

The worker sets the context around its work with :func:`log_context` (a context variable,
so each thread, stage 1, stage 2, the references reader, has its own and none leaks into
another); :class:`ContextFilter` copies it onto every record that reaches a handler (fields
passed with ``extra=`` win) and :class:`LogFormatter` writes the record with its fields:

* ``text``: ``<time> <LEVEL> <logger> <message> key=value ...`` (a value with spaces, quotes
  or ``=`` is JSON-quoted), the traceback on the lines below;
* ``json``: one object a line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``message``,
  the fields, and ``exc`` for a traceback.

:func:`configure_logging` puts both on the root logger's handlers (the worker), and
:func:`setup_logging` on a stderr handler of the ``watchkeeper`` loggers alone (the
notifiers), the context filter in front of the redaction filter (:mod:`watchkeeper.redact`),
so the fields are redacted like the message; the formatter redacts its finished line once
more, which covers what no field value holds (a mapping's keys) and the quoting of either
format.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal

import orjson

from watchkeeper.redact import install_log_redaction, redact

__all__ = [
    "ContextFilter",
    "LogFormat",
    "LogFormatter",
    "configure_logging",
    "json_logging",
    "log_context",
    "setup_logging",
]

LogFormat = Literal["text", "json"]

FIRST_FIELDS = ("stage", "model", "topic", "partition", "client")
"""Fields written first, in this order; the others follow in the order they were set."""

_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("watchkeeper_log_context", default=MappingProxyType({}))
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SCALARS = (str, int, float, bool)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every log line of this thread (or task) until the block ends."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copies the :func:`log_context` fields of the logging thread onto the record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        attributes = vars(record)
        for key, value in _CONTEXT.get().items():
            attributes.setdefault(key, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's context and ``extra`` fields (``None`` values left out), :data:`FIRST_FIELDS` first."""
    attributes = vars(record)
    extra = {k: v for k, v in attributes.items() if k not in _RECORD_ATTRIBUTES and v is not None}
    first = {k: extra.pop(k) for k in FIRST_FIELDS if k in extra}
    return {**first, **extra}


def _text_value(value: object) -> str:
    """``value`` for ``key=value``: a list of scalars comma-joined, other containers as JSON, quoted if need be."""
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, _SCALARS) for v in value):
        text = ",".join(map(str, value))
    elif isinstance(value, dict | list | tuple | set | frozenset):
        text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    else:
        text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class LogFormatter(logging.Formatter):
    """A record with its fields as one ``text`` line (traceback below) or one JSON object."""

    def __init__(self, log_format: LogFormat = "text") -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.log_format = log_format

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        fields = _fields(record)
        if self.log_format == "json":
            line = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.message,
                **fields,
            }
            if record.exc_text:
                line["exc"] = record.exc_text
            if record.stack_info:
                line["stack"] = record.stack_info
            text = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        else:
            record.asctime = self.formatTime(record)
            text = self.formatMessage(record) + "".join(f" {k}={_text_value(v)}" for k, v in fields.items())
            if record.exc_text:
                text += "\n" + record.exc_text
            if record.stack_info:
                text += "\n" + self.formatStack(record.stack_info)
        return redact(text)


def configure_logging(log_format: LogFormat = "text", logger: logging.Logger | None = None) -> None:
    """Give every handler of ``logger`` (default: the root logger) the context filter, in front of
    the redaction filter, and a :class:`LogFormatter` of ``log_format``."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.filters.insert(0, ContextFilter())
        handler.setFormatter(LogFormatter(log_format))
    install_log_redaction(logger)


def json_logging() -> bool:
    """Whether the command writes JSON lines (``--log-format json``; the worker's handlers are the
    root logger's, a notifier's the ``watchkeeper`` logger's): then even a fatal command-line
    error is one JSON object, so that log shippers parse every line."""
    handlers = [*logging.getLogger().handlers, *logging.getLogger("watchkeeper").handlers]
    return any(
        isinstance(handler.formatter, LogFormatter) and handler.formatter.log_format == "json" for handler in handlers
    )


def setup_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """One stderr handler for the ``watchkeeper`` loggers at ``level`` (``warn`` = warning), in
    ``log_format``, with the context and redaction filters: the notifiers' logging, which
    leaves other libraries' loggers (httpx, httpcore) at the root logger's level."""
    package = logging.getLogger("watchkeeper")
    package.handlers[:] = [logging.StreamHandler(sys.stderr)]
    package.setLevel("WARNING" if level.lower() == "warn" else level.upper())
    package.propagate = False
    configure_logging(log_format, package)
