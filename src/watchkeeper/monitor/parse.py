"""Decoding and validation of raw input events, one batch at a time.

The input contracts are the msgspec Structs of :mod:`watchkeeper.events`; everything here
is derived from them, nothing is written twice:

* **Fast path.** From each contract a TypedDict twin is *generated* (same field names,
  types and constraints; nested Structs become nested TypedDicts) and a
  :class:`msgspec.json.Decoder` for it decodes *and* validates each record in C into a plain
  dict, which is what stage 1 consumes. What is left for Python is a set lookup per event
  (is the model configured?), the contract's ``exactly_one_of`` rule on the dicts, and
  ``datetime.timestamp()`` for the date-time fields. A batch of a configured model's
  predictions goes first through its model's reader
  (:class:`~watchkeeper.monitor.feature_block.ModelFeatures`): the native reader parses
  every record without the GIL, its ``features`` into columns, the rest into the dict
  msgspec would make and the event times into an array. A batch with any record that
  reader refuses (a string in a numeric feature, an unconfigured feature name, anything
  invalid or unusual) is decoded by the generic decoder instead, so what is accepted and
  every reason stay the same.
* **Exact reasons.** A record that fails anywhere on the fast path is checked again on its
  own by the reference path: the contract Struct's own decoder decides, and a walker over
  the contract's fields names the first field that fails, its value and what was expected
  (worded from the field's type, e.g.
  ``prediction.score: 1.7: expected a number between 0 and 1``).

Downstream code gets plain dicts with the declared fields as sent (undeclared fields are
dropped: the contracts ignore them; the native reader drops ``metadata`` too), except that
the date-time fields (``timestamp``, and ``prediction_timestamp`` of outcomes) hold epoch
seconds (float); the event times also come as a float64 array. Property tests assert that
the fast path and the reference path accept and reject exactly the same records.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from watchkeeper.monitor.contracts import (
    MODEL_FIELD,
    OUTCOMES,
    PREDICTIONS,
    TIME_FIELD,
    Contract,
    epoch_seconds,
)
from watchkeeper.monitor.feature_block import ModelFeatures
from watchkeeper.monitor.grouping import groups_of
from watchkeeper.monitor.reasons import rejection_reason

__all__ = ["ParsedBatch", "Rejected", "as_float", "object_matrix", "parse_outcomes", "parse_predictions"]


@dataclass(frozen=True)
class Rejected:
    """An input that cannot be monitored: its position in the batch and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class ParsedBatch:
    """Valid events (decoded dicts), their event times (epoch seconds) and batch positions;
    ``native``: whether the models' native readers decoded the batch (else the generic decoder)."""

    events: list[dict[str, Any]]
    times: np.ndarray
    indices: list[int]
    rejected: list[Rejected]
    native: bool = False


# -- the fast path ----------------------------------------------------------------------
def parse_predictions(
    raw: Sequence[bytes | None], models: Container[str], features: Mapping[str, ModelFeatures] | None = None
) -> ParsedBatch:
    """Decode and validate a batch of raw prediction events.

    ``features``: per configured model, its :class:`ModelFeatures`, for the faster
    per-model readers (else only the generic decoder is used; the result is the same but
    for the ``features`` of each event: a dict, or a :class:`FeatureRef`).
    """
    return _parse(raw, models, PREDICTIONS, features)


def parse_outcomes(raw: Sequence[bytes | None], models: Container[str]) -> ParsedBatch:
    """Decode and validate a batch of raw outcome events (``prediction_timestamp`` → epoch)."""
    return _parse(raw, models, OUTCOMES)


_DECODE_ERRORS = (msgspec.DecodeError, TypeError, RecursionError)


def _decode_each(decode: Callable[[Any], Any], raw: Sequence[bytes | None]) -> list[Any]:
    """Decoded dicts, None where a record does not decode into the contract."""
    out: list[Any] = []
    records = iter(raw)
    while True:
        try:
            out.extend(map(decode, records))  # a C loop over the valid stretch
            return out
        except _DECODE_ERRORS:  # (TypeError: a None value; RecursionError: nested too deeply)
            out.append(None)  # the record that failed; the next ones continue the loop


_TIME = operator.itemgetter(TIME_FIELD)
_MODEL = operator.itemgetter(MODEL_FIELD)


class _ModelOnly(msgspec.Struct):
    model_id: str


_model_only: Callable[[Any], _ModelOnly] = msgspec.json.Decoder(_ModelOnly).decode


def _by_model(
    raw: Sequence[bytes | None], features: Mapping[str, ModelFeatures]
) -> tuple[list[Any], np.ndarray] | None:
    """Every record decoded by its own model's reader, and the event times; None if any record
    is refused by it."""
    try:
        if len(features) == 1:  # (the model check follows the read)
            [(model_id, model)] = features.items()
            read = model.read(raw)  # type: ignore[arg-type]  # (a None record raises TypeError)
            return read if read is not None and list(map(_MODEL, read[0])).count(model_id) == len(read[0]) else None
        groups = groups_of(list(map(operator.attrgetter(MODEL_FIELD), map(_model_only, raw))))
        if not features.keys() >= groups.keys():
            return None
        decoded: list[Any] = [None] * len(raw)
        times = np.empty(len(raw))
        for model_id, where in groups.items():
            if where is None:  # (one model: every record)
                return features[model_id].read(raw)  # type: ignore[arg-type]
            positions = where.tolist()
            read = features[model_id].read(list(map(raw.__getitem__, positions)))  # type: ignore[arg-type]
            if read is None:
                return None
            collections.deque(map(decoded.__setitem__, positions, read[0]), maxlen=0)
            times[where] = read[1]
        return decoded, times
    except _DECODE_ERRORS:
        return None


def _fast(
    raw: Sequence[bytes | None],
    models: Container[str],
    contract: Contract,
    features: Mapping[str, ModelFeatures] | None = None,
) -> tuple[list[Any], np.ndarray | None]:
    """Per record: the decoded dict (its datetime fields as epoch seconds), or None; and, if
    the models' native readers decoded the batch, the event times of every record."""
    by_model = _by_model(raw, features) if features and raw else None
    decoded, times = by_model if by_model is not None else (_decode_each(contract.decode, raw), None)
    complete = None not in decoded
    if not (complete and all(map(models.__contains__, map(_MODEL, decoded)))):
        for i, event in enumerate(decoded):  # the model check (a set lookup each)
            if event is not None and event[MODEL_FIELD] not in models:
                decoded[i] = None
                complete = False
    events = decoded if complete else [e for e in decoded if e is not None]
    for name in contract.times if times is None else ():  # (the native reader gives epoch seconds)
        if name == TIME_FIELD:  # required
            epochs = [value if type(value) is float else value.timestamp() for value in map(_TIME, events)]
            collections.deque(map(operator.setitem, events, itertools.repeat(name), epochs), maxlen=0)
        else:
            for event in events:
                value = event.get(name)
                if value is not None:
                    event[name] = epoch_seconds(value)
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
    return decoded, times


def _parse(
    raw: Sequence[bytes | None],
    models: Container[str],
    contract: Contract,
    features: Mapping[str, ModelFeatures] | None = None,
) -> ParsedBatch:
    decoded, native_times = _fast(raw, models, contract, features)
    native = native_times is not None
    if None not in decoded:  # the whole batch is valid
        times = native_times if native_times is not None else np.fromiter(map(_TIME, decoded), np.float64, len(decoded))
        return ParsedBatch(decoded, times, list(range(len(decoded))), [], native)
    events, kept, indices, rejected = [], [], [], []
    for index, event in enumerate(decoded):
        if event is not None:
            events.append(event)
            kept.append(event[TIME_FIELD])
            indices.append(index)
        else:
            reason = rejection_reason(raw[index], models, contract)
            rejected.append(Rejected(index, reason or "event: rejected (the validators disagree; please report)"))
    return ParsedBatch(events, np.asarray(kept, dtype=np.float64), indices, rejected, native)


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
