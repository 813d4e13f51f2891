"""Decoding and validation of raw input events, one batch at a time.

The input contracts are the msgspec Structs of :mod:`watchkeeper.events`; everything here
is derived from them, nothing is written twice:

* **Fast path.** From each contract a TypedDict twin is *generated* (same field names,
  types and constraints; nested Structs become nested TypedDicts) and a
  :class:`msgspec.json.Decoder` for it decodes *and* validates each record in C into a plain
  dict, which is what stage 1 consumes. What is left for Python is a set lookup per event
  (is the model configured?), the contract's ``exactly_one_of`` rule on the dicts, and
  ``datetime.timestamp()`` for the date-time fields.
* **Exact reasons.** A record that fails anywhere on the fast path is checked again on its
  own by the reference path: the contract Struct's own decoder decides, and a walker over
  the contract's fields names the first field that fails, its value and what was expected
  (worded from the field's type, e.g.
  ``prediction.score: 1.7: expected a number between 0 and 1``).

Downstream code gets plain dicts with the declared fields as sent (undeclared fields are
dropped: the contracts ignore them), except that the date-time fields (``timestamp``, and
``prediction_timestamp`` of outcomes) hold epoch seconds (float); the event times also come
as a float64 array. Property tests assert that the fast path and the reference path accept
and reject exactly the same records.
"""

from __future__ import annotations

import collections
import itertools
import json
import math
import operator
import re
import types
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, NotRequired, Required, TypedDict, TypeGuard, Union, get_args, get_origin

import msgspec
import msgspec.inspect as mi
import numpy as np

from watchkeeper.events import OutcomeEvent, PredictionEvent, Timestamp, exactly_one_problem

__all__ = [
    "ParsedBatch",
    "Rejected",
    "parse_outcomes",
    "parse_predictions",
    "parse_timestamp",
    "object_matrix",
    "as_float",
    "expected",
]

_MODEL_FIELD = "model_id"  # checked against the configured models
_TIME_FIELD = "timestamp"  # the event time of both contracts
_INT64 = (-(2**63), 2**63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")  # what Python's json reads from an unpaired \uD800 escape


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


# -- deriving the fast decoder from a contract --------------------------------------------
@cache
def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a (possibly Annotated) union; one element for anything else."""
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in _members(arg))
    return (annotation,)


@cache
def _fields(contract: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(contract)


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _has_datetime(annotation: Any) -> bool:
    if annotation is datetime:
        return True
    return any(_has_datetime(arg) for arg in get_args(annotation) if not isinstance(arg, msgspec.Meta))


def _fast_type(annotation: Any) -> Any:
    """``annotation`` with every Struct replaced by its generated TypedDict."""
    if _is_struct(annotation):
        return _typed_dict(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return Annotated[(_fast_type(args[0]), *annotation.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_fast_type(a) for a in args)]  # noqa: UP007
    if origin is dict:
        return dict[args[0], _fast_type(args[1])]  # type: ignore[misc,valid-type]
    if origin is list:
        return list[_fast_type(args[0])]  # type: ignore[misc]
    return annotation


@cache
def _typed_dict(contract: type[msgspec.Struct]) -> Any:
    """A TypedDict with the contract's fields: same names, types and constraints."""
    fields: dict[str, Any] = {}
    for field in _fields(contract):
        kind = _fast_type(field.type)
        fields[field.encode_name] = Required[kind] if field.required else NotRequired[kind]
    return TypedDict(f"{contract.__name__}Dict", fields)  # type: ignore[operator]


@dataclass(frozen=True)
class _Contract:
    """The worker's view of one input contract, derived from its Struct."""

    struct: type[msgspec.Struct]
    decode: Callable[[Any], Any]  # raw JSON → validated dict
    times: tuple[str, ...]  # the datetime fields (passed on as epoch seconds); the first is the event time
    rule: bool  # whether the contract has an ``exactly_one_of`` rule

    @classmethod
    def of(cls, struct: type[msgspec.Struct]) -> _Contract:
        decoder = msgspec.json.Decoder(_typed_dict(struct))
        times = tuple(f.encode_name for f in _fields(struct) if _has_datetime(f.type))
        assert times and times[0] == _TIME_FIELD, "a contract's first datetime field is its event time"
        return cls(struct, decoder.decode, times, getattr(struct, "exactly_one_of", None) is not None)


_PREDICTIONS = _Contract.of(PredictionEvent)
_OUTCOMES = _Contract.of(OutcomeEvent)
_json = msgspec.json.Decoder()


# -- the fast path ----------------------------------------------------------------------
def parse_predictions(raw: Sequence[bytes | None], models: Container[str]) -> ParsedBatch:
    """Decode and validate a batch of raw prediction events."""
    return _parse(raw, models, _PREDICTIONS)


def parse_outcomes(raw: Sequence[bytes | None], models: Container[str]) -> ParsedBatch:
    """Decode and validate a batch of raw outcome events (``prediction_timestamp`` → epoch)."""
    return _parse(raw, models, _OUTCOMES)


def _decode_each(decode: Callable[[Any], Any], raw: Sequence[bytes | None]) -> list[Any]:
    """Decoded dicts, None where a record does not decode into the contract."""
    out: list[Any] = []
    records = iter(raw)
    while True:
        try:
            out.extend(map(decode, records))  # a C loop over the valid stretch
            return out
        except (msgspec.DecodeError, TypeError, RecursionError):  # (a None value; nested too deeply)
            out.append(None)  # the record that failed; the next ones continue the loop


_TIME = operator.itemgetter(_TIME_FIELD)


def _epoch(value: Any) -> float:
    return value if type(value) is float else value.timestamp()


def _fast(raw: Sequence[bytes | None], models: Container[str], contract: _Contract) -> list[Any]:
    """Per record: the decoded dict (its datetime fields as epoch seconds), or None."""
    decoded = _decode_each(contract.decode, raw)
    complete = None not in decoded
    if not (complete and all(map(models.__contains__, map(operator.itemgetter(_MODEL_FIELD), decoded)))):
        for i, event in enumerate(decoded):  # the model check (a set lookup each)
            if event is not None and event[_MODEL_FIELD] not in models:
                decoded[i] = None
                complete = False
    events = decoded if complete else [e for e in decoded if e is not None]
    for name in contract.times:
        if name == _TIME_FIELD:  # required
            epochs = [value if type(value) is float else value.timestamp() for value in map(_TIME, events)]
            collections.deque(map(operator.setitem, events, itertools.repeat(name), epochs), maxlen=0)
        else:
            for event in events:
                value = event.get(name)
                if value is not None:
                    event[name] = _epoch(value)
    if contract.rule:
        rule: dict[str, str] = getattr(contract.struct, "exactly_one_of", {})
        nones = itertools.repeat(None)
        given = [list(map(operator.is_not, map(operator.methodcaller("get", name), events), nones)) for name in rule]
        counts = np.asarray(given, dtype=bool).reshape(len(rule), len(events)).sum(axis=0)
        broken = np.flatnonzero(counts != 1).tolist()  # (exactly_one_problem's rule, for the batch at once)
        if broken:
            where = range(len(decoded)) if complete else [i for i, event in enumerate(decoded) if event is not None]
            for k in broken:
                decoded[where[k]] = None
    return decoded


def _parse(raw: Sequence[bytes | None], models: Container[str], contract: _Contract) -> ParsedBatch:
    decoded = _fast(raw, models, contract)
    if None not in decoded:  # the whole batch is valid
        times = np.fromiter(map(operator.itemgetter(_TIME_FIELD), decoded), dtype=np.float64, count=len(decoded))
        return ParsedBatch(decoded, times, list(range(len(decoded))), [])
    events, kept, indices, rejected = [], [], [], []
    for index, event in enumerate(decoded):
        if event is not None:
            events.append(event)
            kept.append(event[_TIME_FIELD])
            indices.append(index)
        else:
            reason = _reason(raw[index], models, contract)
            rejected.append(Rejected(index, reason or "event: rejected (the validators disagree; please report)"))
    return ParsedBatch(events, np.asarray(kept, dtype=np.float64), indices, rejected)


# -- the reference path: one record, exact reasons ---------------------------------------
class _BadNumber:
    """A number literal that JSON or float64 cannot carry (NaN, Infinity, 1e400)."""

    def __init__(self, literal: str, why: str) -> None:
        self.literal, self.why = literal, why

    def __repr__(self) -> str:
        return self.literal


def _lenient_loads(payload: bytes | bytearray | str) -> Any:
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


def _reason(payload: bytes | None, models: Container[str], contract: _Contract) -> str | None:
    """Why the contract rejects this record (None: it accepts it), as text that encodes to UTF-8
    (a dead-letter header), also for lone surrogates in keys and records nested too deeply."""
    try:
        explained = _explain_payload(payload, models, contract) if _is_text(payload) else None
        if explained is None:
            explained = _reference(payload, models, contract)[1]  # e.g. a duplicate key: the decoder's message
    except RecursionError:
        return "invalid JSON: nested too deeply (the decoder's limit is below 1000 levels)"
    return None if explained is None else explained.encode("utf-8", "backslashreplace").decode()


def _reference(payload: bytes | None, models: Container[str], contract: _Contract) -> tuple[Any, str | None]:
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
    model_id = getattr(event, _MODEL_FIELD)
    if model_id not in models:
        return None, f"{_MODEL_FIELD}: {_shown(model_id)}: not a configured model"
    return event, None


_Text = bytes | bytearray | memoryview | str


def _is_text(payload: Any) -> TypeGuard[_Text]:
    """A non-empty value a JSON decoder reads (a null or empty Kafka value is not)."""
    return isinstance(payload, bytes | bytearray | memoryview | str) and len(payload) > 0


def _explain_payload(payload: _Text, models: Container[str], contract: _Contract) -> str | None:
    try:
        value = _json.decode(payload)
    except msgspec.DecodeError:  # malformed, or a number out of range: read it leniently
        try:
            value = _lenient_loads(bytes(payload) if isinstance(payload, memoryview) else payload)
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
    if path and isinstance(value, dict | list) and _members(annotation) != (Any,) and _accepts(annotation, value):
        return None
    if isinstance(value, dict):
        containers = [m for m in _members(annotation) if _is_struct(m) or get_origin(m) is dict]
        if len(containers) == 1 and _is_struct(containers[0]):
            return _explain_struct(value, containers[0], path, models)
        if len(containers) == 1:
            item = get_args(containers[0])[1]
            entries = list(value.items())
            for key, child in entries[_first_suspect(entries, containers[0]) :]:
                problem = _explain(child, item, _join(path, str(key)), models)
                if problem is not None:
                    return problem
            return None
    if _members(annotation) == (Any,):
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
    for field in _fields(struct):
        name = _join(path, field.encode_name)
        if field.encode_name not in value:
            if field.required:
                return f"{name}: missing: expected {expected(field.type)}"
            continue
        child = value[field.encode_name]
        problem = _explain(child, field.type, name, models, optional=field.default is None)
        if problem is not None:
            return problem
        if name == _MODEL_FIELD and child not in models:
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
        return _epoch(msgspec.convert(value, Timestamp))
    except msgspec.ValidationError:
        raise ValueError(f"timestamp: {_shown(value)}: expected {expected(Timestamp, value, narrow=True)}") from None


# -- columns for stage 1 --------------------------------------------------------------------
def object_matrix(mappings: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
    """An (events × names) object array of the mappings' values (None where absent)."""
    n, k = len(mappings), len(names)
    if not n or not k:
        return np.empty((n, k), dtype=object)
    pick = operator.itemgetter(*names)
    try:  # fast path: every mapping has every name
        if 1 < k <= _UFUNC_OUTPUTS:  # a C loop that calls pick and fills one column per name
            objects = np.fromiter(mappings, dtype=object, count=n)
            return np.stack(np.frompyfunc(pick, 1, k)(objects), axis=1)
        rows: Iterator[Any] = map(pick, mappings) if k > 1 else ((m[names[0]],) for m in mappings)
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=object, count=n * k)
    except KeyError:
        flat = np.fromiter(
            itertools.chain.from_iterable(map(m.get, names) for m in mappings), dtype=object, count=n * k
        )
    return flat.reshape(n, k)


_NUMERIC_TYPES = frozenset({float, int, bool, type(None)})
_UFUNC_OUTPUTS = 63  # a ufunc has at most 64 operands


def as_float(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float64 copy of an object array (None → NaN) and the mask of non-numeric entries.

    Bools count as 0/1; strings (also numeric-looking ones such as ``"3"``) and other
    non-numbers become NaN and are flagged so the monitor can report type errors instead
    of silently binning them.
    """
    flat = values.ravel().tolist()
    try:  # fast path, all numbers: a C loop that raises on None, strings or containers
        sum(flat)
        numbers_only = True
    except (TypeError, OverflowError):
        numbers_only = False
    if numbers_only or _NUMERIC_TYPES.issuperset(map(type, flat)):
        return values.astype(np.float64), np.zeros(values.shape, dtype=bool)
    numeric = np.fromiter(
        (type(v) in _NUMERIC_TYPES or isinstance(v, int | float) for v in flat), dtype=bool, count=len(flat)
    ).reshape(values.shape)
    out = np.full(values.shape, np.nan)
    out[numeric] = values[numeric].astype(np.float64)
    return out, ~numeric
