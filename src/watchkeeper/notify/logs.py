"""Structured logs for the notifiers: ``key=value`` (logfmt) or JSON lines, via stdlib logging.

Callers pass their fields as ``extra={"fields": {...}}``; secrets are never passed, and the
handler redacts every record anyway (:mod:`watchkeeper.redact`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from watchkeeper.redact import install_log_redaction

__all__ = ["LogFormatter", "setup_logging"]


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class LogFormatter(logging.Formatter):
    """``ts=... level=info logger=... event=delivered receiver=team-slack status=200``."""

    def __init__(self, style: Literal["logfmt", "json"] = "logfmt") -> None:
        super().__init__()
        self.style_name = style

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc"] = record.exc_text
        if self.style_name == "json":
            return json.dumps(fields, default=str, ensure_ascii=False)
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())


def setup_logging(level: str = "INFO", style: Literal["logfmt", "json"] = "logfmt") -> None:
    """One stderr handler for the ``watchkeeper`` loggers, with the redaction filter on it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(style))
    root = logging.getLogger("watchkeeper")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    install_log_redaction(root)
