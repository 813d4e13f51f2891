"""The accuracy monitor: per-window degradation verdicts against a baseline (pure, no I/O).

Rule (per metric, per prediction-time window with at least ``min_labeled`` labelled rows)::

    higher-is-better m:  threshold = baseline - tol   breached: interval high < threshold
                                                      cleared:  observed >= baseline - tol/2
    lower-is-better m:   threshold = baseline + tol   breached: interval low  > threshold
                                                      cleared:  observed <= baseline + tol/2
    bias (two-sided):    the side the observed value is on; cleared: |observed - baseline| <= tol/2

so a window is *breached* only when the metric is worse than the baseline beyond the
tolerance **and** the confidence interval excludes the tolerance; it is *cleared* once the
point estimate is back inside half the tolerance (the band between is hysteresis, handled by
:class:`~watchkeeper.monitor.alerts.AlertBook`). Metrics without an interval method (ECE, RMSE,
MSE, R², MAPE, and log loss / Brier until the aggregate keeps their sums of squares) are
judged on the point estimate alone, still behind ``min_labeled``.

Interval methods (at ``confidence``):

* accuracy, precision, recall, FPR: Wilson score interval (Wilson 1927, JASA 22(158)).
* F1 (positive class) and the macro averages: delta method under multinomial sampling of the
  confusion matrix, Var f = (Σ g²p − (Σ g p)²)/n with g = ∂f/∂p (for binary F1 this is
  4·TP·(FP+FN)·(TP+FP+FN)/(2TP+FP+FN)⁴; cf. Takahashi et al. 2022, Applied Intelligence 52).
* ROC AUC: Hanley & McNeil (1982, Radiology 143(1)) standard error from AUC, n_pos, n_neg,
  widened by the binned AUC's error bound ``roc_auc_max_error``.
* MAE, bias: normal approximation from the aggregate's centred second moments.
* log loss, Brier: normal approximation from per-row sums of squares when the aggregate has
  ``log_loss_sq_sum`` / ``brier_sq_sum``; point estimate otherwise.

The baseline's own sampling error is ignored (it is pooled over several windows, and the
tolerance absorbs it). Details and the metric table: ``docs/monitors-accuracy-fairness.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from watchkeeper.config import METRICS, AccuracyConfig, Direction, Task
from watchkeeper.events import Comparator
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.stats.calibration_shift import calibration_shift
from watchkeeper.stats.classification import ClassificationAggregate
from watchkeeper.stats.intervals import z_value
from watchkeeper.stats.regression import RegressionAggregate

__all__ = [
    "AccuracyMonitor",
    "AccuracyVerdict",
    "confusion_delta_se",
    "f1_delta_se",
    "hanley_mcneil_se",
]

Interval = tuple[float, float]
Aggregate = ClassificationAggregate | RegressionAggregate
Status = Literal["disabled", "insufficient_labels", "learning_baseline", "baseline_window", "evaluated"]


# -- interval methods ---------------------------------------------------------------------


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an ROC AUC (Hanley & McNeil 1982, eq. 2).

    SE² = [A(1−A) + (n_pos−1)(Q1−A²) + (n_neg−1)(Q2−A²)] / (n_pos·n_neg),
    Q1 = A/(2−A), Q2 = 2A²/(1+A).
    """
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"n_pos={n_pos}, n_neg={n_neg}: expected at least one of each")
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"auc={auc!r}: expected a number in [0, 1]")
    a2 = auc * auc
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * a2 / (1.0 + auc)
    var = (auc * (1.0 - auc) + (n_pos - 1) * (q1 - a2) + (n_neg - 1) * (q2 - a2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def f1_delta_se(tp: int, fp: int, fn: int) -> float:
    """Delta-method SE of F1 = 2TP/(2TP+FP+FN): 2·sqrt(TP·(FP+FN)·(TP+FP+FN)) / (2TP+FP+FN)²."""
    d = 2 * tp + fp + fn
    if not d:
        return 0.0
    return 2.0 * math.sqrt(tp * (fp + fn) * (tp + fp + fn)) / (d * d)


def _per_class_gradient(p: npt.NDArray[np.float64], kind: str, i: int) -> tuple[float, npt.NDArray[np.float64]]:
    """Value and gradient (w.r.t. the cell proportions p[true, pred]) of one class's metric."""
    k = p.shape[0]
    row = np.zeros((k, k))
    row[i, :] = 1.0
    col = np.zeros((k, k))
    col[:, i] = 1.0
    diag = np.zeros((k, k))
    diag[i, i] = 1.0
    pii, r, c = p[i, i], p[i, :].sum(), p[:, i].sum()
    if kind == "precision":
        den, dden, num_scale = c, col, 1.0
    elif kind == "recall":
        den, dden, num_scale = r, row, 1.0
    else:  # f1
        den, dden, num_scale = r + c, row + col, 2.0
    if den <= 0:
        return 0.0, np.zeros((k, k))  # sklearn's zero_division=0: locally constant
    value = num_scale * pii / den
    grad = num_scale * (diag * den - pii * dden) / (den * den)
    return float(value), grad


def confusion_delta_se(
    confusion: npt.ArrayLike, kind: Literal["precision", "recall", "f1"], average: Literal["macro"] | int = "macro"
) -> tuple[float, float]:
    """(value, delta-method SE) of a confusion-matrix metric: macro average or one class.

    The matrix (true × predicted counts) is one multinomial sample of n = ΣC rows, so with
    p = C/n and g = ∂f/∂p: Var f ≈ (Σ g²p − (Σ g p)²) / n.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    n = float(cm.sum())
    if n <= 0:
        raise ValueError("confusion is empty: expected at least one labelled row")
    p = cm / n
    classes = range(cm.shape[0]) if average == "macro" else [average]
    parts = [_per_class_gradient(p, kind, i) for i in classes]
    value = sum(v for v, _ in parts) / len(parts)
    grad = sum((g for _, g in parts), np.zeros_like(p)) / len(parts)
    var = (float(np.sum(grad * grad * p)) - float(np.sum(grad * p)) ** 2) / n
    return value, math.sqrt(max(var, 0.0))


def _mean_se(mean: float | None, sum_sq: float, n: int) -> float | None:
    """s/√n of a mean from Σx² (s² = (Σx² − n·mean²)/(n−1)); None without data or the sum of
    squares (an aggregate stored before it kept them)."""
    if mean is None or n < 2 or (sum_sq <= 0.0 and mean > 0.0):
        return None
    return math.sqrt(max(sum_sq - n * mean * mean, 0.0) / (n - 1) / n)


def _proportion_se(p: float | None, n: int) -> float | None:
    """Wald standard error sqrt(p(1−p)/n) of a proportion (the z statistic's scale)."""
    return math.sqrt(p * (1.0 - p) / n) if p is not None and n > 0 else None


def _clip(low: float, high: float, lo: float = 0.0, hi: float = 1.0) -> Interval:
    return max(lo, low), min(hi, high)


@dataclass(frozen=True)
class _Value:
    value: float | None
    interval: Interval | None
    n: int
    se: float | None = None  # standard error: the scale of the degradation test


def _around(value: float | None, se: float | None, z: float, n: int, clip: bool = True) -> _Value:
    """A value with its normal interval value ± z·se."""
    if value is None or se is None:
        return _Value(value, None, n, se)
    low, high = value - z * se, value + z * se
    return _Value(value, _clip(low, high) if clip else (low, high), n, se)


def _classification_values(agg: ClassificationAggregate, confidence: float) -> dict[str, _Value]:
    m = agg.compute(confidence, ece_bins=min(10, agg.score_bins))
    z = z_value(confidence)
    n_lab, n_scored = m.n_labeled, m.n_scored
    out: dict[str, _Value] = {
        "accuracy": _Value(m.accuracy, m.accuracy_interval, n_lab, _proportion_se(m.accuracy, n_lab))
    }
    for name in ("macro_f1", "macro_precision", "macro_recall"):
        if n_lab:
            value, se = confusion_delta_se(agg.confusion, name.removeprefix("macro_"))  # type: ignore[arg-type]
            out[name] = _around(value, se, z, n_lab)
        else:
            out[name] = _Value(None, None, 0)
    out["log_loss"] = _around(m.log_loss, _mean_se(m.log_loss, agg.log_loss_sq_sum, n_scored), z, n_scored, False)
    out["brier"] = _around(m.brier_score, _mean_se(m.brier_score, agg.brier_sq_sum, n_scored), z, n_scored, False)
    if not agg.is_binary:
        return out
    (tn, fp), (fn, tp) = m.confusion_matrix
    out["precision"] = _Value(
        m.positive_precision, m.positive_precision_interval, tp + fp, _proportion_se(m.positive_precision, tp + fp)
    )
    out["recall"] = _Value(m.tpr, m.tpr_interval, tp + fn, _proportion_se(m.tpr, tp + fn))
    out["fpr"] = _Value(m.fpr, m.fpr_interval, fp + tn, _proportion_se(m.fpr, fp + tn))
    f1_se = f1_delta_se(tp, fp, fn) if m.positive_f1 is not None else None
    out["f1"] = _around(m.positive_f1, f1_se, z, n_lab)
    n_neg, n_pos = (int(v) for v in agg.score_counts.sum(axis=0).tolist())
    auc_interval, auc_se = None, None
    if m.roc_auc is not None:
        auc_se = hanley_mcneil_se(m.roc_auc, n_pos, n_neg)
        half = z * auc_se + (m.roc_auc_max_error or 0.0)
        auc_interval = _clip(m.roc_auc - half, m.roc_auc + half)
    out["roc_auc"] = _Value(m.roc_auc, auc_interval, n_pos + n_neg, auc_se)
    out["ece"] = _Value(m.ece, None, n_pos + n_neg)
    out["positive_rate"] = _Value(m.positive_rate, None, m.n)  # reported, never alerts
    out["roc_auc_max_error"] = _Value(m.roc_auc_max_error, None, n_pos + n_neg)
    return out


def _regression_values(agg: RegressionAggregate, confidence: float) -> dict[str, _Value]:
    m = agg.compute(confidence)
    n = m.n
    z = z_value(confidence)

    def half_width(interval: Interval | None) -> float | None:
        return (interval[1] - interval[0]) / (2 * z) if interval is not None else None

    return {
        "mae": _Value(m.mae, m.mae_interval, n, half_width(m.mae_interval)),
        "rmse": _Value(m.rmse, None, n),
        "mse": _Value(m.mse, None, n),
        "r2": _Value(m.r2, None, n),
        "mape": _Value(m.mape, None, n),
        "bias": _Value(m.bias, m.bias_interval, n, half_width(m.bias_interval)),
    }


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
        self._baseline_values: dict[str, _Value] | None = None  # (with standard errors; derived)

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

    def _values(self, aggregate: Aggregate) -> dict[str, _Value]:
        if isinstance(aggregate, RegressionAggregate):
            return _regression_values(aggregate, self.config.confidence)
        return _classification_values(aggregate, self.config.confidence)

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
    value: _Value
    baseline: float
    baseline_se: float
    z_critical: float
    z: float | None  # None: no standard error, judged on the tolerance alone


def _degradation_z(name: str, item: _Value, baseline: float, baseline_se: float) -> float | None:
    """Degradation over its standard error, √(SE_window² + SE_baseline²); None without one."""
    if item.se is None or item.value is None:
        return None
    scale = math.hypot(item.se, baseline_se)
    return _degradation(METRICS[name].direction, item.value, baseline) / scale if scale > 0 else None
