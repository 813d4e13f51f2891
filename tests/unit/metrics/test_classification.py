"""ClassificationAggregate against scikit-learn on hypothesis-generated data."""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from watchkeeper.stats.classification import (
    MISSING,
    ClassificationAggregate,
    score_bin_index,
)
from watchkeeper.stats.intervals import wilson_interval

SETTINGS = settings(max_examples=150, deadline=None)
TOL = 1e-9


def close(a: float | None, b: float, tol: float = TOL) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def roundtrip(agg: ClassificationAggregate) -> ClassificationAggregate:
    return ClassificationAggregate.from_dict(json.loads(json.dumps(agg.to_dict())))


def classes(k: int) -> list[str]:
    return [f"c{i}" for i in range(k)]


@st.composite
def binary_data(draw: Any, discrete: bool = False) -> tuple[Any, ...]:
    n = draw(st.integers(1, 120))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    flip = draw(hnp.arrays(np.bool_, n))
    y_pred = np.where(flip, 1 - y, y)
    if discrete:  # scores on the lower bin edges j / 20: the binned AUC is exact
        s = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 19))) / 20
    else:
        s = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    return y, y_pred, s


@st.composite
def multiclass_data(draw: Any) -> tuple[Any, ...]:
    k = draw(st.integers(3, 5))
    n = draw(st.integers(1, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < draw(st.floats(0.0, 1.0)), y, rng.integers(0, k, n))
    raw = rng.random((n, k)) ** draw(st.sampled_from([1.0, 4.0]))
    raw[rng.random((n, k)) < draw(st.sampled_from([0.0, 0.3]))] = 0.0  # exact zeros: clipping
    raw[raw.sum(axis=1) == 0, 0] = 1.0
    return k, y, y_pred, raw / raw.sum(axis=1, keepdims=True)


def check_label_metrics(m: Any, y: npt.NDArray[Any], y_pred: npt.NDArray[Any], k: int) -> None:
    labels = list(range(k))
    assert m.confusion_matrix == tuple(map(tuple, confusion_matrix(y, y_pred, labels=labels)))
    assert close(m.accuracy, accuracy_score(y, y_pred))
    p, r, f, s = precision_recall_fscore_support(y, y_pred, labels=labels, zero_division=0)
    assert np.allclose(m.precision, p, rtol=TOL, atol=TOL)
    assert np.allclose(m.recall, r, rtol=TOL, atol=TOL)
    assert np.allclose(m.f1, f, rtol=TOL, atol=TOL)
    assert m.support == tuple(s)
    macro = precision_recall_fscore_support(y, y_pred, labels=labels, average="macro", zero_division=0)
    assert close(m.macro_precision, macro[0]) and close(m.macro_recall, macro[1])
    assert close(m.macro_f1, f1_score(y, y_pred, labels=labels, average="macro", zero_division=0))
    correct = int((y == y_pred).sum())
    assert m.accuracy_interval == wilson_interval(correct, y.size, 0.95)


@SETTINGS
@given(binary_data())
def test_binary_matches_sklearn(data: tuple[Any, ...]) -> None:
    y, y_pred, s = data
    agg = ClassificationAggregate(["neg", "pos"], score_bins=100)
    agg.update(y, y_pred, s)
    m = agg.compute()
    check_label_metrics(m, y, y_pred, 2)
    assert m.n == m.n_labeled == m.n_scored == y.size
    assert close(m.log_loss, log_loss(y, s, labels=[0, 1]))
    assert close(m.brier_score, brier_score_loss(y, s, pos_label=1))
    tp, fp = int(((y == 1) & (y_pred == 1)).sum()), int(((y == 0) & (y_pred == 1)).sum())
    pos, neg = int(y.sum()), int((y == 0).sum())
    assert m.positive_rate == np.mean(y_pred == 1)
    assert m.tpr == (tp / pos if pos else None)
    assert m.fpr == (fp / neg if neg else None)
    assert m.positive_precision == (tp / (tp + fp) if tp + fp else None)
    if tp + fp + pos:
        assert close(m.positive_f1, f1_score(y, y_pred, labels=[0, 1], zero_division=0))
    if pos:
        assert m.tpr_interval == wilson_interval(tp, pos)
    if pos and neg:
        exact = roc_auc_score(y, s)
        assert m.roc_auc is not None and m.roc_auc_max_error is not None
        assert abs(m.roc_auc - exact) <= m.roc_auc_max_error + 1e-12
    else:
        assert m.roc_auc is None and m.roc_auc_max_error is None


@SETTINGS
@given(binary_data(), st.data())
def test_rows_without_a_score_count_in_labels_but_not_in_score_metrics(data: tuple[Any, ...], d: Any) -> None:
    """A prediction sent with a label and no score (NaN) is still a labelled prediction."""
    y, y_pred, s = data
    unscored = d.draw(hnp.arrays(np.bool_, y.size))
    agg = ClassificationAggregate(["neg", "pos"], score_bins=100)
    agg.update(y, y_pred, np.where(unscored, np.nan, s))
    m = agg.compute()
    check_label_metrics(m, y, y_pred, 2)
    assert m.n_labeled == y.size and m.n_scored == int((~unscored).sum())
    if unscored.all():
        assert m.log_loss is None and m.brier_score is None
    else:
        keep = ~unscored
        assert close(m.log_loss, log_loss(y[keep], s[keep], labels=[0, 1]))
        assert close(m.brier_score, brier_score_loss(y[keep], s[keep], pos_label=1))


@SETTINGS
@given(binary_data(discrete=True), st.sampled_from([20, 40, 100]))
def test_binned_auc_is_exact_on_bin_edges(data: tuple[Any, ...], bins: int) -> None:
    y, y_pred, s = data
    agg = ClassificationAggregate(["neg", "pos"], score_bins=bins)
    agg.update(y, y_pred, s)
    m = agg.compute()
    if 0 < y.sum() < y.size:
        assert close(m.roc_auc, roc_auc_score(y, s), 1e-12)
    else:
        assert m.roc_auc is None


def test_binned_auc_is_exact_for_hard_and_centred_scores() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 500)
    hard = np.where(rng.random(500) < 0.8, y, 1 - y).astype(np.float64)  # 0/1 scores
    centres = (rng.integers(0, 10, 500) + 0.5) / 10  # one distinct value per bin
    for s in (hard, centres):
        agg = ClassificationAggregate(["neg", "pos"], score_bins=10)
        agg.update(y, (s >= 0.5).astype(np.int64), s)
        assert close(agg.compute().roc_auc, roc_auc_score(y, s), 1e-12)


def test_binned_auc_within_0_002_for_continuous_scores() -> None:
    rng = np.random.default_rng(7)
    for n, separation in [(2_000, 0.5), (20_000, 1.0), (20_000, 2.5), (5_000, 4.0)]:
        y = rng.integers(0, 2, n)
        s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + separation * (y - 0.5))))
        agg = ClassificationAggregate(["neg", "pos"], score_bins=100)
        agg.update(y, (s >= 0.5).astype(np.int64), s)
        m = agg.compute()
        assert m.roc_auc is not None
        assert abs(m.roc_auc - roc_auc_score(y, s)) < 0.002


@SETTINGS
@given(multiclass_data())
def test_multiclass_matches_sklearn(data: tuple[Any, ...]) -> None:
    k, y, y_pred, proba = data
    agg = ClassificationAggregate(classes(k))
    agg.update(y, y_pred, proba)
    m = agg.compute()
    check_label_metrics(m, y, y_pred, k)
    assert close(m.log_loss, log_loss(y, proba, labels=list(range(k))))
    assert close(m.brier_score, brier_score_loss(y, proba, labels=list(range(k))))
    assert m.tpr is None and m.roc_auc is None and m.ece is None


@SETTINGS
@given(binary_data(), st.integers(1, 20))
def test_ece_matches_independent_binning(data: tuple[Any, ...], ece_bins: int) -> None:
    y, y_pred, s = data
    agg = ClassificationAggregate(["neg", "pos"], score_bins=100)
    agg.update(y, y_pred, s)
    ece = agg.compute(ece_bins=ece_bins).ece
    edges = [j / 100 for j in range(101)]  # bin j = [j/100, (j+1)/100), 1.0 in the last bin
    fine = np.array([min(bisect.bisect_right(edges, v) - 1, 99) for v in s], dtype=np.int64)
    coarse = fine * ece_bins // 100
    expected = sum(abs(float(y[coarse == c].sum()) - float(s[coarse == c].sum())) for c in range(ece_bins)) / y.size
    assert close(ece, expected)


def test_ece_equals_calibration_curve_for_continuous_scores() -> None:
    rng = np.random.default_rng(3)
    s = rng.random(5_000)
    y = (rng.random(5_000) < s**1.5).astype(np.int64)
    agg = ClassificationAggregate(["neg", "pos"])
    agg.update(y, (s > 0.5).astype(np.int64), s)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], s), minlength=10)
    weights = counts[counts > 0] / s.size
    assert close(agg.compute().ece, float(np.sum(weights * np.abs(prob_true - prob_pred))))


def test_score_bin_index_puts_edges_in_their_bin() -> None:
    for bins in (3, 7, 10, 100, 1000):
        edges = np.arange(bins) / bins
        assert (score_bin_index(edges, bins) == np.arange(bins)).all()
        below = np.nextafter(edges[1:], -np.inf)
        assert (score_bin_index(below, bins) == np.arange(bins - 1)).all()
        assert score_bin_index(np.array([1.0]), bins)[0] == bins - 1


@SETTINGS
@given(st.one_of(binary_data(), multiclass_data()), st.data())
def test_merge_of_split_equals_whole_and_json_roundtrip(data: tuple[Any, ...], d: Any) -> None:
    if len(data) == 3:
        k, (y, y_pred, s) = 2, data
    else:
        k, y, y_pred, s = data
    cut = d.draw(st.integers(0, y.size))
    whole, left, right = (ClassificationAggregate(classes(k), 50) for _ in range(3))
    whole.update(y, y_pred, s)
    left.update(y[:cut], y_pred[:cut], s[:cut])
    right.update(y[cut:], y_pred[cut:], s[cut:])
    merged = roundtrip(left).merge(roundtrip(right))
    a, b = merged.to_dict(), whole.to_dict()
    for key in a:
        if key.endswith("_sum"):  # float sums: equal up to the order of addition
            assert close(a[key], b[key])
        elif key == "score_sums" and a[key] is not None:
            assert np.allclose(a[key], b[key], rtol=TOL, atol=TOL)
        else:
            assert a[key] == b[key], key
    assert roundtrip(whole).to_dict() == whole.to_dict()
    m1, m2 = merged.compute(), whole.compute()
    assert m1.confusion_matrix == m2.confusion_matrix and m1.roc_auc == m2.roc_auc
    assert m1.log_loss is None or close(m1.log_loss, m2.log_loss)  # type: ignore[arg-type]


def test_unlabeled_rows_count_in_n_and_positive_rate_only() -> None:
    y = np.array([1, MISSING, 0, MISSING, 1])
    y_pred = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.1, 0.3, 0.4])
    agg = ClassificationAggregate(["no", "yes"])
    agg.update(y, y_pred, s)
    m = agg.compute()
    labeled = y != MISSING
    assert (m.n, m.n_labeled, m.n_scored) == (5, 3, 3)
    assert m.positive_rate == 2 / 5
    assert close(m.log_loss, log_loss(y[labeled], s[labeled]))
    check_label_metrics(m, y[labeled], y_pred[labeled], 2)


def test_late_outcomes_move_predictions_from_unlabeled_to_labeled() -> None:
    y = np.array([1, 0, 1, 0])
    y_pred = np.array([1, 1, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.1])
    predictions = ClassificationAggregate(["no", "yes"])  # outcomes unknown at first
    predictions.update(np.full(4, MISSING), y_pred, s)
    outcomes = ClassificationAggregate(["no", "yes"])  # a later partial of the same window
    outcomes.update(y[:3], y_pred[:3], s[:3], late=True)
    merged = roundtrip(predictions).merge(roundtrip(outcomes)).compute()
    assert (merged.n, merged.n_labeled, merged.positive_rate) == (4, 3, 0.5)
    whole = ClassificationAggregate(["no", "yes"])
    whole.update(np.array([1, 0, 1, MISSING]), y_pred, s)
    assert merged == whole.compute()
    with pytest.raises(ValueError, match="late=True"):
        outcomes.update(np.array([MISSING]), np.array([0]), late=True)


def test_batches_without_scores_and_empty_aggregate() -> None:
    agg = ClassificationAggregate(["a", "b", "c"])
    m = agg.compute()
    assert m.n == 0 and m.accuracy is None and m.accuracy_interval is None
    assert m.macro_f1 is None and m.log_loss is None and m.precision == (0.0, 0.0, 0.0)
    agg.update(np.array([0, 1]), np.array([0, 2]))
    assert agg.compute().log_loss is None and agg.compute().accuracy == 0.5
    binary = ClassificationAggregate(["a", "b"])
    binary.update(np.array([1, 1]), np.array([1, 0]), np.array([0.7, 0.2]))
    mb = binary.compute()
    assert mb.roc_auc is None and mb.fpr is None and mb.fpr_interval is None
    assert mb.tpr == 0.5 and mb.ece is not None


def test_encode_labels() -> None:
    agg = ClassificationAggregate(["cat", "dog", "eel"])
    assert agg.encode(["eel", "cat", "eel"]).tolist() == [2, 0, 2]
    assert agg.encode(["dog", None], allow_missing=True).tolist() == [1, MISSING]
    assert agg.encode([]).tolist() == []
    with pytest.raises(ValueError, match="'cow'"):
        agg.encode(["cat", "cow"])
    with pytest.raises(ValueError, match="None"):
        agg.encode(["cat", None])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_true": [0, 2], "y_pred": [0, 1]}, "y_true contains 2"),
        ({"y_true": [0, 1], "y_pred": [-1, 1]}, "y_pred contains -1"),
        ({"y_true": [0.0, 1.0], "y_pred": [0, 1]}, "y_true has dtype float64"),
        ({"y_true": [0, 1], "y_pred": [0]}, "y_pred has length 1"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "scores": [0.5]}, "scores has shape"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "scores": [0.5, 1.5]}, "scores contains 1.5"),
        ({"y_true": [0, 1], "y_pred": [0, 1], "scores": [0.5, np.inf]}, "scores contains inf"),
    ],
)
def test_update_errors_name_argument_and_value(kwargs: dict[str, Any], match: str) -> None:
    agg = ClassificationAggregate(["a", "b"])
    with pytest.raises(ValueError, match=match):
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in kwargs.items()}
        agg.update(**arrays)
    assert agg.to_dict() == ClassificationAggregate(["a", "b"]).to_dict()  # nothing applied


def test_constructor_merge_and_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="classes"):
        ClassificationAggregate(["a", "a"])
    with pytest.raises(ValueError, match="score_bins=0"):
        ClassificationAggregate(["a", "b"], score_bins=0)
    with pytest.raises(ValueError, match="score_bins=50"):
        ClassificationAggregate(["a", "b"]).merge(ClassificationAggregate(["a", "b"], 50))
    with pytest.raises(ValueError, match=r"confidence=1\.5"):
        ClassificationAggregate(["a", "b"]).compute(confidence=1.5)
    with pytest.raises(ValueError, match="ece_bins=0"):
        ClassificationAggregate(["a", "b"]).compute(ece_bins=0)
    state = ClassificationAggregate(["a", "b"]).to_dict()
    with pytest.raises(ValueError, match="kind='regression'"):
        ClassificationAggregate.from_dict({**state, "kind": "regression"})
    with pytest.raises(ValueError, match="confusion has shape"):
        ClassificationAggregate.from_dict({**state, "confusion": [[0, 0, 0]]})
