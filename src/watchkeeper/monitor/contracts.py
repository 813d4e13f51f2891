"""The worker's view of the input contracts, derived from their msgspec Structs.

From each contract of :mod:`watchkeeper.events` a TypedDict twin is *generated* (same
field names, types and constraints; nested Structs become nested TypedDicts), and a
:class:`msgspec.json.Decoder` for it decodes *and* validates a record in C into a plain dict:
the fast path of :mod:`watchkeeper.monitor.parse` (for a configured model's prediction events,
a twin without ``features``, which :mod:`watchkeeper.monitor.feature_block` reads natively).
:class:`Contract` bundles the generic decoder
with what stage 1 needs to know of the contract (its date-time fields, its
``exactly_one_of`` rule); :mod:`watchkeeper.monitor.reasons` walks the same Structs to word
a rejection.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, NotRequired, Required, TypedDict, Union, get_args, get_origin

import msgspec

from watchkeeper.events import OutcomeEvent, PredictionEvent

__all__ = [
    "MODEL_FIELD",
    "OUTCOMES",
    "PREDICTIONS",
    "TIME_FIELD",
    "Contract",
    "epoch_seconds",
    "fast_type",
    "typed_dict",
]

MODEL_FIELD = "model_id"  # checked against the configured models
TIME_FIELD = "timestamp"  # the event time of both contracts


def epoch_seconds(value: Any) -> float:
    """Epoch seconds of a decoded date-time field (a datetime, or epoch seconds already)."""
    return value if type(value) is float else value.timestamp()


# -- deriving the fast decoder from a contract --------------------------------------------
@cache
def union_members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a (possibly Annotated) union; one element for anything else."""
    if get_origin(annotation) is Annotated:
        return union_members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(m for arg in get_args(annotation) for m in union_members(arg))
    return (annotation,)


@cache
def contract_fields(contract: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(contract)


def is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def has_datetime(annotation: Any) -> bool:
    if annotation is datetime:
        return True
    return any(has_datetime(arg) for arg in get_args(annotation) if not isinstance(arg, msgspec.Meta))


def fast_type(annotation: Any) -> Any:
    """``annotation`` with every Struct replaced by its generated TypedDict."""
    if is_struct(annotation):
        return typed_dict(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return Annotated[(fast_type(args[0]), *annotation.__metadata__)]
    if origin in (Union, types.UnionType):
        return Union[tuple(fast_type(a) for a in args)]  # noqa: UP007
    if origin is dict:
        return dict[args[0], fast_type(args[1])]  # type: ignore[misc,valid-type]
    if origin is list:
        return list[fast_type(args[0])]  # type: ignore[misc]
    return annotation


@cache
def typed_dict(contract: type[msgspec.Struct], without: str | None = None) -> Any:
    """A TypedDict with the contract's fields: same names, types and constraints (less the field ``without``)."""
    fields: dict[str, Any] = {}
    for field in contract_fields(contract):
        if field.encode_name == without:
            continue
        kind = fast_type(field.type)
        fields[field.encode_name] = Required[kind] if field.required else NotRequired[kind]
    return TypedDict(f"{contract.__name__}Dict", fields)  # type: ignore[operator]


@dataclass(frozen=True)
class Contract:
    """The worker's view of one input contract, derived from its Struct."""

    struct: type[msgspec.Struct]
    decode: Callable[[Any], Any]  # raw JSON → validated dict
    times: tuple[str, ...]  # the datetime fields (passed on as epoch seconds); the first is the event time
    rule: bool  # whether the contract has an ``exactly_one_of`` rule

    @classmethod
    def of(cls, struct: type[msgspec.Struct]) -> Contract:
        decoder = msgspec.json.Decoder(typed_dict(struct))
        times = tuple(f.encode_name for f in contract_fields(struct) if has_datetime(f.type))
        assert times and times[0] == TIME_FIELD, "a contract's first datetime field is its event time"
        return cls(struct, decoder.decode, times, getattr(struct, "exactly_one_of", None) is not None)


PREDICTIONS = Contract.of(PredictionEvent)
OUTCOMES = Contract.of(OutcomeEvent)
