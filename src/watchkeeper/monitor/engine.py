"""Stage 2: the per-model monitor that merges partials, closes windows and raises alerts.

The same class runs inside the Faust worker (state kept in a changelogged table) and in
``watchkeeper replay`` (state in memory), so both produce the same numbers and alerts.

* Partials are applied at most once: the state keeps, per input partition, the last
  source offset applied and skips a partial whose offsets are all at or below it.
* A window closes when the model's watermark passes its end plus the allowed lateness,
  or when no data arrived for ``idle_close`` seconds of wall time (``tick``). The
  watermark is the smallest of the latest event times of the input partitions that sent
  data within ``idle_close`` (a partition far ahead does not close windows the others are
  still filling). Events for an already closed window are counted as late.
* A model without a reference profile collects its first ``learn_from_first`` events,
  builds the profile from them (output :class:`ProfileLearned`) and monitors from then on.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from watchkeeper import __version__
from watchkeeper.config import ModelConfig
from watchkeeper.events import Alert, RetrainingTrigger, alert_cloudevent, deterministic_id
from watchkeeper.monitor.alerts import AlertBook, AlertRule, Evaluation
from watchkeeper.monitor.concept_drift import ErrorStreamDetector
from watchkeeper.monitor.data_quality import data_quality_evaluations
from watchkeeper.monitor.drift import ColumnDrift, DriftReport, evaluate_drift
from watchkeeper.monitor.label_windows import LabelReport, LabelWindows
from watchkeeper.monitor.labels import uses_labels
from watchkeeper.monitor.partials import monitored_columns
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.retraining import RetrainingPlanner
from watchkeeper.monitor.sequential_drift import SequentialDrift
from watchkeeper.monitor.window import SampleBuffer, WindowAggregate

__all__ = [
    "AlertRaised",
    "LabelsEvaluated",
    "ModelMonitor",
    "Output",
    "ProfileLearned",
    "TriggerRaised",
    "WindowClosed",
]


@dataclass(frozen=True)
class WindowClosed:
    report: DriftReport


@dataclass(frozen=True)
class AlertRaised:
    alert: Alert


@dataclass(frozen=True)
class ProfileLearned:
    profile: ReferenceProfile


@dataclass(frozen=True)
class TriggerRaised:
    trigger: RetrainingTrigger


@dataclass(frozen=True)
class LabelsEvaluated:
    report: LabelReport


Output = WindowClosed | AlertRaised | ProfileLearned | TriggerRaised | LabelsEvaluated


def _drift_evaluation(config: ModelConfig, report: DriftReport, column: ColumnDrift) -> Evaluation:
    drift = config.drift
    clear_psi = drift.clear_psi if drift.clear_psi is not None else 0.75 * drift.min_psi
    summary = (
        f"{config.model_id}: {column.column} drifted (PSI {column.psi:.3f} >= {drift.min_psi})"
        if column.drifted
        else f"{config.model_id}: {column.column} back to reference (PSI {column.psi:.3f})"
    )
    description = (
        f"Column '{column.column}' ({column.kind}) in window of {report.n} events: PSI {column.psi:.4f}, "
        f"Jensen-Shannon {column.jensen_shannon:.4f}, chi-square p {column.p_value:.3g} "
        f"({drift.correction}-adjusted {column.p_adjusted:.3g}, alpha {drift.alpha})."
    )
    return Evaluation(
        model_id=config.model_id,
        model_version=report.model_version,
        monitor="drift",
        metric="psi",
        subject=column.column,
        observed=column.psi,
        threshold=drift.min_psi,
        comparator=">=",
        breached=column.drifted,
        cleared=column.psi < clear_psi or not column.significant,
        window_start=report.window_start,
        window_end=report.window_end,
        n=column.n,
        severity=drift.severity,
        summary=summary,
        description=description,
        details={
            "jensen_shannon": column.jensen_shannon,
            "p_value": column.p_value,
            "p_adjusted": column.p_adjusted,
            "alpha": drift.alpha,
            "correction": drift.correction,
            "ks": column.ks,
            "wasserstein": column.wasserstein,
            "missing_rate": column.missing_rate,
            "unseen_rate": column.unseen_rate,
            "out_of_range_rate": column.out_of_range_rate,
        },
    )


class ModelMonitor:
    """Stage-2 state and logic of one model (pure: no I/O)."""

    def __init__(
        self,
        config: ModelConfig,
        profile: ReferenceProfile | None,
        state: Mapping[str, Any] | None = None,
        label_store: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        state = state or {}
        learned = state.get("learned_profile")
        self.profile = profile or (ReferenceProfile.from_dict(learned) if learned else None)
        self.applied: dict[str, int] = dict(state.get("applied", {}))
        self.source_times: dict[str, list[float]] = {k: list(v) for k, v in state.get("source_times", {}).items()}
        self.closed_until: float | None = state.get("closed_until")
        self.last_data_at: float | None = state.get("last_data_at")
        self.late_events: int = int(state.get("late_events", 0))
        self.duplicates_skipped: int = int(state.get("duplicates_skipped", 0))
        self.windows = {float(k): WindowAggregate.from_dict(v) for k, v in state.get("windows", {}).items()}
        sample = state.get("sample")
        self.sample = SampleBuffer.from_dict(sample) if sample else None
        if profile is None and self.sample is None:
            self.sample = SampleBuffer(limit=config.reference.learn_from_first)
        repeat = config.alerts.repeat_interval
        rule = AlertRule(config.drift.for_windows, config.drift.resolve_windows, repeat)
        links = dict(config.alerts.links)
        self.alerts = AlertBook.from_dict(state.get("alerts", {}), rule, links)
        accuracy, fairness = config.accuracy, config.fairness
        self.books = {
            "drift": self.alerts,
            "accuracy": AlertBook.from_dict(
                state.get("accuracy_alerts", {}),
                AlertRule(accuracy.for_windows, accuracy.resolve_windows, repeat),
                links,
            ),
            "data_quality": AlertBook.from_dict(
                state.get("data_quality_alerts", {}),
                AlertRule(config.data_quality.for_windows, config.data_quality.resolve_windows, repeat),
                links,
            ),
            "fairness": AlertBook.from_dict(
                state.get("fairness_alerts", {}),
                AlertRule(fairness.for_windows, fairness.resolve_windows, repeat),
                links,
            ),
        }
        self.labels = LabelWindows(config, state.get("labels"), label_store)
        self.error_stream = ErrorStreamDetector(config, state.get("error_stream"))
        self.planner = RetrainingPlanner(config.model_id, config.retraining, state.get("retraining"))
        self.config_hash = deterministic_id(config.model_dump_json())
        self._sequential_state = state.get("sequential")
        self._sequential: SequentialDrift | None = None

    @property
    def sequential(self) -> SequentialDrift | None:
        """The CUSUM monitor, once the model has a profile (built lazily, restored from state)."""
        if self._sequential is None and self.profile is not None:
            self._sequential = SequentialDrift(self.config, self.profile, self._sequential_state)
        return self._sequential

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "source_times": self.source_times,
            "closed_until": self.closed_until,
            "last_data_at": self.last_data_at,
            "late_events": self.late_events,
            "duplicates_skipped": self.duplicates_skipped,
            "windows": {repr(k): v.to_dict() for k, v in self.windows.items()},
            "sample": self.sample.to_dict() if self.sample and self.profile is None else None,
            "learned_profile": self.profile.to_dict() if self.profile and self.profile.source == "learned" else None,
            "alerts": self.alerts.to_dict(),
            "accuracy_alerts": self.books["accuracy"].to_dict(),
            "fairness_alerts": self.books["fairness"].to_dict(),
            "data_quality_alerts": self.books["data_quality"].to_dict(),
            "labels": self.labels.state_dict(),
            "error_stream": self.error_stream.state_dict(),
            "sequential": self.sequential.state_dict() if self.sequential else self._sequential_state,
            "retraining": self.planner.to_dict(),
        }

    # -- input ----------------------------------------------------------------------
    def _already_applied(self, sources: Mapping[str, list[int]]) -> bool:
        """True when every source range of the partial is at or below what was applied."""
        return bool(sources) and all(last <= self.applied.get(src, -1) for src, (_, last) in sources.items())

    def apply(self, partial: Mapping[str, Any], now: float) -> list[Output]:
        """Merge one partial; returns what closing windows (by watermark) produced."""
        sources = partial.get("source", {})
        if self._already_applied(sources):
            self.duplicates_skipped += 1
            return []
        for src, (_, last) in sources.items():
            self.applied[src] = max(last, self.applied.get(src, -1))
        for src, event_time in partial.get("watermarks", {}).items():
            previous = self.source_times.get(src, [float("-inf"), now])[0]
            self.source_times[src] = [max(previous, float(event_time)), now]
        outputs: list[Output] = []
        for entry in partial.get("labels", ()):
            self.labels.add(entry)
        for start, count in partial.get("expired", {}).items():
            self.labels.add_expired(float(start), int(count))
        if partial.get("errors") and self.config.accuracy.enabled:
            outputs += self._error_stream(partial)
        if partial["kind"] == "sample":
            outputs += self._learn(partial)
        elif partial["kind"] == "stats":
            if self.profile is None or partial.get("profile_id") != self.profile.reference_id:
                return outputs  # binned against another reference: cannot be merged
            self._merge(partial)
            outputs += self._advance_sequential(partial)
        if partial.get("windows"):
            self.last_data_at = now
        outputs += self._close(force_before=None, now=now)
        return outputs + self._label_tick(now)

    def _error_stream(self, partial: Mapping[str, Any]) -> list[Output]:
        """Concept drift verdicts from the 0/1 errors, attributed to the open drift window."""
        starts = [float(e["start"]) for e in partial.get("labels", ())] + list(self.windows)
        start = self.closed_until if self.closed_until is not None else max(starts, default=0.0)
        outputs: list[Output] = []
        for evaluation in self.error_stream.update(partial["errors"], start, "unversioned"):
            outputs += self._observe(evaluation)
        return outputs

    def _label_tick(self, now: float) -> list[Output]:
        """Re-evaluate label windows that got labels; finalize those past the horizon."""
        outputs: list[Output] = []
        for report, evaluations in self.labels.tick(self.watermark(now)):
            outputs += self._label_outputs(report, evaluations)
        self.labels.save()
        return outputs

    def _label_outputs(self, report: LabelReport, evaluations: list[Evaluation]) -> list[Output]:
        outputs: list[Output] = [LabelsEvaluated(report)]
        for evaluation in evaluations:
            outputs += self._observe(evaluation)
        return outputs

    def _merge(self, partial: Mapping[str, Any]) -> None:
        for entry in partial["windows"]:
            start = float(entry["start"])
            if self.closed_until is not None and start < self.closed_until:
                self.late_events += int(entry["n"])
                continue
            self.windows.setdefault(start, WindowAggregate(start=start)).add(entry)

    def _learn(self, partial: Mapping[str, Any]) -> list[Output]:
        if self.profile is not None or self.sample is None:
            return []
        for entry in partial["windows"]:
            self.sample.add(entry)
        if not self.sample.full:
            return []
        columns = monitored_columns(self.config)
        limits = {f.name: f.max_categories for f in self.config.features}
        data = {n: (k, self.sample.rows.get(n, [])) for n, k in columns.items()}
        data = {n: kv for n, kv in data.items() if any(v is not None for v in kv[1])}
        self.profile = ReferenceProfile.build(
            self.config.model_id,
            data,
            bins=self.config.drift.bins,
            max_categories=limits,
            source="learned",
            sequential_arl_events=self.config.drift.sequential_arl_events if self.config.drift.sequential else None,
            bucket_size=self.config.drift.bucket_size,
            multivariate=self.config.drift.multivariate,
        )
        self.sample = None
        return [ProfileLearned(self.profile)]

    # -- closing --------------------------------------------------------------------
    def watermark(self, now: float) -> float | None:
        """Least latest-event-time over the input partitions active within ``idle_close``."""
        if not self.source_times:
            return None
        active = [t for t, seen in self.source_times.values() if now - seen < self.config.window.idle_close]
        return min(active) if active else max(t for t, _ in self.source_times.values())

    def tick(self, now: float) -> list[Output]:
        """Close windows the watermark passed; all of them after ``idle_close`` without data."""
        if self.last_data_at is None:
            return self._label_tick(now)
        if now - self.last_data_at >= self.config.window.idle_close:
            return self._close(force_before=float("inf"), now=now) + self._label_tick(now)
        return self._close(force_before=None, now=now) + self._label_tick(now)

    def flush(self) -> list[Output]:
        """Close every open window and finalize every label window (end of a replay)."""
        outputs = self._close(force_before=float("inf"), now=0.0)
        for report, evaluations in self.labels.tick(float("inf")):
            outputs += self._label_outputs(report, evaluations)
        self.labels.save()
        return outputs

    def _close(self, force_before: float | None, now: float) -> list[Output]:
        size = self.config.window.size
        limit = force_before
        if limit is None:
            watermark = self.watermark(now)
            if watermark is None:
                return []
            limit = watermark - self.config.window.allowed_lateness
        outputs: list[Output] = []
        for start in sorted(s for s in self.windows if s + size <= limit or force_before is not None):
            window = self.windows.pop(start)
            self.closed_until = max(self.closed_until or float("-inf"), start + size)
            outputs += self._evaluate(window)
        return outputs

    def _advance_sequential(self, partial: Mapping[str, Any]) -> list[Output]:
        rows = partial.get("sequential")
        if not rows or self.sequential is None or not self.config.drift.enabled or not partial["windows"]:
            return []
        latest = max(partial["windows"], key=lambda w: float(w["start"]))
        start = float(latest["start"])
        if self.closed_until is not None and start < self.closed_until:
            start = self.closed_until  # attribute to the earliest window still open
        version = max(latest.get("versions", {"unversioned": 0}).items(), key=lambda kv: kv[1])[0]
        outputs: list[Output] = []
        for evaluation in self.sequential.advance(rows, start, version):
            outputs += self._observe(evaluation)
        return outputs

    def _observe(self, evaluation: Evaluation) -> list[Output]:
        """Advance the alert state; a transition becomes an Alert and informs retraining."""
        alert = self.books[evaluation.monitor].observe(evaluation)
        if alert is None:
            return []
        self.planner.record(alert, alert_id=alert_cloudevent(alert, "watchkeeper").id)
        return [AlertRaised(alert)]

    def _evaluate(self, window: WindowAggregate) -> list[Output]:
        assert self.profile is not None
        report = evaluate_drift(self.config.model_id, window, self.config.window.size, self.profile, self.config.drift)
        outputs: list[Output] = [WindowClosed(report)]
        if report.evaluated and self.config.drift.enabled:
            evaluations = [_drift_evaluation(self.config, report, column) for column in report.columns]
            if self.sequential is not None:
                evaluations += self.sequential.window_closed(window.start, report.model_version)
            evaluations += data_quality_evaluations(self.config, report, self.profile)
            for evaluation in evaluations:
                outputs += self._observe(evaluation)
        if self.config.accuracy.enabled and self.config.task != "regression":
            for evaluation in self.error_stream.window_closed(window.start, report.model_version):
                outputs += self._observe(evaluation)
        n_labeled = 0
        if uses_labels(self.config):
            label_report, label_evaluations = self.labels.drift_window_closed(
                window.start, window.n, report.model_version
            )
            n_labeled = label_report.n_labeled
            outputs += self._label_outputs(label_report, label_evaluations)
        triggers = self.planner.observe_window(
            (report.window_start, report.window_end, report.n, n_labeled),
            reference_id=self.profile.reference_id,
            monitor_version=__version__,
            config_hash=self.config_hash,
        )
        return outputs + [TriggerRaised(trigger) for trigger in triggers]
