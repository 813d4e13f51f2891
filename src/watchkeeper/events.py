"""Event contracts (v1): what model services send and what watchkeeper publishes.

These pydantic models are the single source of the JSON Schemas in ``schemas/`` and of
the producer SDK's payloads. The worker's hot path does not build these objects per
event: it validates raw JSON with :mod:`watchkeeper.monitor.parse`, which is tested to
accept and reject exactly what these models do.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

__all__ = [
    "Alert",
    "AlertWindow",
    "CloudEvent",
    "ConfidenceInterval",
    "OutcomeEvent",
    "Prediction",
    "PredictionEvent",
    "RetrainingTrigger",
    "ALERT_TYPE",
    "RETRAINING_TYPE",
    "alert_cloudevent",
    "deterministic_id",
    "trigger_cloudevent",
]

ALERT_TYPE = "io.watchkeeper.alert.v1"
RETRAINING_TYPE = "io.watchkeeper.retraining.requested.v1"

# Strict scalars: JSON types are kept as sent (no "0.5" -> 0.5, no true -> 1.0), as the
# worker's fast validator (monitor/parse.py) does.
FeatureValue = StrictFloat | StrictInt | StrictStr | StrictBool | None
Label = StrictStr | StrictInt | StrictBool | None
Severity = Literal["critical", "error", "warning", "info"]
Monitor = Literal["drift", "accuracy", "fairness", "data_quality"]
Comparator = Literal[">", ">=", "<", "<="]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Prediction(_Contract):
    """What the model answered: a class label, a score / class probabilities, or a value."""

    label: Label = None
    score: StrictFloat | None = Field(default=None, ge=0.0, le=1.0, description="positive-class probability")
    probabilities: dict[str, StrictFloat] | None = None
    value: StrictFloat | None = Field(default=None, description="regression output")


class PredictionEvent(_Contract):
    """One prediction served by a model, keyed on Kafka by ``prediction_id``."""

    event_id: str = Field(min_length=1)
    prediction_id: str | None = Field(default=None, description="defaults to event_id")
    model_id: str = Field(min_length=1)
    model_version: str = "unversioned"
    timestamp: AwareDatetime = Field(description="event time (RFC 3339 with offset)")
    features: dict[str, FeatureValue]
    prediction: Prediction = Prediction()
    attributes: dict[str, FeatureValue] = Field(
        default_factory=dict, description="sensitive or segment attributes; not model inputs"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_prediction_id(self) -> PredictionEvent:
        if self.prediction_id is None:
            object.__setattr__(self, "prediction_id", self.event_id)
        return self


class OutcomeEvent(_Contract):
    """The ground truth for an earlier prediction; may embed the prediction (no join needed)."""

    event_id: str | None = None
    prediction_id: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    timestamp: AwareDatetime = Field(description="when the outcome became known")
    label: Label = None
    value: StrictFloat | None = None
    model_version: str | None = None
    prediction: Prediction | None = None
    prediction_timestamp: AwareDatetime | None = None
    attributes: dict[str, FeatureValue] | None = None

    @model_validator(mode="after")
    def _one_truth(self) -> OutcomeEvent:
        if (self.label is None) == (self.value is None):
            raise ValueError("exactly one of 'label' (classification) or 'value' (regression) is required")
        return self


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
    """Wrap an alert; the id is stable for one transition of one fingerprint in one window."""
    return CloudEvent[Alert](
        id=deterministic_id(alert.fingerprint, alert.status, alert.window.end.isoformat()),
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
