"""The records a report is drawn from, validated and grouped by model.

The same four kinds come from a replay output file and from the live topics (see
docs/events.md, "Replay output"): ``window`` (drift statistics of a closed window),
``labels`` (an evaluation of a label window: coverage, delay, accuracy, fairness),
``alert`` (an Alert) and ``retraining`` (a RetrainingTrigger CloudEvent). Only the fields
the charts use are typed here; a record whose typed fields do not fit is a
:class:`RecordError` naming where it came from, the field and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from watchkeeper.events import Alert, CloudEvent, RetrainingTrigger
from watchkeeper.monitor.profile import ReferenceProfile

__all__ = [
    "AccuracyVerdict",
    "AttributeFairness",
    "ColumnStats",
    "Disparity",
    "Evaluation",
    "FairnessVerdict",
    "Gap",
    "GroupStats",
    "LabelsRecord",
    "ModelRecords",
    "Rate",
    "RecordError",
    "ReportInput",
    "Trigger",
    "WindowRecord",
    "group_records",
    "read_replay_output",
]

KINDS = ("window", "labels", "alert", "retraining")
Trigger = CloudEvent[RetrainingTrigger]


class RecordError(ValueError):
    """A record that cannot be drawn: the message names its origin, the field and the expectation."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ColumnStats(_Record):
    kind: str
    psi: float | None
    p_adjusted: float | None


class WindowRecord(_Record):
    """A closed drift window (``kind: window``)."""

    model_id: str
    window_start: float
    window_end: float
    n: int
    evaluated: bool
    drifted: list[str]
    columns: dict[str, ColumnStats]


class Evaluation(_Record):
    metric: str
    threshold: float
    breached: bool


class AccuracyVerdict(_Record):
    status: str
    metrics: dict[str, float | None]
    intervals: dict[str, tuple[float, float] | None]
    baseline: dict[str, float] | None
    evaluations: list[Evaluation]


class Rate(_Record):
    value: float | None
    interval: tuple[float, float] | None


class GroupStats(_Record):
    count: int
    n_labeled: int
    status: str
    sufficient: bool
    selection_rate: Rate | None = None
    tpr: Rate | None = None
    fpr: Rate | None = None


class Gap(_Record):
    interval: tuple[float, float] | None = None


class Disparity(_Record):
    difference: float | None
    gap: Gap | None = None


class AttributeFairness(_Record):
    min_support: int
    reference_group: str | None = None
    groups: dict[str, GroupStats]
    disparities: dict[str, Disparity] = {}


class FairnessVerdict(_Record):
    attributes: dict[str, AttributeFairness] = {}


class LabelsRecord(_Record):
    """One evaluation of a label window (``kind: labels``)."""

    model_id: str
    window_start: float
    window_end: float
    final: bool
    n_predictions: int
    n_labeled: int
    label_coverage: float | None
    expired: int = 0
    label_delay_seconds: dict[str, float | None] = {}
    accuracy: AccuracyVerdict | None = None
    fairness: FairnessVerdict | None = None


@dataclass
class ModelRecords:
    """Everything recorded for one model: windows in time order, the latest evaluation per label window."""

    model_id: str
    windows: list[WindowRecord] = field(default_factory=list)
    labels: dict[float, LabelsRecord] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    triggers: list[Trigger] = field(default_factory=list)

    def add_labels(self, record: LabelsRecord) -> None:
        """Keep the final evaluation of a window, else its latest (later lines re-evaluate it)."""
        kept = self.labels.get(record.window_start)
        if kept is None or record.final or not kept.final:
            self.labels[record.window_start] = record

    def sort(self) -> None:
        self.windows.sort(key=lambda w: w.window_start)
        self.labels = dict(sorted(self.labels.items()))
        self.alerts.sort(key=lambda a: (a.window.end, a.fingerprint, a.sequence))
        self.triggers.sort(key=lambda t: t.time)


@dataclass
class ReportInput:
    """Records by model, the reference profiles known for them and a one-line description of the source."""

    source: str
    models: dict[str, ModelRecords]
    profiles: dict[str, ReferenceProfile] = field(default_factory=dict)


def _error_text(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(record)"
    if first["type"] == "missing":
        return f"field {where!r}: missing"
    shown = repr(first["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"field {where!r}: {first['msg'].lower()} (got {shown})"


def _parse(where: str, record: dict[str, Any]) -> tuple[str, WindowRecord | LabelsRecord | Alert | Trigger]:
    """(model_id, typed record) of one record, or a :class:`RecordError`."""
    kind = record.get("kind")
    try:
        if kind == "window":
            window = WindowRecord.model_validate(record)
            return window.model_id, window
        if kind == "labels":
            labels = LabelsRecord.model_validate(record)
            return labels.model_id, labels
        if kind == "alert":
            alert = Alert.model_validate(record)
            return alert.model_id, alert
        if kind == "retraining":
            trigger = Trigger.model_validate(record)
            return trigger.data.model.id, trigger
    except ValidationError as exc:
        raise RecordError(f"{where}: {kind} record: {_error_text(exc)}") from None
    raise RecordError(f"{where}: field 'kind': expected one of {', '.join(KINDS)} (got {kind!r})")


def group_records(
    records: Iterable[tuple[str, dict[str, Any]]],
    models: Iterable[str] = (),
    skip: Callable[[RecordError], None] | None = None,
) -> dict[str, ModelRecords]:
    """Validate ``(where, record)`` pairs and group them by model; ``models`` (if any) keeps only those.

    ``where`` names the record's origin (``file:line`` or topic, partition and offset) in
    errors. A record that does not fit raises, or is passed to ``skip`` when given.
    """
    wanted = set(models)
    grouped: dict[str, ModelRecords] = {}
    for where, record in records:
        try:
            model_id, parsed = _parse(where, record)
        except RecordError as exc:
            if skip is None:
                raise
            skip(exc)
            continue
        if wanted and model_id not in wanted:
            continue
        target = grouped.setdefault(model_id, ModelRecords(model_id))
        if isinstance(parsed, WindowRecord):
            target.windows.append(parsed)
        elif isinstance(parsed, LabelsRecord):
            target.add_labels(parsed)
        elif isinstance(parsed, Alert):
            target.alerts.append(parsed)
        else:
            target.triggers.append(parsed)
    for model in grouped.values():
        model.sort()
    return dict(sorted(grouped.items()))


def read_replay_output(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    """``(file:line, record)`` for each line of a ``watchkeeper replay --output`` file (blank lines skipped)."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RecordError(f"{where}: expected one JSON object per line ({exc})") from None
            if not isinstance(record, dict):
                raise RecordError(f"{where}: expected a JSON object (got {type(record).__name__})")
            yield where, record
