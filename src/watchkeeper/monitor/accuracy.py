"""The accuracy monitor: per-window degradation verdicts against a baseline (pure, no I/O).

Rule (per metric, per prediction-time window with at least ``min_labeled`` labelled rows),
with d the degradation (baseline − observed for higher-is-better metrics, observed −
baseline for lower-is-better ones, |observed − baseline| for bias)::

    breached: d > tol  and  z = d / √(SE_window² + SE_baseline²) > z_crit
    cleared:  d <= tol/2  or  z below the two-sided ``confidence`` quantile

so a window is *breached* only when the metric is worse than the baseline beyond the
tolerance **and** the degradation is significant at the window's share of
``alerts.label_false_alarm_rate`` (``z_crit``, split over metrics, fairness tests and looks by
:mod:`watchkeeper.monitor.label_windows`); the band between breached and cleared is
hysteresis, handled by :class:`~watchkeeper.monitor.alerts.AlertBook`. Metrics without a
standard error (RMSE, MSE, R², MAPE) are judged on the tolerance alone, still behind
``min_labeled``; ECE's z comes from a two-sample calibration test
(:mod:`watchkeeper.stats.calibration_shift`). The standard errors and intervals:
:mod:`watchkeeper.monitor.metric_values`. Details and the metric table:
``docs/monitors-accuracy-fairness.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from watchkeeper.config import METRICS, AccuracyConfig, Direction, Task
from watchkeeper.events import Comparator
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.metric_values import (
    Interval,
    MetricValue,
    classification_values,
    regression_values,
)
from watchkeeper.stats.calibration_shift import calibration_shift
from watchkeeper.stats.classification import ClassificationAggregate
from watchkeeper.stats.intervals import z_value
from watchkeeper.stats.regression import RegressionAggregate

__all__ = ["AccuracyMonitor", "AccuracyVerdict"]

Aggregate = ClassificationAggregate | RegressionAggregate
Status = Literal["disabled", "insufficient_labels", "learning_baseline", "baseline_window", "evaluated"]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- verdicts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyVerdict:
    """The accuracy monitor's result for one window (JSON-able via :meth:`to_dict`).

    ``metrics`` holds every computed metric plus ``n_predictions``, ``n_labeled`` and
    ``label_coverage``; ``evaluations`` feed the AlertBook; ``skipped`` says why an alerting
    metric got no evaluation (e.g. "no baseline", "undefined", "n_scored 12 < min_labeled 200").
    """

    model_id: str
    model_version: str
    window_start: float
    window_end: float
    final: bool
    status: Status
    metrics: dict[str, float | None]
    intervals: dict[str, Interval | None]
    baseline: dict[str, float] | None
    evaluations: list[Evaluation]
    skipped: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (evaluations as metric → breached/cleared/threshold/interval)."""
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "final": self.final,
            "status": self.status,
            "metrics": dict(self.metrics),
            "intervals": {k: list(v) if v else None for k, v in self.intervals.items()},
            "baseline": dict(self.baseline) if self.baseline is not None else None,
            "evaluations": [
                {
                    "metric": e.metric,
                    "observed": e.observed,
                    "threshold": e.threshold,
                    "comparator": e.comparator,
                    "interval": list(e.interval) if e.interval else None,
                    "breached": e.breached,
                    "cleared": e.cleared,
                    "n": e.n,
                    "z": e.details.get("z"),
                    "z_critical": e.details.get("z_critical"),
                }
                for e in self.evaluations
            ],
            "skipped": dict(self.skipped),
        }


def _degradation(direction: Direction, observed: float, baseline: float) -> float:
    """How much worse than the baseline the observed value is (negative: better)."""
    if direction == "lower":
        return observed - baseline
    if direction == "higher":
        return baseline - observed
    return abs(observed - baseline)


def _comparator(direction: Direction, observed: float, baseline: float) -> tuple[Comparator, int]:
    """(comparator, sign of the threshold's offset from the baseline) for the worse side."""
    worse_high = direction == "lower" or (direction == "both" and observed >= baseline)
    return (">", 1) if worse_high else ("<", -1)


_STATE_VERSION = 1


class AccuracyMonitor:
    """Accuracy verdicts of one model, with the learned baseline as its state.

    Args:
        config: the model's accuracy settings.
        task: the model's task; decides the aggregate type and the metrics.
        state: :meth:`to_dict` output of a previous instance, or None.

    With ``baseline="first_windows"`` the first ``baseline_windows`` *final* windows (label
    horizon passed) with at least ``min_labeled`` labelled rows are merged (counts, not
    metric averages) into the baseline aggregate; until it is complete no evaluation is made.
    Create a fresh monitor (``state=None``) when the model version changes.
    """

    def __init__(self, config: AccuracyConfig, task: Task, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.task: Task = task
        self.alerting = config.metrics_for(task)
        state = state or {}
        if state and state.get("version") != _STATE_VERSION:
            raise ValueError(f"state version={state.get('version')!r}: expected {_STATE_VERSION}")
        raw = state.get("baseline_aggregate")
        self.baseline_aggregate: Aggregate | None = self._load(raw) if raw is not None else None
        self.baseline_windows: list[tuple[float, float]] = [
            (float(a), float(b)) for a, b in state.get("baseline_windows", [])
        ]
        learned = state.get("baseline_metrics")
        self.learned_metrics: dict[str, float] | None = (
            {str(k): float(v) for k, v in learned.items()} if learned is not None else None
        )
        self._baseline_values: dict[str, MetricValue] | None = None  # (with standard errors; derived)

    # -- state ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state: the pooled baseline aggregate, its windows and metrics."""
        return {
            "version": _STATE_VERSION,
            "baseline_aggregate": self.baseline_aggregate.to_dict() if self.baseline_aggregate else None,
            "baseline_windows": [list(w) for w in self.baseline_windows],
            "baseline_metrics": self.learned_metrics,
        }

    @classmethod
    def from_dict(cls, config: AccuracyConfig, task: Task, data: Mapping[str, Any]) -> AccuracyMonitor:
        """Rebuild from :meth:`to_dict` output."""
        return cls(config, task, data)

    def _load(self, data: Mapping[str, Any]) -> Aggregate:
        if self.task == "regression":
            return RegressionAggregate.from_dict(dict(data))
        return ClassificationAggregate.from_dict(dict(data))

    # -- baseline ---------------------------------------------------------------------
    @property
    def baseline(self) -> dict[str, float] | None:
        """Baseline metric values, or None while they are being learned / not configured."""
        if self.config.baseline == "reference":
            return dict(self.config.baseline_metrics)
        return dict(self.learned_metrics) if self.learned_metrics is not None else None

    def _values(self, aggregate: Aggregate) -> dict[str, MetricValue]:
        if isinstance(aggregate, RegressionAggregate):
            return regression_values(aggregate, self.config.confidence)
        return classification_values(aggregate, self.config.confidence)

    def _learn(self, window: tuple[float, float], aggregate: Aggregate) -> None:
        copy = self._load(aggregate.to_dict())  # merge is in place: never touch the caller's
        if self.baseline_aggregate is None:
            self.baseline_aggregate = copy
        else:
            self.baseline_aggregate.merge(copy)  # type: ignore[arg-type]
        self.baseline_windows.append(window)
        self._baseline_values = None
        if len(self.baseline_windows) >= self.config.baseline_windows:
            values = self._values(self.baseline_aggregate)
            self.learned_metrics = {
                k: v.value for k, v in values.items() if v.value is not None and math.isfinite(v.value)
            }

    # -- evaluation -------------------------------------------------------------------
    def evaluate(
        self,
        model_id: str,
        model_version: str,
        window_start: float,
        window_end: float,
        aggregate: Aggregate,
        n_predictions: int,
        final: bool,
        z_critical: float | None = None,
    ) -> AccuracyVerdict:
        """Verdict of one window at one label checkpoint; ``final=True`` at the last one.

        ``final`` means the label horizon has passed: only then may the window join the
        learned baseline. ``n_predictions`` is the window's prediction count (coverage).
        ``z_critical`` is the one-sided level of each degradation test (module doc); without
        it, each test is made at the two-sided ``confidence`` quantile (1.96 at 95 %).
        """
        if z_critical is None:
            z_critical = z_value(self.config.confidence)
        expected = RegressionAggregate if self.task == "regression" else ClassificationAggregate
        if not isinstance(aggregate, expected):
            raise TypeError(f"aggregate={type(aggregate).__name__}: expected {expected.__name__} for {self.task}")
        values = self._values(aggregate)
        n_labeled = aggregate.n if isinstance(aggregate, RegressionAggregate) else int(aggregate.confusion.sum())
        metrics: dict[str, float | None] = {
            "n_predictions": float(n_predictions),
            "n_labeled": float(n_labeled),
            "label_coverage": n_labeled / n_predictions if n_predictions > 0 else None,
        }
        if isinstance(aggregate, ClassificationAggregate):
            metrics["n_scored"] = float(aggregate.n_scored)
        metrics.update({k: _finite(v.value) for k, v in values.items()})
        intervals = {k: v.interval for k, v in values.items() if METRICS.get(k) is not None}
        window = (float(window_start), float(window_end))

        def verdict(status: Status, evaluations: list[Evaluation], skipped: dict[str, str]) -> AccuracyVerdict:
            return AccuracyVerdict(
                model_id,
                model_version,
                window[0],
                window[1],
                final,
                status,
                metrics,
                intervals,
                self.baseline,
                evaluations,
                skipped,
            )

        if not self.config.enabled:
            return verdict("disabled", [], {})
        if n_labeled < self.config.min_labeled:
            reason = f"n_labeled {n_labeled} < min_labeled {self.config.min_labeled}"
            return verdict("insufficient_labels", [], dict.fromkeys(self.alerting, reason))
        if self.config.baseline == "first_windows":
            if window in self.baseline_windows:
                return verdict("baseline_window", [], {})
            if self.learned_metrics is None:
                if final:
                    self._learn(window, aggregate)
                    return verdict("baseline_window", [], {})
                return verdict("learning_baseline", [], dict.fromkeys(self.alerting, "baseline being learned"))
        baseline = self.baseline or {}
        evaluations: list[Evaluation] = []
        skipped: dict[str, str] = {}
        for name in self.alerting:
            item = values.get(name)
            if item is None or _finite(item.value) is None:
                skipped[name] = "undefined in this window"
                continue
            if item.n < self.config.min_labeled:
                skipped[name] = f"n {item.n} < min_labeled {self.config.min_labeled}"
                continue
            if name not in baseline:
                skipped[name] = "no baseline value"
                continue
            baseline_se = self._baseline_se(name)
            if name == "ece" and isinstance(aggregate, ClassificationAggregate):
                z = self._calibration_z(aggregate)
            else:
                z = _degradation_z(name, item, baseline[name], baseline_se)
            test = _Test(name, item, baseline[name], baseline_se, z_critical, z)
            evaluations.append(self._evaluation(model_id, model_version, window, test, n_labeled, n_predictions))
        return verdict("evaluated", evaluations, skipped)

    def _baseline_se(self, name: str) -> float:
        """Standard error of the learned baseline's value (0 for configured baseline metrics)."""
        if self.baseline_aggregate is None or self.config.baseline == "reference":
            return 0.0
        if self._baseline_values is None:
            self._baseline_values = self._values(self.baseline_aggregate)
        item = self._baseline_values.get(name)
        return item.se if item is not None and item.se is not None else 0.0

    def _calibration_z(self, aggregate: ClassificationAggregate) -> float | None:
        """The calibration-shift test against the baseline, as a one-sided z (None without a baseline aggregate)."""
        base = self.baseline_aggregate
        if not isinstance(base, ClassificationAggregate) or self.config.baseline == "reference":
            return None
        shift = calibration_shift(aggregate.score_counts, aggregate.score_sums, base.score_counts, base.score_sums)
        return -NormalDist().inv_cdf(min(max(shift.p_value, 1e-300), 1.0 - 1e-16)) if shift.bins else None

    def _evaluation(
        self,
        model_id: str,
        model_version: str,
        window: tuple[float, float],
        test: _Test,
        n_labeled: int,
        n_predictions: int,
    ) -> Evaluation:
        name, item, base = test.name, test.value, test.baseline
        assert item.value is not None
        spec = METRICS[name]
        tol, tol_kind = self.config.effective_tolerance(name, base)
        comparator, sign = _comparator(spec.direction, item.value, base)
        threshold = base + sign * tol
        worse = _degradation(spec.direction, item.value, base)
        z = test.z
        breached = worse > tol and (z is None or z > test.z_critical)
        cleared = worse <= 0.5 * tol or (z is not None and z < z_value(self.config.confidence))
        method = spec.method if item.interval is not None else "point"
        evidence = f"degradation test z = {z:.2f} (alert above {test.z_critical:.2f})" if z is not None else "no test"
        ci = (
            f" ({self.config.confidence:.0%} CI {item.interval[0]:.4f}-{item.interval[1]:.4f})" if item.interval else ""
        )
        summary = (
            f"{model_id}: {name} {item.value:.4f} worse than baseline {base:.4f} beyond tolerance {tol:.4f}"
            if breached
            else f"{model_id}: {name} {item.value:.4f} (baseline {base:.4f}, tolerance {tol:.4f})"
        )
        description = (
            f"{name} = {item.value:.4f}{ci} on {item.n} rows ({n_labeled} labelled of {n_predictions} "
            f"predictions); alert when {comparator} {threshold:.4f} (baseline {base:.4f} "
            f"{'+' if sign > 0 else '-'} {tol_kind} tolerance {tol:.4f}) and the {evidence}; "
            f"interval method: {method}."
        )
        return Evaluation(
            model_id=model_id,
            model_version=model_version,
            monitor="accuracy",
            metric=name,
            subject="*",
            observed=item.value,
            threshold=threshold,
            comparator=comparator,
            breached=breached,
            cleared=cleared,
            window_start=window[0],
            window_end=window[1],
            n=item.n,
            severity=self.config.severity,
            summary=summary,
            description=description,
            interval=item.interval,
            details={
                "baseline": base,
                "tolerance": tol,
                "tolerance_kind": tol_kind,
                "clear_threshold": base + sign * 0.5 * tol,
                "n_labeled": n_labeled,
                "label_coverage": n_labeled / n_predictions if n_predictions > 0 else None,
                "interval_method": method,
                "confidence": self.config.confidence,
                "z": z,
                "z_critical": test.z_critical,
                "baseline_se": test.baseline_se,
            },
        )


@dataclass(frozen=True)
class _Test:
    """One metric's degradation test: value, baseline, and the z statistic against the level."""

    name: str
    value: MetricValue
    baseline: float
    baseline_se: float
    z_critical: float
    z: float | None  # None: no standard error, judged on the tolerance alone


def _degradation_z(name: str, item: MetricValue, baseline: float, baseline_se: float) -> float | None:
    """Degradation over its standard error, √(SE_window² + SE_baseline²); None without one."""
    if item.se is None or item.value is None:
        return None
    scale = math.hypot(item.se, baseline_se)
    return _degradation(METRICS[name].direction, item.value, baseline) / scale if scale > 0 else None
