"""Stage 2 of accuracy and fairness: windows that stay open for late labels.

A label window is keyed by the start of a prediction-time window. It holds the
prediction-side contributions and, per *checkpoint*, the labels filed under it by stage 1
(:mod:`watchkeeper.monitor.labels`: a label counts at the first checkpoint at or after its
outcome's event time; checkpoints are the window's end plus ¼, ½ and 1 × the label
horizon). Checkpoint ``j`` is evaluated once, when the model's *label watermark* (the
slower of its prediction and outcome watermarks, see :mod:`watchkeeper.monitor.engine`)
passes its time plus ``window.allowed_lateness``, on the labels of checkpoints ``0..j``.
Due checkpoints of all windows are evaluated in order of their event time, so the verdicts
are a function of the events' contents and timestamps, not of batch sizes or of how the
predictions and outcomes topics interleave. A label that arrives after its checkpoint was
evaluated (beyond the allowed lateness) counts at the next one (``late_labels``).

Each metric of a window is observed by the alert rules once: at the first checkpoint where
it is breached (so a clear degradation pages a quarter of the horizon after the window),
else at the last one (``final``), with every label in.

Each window is its own state record (:meth:`LabelWindows.take_changes` says which
changed), so a long horizon does not make any stored record large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.accuracy import AccuracyMonitor, AccuracyVerdict
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.fairness import fairness_evaluations, fairness_tests
from watchkeeper.monitor.fairness_dispersion import FairnessDispersion
from watchkeeper.monitor.labels import ERROR_SLOTS, LABEL_CHECKPOINTS, checkpoint_times
from watchkeeper.stats.cbpe import estimated_metrics
from watchkeeper.stats.classification import ClassificationAggregate
from watchkeeper.stats.delays import DELAY_EDGES, delay_quantile
from watchkeeper.stats.fairness import GroupFairnessAggregate
from watchkeeper.stats.regression import RegressionAggregate

__all__ = ["LabelReport", "LabelWindow", "LabelWindows"]

FINAL = len(LABEL_CHECKPOINTS) - 1


@dataclass
class Contribution:
    """Mergeable aggregates: a window's prediction side, or the labels of one checkpoint."""

    classification: ClassificationAggregate | None = None
    regression: RegressionAggregate | None = None
    fairness: dict[str, GroupFairnessAggregate] = field(default_factory=dict)
    delays: np.ndarray = field(default_factory=lambda: np.zeros(len(DELAY_EDGES) + 1, dtype=np.int64))
    errors: np.ndarray = field(default_factory=lambda: np.zeros((ERROR_SLOTS, 2), dtype=np.int64))  # wrong, labelled

    def add(self, entry: Mapping[str, Any]) -> None:
        if entry.get("classification"):
            incoming = ClassificationAggregate.from_dict(dict(entry["classification"]))
            self.classification = incoming if self.classification is None else self.classification.merge(incoming)
        if entry.get("regression"):
            incoming_r = RegressionAggregate.from_dict(dict(entry["regression"]))
            self.regression = incoming_r if self.regression is None else self.regression.merge(incoming_r)
        for subject, data in entry.get("fairness", {}).items():
            groups = GroupFairnessAggregate.from_dict(data)
            current = self.fairness.get(subject)
            self.fairness[subject] = groups if current is None else current.merge(groups)
        if "delays" in entry:
            self.delays = self.delays + np.asarray(entry["delays"], dtype=np.int64)
        for slot, wrong, labelled in entry.get("errors", ()):
            self.errors[slot] += (wrong, labelled)

    @property
    def n_labeled(self) -> int:
        return int(self.delays.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "classification": self.classification.to_dict() if self.classification else None,
            "regression": self.regression.to_dict() if self.regression else None,
            "fairness": {k: v.to_dict() for k, v in self.fairness.items()},
            "delays": self.delays.tolist(),
            "errors": [[int(k), *self.errors[k].tolist()] for k in np.flatnonzero(self.errors[:, 1])],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Contribution:
        made = cls()
        made.add(data)
        return made

    @classmethod
    def merged(cls, parts: list[Contribution]) -> Contribution:
        """A new contribution holding the sum of ``parts`` (which are left untouched)."""
        total = cls()
        for part in parts:
            total.add(part.to_dict())
        return total


@dataclass
class LabelWindow:
    start: float
    predicted: Contribution = field(default_factory=Contribution)
    labelled: list[Contribution] = field(default_factory=lambda: [Contribution() for _ in LABEL_CHECKPOINTS])
    cbpe: np.ndarray = field(default_factory=lambda: np.zeros(4))  # expected TP, FP, FN, TN
    n_predictions: int = 0
    version: str = "unversioned"
    drift_closed: bool = False
    evaluated: int = 0  # checkpoints evaluated
    observed: list[str] = field(default_factory=list)  # fingerprints the alert rules have seen for this window
    late_labels: int = 0  # labels that came after their checkpoint was evaluated

    def add(self, entry: Mapping[str, Any]) -> None:
        if "checkpoint" not in entry:
            self.predicted.add(entry)
        else:
            checkpoint = int(entry["checkpoint"])
            if checkpoint < self.evaluated:
                self.late_labels += int(entry.get("n_labeled", 0))
                checkpoint = self.evaluated
            self.labelled[checkpoint].add(entry)
        if "cbpe" in entry:
            self.cbpe = self.cbpe + np.asarray(entry["cbpe"], dtype=np.float64)

    def through(self, checkpoint: int) -> Contribution:
        """The prediction side and the labels of checkpoints ``0..checkpoint``."""
        return Contribution.merged([self.predicted, *self.labelled[: checkpoint + 1]])

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "predicted": self.predicted.to_dict(),
            "labelled": [c.to_dict() for c in self.labelled],
            "cbpe": self.cbpe.tolist(),
            "n_predictions": self.n_predictions,
            "version": self.version,
            "drift_closed": self.drift_closed,
            "evaluated": self.evaluated,
            "observed": self.observed,
            "late_labels": self.late_labels,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelWindow:
        # a record from before checkpoints held one merged aggregate: it becomes the prediction side
        predicted = Contribution.from_dict(data.get("predicted", data))
        labelled = [Contribution.from_dict(part) for part in data.get("labelled", [])] or [
            Contribution() for _ in LABEL_CHECKPOINTS
        ]
        return cls(
            start=float(data["start"]),
            predicted=predicted,
            labelled=labelled,
            cbpe=np.asarray(data.get("cbpe", [0.0] * 4), dtype=np.float64),
            n_predictions=int(data["n_predictions"]),
            version=str(data["version"]),
            drift_closed=bool(data["drift_closed"]),
            evaluated=int(data.get("evaluated", 0)),
            observed=[str(f) for f in data.get("observed", [])],
            late_labels=int(data.get("late_labels", 0)),
        )


@dataclass(frozen=True)
class LabelReport:
    """One evaluation of a label window: metrics, fairness, coverage and delays."""

    model_id: str
    model_version: str
    window_start: float
    window_end: float
    final: bool
    accuracy: AccuracyVerdict | None
    fairness: dict[str, Any]
    n_predictions: int
    n_labeled: int
    expired: int
    delay_p50: float | None
    delay_p90: float | None
    delay_p99: float | None
    ready: bool = False  # at least accuracy.min_labeled labels, or final
    estimated: dict[str, float | None] | None = None  # CBPE, before labels arrive
    checkpoint: int | None = None  # index into LABEL_CHECKPOINTS; None: the drift window's close
    late_labels: int = 0
    new_errors: np.ndarray | None = None  # (wrong, labelled) per prediction-time slot, of the labels counted here

    @property
    def coverage(self) -> float | None:
        return self.n_labeled / self.n_predictions if self.n_predictions else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "final": self.final,
            "n_predictions": self.n_predictions,
            "n_labeled": self.n_labeled,
            "label_coverage": self.coverage,
            "expired": self.expired,
            "label_delay_seconds": {"p50": self.delay_p50, "p90": self.delay_p90, "p99": self.delay_p99},
            "ready": self.ready,
            "checkpoint": self.checkpoint,
            "late_labels": self.late_labels,
            "estimated_without_labels": self.estimated,
            "accuracy": self.accuracy.to_dict() if self.accuracy else None,
            "fairness": self.fairness,
        }


class LabelWindows:
    """The label windows of one model and the accuracy monitor's state."""

    def __init__(
        self, config: ModelConfig, state: Mapping[str, Any] | None, windows: Mapping[str, Any] | None = None
    ) -> None:
        self.config = config
        state = state or {}
        self.store: dict[str, Any] = dict(windows or {})  # repr(start) → stored window, one record each
        # start → checkpoints evaluated (from before checkpoints: "starts", none evaluated)
        progress = state.get("progress") or [[s, 0] for s in state.get("starts", [])]
        self.progress: dict[float, int] = {float(s): int(done) for s, done in progress}
        finalized = state.get("final_through")  # the latest start finalized
        self.final_through: float = float(finalized) if finalized is not None else float("-inf")
        self.late_labels = int(state.get("late_labels", 0))  # labels of windows already finalized
        kept = state.get("previous")  # the last finalized window: start, version, its labels
        self.previous: tuple[float, str, dict[str, Any]] | None = (
            (float(kept[0]), str(kept[1]), dict(kept[2])) if kept else None
        )
        self.accuracy = AccuracyMonitor(config.accuracy, config.task, state.get("accuracy"))
        self.dispersion = FairnessDispersion(config.fairness, state.get("fairness_dispersion"))
        self._loaded: dict[float, LabelWindow] = {}
        self._changed: set[str] = set()

    def window(self, start: float) -> LabelWindow:
        if start not in self._loaded:
            stored = self.store.get(repr(start))
            self._loaded[start] = LabelWindow.from_dict(stored) if stored else LabelWindow(start=start)
            self.progress.setdefault(start, self._loaded[start].evaluated)
        return self._loaded[start]

    def take_changes(self) -> dict[str, Any]:
        """The windows touched since the last call, by ``repr(start)`` (None: finalized and gone)."""
        for start, window in self._loaded.items():
            if start in self.progress:
                self.store[repr(start)] = window.to_dict()
                self._changed.add(repr(start))
        self._loaded.clear()
        changed, self._changed = self._changed, set()
        return {key: self.store.get(key) for key in changed}

    def state_dict(self) -> dict[str, Any]:
        return {
            "progress": sorted([s, done] for s, done in self.progress.items()),
            "final_through": self.final_through if self.final_through > float("-inf") else None,
            "late_labels": self.late_labels,
            "previous": list(self.previous) if self.previous else None,
            "accuracy": self.accuracy.to_dict(),
            "fairness_dispersion": self.dispersion.to_dict(),
        }

    def add(self, entry: Mapping[str, Any]) -> None:
        start = float(entry["start"])
        if start <= self.final_through:  # its last checkpoint was evaluated: too late to count
            self.late_labels += int(entry.get("n_labeled", 0))
            return
        self.window(start).add(entry)

    def _report(self, window: LabelWindow, checkpoint: int | None) -> tuple[LabelReport, Contribution]:
        config = self.config
        data = window.through(checkpoint) if checkpoint is not None else window.predicted
        n_predictions = window.n_predictions
        if data.classification is not None:
            n_predictions = max(n_predictions, data.classification.n)
        report = LabelReport(
            model_id=config.model_id,
            model_version=window.version,
            window_start=window.start,
            window_end=window.start + config.window.size,
            final=checkpoint == FINAL,
            accuracy=None,
            fairness={},
            n_predictions=n_predictions,
            n_labeled=data.n_labeled,
            expired=max(n_predictions - data.n_labeled, 0) if checkpoint == FINAL else 0,
            delay_p50=delay_quantile(data.delays, 0.5),
            delay_p90=delay_quantile(data.delays, 0.9),
            delay_p99=delay_quantile(data.delays, 0.99),
            estimated=estimated_metrics(window.cbpe) if window.cbpe.sum() > 0 else None,
            checkpoint=checkpoint,
            late_labels=window.late_labels,
            new_errors=window.labelled[checkpoint].errors if checkpoint is not None else None,
        )
        return report, data

    def _verdicts(
        self, window: LabelWindow, data: Contribution, n_predictions: int, final: bool, z_critical: float
    ) -> tuple[AccuracyVerdict | None, dict[str, Any], list[Evaluation]]:
        """Accuracy verdict, fairness report and their evaluations of ``data`` (the window's, or pooled)."""
        config = self.config
        end = window.start + config.window.size
        aggregate: Any = data.regression if config.task == "regression" else data.classification
        verdict = None
        evaluations: list[Evaluation] = []
        if config.accuracy.enabled and aggregate is not None:
            verdict = self.accuracy.evaluate(
                config.model_id, window.version, window.start, end, aggregate, n_predictions, final, z_critical
            )
            evaluations += verdict.evaluations
        fairness: dict[str, Any] = {}
        if data.fairness and config.fairness.enabled:
            fairness, fair_evaluations = fairness_evaluations(
                config.model_id,
                window.version,
                window.start,
                end,
                data.fairness,
                config.fairness,
                z_critical,
                self.dispersion.effects(),
            )
            evaluations += fair_evaluations
        return verdict, fairness, evaluations

    def _evaluate(self, window: LabelWindow, checkpoint: int) -> tuple[LabelReport, list[Evaluation]]:
        """Verdicts at one checkpoint; only the observations the alert rules take (module doc)."""
        config = self.config
        report, data = self._report(window, checkpoint)
        final = report.final
        z_critical = self._z_critical(data)
        verdict, fairness, evaluations = self._verdicts(window, data, report.n_predictions, final, z_critical)
        if final:
            evaluations = self._with_previous(window, data, report.n_predictions, evaluations, z_critical)
            if not any(e.monitor == "fairness" and e.breached for e in evaluations):
                self.dispersion.update(data.fairness)  # a window that breached is not noise
        # fairness alone needs only enough labels for its groups; accuracy sets its own minimum
        minimum = config.accuracy.min_labeled if config.accuracy.enabled else 2 * config.fairness.min_support
        ready = report.n_labeled >= minimum or final
        report = replace(report, accuracy=verdict, fairness=fairness, ready=ready)
        if not ready:
            return report, []
        taken = [e for e in evaluations if e.fingerprint not in window.observed and (final or e.breached)]
        window.observed += [e.fingerprint for e in taken]
        return report, taken

    def _with_previous(
        self,
        window: LabelWindow,
        data: Contribution,
        n_predictions: int,
        evaluations: list[Evaluation],
        z_critical: float,
    ) -> list[Evaluation]:
        """At the final checkpoint, also judge the window pooled with the previous final one.

        A sustained degradation too small for one window's labels (a group's FPR gap just past
        the tolerance) shows in two: the pooled evaluation replaces the window's own for a
        metric it breaches and the window's own neither breaches nor clears (a window that
        recovered is not held back by its predecessor). Then this window becomes the previous
        one. Only adjacent windows of the same model version are pooled.
        """
        previous, self.previous = self.previous, (window.start, window.version, data.to_dict())
        if previous is None:
            return evaluations
        start, version, stored = previous
        if start != window.start - self.config.window.size or version != window.version:
            return evaluations
        pooled = Contribution.merged([Contribution.from_dict(stored), data])
        extra = [c.classification.n for c in (pooled, data) if c.classification is not None]
        n_pooled = n_predictions + (extra[0] - extra[1] if len(extra) == 2 else 0)
        _, _, candidates = self._verdicts(window, pooled, n_pooled, False, z_critical)
        by_fingerprint = {e.fingerprint: e for e in candidates if e.breached}
        out = []
        for evaluation in evaluations:
            stronger = by_fingerprint.get(evaluation.fingerprint)
            if stronger is not None and not evaluation.breached and not evaluation.cleared:
                evaluation = replace(
                    stronger,
                    description=f"{stronger.description} Windows {start:g} and {window.start:g} pooled.",
                    details={**stronger.details, "pooled_with_window_start": start},
                )
            out.append(evaluation)
        return out

    def _z_critical(self, data: Contribution) -> float:
        """One-sided level of each label test: ``alerts.label_false_alarm_rate`` split over the
        window's tests (accuracy metrics, fairness tests) and its looks (Bonferroni): the
        checkpoints, and the final one pooled with the previous window."""
        config = self.config
        tests = len(self.accuracy.alerting) if config.accuracy.enabled else 0
        tests += fairness_tests(data.fairness, config.fairness)
        looks = len(LABEL_CHECKPOINTS) + 1
        alpha = config.alerts.label_false_alarm_rate / (max(tests, 1) * looks)
        return NormalDist().inv_cdf(1.0 - alpha)

    def drift_window_closed(self, start: float, n: int, version: str) -> LabelReport:
        """The window's predictions are all in: its prediction count and version (no verdicts yet)."""
        window = self.window(start)
        window.n_predictions = n
        window.version = version
        window.drift_closed = True
        return self._report(window, None)[0]

    def tick(self, watermark: float | None) -> list[tuple[LabelReport, list[Evaluation]]]:
        """Evaluate every checkpoint the label watermark passed, in event-time order."""
        if watermark is None:
            return []
        lateness = self.config.window.allowed_lateness
        due: list[tuple[float, float, int]] = []
        for start, done in self.progress.items():
            times = checkpoint_times(self.config, start)
            due += [(times[j], start, j) for j in range(done, len(times)) if times[j] + lateness <= watermark]
        results = []
        for _, start, checkpoint in sorted(due):
            window = self.window(start)
            results.append(self._evaluate(window, checkpoint))
            window.evaluated = self.progress[start] = checkpoint + 1
            if checkpoint == FINAL:
                del self.progress[start]
                self._loaded.pop(start, None)
                self.store.pop(repr(start), None)
                self._changed.add(repr(start))
                self.final_through = max(self.final_through, start)
        return results
