"""Stage 2 of accuracy and fairness: windows that stay open for late labels.

A label window is keyed by the start of a prediction-time window. It merges the
prediction-side and label-side contributions (see :mod:`watchkeeper.monitor.labels`) and
lives until the model's watermark passes its end plus the label horizon. It is evaluated
when its drift window closes, again on a tick after new labels arrived, and a last time
(``final``) at the horizon. Alerts are observed once per window: at the first evaluation
with at least ``accuracy.min_labeled`` labelled rows (or at the final one), so that a
window re-evaluated as labels trickle in does not advance the alert streaks twice.

Each window is its own state record (:meth:`LabelWindows.take_changes` says which
changed), so a long horizon does not make any stored record large.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.accuracy import AccuracyMonitor, AccuracyVerdict
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.fairness import fairness_evaluations
from watchkeeper.stats.cbpe import estimated_metrics
from watchkeeper.stats.classification import ClassificationAggregate
from watchkeeper.stats.delays import DELAY_EDGES, delay_quantile
from watchkeeper.stats.fairness import GroupFairnessAggregate
from watchkeeper.stats.regression import RegressionAggregate

__all__ = ["LabelReport", "LabelWindow", "LabelWindows"]


@dataclass
class LabelWindow:
    start: float
    classification: ClassificationAggregate | None = None
    regression: RegressionAggregate | None = None
    fairness: dict[str, GroupFairnessAggregate] = field(default_factory=dict)
    delays: np.ndarray = field(default_factory=lambda: np.zeros(len(DELAY_EDGES) + 1, dtype=np.int64))
    cbpe: np.ndarray = field(default_factory=lambda: np.zeros(4))  # expected TP, FP, FN, TN
    expired: int = 0
    n_predictions: int = 0
    version: str = "unversioned"
    drift_closed: bool = False
    observed: bool = False

    def add(self, entry: Mapping[str, Any]) -> None:
        if "classification" in entry:
            incoming = ClassificationAggregate.from_dict(entry["classification"])
            self.classification = incoming if self.classification is None else self.classification.merge(incoming)
        if "regression" in entry:
            incoming_r = RegressionAggregate.from_dict(entry["regression"])
            self.regression = incoming_r if self.regression is None else self.regression.merge(incoming_r)
        for subject, data in entry.get("fairness", {}).items():
            groups = GroupFairnessAggregate.from_dict(data)
            current = self.fairness.get(subject)
            self.fairness[subject] = groups if current is None else current.merge(groups)
        if "delays" in entry:
            self.delays = self.delays + np.asarray(entry["delays"], dtype=np.int64)
        if "cbpe" in entry:
            self.cbpe = self.cbpe + np.asarray(entry["cbpe"], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "classification": self.classification.to_dict() if self.classification else None,
            "regression": self.regression.to_dict() if self.regression else None,
            "fairness": {k: v.to_dict() for k, v in self.fairness.items()},
            "delays": self.delays.tolist(),
            "cbpe": self.cbpe.tolist(),
            "expired": self.expired,
            "n_predictions": self.n_predictions,
            "version": self.version,
            "drift_closed": self.drift_closed,
            "observed": self.observed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelWindow:
        return cls(
            start=float(data["start"]),
            classification=ClassificationAggregate.from_dict(data["classification"])
            if data["classification"]
            else None,
            regression=RegressionAggregate.from_dict(data["regression"]) if data["regression"] else None,
            fairness={k: GroupFairnessAggregate.from_dict(v) for k, v in data["fairness"].items()},
            delays=np.asarray(data["delays"], dtype=np.int64),
            cbpe=np.asarray(data.get("cbpe", [0.0] * 4), dtype=np.float64),
            expired=int(data["expired"]),
            n_predictions=int(data["n_predictions"]),
            version=str(data["version"]),
            drift_closed=bool(data["drift_closed"]),
            observed=bool(data["observed"]),
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
        self.starts: list[float] = [float(s) for s in state.get("starts", [])]
        self.dirty: set[float] = {float(s) for s in state.get("dirty", [])}
        self.accuracy = AccuracyMonitor(config.accuracy, config.task, state.get("accuracy"))
        self._loaded: dict[float, LabelWindow] = {}
        self._changed: set[str] = set()

    def window(self, start: float) -> LabelWindow:
        if start not in self._loaded:
            stored = self.store.get(repr(start))
            self._loaded[start] = LabelWindow.from_dict(stored) if stored else LabelWindow(start=start)
            if start not in self.starts:
                self.starts.append(start)
        return self._loaded[start]

    def take_changes(self) -> dict[str, Any]:
        """The windows touched since the last call, by ``repr(start)`` (None: finalized and gone)."""
        for start, window in self._loaded.items():
            if start in self.starts:
                self.store[repr(start)] = window.to_dict()
                self._changed.add(repr(start))
        self._loaded.clear()
        changed, self._changed = self._changed, set()
        return {key: self.store.get(key) for key in changed}

    def state_dict(self) -> dict[str, Any]:
        return {"starts": sorted(self.starts), "dirty": sorted(self.dirty), "accuracy": self.accuracy.to_dict()}

    def add(self, entry: Mapping[str, Any]) -> None:
        start = float(entry["start"])
        self.window(start).add(entry)
        self.dirty.add(start)

    def add_expired(self, start: float, count: int) -> None:
        self.window(start).expired += count
        self.dirty.add(start)

    def _evaluate(self, window: LabelWindow, final: bool) -> tuple[LabelReport, list[Evaluation]]:
        config = self.config
        end = window.start + config.window.size
        aggregate: Any = window.regression if config.task == "regression" else window.classification
        n_predictions = window.n_predictions
        if window.classification is not None:
            n_predictions = max(n_predictions, window.classification.n)
        n_labeled = int(window.delays.sum())
        verdict = None
        evaluations: list[Evaluation] = []
        if config.accuracy.enabled and aggregate is not None:
            verdict = self.accuracy.evaluate(
                config.model_id, window.version, window.start, end, aggregate, n_predictions, final
            )
            evaluations += verdict.evaluations
        fairness: dict[str, Any] = {}
        if window.fairness and config.fairness.enabled:
            fairness, fair_evaluations = fairness_evaluations(
                config.model_id, window.version, window.start, end, window.fairness, config.fairness
            )
            evaluations += fair_evaluations
        report = LabelReport(
            model_id=config.model_id,
            model_version=window.version,
            window_start=window.start,
            window_end=end,
            final=final,
            accuracy=verdict,
            fairness=fairness,
            n_predictions=n_predictions,
            n_labeled=n_labeled,
            expired=window.expired,
            delay_p50=delay_quantile(window.delays, 0.5),
            delay_p90=delay_quantile(window.delays, 0.9),
            estimated=estimated_metrics(window.cbpe) if window.cbpe.sum() > 0 else None,
            delay_p99=delay_quantile(window.delays, 0.99),
        )
        # fairness alone needs only enough labels for its groups; accuracy sets its own minimum
        minimum = config.accuracy.min_labeled if config.accuracy.enabled else 2 * config.fairness.min_support
        ready = n_labeled >= minimum or final
        report = replace(report, ready=ready)
        if window.observed or not ready or (not evaluations and not final):
            return report, []  # e.g. while the accuracy baseline is still being learned
        window.observed = True
        return report, evaluations

    def drift_window_closed(self, start: float, n: int, version: str) -> tuple[LabelReport, list[Evaluation]]:
        """First evaluation, when the window's predictions are all in."""
        window = self.window(start)
        self.dirty.discard(start)
        window.n_predictions = n
        window.version = version
        window.drift_closed = True
        return self._evaluate(window, final=False)

    def tick(self, watermark: float | None) -> list[tuple[LabelReport, list[Evaluation]]]:
        """Re-evaluate windows with new labels; finalize those past the label horizon."""
        results = []
        horizon = self.config.accuracy.label_horizon
        due = [s for s in self.starts if watermark is not None and s + self.config.window.size + horizon <= watermark]
        for start in sorted(due):
            results.append(self._evaluate(self.window(start), final=True))
            self.starts.remove(start)
            self.dirty.discard(start)
            self._loaded.pop(start, None)
            self.store.pop(repr(start), None)
            self._changed.add(repr(start))
        closing = self.config.window.size + self.config.window.allowed_lateness
        for start in sorted(self.dirty):
            window = self.window(start)
            if not window.drift_closed and watermark is not None and start + closing <= watermark:
                window.drift_closed = True  # no drift window closed it (e.g. while learning a reference)
            if window.drift_closed:
                results.append(self._evaluate(window, final=False))
                self.dirty.discard(start)
        return results
