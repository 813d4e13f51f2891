"""Stage 2: the per-model monitor that merges partials, closes windows and raises alerts.

The same class runs in the worker (state restored from and written to a changelog as
small records, :mod:`watchkeeper.monitor.records`) and in ``watchkeeper replay`` (state
in memory), so both produce the same numbers and alerts.

Verdicts are a function of the events' contents and timestamps only:

* The **watermark** of a model is the least of the latest event times of *all* input
  partitions (a partial says how many there are), leaving out partitions that stage 1
  reports idle (read to the end and without this model's events for ``idle_close``
  seconds while the worker runs); when all are idle, every window closes. Until every
  partition has sent data (or all are idle), nothing closes. No wall clock is consulted
  here, so a worker that was down does not force windows shut.
* A window closes when the watermark passes its end plus ``allowed_lateness``; events for
  a closed window are counted as late. CUSUM slices are finalised by the same rule and
  in event-time order, interleaved with window closes, so a window is judged only after
  every slice in it (:mod:`watchkeeper.monitor.sequential_drift`).
* Partials are applied at most once: per input partition the last source offset applied
  is kept and a partial whose offsets are all at or below it is skipped.
* A model without a reference profile learns it from its first whole windows
  (:mod:`watchkeeper.monitor.learning`) and monitors from the next window on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from watchkeeper import __version__
from watchkeeper.config import ModelConfig
from watchkeeper.events import Alert, RetrainingTrigger, alert_cloudevent, deterministic_id
from watchkeeper.monitor.alerts import AlertBook, AlertRule, Evaluation
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.columns import monitored_columns
from watchkeeper.monitor.concept_drift import ErrorStreamDetector
from watchkeeper.monitor.data_quality import data_quality_evaluations
from watchkeeper.monitor.drift import DriftReport, drift_evaluation, evaluate_drift
from watchkeeper.monitor.label_windows import LabelReport, LabelWindows
from watchkeeper.monitor.labels import checkpoint_times, uses_labels
from watchkeeper.monitor.learning import ReferenceLearner
from watchkeeper.monitor.partials import stats_from_samples
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.records import RecordWriter, decode_record
from watchkeeper.monitor.retraining import RetrainingPlanner
from watchkeeper.monitor.retraining_queue import DRIFT, LABELS, Rank, RetrainingQueue
from watchkeeper.monitor.sequential_drift import SequentialDrift
from watchkeeper.monitor.window import WindowAggregate
from watchkeeper.monitor.wire import Partial, SampleEntry, Slices, StatsEntry

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

_BOOKS = ("drift", "accuracy", "data_quality", "fairness")


def _profile_records(profile: ReferenceProfile) -> dict[str, Any]:
    """A learned profile as one record per column plus a head (no record grows with the columns)."""
    data = profile.to_dict()
    columns = data.pop("columns")
    records: dict[str, Any] = {"profile/head": {**data, "order": list(columns)}}
    records.update({f"profile/column/{name}": column for name, column in columns.items()})
    return records


def _profile_from_records(records: Mapping[str, Any]) -> ReferenceProfile | None:
    head = records.get("profile/head")
    if head is None:
        return None
    order = head.pop("order")
    return ReferenceProfile.from_dict({**head, "columns": {n: records[f"profile/column/{n}"] for n in order}})


class ModelMonitor:
    """Stage-2 state and logic of one model (pure: no I/O)."""

    def __init__(
        self, config: ModelConfig, profile: ReferenceProfile | None, records: Mapping[str, bytes] | None = None
    ) -> None:
        self.config = config
        stored = {name: decode_record(name, data) for name, data in (records or {}).items()}
        self.writer = RecordWriter(records)
        self.profile = profile or _profile_from_records(stored)
        meta = stored.get("meta") or {}
        self.applied: dict[str, int] = {k: int(v) for k, v in meta.get("applied", {}).items()}
        self.watermarks: dict[str, float] = {k: float(v) for k, v in meta.get("watermarks", {}).items()}
        self.idle: dict[str, bool] = {k: bool(v) for k, v in meta.get("idle", {}).items()}
        self.outcome_watermarks: dict[str, float] = {k: float(v) for k, v in meta.get("outcome_watermarks", {}).items()}
        self.outcomes_idle: dict[str, bool] = {k: bool(v) for k, v in meta.get("outcomes_idle", {}).items()}
        self.partitions: int | None = meta.get("partitions")
        self.closed_until: float | None = meta.get("closed_until")
        self.late_events = int(meta.get("late_events", 0))
        self.duplicates_skipped = int(meta.get("duplicates_skipped", 0))
        self.windows = {
            float(name.split("/", 1)[1]): WindowAggregate.from_dict(value)
            for name, value in stored.items()
            if name.startswith("window/")
        }
        self.learner = ReferenceLearner(config, self.writer, stored) if self.profile is None else None
        repeat = config.alerts.repeat_interval
        links = dict(config.alerts.links)
        rules = {
            "drift": AlertRule(config.drift.for_windows, config.drift.resolve_windows, repeat),
            "accuracy": AlertRule(config.accuracy.for_windows, config.accuracy.resolve_windows, repeat),
            "data_quality": AlertRule(config.data_quality.for_windows, config.data_quality.resolve_windows, repeat),
            "fairness": AlertRule(config.fairness.for_windows, config.fairness.resolve_windows, repeat),
        }
        self.books = {
            name: AlertBook.from_dict(stored.get(f"alerts/{name}") or {}, rules[name], links) for name in _BOOKS
        }
        label_records = {n.split("/", 1)[1]: v for n, v in stored.items() if n.startswith("labels/")}
        self.labels = LabelWindows(config, stored.get("labels"), label_records)
        self.error_stream = ErrorStreamDetector(config, stored.get("error_stream"))
        self.planner = RetrainingPlanner(config.model_id, config.retraining, stored.get("retraining"))
        self.retraining_queue = RetrainingQueue(stored.get("retraining_queue"))
        self.config_hash = deterministic_id(config.model_dump_json())
        self._sequential_state = stored.get("sequential")
        self._sequential: SequentialDrift | None = None
        self._binner: ColumnBinner | None = None

    @property
    def sequential(self) -> SequentialDrift | None:
        """The CUSUM monitor, once the model has a profile (built lazily, restored from state)."""
        if self._sequential is None and self.profile is not None:
            self._sequential = SequentialDrift(self.config, self.profile, self._sequential_state)
        return self._sequential

    @property
    def binner(self) -> ColumnBinner:
        """Stage-1 binning in stage 2, for rows that were collected before the profile existed."""
        assert self.profile is not None
        if self._binner is None or self._binner.profile is not self.profile:
            columns = monitored_columns(self.config)
            quiet = frozenset(f.name for f in self.config.features if not f.sequential)
            self._binner = ColumnBinner.from_profile(
                self.profile, columns, quiet if self.config.drift.sequential else frozenset(self.profile.columns)
            )
        return self._binner

    # -- state ----------------------------------------------------------------------
    def take_changes(self) -> dict[str, bytes | None]:
        """The state records that changed since the last call (None: deleted)."""
        writer = self.writer
        writer.put(
            "meta",
            {
                "applied": self.applied,
                "watermarks": self.watermarks,
                "idle": self.idle,
                "outcome_watermarks": self.outcome_watermarks,
                "outcomes_idle": self.outcomes_idle,
                "partitions": self.partitions,
                "closed_until": self.closed_until,
                "late_events": self.late_events,
                "duplicates_skipped": self.duplicates_skipped,
            },
        )
        for name, book in self.books.items():
            writer.put(f"alerts/{name}", book.to_dict())
        if self.sequential is not None:
            writer.put("sequential", self.sequential.state_dict())
        writer.put("error_stream", self.error_stream.state_dict())
        writer.put("retraining", self.planner.to_dict())
        writer.put("retraining_queue", self.retraining_queue.to_dict())
        writer.put("labels", self.labels.state_dict())
        for start, record in self.labels.take_changes().items():
            if record is None:
                writer.delete(f"labels/{start}")
            else:
                writer.put(f"labels/{start}", record)
        return writer.take()

    # -- input ----------------------------------------------------------------------
    def _already_applied(self, sources: Mapping[str, list[int]]) -> bool:
        """True when every source range of the partial is at or below what was applied."""
        return bool(sources) and all(last <= self.applied.get(src, -1) for src, (_, last) in sources.items())

    def apply(self, partial: Partial) -> list[Output]:
        """Merge one partial; returns what closing windows (by watermark) produced."""
        sources = partial.get("source", {})
        if self._already_applied(sources):
            self.duplicates_skipped += 1
            return []
        for src, (_, last) in sources.items():
            self.applied[src] = max(last, self.applied.get(src, -1))
        self._observe_watermarks(partial)
        self.late_events += partial.get("late", 0)
        outputs: list[Output] = []
        for entry in partial.get("labels", ()):
            self.labels.add(entry)
        if partial["kind"] == "sample":
            self._add_samples(partial["windows"])
        elif partial["kind"] == "stats" and self.profile is not None and self._current(partial):
            self._merge(partial["windows"], partial.get("slices", {}))
        return outputs + self._close(self._limit()) + self._label_tick() + self._retrain(self._retraining_limit())

    def _current(self, partial: Partial) -> bool:
        """Whether the partial was binned against this reference (else it cannot be merged)."""
        return self.profile is not None and partial.get("profile_id") == self.profile.reference_id

    def _observe_watermarks(self, partial: Partial) -> None:
        for src, event_time in partial.get("watermarks", {}).items():
            self.watermarks[src] = max(self.watermarks.get(src, float("-inf")), float(event_time))
        for src, idle in partial.get("idle", {}).items():
            self.idle[src] = bool(idle)
        for number, event_time in partial.get("outcome_watermarks", {}).items():
            self.outcome_watermarks[number] = max(self.outcome_watermarks.get(number, float("-inf")), event_time)
        for number, idle in partial.get("outcomes_idle", {}).items():
            self.outcomes_idle[number] = bool(idle)
        if partial.get("partitions"):
            self.partitions = int(partial["partitions"])

    def _add_samples(self, entries: Sequence[SampleEntry]) -> None:
        if self.learner is not None:
            for entry in entries:
                if self.closed_until is not None and float(entry["start"]) < self.closed_until:
                    self.late_events += int(entry["n"])
                else:
                    self.learner.add(entry)
        elif entries:  # rows binned in stage 1 before it adopted the learned profile
            windows, slices = stats_from_samples(self.binner, entries, self.config)
            self._merge(windows, slices)

    def _merge(self, entries: Sequence[StatsEntry], slices: Slices) -> None:
        for entry in entries:
            start = float(entry["start"])
            if self.closed_until is not None and start < self.closed_until:
                self.late_events += int(entry["n"])
                continue
            self.windows.setdefault(start, WindowAggregate(start=start)).add(entry)
            self.writer.put(f"window/{start!r}", self.windows[start].to_dict())
        if self.sequential is not None and slices:
            self.sequential.add_slices(slices)

    # -- closing --------------------------------------------------------------------
    def watermark(self) -> float | None:
        """Least latest-event-time over the input partitions that are not idle (see module doc).

        ``None`` (nothing closes) until every partition has sent data or been reported idle,
        and while a partition that never sent data is idle but others are active: it may
        only not have been read yet (a backlog produced after the workers started).
        """
        idle = {s for s, flag in self.idle.items() if flag}
        reported = set(self.watermarks) | idle
        if not reported or (self.partitions is not None and len(reported) < self.partitions):
            return None
        active = [t for s, t in self.watermarks.items() if s not in idle]
        if not active:
            return float("inf")  # every partition read to its end and quiet: close everything
        if idle - set(self.watermarks):
            return None
        return min(active)

    def label_watermark(self) -> float | None:
        """The event time up to which every label has been joined: label checkpoints before it are due.

        The slower of the prediction watermark (never infinite here: labels keep arriving for
        the label horizon after the predictions stop) and the outcome watermark, the least
        latest outcome time over the input partitions whose outcomes are not idle. ``None``
        until every partition has sent outcomes or been reported idle; when all are idle
        the prediction watermark alone decides.
        """
        watermark = self.watermark()
        if watermark is not None and watermark == float("inf"):
            watermark = max(self.watermarks.values(), default=None)
        if watermark is None:
            return None
        idle = {p for p, flag in self.outcomes_idle.items() if flag}
        reported = set(self.outcome_watermarks) | idle
        if not reported or (self.partitions is not None and len(reported) < self.partitions):
            return None
        active = [t for p, t in self.outcome_watermarks.items() if p not in idle]
        return min([watermark, *active])

    def _limit(self) -> float | None:
        watermark = self.watermark()
        return None if watermark is None else watermark - self.config.window.allowed_lateness

    def _retraining_limit(self) -> float | None:
        """Event time up to which every alert is decided: the label watermark less the allowed
        lateness when labels are monitored (:mod:`watchkeeper.monitor.retraining_queue`)."""
        if not uses_labels(self.config):
            return float("inf")
        watermark = self.label_watermark()
        return None if watermark is None else watermark - self.config.window.allowed_lateness

    def _retrain(self, limit: float | None) -> list[Output]:
        if limit is None:
            return []
        triggers = self.retraining_queue.advance(limit, self.planner, __version__, self.config_hash)
        return [TriggerRaised(trigger) for trigger in triggers]

    def flush(self) -> list[Output]:
        """Close every open window and finalize every label window (end of a replay)."""
        outputs = self._close(float("inf"))
        for report, evaluations in self.labels.tick(float("inf")):
            outputs += self._label_outputs(report, evaluations)
        return outputs + self._retrain(float("inf"))

    def _close(self, limit: float | None) -> list[Output]:
        """Close windows ending at or before ``limit``, interleaved with CUSUM slices in time order."""
        if limit is None:
            return []
        outputs: list[Output] = []
        if self.learner is not None:
            outputs += self._close_learning(limit)
            if self.learner is not None:
                return outputs
        size = self.config.window.size
        for start in sorted(s for s in self.windows if s + size <= limit):
            outputs += self._advance_sequential(start + size)
            window = self.windows.pop(start)
            self.writer.delete(f"window/{start!r}")
            self.closed_until = max(self.closed_until or float("-inf"), start + size)
            outputs += self._evaluate(window)
        return outputs + self._advance_sequential(limit)

    def _close_learning(self, limit: float) -> list[Output]:
        """Pool closed windows' rows; build the profile once they hold ``learn_from_first`` rows."""
        assert self.learner is not None
        size = self.config.window.size
        for start in sorted(s for s in self.learner.open_windows() if s + size <= limit):
            self.learner.pool(start)
            self.closed_until = max(self.closed_until or float("-inf"), start + size)
            if self.learner.ready:
                return self._learned()
        return []

    def _learned(self) -> list[Output]:
        assert self.learner is not None
        self.profile = self.learner.build()
        for name, record in _profile_records(self.profile).items():
            self.writer.put(name, record)
        pending = self.learner.open_windows()
        self.learner.clear()
        self.learner = None
        for chunks in pending.values():  # rows that came before the profile, binned now
            if chunks:
                self._merge(*stats_from_samples(self.binner, chunks, self.config))
        return [ProfileLearned(self.profile)]

    def _advance_sequential(self, limit: float) -> list[Output]:
        if self.sequential is None or not self.config.drift.enabled:
            return []
        outputs: list[Output] = []
        version = self._latest_version()
        for evaluation in self.sequential.advance_to(limit, version):
            outputs += self._observe(evaluation, evaluation.window_end, DRIFT)
        return outputs

    def _latest_version(self) -> str:
        return self.windows[min(self.windows)].main_version if self.windows else "unversioned"

    def _label_tick(self) -> list[Output]:
        """Re-evaluate label windows that got labels; finalize those past the horizon."""
        outputs: list[Output] = []
        for report, evaluations in self.labels.tick(self.label_watermark()):
            outputs += self._label_outputs(report, evaluations)
        return outputs

    def _label_outputs(self, report: LabelReport, evaluations: list[Evaluation]) -> list[Output]:
        outputs: list[Output] = [LabelsEvaluated(report)]
        assert report.checkpoint is not None  # (reports of checkpoints only: LabelWindows.tick)
        if self.config.accuracy.enabled and self.config.task != "regression":
            evaluations = evaluations + self._error_stream(report)
        decided_at = checkpoint_times(self.config, report.window_start)[report.checkpoint]
        for evaluation in evaluations:
            outputs += self._observe(evaluation, decided_at, LABELS)
        return outputs

    def _error_stream(self, report: LabelReport) -> list[Evaluation]:
        """Concept drift verdicts from the errors of the labels first counted at a checkpoint.

        They are fed slot by slot of prediction time, each slot's k errors among n labels as
        an evenly spread 0/1 sequence (bit i = floor((i+1)k/n) − floor(ik/n)), so that ADWIN
        sees the same stream whatever order the labels were read in. Alarms are attributed to
        the label window, cleared at its last checkpoint.
        """
        bits: list[int] = []
        slots = report.new_errors.tolist() if report.new_errors is not None else []
        for wrong, labelled in slots:
            if labelled:
                bits += np.diff(np.arange(labelled + 1) * wrong // labelled).tolist()
        evaluations = self.error_stream.update(bits, report.window_start, report.model_version) if bits else []
        if report.final:
            evaluations += self.error_stream.window_closed(report.window_start, report.model_version)
        return evaluations

    def _observe(self, evaluation: Evaluation, decided_at: float, rank: Rank) -> list[Output]:
        """Advance the alert state; a transition becomes an Alert, queued for retraining at the
        event time it was decided (``decided_at``)."""
        alert = self.books[evaluation.monitor].observe(evaluation)
        if alert is None:
            return []
        self.retraining_queue.alert(decided_at, rank, alert, alert_cloudevent(alert, "watchkeeper").id)
        return [AlertRaised(alert)]

    def _evaluate(self, window: WindowAggregate) -> list[Output]:
        assert self.profile is not None
        report = evaluate_drift(self.config.model_id, window, self.config.window.size, self.profile, self.config.drift)
        outputs: list[Output] = [WindowClosed(report)]
        if report.evaluated and self.config.drift.enabled:
            evaluations = [drift_evaluation(self.config, report, column) for column in report.columns]
            if self.sequential is not None:
                evaluations += self.sequential.window_closed(window.start, report.model_version)
            evaluations += data_quality_evaluations(self.config, report, self.profile)
            for evaluation in evaluations:
                outputs += self._observe(evaluation, report.window_end, DRIFT)
        n_labeled = 0
        if uses_labels(self.config):
            label_report = self.labels.drift_window_closed(window.start, window.n, report.model_version)
            n_labeled = label_report.n_labeled
            outputs.append(LabelsEvaluated(label_report))
        span = (report.window_start, report.window_end, report.n, n_labeled)
        self.retraining_queue.window(span, self.profile.reference_id)  # evaluated once every alert before it is in
        return outputs
