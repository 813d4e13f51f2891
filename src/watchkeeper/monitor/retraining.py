"""Retraining policies: turn sustained, severe alerts into deduplicable retraining triggers.

A :class:`RetrainingPolicy` says which alerts count (monitors, severities), how long they
must have been firing, how many distinct ones must fire at once, and how often a trigger
may be sent (cooldown, daily cap). A :class:`RetrainingPlanner` holds, per model, the
currently firing alerts and the recent triggers of each policy, and is driven only by
event time (window ends): ``observe`` at each alert transition (firing, repeat, resolved)
and ``observe_window`` at each closed window. No wall clock, so the worker and an offline
replay produce the same triggers with the same ids.

The trigger id is ``deterministic_id(model_id, model_version, policy name, window end)``:
a redelivered or replayed trigger has the same id, so a trainer can deduplicate on it.

Example:
    >>> planner = RetrainingPlanner("m", [RetrainingPolicy(name="drift")])
    >>> planner.observe_window((0.0, 60.0, 100, 0), reference_id=None, monitor_version="1", config_hash="h")
    []
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watchkeeper.config import DAY, RetrainingPolicy
from watchkeeper.events import (
    Alert,
    RetrainingTrigger,
    TriggerEvidence,
    TriggerModel,
    TriggerReason,
    TriggerWindow,
    deterministic_id,
)

__all__ = ["RetrainingPlanner", "WindowSpan"]

WindowSpan = tuple[float, float, int, int]
"""A closed window: (start, end, n_predictions, n_labeled); times in epoch seconds."""

_SEVERITY_RANK: dict[str, int] = {"critical": 3, "error": 2, "warning": 1, "info": 0}


@dataclass(frozen=True)
class _Firing:
    """A currently firing alert: since when (event time) and its latest announcement."""

    since: float
    alert_id: str
    alert: Alert

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "alert_id": self.alert_id, "alert": self.alert.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Firing:
        return cls(float(data["since"]), str(data["alert_id"]), Alert.model_validate(data["alert"]))


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class RetrainingPlanner:
    """The retraining policies of one model and their state (pure: no I/O, event time only).

    Call :meth:`observe` with every alert transition of the model (``firing``, the
    ``repeat`` re-announcements of a still-firing alert, ``resolved``) and
    :meth:`observe_window` once per closed window. Policies with ``firing_for > 0`` become
    due some windows after the firing transition; they are only re-checked at those calls,
    so call :meth:`observe_window` on every closed window (or give the alert rule a
    ``repeat_interval``). For complete evidence when several alerts change in one window,
    :meth:`record` them all, then call :meth:`observe_window` once.
    """

    def __init__(
        self, model_id: str, policies: Sequence[RetrainingPolicy], state: Mapping[str, Any] | None = None
    ) -> None:
        names = [p.name for p in policies]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"retraining policy names must be unique per model; repeated: {repeated}")
        self.model_id = model_id
        self.policies = list(policies)
        state = state or {}
        self.firing: dict[str, _Firing] = {
            fp: _Firing.from_dict(entry) for fp, entry in state.get("firing", {}).items()
        }
        known = set(names)
        self.last_trigger: dict[str, float] = {
            name: float(at) for name, at in state.get("last_trigger", {}).items() if name in known
        }
        self.recent: dict[str, list[float]] = {
            name: [float(t) for t in times] for name, times in state.get("recent", {}).items() if name in known
        }

    # -- state ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (sorted keys, so equal states serialize equally)."""
        return {
            "firing": {fp: self.firing[fp].to_dict() for fp in sorted(self.firing)},
            "last_trigger": {name: self.last_trigger[name] for name in sorted(self.last_trigger)},
            "recent": {name: list(self.recent[name]) for name in sorted(self.recent)},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, model_id: str, policies: Sequence[RetrainingPolicy]
    ) -> RetrainingPlanner:
        """Restore from :meth:`to_dict`; state of policies no longer configured is dropped."""
        return cls(model_id, policies, state=data)

    # -- input ----------------------------------------------------------------------
    def record(self, alert: Alert, *, alert_id: str) -> None:
        """Track one alert transition without evaluating the policies."""
        if alert.model_id != self.model_id:
            raise ValueError(f"alert of model {alert.model_id!r} given to the planner of {self.model_id!r}")
        key = alert.fingerprint
        if alert.status == "resolved":
            self.firing.pop(key, None)
            return
        previous = self.firing.get(key)
        since = previous.since if previous is not None else _epoch(alert.window.end)
        self.firing[key] = _Firing(since=since, alert_id=alert_id, alert=alert)

    def observe(
        self,
        alert: Alert,
        *,
        window: WindowSpan,
        reference_id: str | None,
        monitor_version: str,
        config_hash: str,
        alert_id: str,
    ) -> list[RetrainingTrigger]:
        """Track one alert transition, then evaluate the policies at ``window``'s end."""
        self.record(alert, alert_id=alert_id)
        return self.observe_window(
            window, reference_id=reference_id, monitor_version=monitor_version, config_hash=config_hash
        )

    def observe_window(
        self, window: WindowSpan, *, reference_id: str | None, monitor_version: str, config_hash: str
    ) -> list[RetrainingTrigger]:
        """Evaluate every policy at ``window``'s end; returns the triggers due (config order)."""
        at = float(window[1])
        triggers: list[RetrainingTrigger] = []
        for policy in self.policies:
            matching = self._matching(policy, at)
            if len(matching) < policy.min_alerts:
                continue
            last = self.last_trigger.get(policy.name)
            if last is not None and at - last < policy.cooldown:
                continue
            recent = [t for t in self.recent.get(policy.name, []) if t > at - DAY]
            if len(recent) >= policy.max_per_day:
                self.recent[policy.name] = recent
                continue
            recent.append(at)
            self.recent[policy.name] = recent
            self.last_trigger[policy.name] = at
            triggers.append(self._trigger(policy, matching, window, reference_id, monitor_version, config_hash))
        return triggers

    # -- evaluation -----------------------------------------------------------------
    def _matching(self, policy: RetrainingPolicy, at: float) -> list[_Firing]:
        """Firing alerts that count for ``policy`` at ``at``, most severe first."""
        found = [
            entry
            for _, entry in sorted(self.firing.items())
            if entry.alert.monitor in policy.monitors
            and entry.alert.severity in policy.severities
            and at - entry.since >= policy.firing_for
        ]
        return sorted(found, key=lambda e: (-_SEVERITY_RANK[e.alert.severity], e.since, e.alert.fingerprint))

    def _trigger(
        self,
        policy: RetrainingPolicy,
        matching: Sequence[_Firing],
        window: WindowSpan,
        reference_id: str | None,
        monitor_version: str,
        config_hash: str,
    ) -> RetrainingTrigger:
        start, end, n_predictions, n_labeled = window
        top = matching[0].alert
        latest = max(matching, key=lambda e: (_epoch(e.alert.window.end), e.alert.fingerprint)).alert
        window_end = _time(end)
        count = len(matching)
        summary = f"{policy.name}: {count} matching alert(s) firing for {self.model_id}; most severe: {top.summary}"
        return RetrainingTrigger(
            id=deterministic_id(self.model_id, latest.model_version, policy.name, window_end.isoformat()),
            model=TriggerModel(id=self.model_id, version=latest.model_version),
            reason=TriggerReason(category=top.monitor, rule=policy.name, severity=top.severity, summary=summary),
            evidence=list(_evidence(matching)),
            data_window=TriggerWindow(
                start=_time(start), end=window_end, n_predictions=n_predictions, n_labeled=n_labeled
            ),
            suggested_training_window=TriggerWindow(
                start=_time(end - policy.training_window), end=window_end, n_predictions=0, n_labeled=0
            ),
            reference_id=reference_id,
            policy={
                "name": policy.name,
                "cooldown_until": _time(end + policy.cooldown).isoformat().replace("+00:00", "Z"),
                "triggers_last_24h": len(self.recent[policy.name]),
            },
            monitor={"version": monitor_version, "config_hash": config_hash},
        )


def _evidence(matching: Iterable[_Firing]) -> Iterable[TriggerEvidence]:
    for entry in matching:
        alert = entry.alert
        yield TriggerEvidence(
            alert_id=entry.alert_id,
            metric=alert.metric,
            subject=alert.subject,
            value=alert.observed,
            baseline=_number(alert.details.get("baseline")),
            threshold=alert.threshold,
            confidence_interval=alert.confidence_interval,
            n=alert.window.n,
        )
