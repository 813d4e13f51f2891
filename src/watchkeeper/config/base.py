"""Shared pieces of the configuration: durations, the strict model base, ConfigError."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["DAY", "ConfigError", "Duration", "DurationOrZero", "Strict", "format_duration", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ZERO = re.compile(r"^\s*0+(?:\.0+)?\s*(?:ms|s|m|h|d|w)?\s*$")

DAY = 86400.0
"""The span of event time ``max_per_day`` is counted over (a trailing 24 h)."""


class ConfigError(ValueError):
    """An invalid configuration; the message names field, value and expectation."""


def parse_duration(value: Any) -> float:
    """Seconds from 90, 90.0, '90s', '5m', '2h', '7d' or '1w'."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 5m, 1h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 5m, 1h, 7d")
        amount, unit = float(match.group(1)), match.group(2) or "s"
        seconds = amount / 1000 if unit == "ms" else amount * _UNIT_SECONDS[unit]  # (959ms: 0.959, not 0.959…01)
    if seconds <= 0:
        raise ValueError(f"{value!r}: expected a positive duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` as the configuration writes it: in the largest unit that holds it a whole
    number of times (``2592000.0`` → ``'30d'``, ``90.0`` → ``'90s'``), under a second in
    milliseconds (``0.25`` → ``'250ms'``), else in seconds (``'1.5s'``);
    :func:`parse_duration` reads it back."""
    for unit in ("w", "d", "h", "m", "s") if seconds >= 1 else ("ms",):
        count = seconds * 1000 if unit == "ms" else seconds / _UNIT_SECONDS[unit]
        if count >= 1 and count == round(count) and parse_duration(f"{round(count)}{unit}") == seconds:
            return f"{round(count)}{unit}"
    return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"  # (to the microsecond; no exponent)


def _duration_or_zero(value: Any) -> float:
    """Like :func:`parse_duration`, but 0 / '0s' mean zero."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and _ZERO.match(value):
        return 0.0
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds from 90, '90s', '5m', '2h', '7d', '1w'."""

DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]
"""A :data:`Duration` that may also be 0."""


class Strict(BaseModel):
    """Models of the YAML: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
