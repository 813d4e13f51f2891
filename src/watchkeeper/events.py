"""Event contracts (v1): what model services send and what watchkeeper publishes.

The input contracts (:class:`PredictionEvent`, :class:`OutcomeEvent` and the nested
:class:`Prediction`) are msgspec Structs defined in :mod:`watchkeeper.input_events`
(which the light SDK install imports without pydantic) and re-exported here: the worker's
validator (:mod:`watchkeeper.monitor.parse`), the JSON Schemas in ``schemas/``, the field
tables of ``docs/events.md`` (:mod:`watchkeeper.schemas`) and the producer SDK's payloads
are all derived from them. The output contracts (:class:`Alert`,
:class:`RetrainingTrigger`, :class:`CloudEvent`) are pydantic models.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from watchkeeper.input_events import (
    FeatureValue,
    Label,
    OutcomeEvent,
    Prediction,
    PredictionEvent,
    Timestamp,
    exactly_one_problem,
)

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
