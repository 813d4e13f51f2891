"""Event contracts (v1): what model services send and what watchkeeper publishes.

The input contracts (:class:`PredictionEvent`, :class:`OutcomeEvent` and the nested
:class:`Prediction`) are msgspec Structs and are defined here only: the worker's
validator (:mod:`watchkeeper.monitor.parse`), the JSON Schemas in ``schemas/``, the field
tables of ``docs/events.md`` (:mod:`watchkeeper.schemas`) and the producer SDK's payloads
are all derived from them. The output contracts (:class:`Alert`,
:class:`RetrainingTrigger`, :class:`CloudEvent`) are pydantic models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import msgspec
import orjson
from msgspec import Meta
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Alert",
    "AlertWindow",
    "CloudEvent",
    "ConfidenceInterval",
    "FeatureValue",
    "Label",
    "OutcomeEvent",
    "Prediction",
    "PredictionEvent",
    "RetrainingTrigger",
    "Timestamp",
    "ALERT_TYPE",
    "RETRAINING_TYPE",
    "alert_cloudevent",
    "deterministic_id",
    "exactly_one_problem",
    "trigger_cloudevent",
]

ALERT_TYPE = "io.watchkeeper.alert.v1"
RETRAINING_TYPE = "io.watchkeeper.retraining.requested.v1"
Severity = Literal["critical", "error", "warning", "info"]
Monitor = Literal["drift", "accuracy", "fairness", "data_quality"]
Comparator = Literal[">", ">=", "<", "<="]

# -- input contracts (msgspec) ----------------------------------------------------------
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


# -- output contracts (pydantic) --------------------------------------------------------
class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ConfidenceInterval(_Contract):
    low: float
    high: float
    level: float = 0.95


class AlertWindow(_Contract):
    start: datetime
    end: datetime
    n: int


class Alert(_Contract):
    """A firing or resolved alert; one per state transition, keyed by fingerprint."""

    fingerprint: str
    sequence: int = Field(
        default=0,
        ge=0,
        description="n-th alert published for this fingerprint (1, 2, ...; repeats included); "
        "part of the CloudEvent id; 0 = published before the field existed",
    )
    status: Literal["firing", "resolved"]
    severity: Severity
    model_id: str
    model_version: str
    monitor: Monitor
    metric: str
    subject: str = Field(description="feature, group or '*' for the whole model")
    observed: float | None
    threshold: float
    comparator: Comparator
    confidence_interval: ConfidenceInterval | None = None
    window: AlertWindow
    starts_at: datetime
    ends_at: datetime | None = None
    summary: str
    description: str
    links: dict[str, str] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict, description="monitor-specific evidence")


class TriggerModel(_Contract):
    id: str
    version: str


class TriggerReason(_Contract):
    category: Monitor
    rule: str
    severity: Severity
    summary: str


class TriggerEvidence(_Contract):
    alert_id: str
    metric: str
    subject: str
    value: float | None
    baseline: float | None = None
    threshold: float
    confidence_interval: ConfidenceInterval | None = None
    n: int


class TriggerWindow(_Contract):
    start: datetime
    end: datetime
    n_predictions: int
    n_labeled: int = 0


class RetrainingTrigger(_Contract):
    """A request to retrain; ``id`` is an idempotency key a trainer can deduplicate on."""

    id: str
    model: TriggerModel
    reason: TriggerReason
    evidence: list[TriggerEvidence]
    data_window: TriggerWindow
    suggested_training_window: TriggerWindow | None = None
    reference_id: str | None = None
    policy: dict[str, Any] = Field(default_factory=dict)
    monitor: dict[str, str] = Field(default_factory=dict)


T = TypeVar("T", bound=BaseModel)


class CloudEvent(_Contract, Generic[T]):
    """CloudEvents 1.0 structured-mode envelope (JSON)."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: T


def deterministic_id(*parts: object) -> str:
    """A stable id from its parts (sha256, 32 hex chars), so consumers can deduplicate."""
    return hashlib.sha256(orjson.dumps([str(p) for p in parts])).hexdigest()[:32]


def alert_cloudevent(alert: Alert, source: str) -> CloudEvent[Alert]:
    """Wrap an alert; the id is unique per transition and the same for the same events.

    It hashes the fingerprint, the per-fingerprint ``sequence``, the status and the window
    end: a fingerprint that fires, resolves and fires again in one window gets three ids.
    """
    return CloudEvent[Alert](
        id=deterministic_id(alert.fingerprint, alert.sequence, alert.status, alert.window.end.isoformat()),
        source=source,
        type=ALERT_TYPE,
        subject=alert.fingerprint,
        time=alert.ends_at or alert.window.end,
        data=alert,
    )


def trigger_cloudevent(trigger: RetrainingTrigger, source: str, time: datetime) -> CloudEvent[RetrainingTrigger]:
    """Wrap a retraining trigger; the CloudEvent id is the trigger's idempotency key."""
    return CloudEvent[RetrainingTrigger](
        id=trigger.id, source=source, type=RETRAINING_TYPE, subject=trigger.model.id, time=time, data=trigger
    )
