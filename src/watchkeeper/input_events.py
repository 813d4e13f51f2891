"""Input event contracts (v1): what model services send, as msgspec Structs.

:class:`PredictionEvent`, :class:`OutcomeEvent` and the nested :class:`Prediction` are
defined here only: the worker's validator (:mod:`watchkeeper.monitor.parse`), the JSON
Schemas in ``schemas/``, the field tables of ``docs/events.md`` and the producer SDK's
payloads are derived from them. This module imports msgspec only (no pydantic), so that
the SDK (:mod:`watchkeeper.client`) works in the light install; :mod:`watchkeeper.events`
re-exports it next to the output contracts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

__all__ = [
    "FeatureValue",
    "Label",
    "OutcomeEvent",
    "Prediction",
    "PredictionEvent",
    "Timestamp",
    "exactly_one_problem",
]

# Strict JSON types: values are kept as sent ("0.5" is not 0.5, true is not 1.0). Numbers
# must fit the worker's arithmetic: JSON numbers are finite float64 (the decoder rejects
# NaN, Infinity and 1e400) and integers int64.
Number = float  # JSON integers are accepted (as floats)
Integer = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # int64
NonEmptyStr = Annotated[str, Meta(min_length=1)]
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]
EpochSeconds = Annotated[
    float,
    Meta(ge=-62135596800.0, le=253402300799.0, extra={"expected": "epoch seconds (years 1 to 9999)"}),
]
Timestamp = Annotated[datetime, Meta(tz=True)] | EpochSeconds
FeatureValue = Number | Integer | str | bool | None
Label = str | Integer | bool | None


def exactly_one_problem(contract: type, get: Callable[[str], Any]) -> str | None:
    """The contract's ``exactly_one_of`` rule, checked on field values read with ``get``."""
    rule: dict[str, str] | None = getattr(contract, "exactly_one_of", None)
    if not rule or sum(get(name) is not None for name in rule) == 1:
        return None
    choices = " or ".join(f"{name!r} ({role})" for name, role in rule.items())
    return f"{'/'.join(rule)}: expected exactly one of {choices}"


class _Input(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the input contracts: unknown fields are ignored, rules checked on decode."""

    def __post_init__(self) -> None:
        problem = exactly_one_problem(type(self), lambda name: getattr(self, name))
        if problem is not None:
            raise ValueError(problem)


class Prediction(_Input, frozen=True, kw_only=True, omit_defaults=True):
    """What the model answered: a class label, a score / class probabilities, or a value."""

    label: Annotated[Label, Meta(description="predicted class; monitored as column `prediction.label`")] = None
    score: Annotated[
        Probability | None, Meta(description="positive-class probability; monitored as column `prediction.score`")
    ] = None
    probabilities: Annotated[
        dict[str, Number] | None, Meta(description="multiclass probabilities {class: number} (not monitored yet)")
    ] = None
    value: Annotated[Number | None, Meta(description="regression output (not monitored yet)")] = None


class PredictionEvent(_Input, frozen=True, kw_only=True):
    """One prediction served by a model, keyed on Kafka by `prediction_id`."""

    event_id: Annotated[NonEmptyStr, Meta(description="unique id of this event")]
    prediction_id: Annotated[
        str | None, Meta(description="defaults to `event_id`; the Kafka key; outcomes refer to it")
    ] = None
    model_id: Annotated[
        NonEmptyStr, Meta(description="must be a `model_id` of the models YAML, else the event is dead-lettered")
    ]
    model_version: Annotated[str, Meta(description="a window reports the version with most events")] = "unversioned"
    timestamp: Annotated[Timestamp, Meta(description="event time")]
    features: Annotated[dict[str, FeatureValue], Meta(description="model inputs by name")]
    prediction: Annotated[Prediction, Meta(description="see `Prediction` below")] = Prediction()
    attributes: Annotated[
        dict[str, FeatureValue],
        Meta(
            description="sensitive or segment attributes, not model inputs; "
            "the model's `sensitive_attributes` are kept for fairness"
        ),
    ] = msgspec.field(default_factory=dict)
    metadata: Annotated[dict[str, Any], Meta(description="anything; ignored by the monitor")] = msgspec.field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        if self.prediction_id is None:
            msgspec.structs.force_setattr(self, "prediction_id", self.event_id)
        super().__post_init__()


class OutcomeEvent(_Input, frozen=True, kw_only=True, omit_defaults=True):
    """The ground truth for an earlier prediction; may embed the prediction (no join needed)."""

    exactly_one_of: ClassVar[dict[str, str]] = {"label": "classification", "value": "regression"}

    event_id: str | None = None
    prediction_id: Annotated[NonEmptyStr, Meta(description="the prediction it resolves; the Kafka key")]
    model_id: NonEmptyStr
    timestamp: Annotated[Timestamp, Meta(description="when the outcome became known")]
    label: Annotated[
        Label,
        Meta(
            description="classification truth; compared as a string with `classes` "
            '(`true`/`false` → `"1"`/`"0"`); a label that is not one of `classes` is not usable'
        ),
    ] = None
    value: Annotated[Number | None, Meta(description="regression truth")] = None
    model_version: Annotated[str | None, Meta(description="used with an embedded prediction")] = None
    prediction: Annotated[Prediction | None, Meta(description="the prediction, embedded: then no join is needed")] = (
        None
    )
    prediction_timestamp: Annotated[
        Timestamp | None,
        Meta(
            description="with an embedded prediction: the window the row is attributed to "
            "(else the outcome's `timestamp`)"
        ),
    ] = None
    attributes: Annotated[
        dict[str, FeatureValue] | None,
        Meta(description="with an embedded prediction: the sensitive attributes for fairness"),
    ] = None
