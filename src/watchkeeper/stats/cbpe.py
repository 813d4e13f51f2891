"""Label-free performance estimation for calibrated binary classifiers (CBPE).

If scores are calibrated, a prediction with score s is positive with probability s, so
its expected contribution to the confusion matrix is known before its label arrives:
predicted positive → E[TP] += s, E[FP] += 1 − s; predicted negative → E[FN] += s,
E[TN] += 1 − s. Metrics of the expected matrix estimate the realised ones (NannyML's
Confidence-Based Performance Estimation, "CBPE", nannyml.com docs, "How it works"). The
estimate is only as good as the calibration: it sees covariate shift, not concept drift.

Example:
    >>> expected = expected_confusion([0.9, 0.8, 0.3], [1, 1, 0])
    >>> [round(float(v), 2) for v in expected]
    [1.7, 0.3, 0.3, 0.7]
    >>> round(estimated_metrics(expected)["accuracy"], 3)
    0.8
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["estimated_metrics", "expected_confusion"]


def expected_confusion(scores: npt.ArrayLike, predicted: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """[E[TP], E[FP], E[FN], E[TN]] over the rows with a finite score."""
    s = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(predicted) == 1
    keep = np.isfinite(s)
    s, positive = s[keep], positive[keep]
    return np.asarray(
        [s[positive].sum(), (1 - s[positive]).sum(), s[~positive].sum(), (1 - s[~positive]).sum()],
        dtype=np.float64,
    )


def estimated_metrics(expected: npt.ArrayLike) -> dict[str, float | None]:
    """Accuracy, precision, recall and F1 of an expected confusion matrix (None when undefined)."""
    tp, fp, fn, tn = (float(v) for v in np.asarray(expected, dtype=np.float64))
    total = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp > 0 else None
    recall = tp / (tp + fn) if tp + fn > 0 else None
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else None
    return {
        "accuracy": (tp + tn) / total if total > 0 else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
