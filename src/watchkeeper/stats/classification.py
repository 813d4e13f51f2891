"""Mergeable classification-accuracy aggregate (confusion matrix, proper scores, binned AUC).

Stage 1 builds one `ClassificationAggregate` per (model, window) from vectorised batches and
ships `to_dict()` as JSON; stage 2 rebuilds with `from_dict()`, `merge`s partials and calls
`compute()`. Every statistic is a sum or a count, so merging is exact (up to float addition
order for the two float sums). Metric definitions follow scikit-learn 1.9 and are given in
`docs/statistics-accuracy.md`.

Rows whose true label is `MISSING` (-1) are predictions without an outcome yet: they count in
`n` and in the predicted-positive rate, and nowhere else.

Example:
    >>> import numpy as np
    >>> agg = ClassificationAggregate(["ham", "spam"], score_bins=10)
    >>> agg.update(agg.encode(["spam", "ham", "spam", "ham"]),
    ...            agg.encode(["spam", "ham", "ham", "ham"]),
    ...            scores=np.array([0.9, 0.2, 0.4, 0.1]))
    >>> other = ClassificationAggregate.from_dict(agg.to_dict())
    >>> m = agg.merge(other).compute()
    >>> m.n, m.accuracy, m.tpr, m.fpr, m.roc_auc
    (8, 0.75, 0.5, 0.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.intervals import wilson_interval, z_value

__all__ = ["MISSING", "ClassificationAggregate", "ClassificationMetrics"]

MISSING = -1
"""Class index of a prediction whose outcome is not known (yet)."""

_EPS = float(np.finfo(np.float64).eps)  # sklearn 1.9 log_loss clips to [eps, 1 - eps]
Interval = tuple[float, float]


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of one `ClassificationAggregate`; `None` marks an undefined value.

    Per-class tuples are aligned to `classes`; they and the macro averages use sklearn's
    `zero_division=0` convention. The binary-only fields are `None` for multiclass.
    """

    classes: tuple[str, ...]
    n: int  # all predictions, labelled or not
    n_labeled: int  # predictions with a known true label
    n_scored: int  # labelled predictions that came with scores/probabilities
    confusion_matrix: tuple[tuple[int, ...], ...]  # [true][predicted]
    accuracy: float | None
    accuracy_interval: Interval | None  # Wilson
    precision: tuple[float, ...]
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]  # labelled rows per true class
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    log_loss: float | None
    brier_score: float | None
    tpr: float | None = None  # recall of the positive class
    tpr_interval: Interval | None = None
    fpr: float | None = None
    fpr_interval: Interval | None = None
    positive_precision: float | None = None
    positive_precision_interval: Interval | None = None
    positive_f1: float | None = None
    positive_rate: float | None = None  # predicted positives / n (labelled or not)
    roc_auc: float | None = None
    roc_auc_max_error: float | None = None  # bound on |roc_auc - exact AUC|
    ece: float | None = None  # expected calibration error of the positive-class score


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _wilson(successes: int, n: int, confidence: float) -> Interval | None:
    return wilson_interval(successes, n, confidence) if n else None


def _as_index_array(name: str, values: npt.ArrayLike, low: int, k: int) -> npt.NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}: expected a 1-D array of class indices")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} has dtype {arr.dtype}: expected integer class indices")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < low) | (arr >= k)
    if bad.any():
        raise ValueError(f"{name} contains {int(arr[bad][0])}: expected class indices in [{low}, {k - 1}]")
    return arr


def score_bin_index(scores: npt.NDArray[np.float64], bins: int) -> npt.NDArray[np.int64]:
    """Bin of each score: bin j is [j/bins, (j+1)/bins) with float edges j/bins; 1.0 -> last.

    floor(s·bins) can be one off for s on an edge (0.29·100 = 28.999...), so it is corrected
    against the edges j/bins, which makes a score equal to j/bins land in bin j exactly.
    """
    idx = np.clip(np.floor(scores * bins).astype(np.int64), 0, bins - 1)
    idx -= scores < idx / bins
    idx += (idx < bins - 1) & (scores >= (idx + 1) / bins)
    return idx


class ClassificationAggregate:
    """Mergeable confusion matrix, log-loss/Brier sums and (binary) score histogram.

    Args:
        classes: class labels, at least two, distinct; for binary the second is positive.
        score_bins: equal-width bins on [0, 1] of the positive-class score (binary only),
            used for ROC AUC and the expected calibration error.
    """

    def __init__(self, classes: Sequence[str], score_bins: int = 100) -> None:
        names = tuple(str(c) for c in classes)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"classes={list(classes)!r}: expected at least two distinct labels")
        if isinstance(score_bins, bool) or not isinstance(score_bins, int) or score_bins < 1:
            raise ValueError(f"score_bins={score_bins!r}: expected a positive integer")
        self.classes = names
        self.score_bins = score_bins
        k = len(names)
        self._index = {c: i for i, c in enumerate(names)}
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.unlabeled = np.zeros(k, dtype=np.int64)  # predicted class counts, outcome unknown
        self.n_scored = 0
        self.log_loss_sum = 0.0
        self.brier_sum = 0.0
        self.log_loss_sq_sum = 0.0  # Σ per-row loss²: the standard errors of log loss and Brier
        self.brier_sq_sum = 0.0
        self.score_counts = np.zeros((score_bins, 2), dtype=np.int64)  # [bin][negative, positive]
        self.score_sums = np.zeros(score_bins, dtype=np.float64)

    @property
    def is_binary(self) -> bool:
        """True for two classes."""
        return len(self.classes) == 2

    @property
    def n(self) -> int:
        """All predictions seen, labelled or not."""
        return int(self.confusion.sum() + self.unlabeled.sum())

    def encode(
        self, labels: Sequence[str | None] | npt.ArrayLike, allow_missing: bool = False
    ) -> npt.NDArray[np.int64]:
        """Map labels to class indices; `None` -> `MISSING` if `allow_missing`, else error."""
        arr = np.asarray(labels, dtype=object).reshape(-1)
        missing = np.equal(arr, np.array(None, dtype=object)).astype(bool)
        if missing.any() and not allow_missing:
            raise ValueError("labels contains None: expected known labels (or allow_missing=True)")
        out = np.full(arr.shape, MISSING, dtype=np.int64)
        keys = arr[~missing].astype(str)
        uniq, inverse = np.unique(keys, return_inverse=True)
        try:
            codes = np.array([self._index[str(u)] for u in uniq], dtype=np.int64)
        except KeyError as err:
            raise ValueError(f"labels contains {err.args[0]!r}: expected one of {list(self.classes)!r}") from None
        out[~missing] = codes[inverse.reshape(-1)] if keys.size else codes[:0]
        return out

    def update(
        self,
        y_true: npt.ArrayLike,
        y_pred: npt.ArrayLike,
        scores: npt.ArrayLike | None = None,
        late: bool = False,
    ) -> None:
        """Add one batch.

        Args:
            y_true: true class indices, `MISSING` (-1) where the outcome is unknown.
            y_pred: predicted class indices.
            scores: binary: positive-class probability per row, shape (n,); multiclass:
                probabilities, shape (n, k), columns aligned to `classes`. Values in [0, 1];
                NaN (in any column) for a row that came without a score: it counts in the
                confusion matrix but not in the score-based metrics (log-loss, Brier, bins).
            late: the rows are outcomes of predictions already added with y_true = MISSING
                (possibly to another partial of the window): they move from unlabelled to
                labelled and `n` does not change. A partial may then hold negative
                unlabelled counts; the merged window's counts are >= 0.
        """
        k = len(self.classes)
        yt = _as_index_array("y_true", y_true, MISSING, k)
        yp = _as_index_array("y_pred", y_pred, 0, k)
        if yt.shape != yp.shape:
            raise ValueError(f"y_pred has length {yp.size}: expected len(y_true) = {yt.size}")
        labeled = yt != MISSING
        if late and not labeled.all():
            raise ValueError("y_true contains -1 (MISSING): expected known labels when late=True")
        p = None if scores is None else np.asarray(scores, dtype=np.float64)
        if p is not None:  # validate everything before mutating: no half-applied batch
            expected = (yt.size,) if self.is_binary else (yt.size, k)
            if p.shape != expected:
                raise ValueError(f"scores has shape {p.shape}: expected {expected}")
            given = p[~np.isnan(p)]
            if given.size and not (given.min() >= 0.0 and given.max() <= 1.0):  # (also catches ±inf)
                bad = float(given[~((given >= 0.0) & (given <= 1.0))][0])
                raise ValueError(f"scores contains {bad!r}: expected probabilities in [0, 1] (NaN: no score)")
        if late:
            self.unlabeled -= np.bincount(yp, minlength=k)
        self.unlabeled += np.bincount(yp[~labeled], minlength=k)
        self.confusion += np.bincount(yt[labeled] * k + yp[labeled], minlength=k * k).reshape(k, k)
        if p is None:
            return
        scored = labeled & ~np.isnan(p if p.ndim == 1 else p.sum(axis=1))
        p, yt = p[scored], yt[scored]
        self.n_scored += int(yt.size)
        if self.is_binary:
            pos = yt == 1
            prob_true = np.where(pos, p, 1.0 - p)  # sklearn stacks [1 - s, s] before clipping
            row_brier = (pos - p) ** 2
            bins = score_bin_index(p, self.score_bins)
            self.score_counts += np.bincount(bins * 2 + yt, minlength=2 * self.score_bins).reshape(-1, 2)
            self.score_sums += np.bincount(bins, weights=p, minlength=self.score_bins)
        else:
            rows = np.arange(yt.size)
            prob_true = p[rows, yt]
            onehot = np.zeros_like(p)
            onehot[rows, yt] = 1.0
            row_brier = np.sum((onehot - p) ** 2, axis=1)
        row_loss = -np.log(np.clip(prob_true, _EPS, 1.0 - _EPS))
        self.brier_sum += float(row_brier.sum())
        self.brier_sq_sum += float(np.sum(row_brier**2))
        self.log_loss_sum += float(row_loss.sum())
        self.log_loss_sq_sum += float(np.sum(row_loss**2))

    def merge(self, other: ClassificationAggregate) -> ClassificationAggregate:
        """Add `other` into this aggregate (in place) and return self."""
        if other.classes != self.classes or other.score_bins != self.score_bins:
            raise ValueError(
                f"other has classes={list(other.classes)!r}, score_bins={other.score_bins}: "
                f"expected classes={list(self.classes)!r}, score_bins={self.score_bins}"
            )
        self.confusion += other.confusion
        self.unlabeled += other.unlabeled
        self.n_scored += other.n_scored
        self.log_loss_sum += other.log_loss_sum
        self.brier_sum += other.brier_sum
        self.log_loss_sq_sum += other.log_loss_sq_sum
        self.brier_sq_sum += other.brier_sq_sum
        self.score_counts += other.score_counts
        self.score_sums += other.score_sums
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (lists, ints, floats, strings)."""
        return {
            "kind": "classification",
            "version": 1,
            "classes": list(self.classes),
            "score_bins": self.score_bins,
            "confusion": self.confusion.tolist(),
            "unlabeled": self.unlabeled.tolist(),
            "n_scored": self.n_scored,
            "log_loss_sum": self.log_loss_sum,
            "brier_sum": self.brier_sum,
            "log_loss_sq_sum": self.log_loss_sq_sum,
            "brier_sq_sum": self.brier_sq_sum,
            "score_counts": self.score_counts.tolist() if self.is_binary else None,
            "score_sums": self.score_sums.tolist() if self.is_binary else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassificationAggregate:
        """Rebuild from `to_dict()` output; ValueError on a wrong kind or shape."""
        if data.get("kind") != "classification" or data.get("version") != 1:
            raise ValueError(
                f"kind={data.get('kind')!r}, version={data.get('version')!r}: expected 'classification', 1"
            )
        agg = cls(data["classes"], int(data["score_bins"]))
        k, b = len(agg.classes), agg.score_bins
        fields: list[tuple[str, tuple[int, ...], Any]] = [
            ("confusion", (k, k), np.int64),
            ("unlabeled", (k,), np.int64),
        ]
        if agg.is_binary:
            fields += [("score_counts", (b, 2), np.int64), ("score_sums", (b,), np.float64)]
        for name, shape, dtype in fields:
            value = np.asarray(data[name], dtype=dtype)
            if value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}: expected {shape}")
            setattr(agg, name, value)
        agg.n_scored = int(data["n_scored"])
        agg.log_loss_sum = float(data["log_loss_sum"])
        agg.brier_sum = float(data["brier_sum"])
        agg.log_loss_sq_sum = float(data.get("log_loss_sq_sum", 0.0))  # (absent in state from before)
        agg.brier_sq_sum = float(data.get("brier_sq_sum", 0.0))
        return agg

    def compute(self, confidence: float = 0.95, ece_bins: int = 10) -> ClassificationMetrics:
        """Metrics with Wilson intervals at `confidence`; ECE over `ece_bins` coarse bins."""
        z_value(confidence)  # validates confidence even when no interval is computed
        if not 1 <= ece_bins <= self.score_bins:
            raise ValueError(f"ece_bins={ece_bins!r}: expected 1 <= ece_bins <= {self.score_bins}")
        cm = self.confusion
        k = len(self.classes)
        n_labeled = int(cm.sum())
        tp = np.diag(cm).astype(np.float64)
        true_count, pred_count = cm.sum(axis=1), cm.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pred_count > 0, tp / pred_count, 0.0)
            recall = np.where(true_count > 0, tp / true_count, 0.0)
            f1 = np.where(true_count + pred_count > 0, 2.0 * tp / (true_count + pred_count), 0.0)
        correct = int(np.trace(cm))
        labelled = n_labeled > 0
        common: dict[str, Any] = {
            "classes": self.classes,
            "n": self.n,
            "n_labeled": n_labeled,
            "n_scored": self.n_scored,
            "confusion_matrix": tuple(tuple(int(v) for v in row) for row in cm.tolist()),
            "accuracy": _ratio(correct, n_labeled),
            "accuracy_interval": _wilson(correct, n_labeled, confidence),
            "precision": tuple(precision.tolist()),
            "recall": tuple(recall.tolist()),
            "f1": tuple(f1.tolist()),
            "support": tuple(int(v) for v in true_count.tolist()),
            "macro_precision": float(precision.sum() / k) if labelled else None,
            "macro_recall": float(recall.sum() / k) if labelled else None,
            "macro_f1": float(f1.sum() / k) if labelled else None,
            "log_loss": _ratio(self.log_loss_sum, self.n_scored),
            "brier_score": _ratio(self.brier_sum, self.n_scored),
        }
        if not self.is_binary:
            return ClassificationMetrics(**common)
        tn, fp, fn, tp1 = (int(v) for v in cm.ravel().tolist())
        roc_auc, auc_error = self._binned_auc()
        return ClassificationMetrics(
            **common,
            tpr=_ratio(tp1, tp1 + fn),
            tpr_interval=_wilson(tp1, tp1 + fn, confidence),
            fpr=_ratio(fp, fp + tn),
            fpr_interval=_wilson(fp, fp + tn, confidence),
            positive_precision=_ratio(tp1, tp1 + fp),
            positive_precision_interval=_wilson(tp1, tp1 + fp, confidence),
            positive_f1=_ratio(2 * tp1, 2 * tp1 + fp + fn),
            positive_rate=_ratio(tp1 + fp + int(self.unlabeled[1]), self.n),
            roc_auc=roc_auc,
            roc_auc_max_error=auc_error,
            ece=self._ece(ece_bins),
        )

    def _binned_auc(self) -> tuple[float | None, float | None]:
        """AUC = Σ_b pos_b·(neg_<b + neg_b/2) / (P·N), bound = Σ_b pos_b·neg_b / (2·P·N).

        This is the trapezoid under the ROC curve through the bin-edge thresholds; pairs in a
        common bin count one half (exact when each bin holds one distinct score).
        Computed in Python integers, so the only rounding is the final division.
        """
        neg, pos = (col.tolist() for col in self.score_counts.T)
        n_pos, n_neg = sum(pos), sum(neg)
        if not n_pos or not n_neg:
            return None, None
        below = twice = ties = 0
        for p, q in zip(pos, neg, strict=True):
            twice += p * (2 * below + q)
            ties += p * q
            below += q
        return twice / (2 * n_pos * n_neg), ties / (2 * n_pos * n_neg)

    def _ece(self, ece_bins: int) -> float | None:
        """ECE = Σ_c |Σ_{i∈c} y_i − Σ_{i∈c} s_i| / n over coarse bins c = ⌊j·ece_bins/bins⌋."""
        total = int(self.score_counts.sum())
        if not total:
            return None
        coarse = np.arange(self.score_bins) * ece_bins // self.score_bins
        positives = np.bincount(coarse, weights=self.score_counts[:, 1], minlength=ece_bins)
        score_sum = np.bincount(coarse, weights=self.score_sums, minlength=ece_bins)
        return float(np.abs(positives - score_sum).sum() / total)
