"""Each accuracy metric of a window with its interval and standard error (pure).

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

These feed the verdicts of :mod:`watchkeeper.monitor.accuracy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.classification import ClassificationAggregate
from watchkeeper.stats.intervals import z_value
from watchkeeper.stats.regression import RegressionAggregate

__all__ = [
    "Interval",
    "MetricValue",
    "classification_values",
    "confusion_delta_se",
    "f1_delta_se",
    "hanley_mcneil_se",
    "proportion_se",
    "regression_values",
]

Interval = tuple[float, float]


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


def proportion_se(p: float | None, n: int) -> float | None:
    """Wald standard error sqrt(p(1−p)/n) of a proportion (the z statistic's scale)."""
    return math.sqrt(p * (1.0 - p) / n) if p is not None and n > 0 else None


def _clip(low: float, high: float, lo: float = 0.0, hi: float = 1.0) -> Interval:
    return max(lo, low), min(hi, high)


@dataclass(frozen=True)
class MetricValue:
    """A metric's value, its interval (None: judged on the point alone) and rows behind it."""

    value: float | None
    interval: Interval | None
    n: int
    se: float | None = None  # standard error: the scale of the degradation test


def _around(value: float | None, se: float | None, z: float, n: int, clip: bool = True) -> MetricValue:
    """A value with its normal interval value ± z·se."""
    if value is None or se is None:
        return MetricValue(value, None, n, se)
    low, high = value - z * se, value + z * se
    return MetricValue(value, _clip(low, high) if clip else (low, high), n, se)


def classification_values(agg: ClassificationAggregate, confidence: float) -> dict[str, MetricValue]:
    m = agg.compute(confidence, ece_bins=min(10, agg.score_bins))
    z = z_value(confidence)
    n_lab, n_scored = m.n_labeled, m.n_scored
    out: dict[str, MetricValue] = {
        "accuracy": MetricValue(m.accuracy, m.accuracy_interval, n_lab, proportion_se(m.accuracy, n_lab))
    }
    for name in ("macro_f1", "macro_precision", "macro_recall"):
        if n_lab:
            value, se = confusion_delta_se(agg.confusion, name.removeprefix("macro_"))  # type: ignore[arg-type]
            out[name] = _around(value, se, z, n_lab)
        else:
            out[name] = MetricValue(None, None, 0)
    out["log_loss"] = _around(m.log_loss, _mean_se(m.log_loss, agg.log_loss_sq_sum, n_scored), z, n_scored, False)
    out["brier"] = _around(m.brier_score, _mean_se(m.brier_score, agg.brier_sq_sum, n_scored), z, n_scored, False)
    if not agg.is_binary:
        return out
    (tn, fp), (fn, tp) = m.confusion_matrix
    out["precision"] = MetricValue(
        m.positive_precision, m.positive_precision_interval, tp + fp, proportion_se(m.positive_precision, tp + fp)
    )
    out["recall"] = MetricValue(m.tpr, m.tpr_interval, tp + fn, proportion_se(m.tpr, tp + fn))
    out["fpr"] = MetricValue(m.fpr, m.fpr_interval, fp + tn, proportion_se(m.fpr, fp + tn))
    f1_se = f1_delta_se(tp, fp, fn) if m.positive_f1 is not None else None
    out["f1"] = _around(m.positive_f1, f1_se, z, n_lab)
    n_neg, n_pos = (int(v) for v in agg.score_counts.sum(axis=0).tolist())
    auc_interval, auc_se = None, None
    if m.roc_auc is not None:
        auc_se = hanley_mcneil_se(m.roc_auc, n_pos, n_neg)
        half = z * auc_se + (m.roc_auc_max_error or 0.0)
        auc_interval = _clip(m.roc_auc - half, m.roc_auc + half)
    out["roc_auc"] = MetricValue(m.roc_auc, auc_interval, n_pos + n_neg, auc_se)
    out["ece"] = MetricValue(m.ece, None, n_pos + n_neg)
    out["positive_rate"] = MetricValue(m.positive_rate, None, m.n)  # reported, never alerts
    out["roc_auc_max_error"] = MetricValue(m.roc_auc_max_error, None, n_pos + n_neg)
    return out


def regression_values(agg: RegressionAggregate, confidence: float) -> dict[str, MetricValue]:
    m = agg.compute(confidence)
    n = m.n
    z = z_value(confidence)

    def half_width(interval: Interval | None) -> float | None:
        return (interval[1] - interval[0]) / (2 * z) if interval is not None else None

    return {
        "mae": MetricValue(m.mae, m.mae_interval, n, half_width(m.mae_interval)),
        "rmse": MetricValue(m.rmse, None, n),
        "mse": MetricValue(m.mse, None, n),
        "r2": MetricValue(m.r2, None, n),
        "mape": MetricValue(m.mape, None, n),
        "bias": MetricValue(m.bias, m.bias_interval, n, half_width(m.bias_interval)),
    }
