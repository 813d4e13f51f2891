"""Exact rejection reasons: the reference decision on one record, and types in words.

A record the fast path (:mod:`watchkeeper.monitor.parse`) rejects is checked again here on
its own: the contract Struct's own decoder decides, and a walker over the contract's fields
names the first field that fails, its value and what was expected, worded from the field's
type (e.g. ``prediction.score: 1.7: expected a number between 0 and 1``). The wording of a
type (:func:`expected`) also writes the field tables of docs/events.md and the JSON Schemas'
descriptions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Container, Iterator
from functools import cache
from typing import Any, TypeGuard, get_args, get_origin

import msgspec
import msgspec.inspect as mi

from watchkeeper.events import Timestamp, exactly_one_problem
from watchkeeper.monitor.contracts import (
    MODEL_FIELD,
    Contract,
    contract_fields,
    epoch_seconds,
    is_struct,
    union_members,
)

__all__ = ["expected", "lenient_loads", "parse_timestamp", "reason_shape", "reference_decision", "rejection_reason"]

_INT64 = (-(2**63), 2**63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")  # what Python's json reads from an unpaired \uD800 escape


_json = msgspec.json.Decoder()


# -- the reference path: one record, exact reasons ---------------------------------------
class _BadNumber:
    """A number literal that JSON or float64 cannot carry (NaN, Infinity, 1e400)."""

    def __init__(self, literal: str, why: str) -> None:
        self.literal, self.why = literal, why

    def __repr__(self) -> str:
        return self.literal


def lenient_loads(payload: bytes | bytearray | str) -> Any:
    """Python's json, which reads NaN, Infinity and 1e400: to find where they are."""

    def number(literal: str) -> Any:
        value = float(literal)
        return value if math.isfinite(value) else _BadNumber(literal, "outside float64's finite range")

    def constant(literal: str) -> Any:
        return _BadNumber(literal, "NaN and Infinity are not JSON numbers")

    return json.loads(payload, parse_float=number, parse_constant=constant)


def _first_bad_number(value: Any, path: str) -> tuple[str, _BadNumber] | None:
    if isinstance(value, _BadNumber):
        return path, value
    children: Iterator[tuple[str, Any]] = iter(())
    if isinstance(value, dict):
        children = ((_join(path, str(k)), v) for k, v in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    for child_path, child in children:
        found = _first_bad_number(child, child_path)
        if found is not None:
            return found
    return None


def rejection_reason(payload: bytes | None, models: Container[str], contract: Contract) -> str | None:
    """Why the contract rejects this record (None: it accepts it), as text that encodes to UTF-8
    (a dead-letter header), also for lone surrogates in keys and records nested too deeply."""
    try:
        explained = _explain_payload(payload, models, contract) if _is_text(payload) else None
        if explained is None:
            explained = reference_decision(payload, models, contract)[1]  # e.g. a duplicate key: the decoder's message
    except RecursionError:
        return "invalid JSON: nested too deeply (the decoder's limit is below 1000 levels)"
    return None if explained is None else explained.encode("utf-8", "backslashreplace").decode()


def reference_decision(payload: bytes | None, models: Container[str], contract: Contract) -> tuple[Any, str | None]:
    """The reference decision on one record: (the contract Struct, None) or (None, reason).

    The contract's own decoder decides; the reason comes from walking the decoded JSON
    (read leniently, so that NaN or 1e400 can be located) against the contract's fields.
    """
    if not _is_text(payload):  # (an empty value is a null, as a Kafka tombstone)
        kind = type(payload).__name__ if payload else "NoneType"
        return None, f"event: {kind}: expected a JSON object"
    try:
        event = _decoder(contract.struct).decode(payload)
    except msgspec.DecodeError as exc:
        explained = _explain_payload(payload, models, contract)
        if explained is not None:
            return None, explained
        return None, _message(exc) if isinstance(exc, msgspec.ValidationError) else f"invalid JSON: {exc}"
    model_id = getattr(event, MODEL_FIELD)
    if model_id not in models:
        return None, f"{MODEL_FIELD}: {_shown(model_id)}: not a configured model"
    return event, None


_Text = bytes | bytearray | memoryview | str


def _is_text(payload: Any) -> TypeGuard[_Text]:
    """A non-empty value a JSON decoder reads (a null or empty Kafka value is not)."""
    return isinstance(payload, bytes | bytearray | memoryview | str) and len(payload) > 0


def _explain_payload(payload: _Text, models: Container[str], contract: Contract) -> str | None:
    try:
        value = _json.decode(payload)
    except msgspec.DecodeError:  # malformed, or a number out of range: read it leniently
        try:
            value = lenient_loads(bytes(payload) if isinstance(payload, memoryview) else payload)
        except (ValueError, RecursionError):
            return None
    if not isinstance(value, dict):
        return f"event: {type(value).__name__}: expected a JSON object"
    explained = _explain(value, contract.struct, "", models)
    if explained is None and (found := _first_bad_number(value, "")) is not None:
        explained = f"{found[0]}: {found[1]!r}: {found[1].why}"
    return explained


def _message(exc: msgspec.ValidationError) -> str:
    """msgspec's own message as a reason: ``path: message``."""
    text = str(exc)
    match = re.search(r" - at `\$([^`]*)`$", text)
    if match is None:
        return f"event: {text}"
    path = match.group(1).lstrip(".") or "event"
    return f"{path}: {text[: match.start()]}"


def _join(path: str, key: str) -> str:
    key = key if len(key) <= 60 else key[:57] + "..."
    return f"{path}.{key}" if path else key


def _shown(value: Any, limit: int = 60) -> str:
    if isinstance(value, int) and value.bit_length() > 10_000:  # repr would be slow or refused
        return f"<{value.bit_length()}-bit integer>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether the contract's decoder accepts ``value`` (a decoded JSON value) as ``annotation``."""
    try:
        _decoder(annotation).decode(msgspec.json.encode(value))
    except (msgspec.DecodeError, TypeError, UnicodeEncodeError):  # (a _BadNumber or a lone surrogate inside)
        return False
    return True


def _explain(value: Any, annotation: Any, path: str, models: Container[str], optional: bool = False) -> str | None:
    """The first problem of ``value`` against ``annotation``, as a reason; None if it is valid.

    Walks Structs field by field (in declaration order) and objects key by key, so the
    reason names the innermost field that fails; whether a value is valid is decided by the
    contract's decoder for its type (an object that passes as a whole is not walked).
    """
    if path and isinstance(value, dict | list) and union_members(annotation) != (Any,) and _accepts(annotation, value):
        return None
    if isinstance(value, dict):
        containers = [m for m in union_members(annotation) if is_struct(m) or get_origin(m) is dict]
        if len(containers) == 1 and is_struct(containers[0]):
            return _explain_struct(value, containers[0], path, models)
        if len(containers) == 1:
            item = get_args(containers[0])[1]
            entries = list(value.items())
            for key, child in entries[_first_suspect(entries, containers[0]) :]:
                problem = _explain(child, item, _join(path, str(key)), models)
                if problem is not None:
                    return problem
            return None
    if union_members(annotation) == (Any,):
        found = _first_bad_number(value, path)
        return None if found is None else f"{found[0]}: {found[1]!r}: {found[1].why}"
    if _accepts(annotation, value):
        return None
    why = ""
    if isinstance(value, _BadNumber):
        why = value.why + "; "
    elif isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        why = "outside the 64-bit integer range; "
    elif isinstance(value, str) and _SURROGATE.search(value):
        why = "a lone UTF-16 surrogate escape is not text; "
    return f"{path or 'event'}: {_shown(value)}: {why}expected {expected(annotation, value, optional, narrow=not why)}"


def _first_suspect(entries: list[tuple[Any, Any]], container: Any) -> int:
    """Where to start walking an object's entries: the decoder accepts every entry before it.

    A bisection (each half decoded in C), so that an object of 100,000 keys is not checked key
    by key in Python (seconds per record)."""
    low, high = 0, len(entries)
    while high - low > 1:
        middle = (low + high) // 2
        if _accepts(container, dict(entries[low:middle])):
            low = middle
        else:
            high = middle
    return low


def _explain_struct(
    value: dict[str, Any], struct: type[msgspec.Struct], path: str, models: Container[str]
) -> str | None:
    for field in contract_fields(struct):
        name = _join(path, field.encode_name)
        if field.encode_name not in value:
            if field.required:
                return f"{name}: missing: expected {expected(field.type)}"
            continue
        child = value[field.encode_name]
        problem = _explain(child, field.type, name, models, optional=field.default is None)
        if problem is not None:
            return problem
        if name == MODEL_FIELD and child not in models:
            return f"{name}: {_shown(child)}: not a configured model"
    problem = exactly_one_problem(struct, value.get)
    if problem is not None:
        return f"{path}.{problem}" if path else problem
    return None


# -- describing a type in words (reasons and docs) ----------------------------------------
_KIND = {
    mi.StrType: "string",
    mi.DateTimeType: "string",
    mi.IntType: "number",
    mi.FloatType: "number",
    mi.BoolType: "bool",
    mi.NoneType: "null",
    mi.StructType: "object",
    mi.DictType: "object",
    mi.TypedDictType: "object",
    mi.ListType: "array",
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | _BadNumber):
        return "number"
    return {str: "string", dict: "object", list: "array", type(None): "null"}.get(type(value), "?")


def _flat(info: mi.Type) -> list[tuple[mi.Type, dict[str, Any]]]:
    """(type, extra metadata) of each union member."""
    extra: dict[str, Any] = {}
    while isinstance(info, mi.Metadata):
        extra = {**(info.extra or {}), **extra}
        info = info.type
    if isinstance(info, mi.UnionType):
        return [(t, {**extra, **e}) for member in info.types for t, e in _flat(member)]
    return [(info, extra)]


def _number(x: float) -> str:
    return f"{x:g}"


def _phrase(info: mi.Type, extra: dict[str, Any]) -> tuple[str, str]:
    """(singular with article, plural) wording of one type."""
    if "expected" in extra:
        return extra["expected"], extra["expected"]
    if isinstance(info, mi.StrType):
        return ("a non-empty string", "non-empty strings") if info.min_length else ("a string", "strings")
    if isinstance(info, mi.IntType):
        return "an integer", "integers"
    if isinstance(info, mi.FloatType):
        low, high = info.ge if info.ge is not None else info.gt, info.le if info.le is not None else info.lt
        if low is None or high is None or max(abs(low), abs(high)) >= 1e308:
            return "a number", "numbers"
        between = f"between {_number(low)} and {_number(high)}"
        return f"a number {between}", f"numbers {between}"
    if isinstance(info, mi.BoolType):
        return "a bool", "bools"
    if isinstance(info, mi.NoneType):
        return "null", "nulls"
    if isinstance(info, mi.DateTimeType):
        offset = " with offset" if info.tz else ""
        return f"an RFC 3339 date-time{offset}", f"RFC 3339 date-times{offset}"
    if isinstance(info, mi.DictType) and not isinstance(info.value_type, mi.AnyType):
        plural = _words([_phrase(t, e)[1] for t, e in _flat(info.value_type) if _kept(t, _flat(info.value_type))])
        return f"an object of {plural}", f"objects of {plural}"
    if isinstance(info, mi.StructType | mi.DictType | mi.TypedDictType):
        return "an object", "objects"
    if isinstance(info, mi.ListType):
        return "an array", "arrays"
    return "any JSON value", "JSON values"


def _kept(info: mi.Type, members: list[tuple[mi.Type, dict[str, Any]]]) -> bool:
    """An integer alternative is not worth naming next to a number."""
    return not (isinstance(info, mi.IntType) and any(isinstance(t, mi.FloatType) for t, _ in members))


def _words(phrases: list[str]) -> str:
    """'a number', 'a string', 'null' → 'a number, string or null' (one article, first)."""
    phrases = list(dict.fromkeys(phrases))
    rest = [re.sub(r"^an? ", "", p) for p in phrases[1:]]
    items = [phrases[0], *rest]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


@cache
def _info(annotation: Any) -> mi.Type:
    return mi.type_info(annotation)


def expected(annotation: Any, value: Any = None, optional: bool = False, narrow: bool = False) -> str:
    """What ``annotation`` accepts, in words: ``a number, string, bool or null``.

    ``optional`` leaves out null (an optional field that is null is absent); ``narrow``
    names only the alternatives of ``value``'s JSON kind when there are any (a string
    timestamp is expected to be an RFC 3339 date-time, not epoch seconds).
    """
    members = _flat(_info(annotation))
    if optional:
        members = [(t, e) for t, e in members if not isinstance(t, mi.NoneType)] or members
    if narrow:
        kind = _json_kind(value)
        same = [(t, e) for t, e in members if _KIND.get(type(t)) == kind]
        members = same or members
    return _words([_phrase(t, e)[0] for t, e in members if _kept(t, members)])


def parse_timestamp(value: Any) -> float:
    """Epoch seconds of a contract ``Timestamp`` (RFC 3339 with offset, or epoch seconds)."""
    try:
        return epoch_seconds(msgspec.convert(value, Timestamp))
    except msgspec.ValidationError:
        raise ValueError(f"timestamp: {_shown(value)}: expected {expected(Timestamp, value, narrow=True)}") from None


_SHOWN_VALUE = re.compile(
    r"^(?P<path>[^:'\"]+): "
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|-?[0-9][0-9.]*(?:e[+-]?[0-9]+)?|\[.*\]|\{.*\}"
    r"|True|False|None|NaN|-?Infinity|nan|-?inf)"
    r"(?P<rest>: .*)$",
    re.DOTALL,
)


def reason_shape(reason: str) -> str:
    """``reason`` with the value it shows (``path: value: what was expected``) replaced by ``…``:
    the reasons of one kind of mistake share it whatever the values, so that a summary counts
    them together. A reason without a shown value is its own shape.

    >>> reason_shape("timestamp: 'yesterday': expected an RFC 3339 date-time with offset")
    'timestamp: …: expected an RFC 3339 date-time with offset'
    >>> reason_shape("features.x1: {'a': 1}: expected a number, string, bool or null")
    'features.x1: …: expected a number, string, bool or null'
    >>> reason_shape("invalid JSON: JSON is malformed: invalid character (byte 0)")
    'invalid JSON: JSON is malformed: invalid character (byte 0)'
    """
    match = _SHOWN_VALUE.match(reason)
    return reason if match is None else f"{match['path']}: …{match['rest']}"
