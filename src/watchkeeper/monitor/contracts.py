"""The worker's view of the input contracts, derived from their msgspec Structs.

From each contract of :mod:`watchkeeper.events` a TypedDict twin is *generated* (same
field names, types and constraints; nested Structs become nested TypedDicts), and a
:class:`msgspec.json.Decoder` for it decodes *and* validates a record in C into a plain dict:
the fast path of :mod:`watchkeeper.monitor.parse`. For the prediction events of one configured
model a faster twin is generated too (:func:`model_decoder`): its ``features`` are a
:class:`FeatureRow` Struct of exactly that model's features, numeric ones typed as numbers.
:class:`Contract` bundles the generic decoder
with what stage 1 needs to know of the contract (its date-time fields, its
``exactly_one_of`` rule); :mod:`watchkeeper.monitor.reasons` walks the same Structs to word
a rejection.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any, ClassVar, NotRequired, Required, TypedDict, Union, get_args, get_origin

import msgspec

from watchkeeper.events import OutcomeEvent, PredictionEvent
from watchkeeper.input_events import FeatureValue, Integer, Number

__all__ = [
    "MODEL_FIELD",
    "OUTCOMES",
    "PREDICTIONS",
    "TIME_FIELD",
    "Contract",
    "FeatureRow",
    "epoch_seconds",
    "fast_type",
    "feature_row",
    "model_decoder",
    "row_columns",
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
def typed_dict(contract: type[msgspec.Struct], features: Any = None) -> Any:
    """A TypedDict with the contract's fields: same names, types and constraints (``features``: its type instead)."""
    fields: dict[str, Any] = {}
    for field in contract_fields(contract):
        kind = features if features is not None and field.encode_name == "features" else fast_type(field.type)
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


# -- one model's prediction events ------------------------------------------------------
class FeatureRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One event's features, decoded for a configured model (:func:`feature_row` makes the class).

    A Struct instead of a dict: no key strings are allocated per event, the numeric
    features are typed as JSON numbers (so a numeric column holds no text to flag), and a
    name the model does not configure fails the decode (the generic path then reports it).
    It reads like the dict it replaces: ``row[name]`` and ``row.get(name)`` (None for a
    feature sent as null or not sent), and iterating gives the configured names.
    """

    names: ClassVar[dict[str, str]]  # feature name → attribute (f0, f1, …: names need not be identifiers)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, self.names[name])

    def get(self, name: str, default: Any = None) -> Any:
        attribute = self.names.get(name)
        return default if attribute is None else getattr(self, attribute)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)


@cache
def feature_row(numeric: tuple[str, ...], other: tuple[str, ...]) -> type[FeatureRow]:
    """The :class:`FeatureRow` of a model's features: ``numeric`` ones as numbers or null, ``other`` as sent."""
    names = {name: f"f{i}" for i, name in enumerate((*numeric, *other))}
    fields: list[tuple[str, Any, Any]] = [(names[n], Number | Integer | None, None) for n in numeric]
    fields += [(names[n], FeatureValue, None) for n in other]
    return msgspec.defstruct(  # type: ignore[return-value]  # (a subclass of FeatureRow: bases=)
        "ModelFeatures",
        fields,
        bases=(FeatureRow,),
        rename={attribute: name for name, attribute in names.items()},
        namespace={"names": names},
        frozen=True,
        forbid_unknown_fields=True,
    )


@cache
def model_decoder(row: type[FeatureRow]) -> Callable[[Any], Any]:
    """Raw JSON → the prediction contract's dict with ``features`` decoded as ``row``.

    It accepts a subset of what :data:`PREDICTIONS` accepts (same fields, types and
    constraints; only the features are narrower), so a record it refuses is decided again
    by the generic path.
    """
    return msgspec.json.Decoder(typed_dict(PredictionEvent, row)).decode


def row_columns(rows: Sequence[FeatureRow], names: Sequence[str]) -> list[tuple[Any, ...]] | list[Any]:
    """Per row, the tuple of its values of ``names`` (the value itself for one name): one C pass."""
    attributes = [type(rows[0]).names[name] for name in names]
    return list(map(operator.attrgetter(*attributes), rows))
