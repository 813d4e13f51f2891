"""Fast validation of raw prediction events, one batch at a time.

The worker never builds a pydantic object per event: this module checks the JSON that
orjson decoded against the PredictionEvent contract (:mod:`watchkeeper.events`) with
plain dict/type checks, and gives every rejected event a reason that names the field,
the value and what was expected. A test keeps it in step with the pydantic models.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

__all__ = [
    "ParsedBatch",
    "Rejected",
    "parse_outcomes",
    "parse_predictions",
    "parse_timestamp",
    "object_matrix",
    "as_float",
]

_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)
_RFC3339_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


@dataclass(frozen=True)
class Rejected:
    """An input that cannot be monitored: its position in the batch and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class ParsedBatch:
    """Valid events (decoded dicts), their event times (epoch seconds) and batch positions."""

    events: list[dict[str, Any]]
    times: np.ndarray
    indices: list[int]
    rejected: list[Rejected]


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_timestamp(value: Any) -> float:
    """Epoch seconds from an RFC 3339 date-time with offset, or from epoch seconds."""
    if isinstance(value, bool):
        raise ValueError(f"timestamp: {_shown(value)}: expected an RFC 3339 date-time with offset")
    if isinstance(value, int | float):
        if not np.isfinite(value):
            raise ValueError(f"timestamp: {_shown(value)}: expected a finite epoch time")
        return float(value)
    if isinstance(value, str) and _RFC3339_PREFIX.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.timestamp()
    raise ValueError(f"timestamp: {_shown(value)}: expected an RFC 3339 date-time with offset")


def _check_scalars(mapping: Any, field: str) -> str | None:
    if type(mapping) is dict and _SCALAR_TYPES.issuperset(map(type, mapping.values())):
        return None  # fast path: orjson yields exact built-in types
    if not isinstance(mapping, dict):
        return f"{field}: {_shown(mapping)}: expected an object"
    for key, value in mapping.items():
        if not isinstance(value, _SCALARS):
            return f"{field}.{key}: {_shown(value)}: expected a number, string, bool or null"
    return None


def _check_prediction(prediction: Any) -> str | None:
    if not isinstance(prediction, dict):
        return f"prediction: {_shown(prediction)}: expected an object"
    label = prediction.get("label")
    if not isinstance(label, str | int | bool | type(None)):
        return f"prediction.label: {_shown(label)}: expected a string, integer, bool or null"
    score = prediction.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1):
        return f"prediction.score: {_shown(score)}: expected a number between 0 and 1"
    value = prediction.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"prediction.value: {_shown(value)}: expected a number"
    probabilities = prediction.get("probabilities")
    if probabilities is not None:
        if not isinstance(probabilities, dict):
            return f"prediction.probabilities: {_shown(probabilities)}: expected an object of numbers"
        for key, p in probabilities.items():
            if isinstance(p, bool) or not isinstance(p, int | float):
                return f"prediction.probabilities.{key}: {_shown(p)}: expected a number"
    return None


def _check_header(
    event: Any, models: Container[str], required: tuple[str, str], optional: tuple[str, str]
) -> str | None:
    """The checks both event kinds share: an object, its ids, a configured model."""
    if not isinstance(event, dict):
        return f"event: {type(event).__name__}: expected a JSON object"
    for field in required:
        value = event.get(field)
        if not isinstance(value, str) or not value:
            return f"{field}: {_shown(value)}: expected a non-empty string"
    if event["model_id"] not in models:
        return f"model_id: {_shown(event['model_id'])}: not a configured model"
    for field in optional:
        value = event.get(field)
        if value is not None and not isinstance(value, str):
            return f"{field}: {_shown(value)}: expected a string"
    return None


def _check_event(event: Any, models: Container[str]) -> str | None:
    problem = _check_header(event, models, ("event_id", "model_id"), ("prediction_id", "model_version"))
    if problem is not None:
        return problem
    if "features" not in event:
        return "features: missing: expected an object of feature values"
    problem = _check_scalars(event["features"], "features")
    if problem is None and "attributes" in event:
        problem = _check_scalars(event["attributes"], "attributes")
    if problem is None and "prediction" in event:
        problem = _check_prediction(event["prediction"])
    if problem is None and not isinstance(event.get("metadata", {}), dict):
        problem = f"metadata: {_shown(event['metadata'])}: expected an object"
    return problem


def _check_outcome(event: Any, models: Container[str]) -> str | None:
    problem = _check_header(event, models, ("prediction_id", "model_id"), ("event_id", "model_version"))
    if problem is not None:
        return problem
    label, value = event.get("label"), event.get("value")
    if not isinstance(label, str | int | bool | type(None)):
        return f"label: {_shown(label)}: expected a string, integer or bool"
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return f"value: {_shown(value)}: expected a number"
    if (label is None) == (value is None):
        return "label/value: expected exactly one of 'label' (classification) or 'value' (regression)"
    if event.get("prediction") is not None:
        problem = _check_prediction(event["prediction"])
        if problem:
            return problem
    if event.get("attributes") is not None:
        problem = _check_scalars(event["attributes"], "attributes")
        if problem:
            return problem
    if event.get("prediction_timestamp") is not None:
        try:
            event["prediction_timestamp"] = parse_timestamp(event["prediction_timestamp"])
        except ValueError as exc:
            return "prediction_" + str(exc)
    return None


def parse_predictions(raw: Sequence[bytes | None], models: Container[str]) -> ParsedBatch:
    """Decode and validate a batch of raw prediction events."""
    return _parse(raw, models, _check_event)


def parse_outcomes(raw: Sequence[bytes | None], models: Container[str]) -> ParsedBatch:
    """Decode and validate a batch of raw outcome events (``prediction_timestamp`` → epoch)."""
    return _parse(raw, models, _check_outcome)


def _parse(
    raw: Sequence[bytes | None], models: Container[str], check: Callable[[Any, Container[str]], str | None]
) -> ParsedBatch:
    events: list[dict[str, Any]] = []
    times: list[float] = []
    indices: list[int] = []
    rejected: list[Rejected] = []
    for index, payload in enumerate(raw):
        try:
            event = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError as exc:
            rejected.append(Rejected(index, f"invalid JSON: {exc}"))
            continue
        problem = check(event, models)
        if problem is None and isinstance(event, dict):
            try:
                times.append(parse_timestamp(event.get("timestamp")))
            except ValueError as exc:
                problem = str(exc)
        if problem is not None or not isinstance(event, dict):
            rejected.append(Rejected(index, problem or "event: expected a JSON object"))
            continue
        events.append(event)
        indices.append(index)
    return ParsedBatch(events, np.asarray(times, dtype=np.float64), indices, rejected)


def object_matrix(mappings: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """An (events × names) object array of the mappings' values (None where absent)."""
    matrix = np.empty((len(mappings), len(names)), dtype=object)
    if not mappings or not names:
        return matrix
    if len(names) > 1:
        pick = operator.itemgetter(*names)
        try:  # fast path: every mapping has every name
            matrix[:] = [pick(m) for m in mappings]
            return matrix
        except KeyError:
            pass
    matrix[:] = [tuple(map(m.get, names)) for m in mappings]
    return matrix


def as_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copy of an object array (None → NaN) and the mask of non-numeric entries.

    Bools count as 0/1; strings and other non-numbers become NaN and are flagged so the
    monitor can report type errors instead of silently binning them.
    """
    values = np.where(values == None, np.nan, values)  # noqa: E711 - elementwise
    try:
        return values.astype(np.float64), np.zeros(values.shape, dtype=bool)
    except (TypeError, ValueError):
        pass
    flat = values.ravel()
    numeric = np.fromiter((isinstance(v, int | float) for v in flat), dtype=bool, count=flat.size)
    numeric = numeric.reshape(values.shape)
    return np.where(numeric, values, np.nan).astype(np.float64), ~numeric
