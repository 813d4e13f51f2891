"""The alert state machine: few alerts, deduplicated, resolved when the problem goes away.

Per fingerprint (model, monitor, metric, subject)::

    inactive ──breach──> pending ──breach × for_windows──> firing ──clear × resolve_windows──> inactive
                  ^          └──no breach──> inactive        │  (emits "resolved")
                  └──────────────────────────────────────────┘

A window is *breached* when the monitor's condition holds and *cleared* when the value
is back past a separate clear threshold (hysteresis): a value oscillating inside the band
between the two neither fires nor resolves, so the alert does not flap. A firing alert is
repeated every ``repeat_interval`` seconds of event time. Every transition is stamped
with the window end (event time), so the same input gives the same alerts, in the worker
and in an offline replay.

Windows can be judged out of order (a CUSUM alarm is attributed to the window of its
bucket, label windows are re-judged as late labels arrive), so one fingerprint can fire,
resolve and fire again in the same window. :class:`AlertBook` therefore numbers the alerts
it publishes per fingerprint (``Alert.sequence``: 1, 2, ...; kept in its state, repeats
included); the CloudEvent id hashes that number with the fingerprint, status and window
end, so it is unique per transition and the same for the same events.

Example:
    >>> rule = AlertRule(for_windows=2, resolve_windows=1)
    >>> state = AlertState()
    >>> state, t1 = step(state, breached=True, cleared=False, at=60.0, rule=rule)
    >>> state, t2 = step(state, breached=True, cleared=False, at=120.0, rule=rule)
    >>> state, t3 = step(state, breached=False, cleared=True, at=180.0, rule=rule)
    >>> (t1, t2, t3)
    (None, 'firing', 'resolved')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from watchkeeper.events import (
    Alert,
    AlertWindow,
    Comparator,
    ConfidenceInterval,
    Monitor,
    Severity,
    deterministic_id,
)

__all__ = ["AlertBook", "AlertRule", "AlertState", "Evaluation", "fingerprint", "step"]

Status = Literal["inactive", "pending", "firing"]
Transition = Literal["firing", "resolved", "repeat"]


@dataclass(frozen=True)
class AlertRule:
    for_windows: int = 1
    resolve_windows: int = 2
    repeat_interval: float | None = None


@dataclass(frozen=True)
class AlertState:
    status: Status = "inactive"
    breach_streak: int = 0
    clear_streak: int = 0
    starts_at: float | None = None
    last_sent_at: float | None = None


def step(
    state: AlertState, *, breached: bool, cleared: bool, at: float, rule: AlertRule
) -> tuple[AlertState, Transition | None]:
    """Advance one window; returns the new state and the transition to publish, if any."""
    if state.status == "firing":
        if breached or not cleared:
            repeat = (
                rule.repeat_interval is not None
                and state.last_sent_at is not None
                and at - state.last_sent_at >= rule.repeat_interval
            )
            new = replace(state, clear_streak=0, last_sent_at=at if repeat else state.last_sent_at)
            return new, "repeat" if repeat else None
        streak = state.clear_streak + 1
        if streak >= rule.resolve_windows:
            return AlertState(), "resolved"
        return replace(state, clear_streak=streak), None
    if not breached:
        return AlertState(), None
    streak = state.breach_streak + 1
    starts_at = state.starts_at if state.starts_at is not None else at
    if streak >= rule.for_windows:
        return AlertState("firing", streak, 0, starts_at, at), "firing"
    return AlertState("pending", streak, 0, starts_at, None), None


def fingerprint(model_id: str, monitor: str, metric: str, subject: str) -> str:
    return deterministic_id(model_id, monitor, metric, subject)[:16]


@dataclass(frozen=True)
class Evaluation:
    """One monitor verdict about one subject in one window."""

    model_id: str
    model_version: str
    monitor: Monitor
    metric: str
    subject: str
    observed: float | None
    threshold: float
    comparator: Comparator
    breached: bool
    cleared: bool
    window_start: float
    window_end: float
    n: int
    severity: Severity
    summary: str
    description: str
    interval: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.model_id, self.monitor, self.metric, self.subject)


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _render(template: str, evaluation: Evaluation) -> str:
    return template.format(
        model_id=evaluation.model_id,
        subject=evaluation.subject,
        metric=evaluation.metric,
        monitor=evaluation.monitor,
        fingerprint=evaluation.fingerprint,
    )


@dataclass
class AlertBook:
    """The alert states of one model, and the Alert events their transitions produce."""

    rule: AlertRule
    links: dict[str, str] = field(default_factory=dict)
    states: dict[str, AlertState] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)  # alerts published per fingerprint

    def observe(self, evaluation: Evaluation) -> Alert | None:
        key = evaluation.fingerprint
        state = self.states.get(key, AlertState())
        if state.starts_at is not None and evaluation.window_end < state.starts_at:
            return None  # a window that ended before the alert began never changes it
        new, transition = step(
            state,
            breached=evaluation.breached,
            cleared=evaluation.cleared,
            at=evaluation.window_end,
            rule=self.rule,
        )
        if new.status == "inactive":
            self.states.pop(key, None)
        else:
            self.states[key] = new
        if transition is None:
            return None
        sequence = self.sequences[key] = self.sequences.get(key, 0) + 1
        starts_at = new.starts_at if transition != "resolved" else state.starts_at
        return self._alert(
            evaluation, transition, starts_at if starts_at is not None else evaluation.window_end, sequence
        )

    def _alert(self, evaluation: Evaluation, transition: Transition, starts_at: float, sequence: int) -> Alert:
        resolved = transition == "resolved"
        interval = evaluation.interval
        return Alert(
            fingerprint=evaluation.fingerprint,
            sequence=sequence,
            status="resolved" if resolved else "firing",
            severity=evaluation.severity,
            model_id=evaluation.model_id,
            model_version=evaluation.model_version,
            monitor=evaluation.monitor,
            metric=evaluation.metric,
            subject=evaluation.subject,
            observed=evaluation.observed,
            threshold=evaluation.threshold,
            comparator=evaluation.comparator,
            confidence_interval=ConfidenceInterval(low=interval[0], high=interval[1]) if interval else None,
            window=AlertWindow(start=_time(evaluation.window_start), end=_time(evaluation.window_end), n=evaluation.n),
            starts_at=_time(starts_at),
            ends_at=_time(evaluation.window_end) if resolved else None,
            summary=evaluation.summary,
            description=evaluation.description,
            links={name: _render(t, evaluation) for name, t in self.links.items()},
            details={**evaluation.details, "repeat": True} if transition == "repeat" else evaluation.details,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "states": {k: asdict(v) for k, v in self.states.items()},
            "sequences": dict(sorted(self.sequences.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], rule: AlertRule, links: dict[str, str]) -> AlertBook:
        """Restore a book; a record written before ``sequences`` existed counts from 0 again."""
        states = {k: AlertState(**v) for k, v in data.get("states", {}).items()}
        sequences = {k: int(v) for k, v in data.get("sequences", {}).items()}
        return cls(rule=rule, links=links, states=states, sequences=sequences)
