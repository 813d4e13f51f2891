"""Accuracy monitor: degradation rule, min counts, baseline learning, interval methods, state."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from watchkeeper.config import AccuracyConfig
from watchkeeper.monitor.accuracy import AccuracyMonitor, AccuracyVerdict
from watchkeeper.monitor.alerts import AlertBook, AlertRule, Evaluation
from watchkeeper.monitor.metric_values import confusion_delta_se, f1_delta_se, hanley_mcneil_se
from watchkeeper.stats.classification import MISSING, ClassificationAggregate
from watchkeeper.stats.intervals import wilson_interval
from watchkeeper.stats.regression import RegressionAggregate


def _binary(accuracy: float, n: int = 1000, unlabeled: int = 0) -> ClassificationAggregate:
    """n labelled rows, half positive, exactly round(accuracy·n) correct; scores agree with the label."""
    agg = ClassificationAggregate(["0", "1"])
    y = np.arange(n) % 2
    correct = np.arange(n) < round(accuracy * n)
    pred = np.where(correct, y, 1 - y)
    scores = np.where(pred == 1, 0.8, 0.2) + np.where(np.arange(n) % 4 < 2, 0.05, -0.05)
    agg.update(y, pred, scores)
    if unlabeled:
        agg.update(np.full(unlabeled, MISSING), np.zeros(unlabeled, dtype=int))
    return agg


def _learned(config: AccuracyConfig | None = None, accuracy: float = 0.9) -> AccuracyMonitor:
    monitor = AccuracyMonitor(config or AccuracyConfig(), "binary", None)
    for i in range(3):
        verdict = monitor.evaluate("m", "v1", i * 60.0, (i + 1) * 60.0, _binary(accuracy), 1000, final=True)
        assert verdict.status == "baseline_window" and not verdict.evaluations
    assert monitor.baseline is not None
    return monitor


def _by_metric(verdict: AccuracyVerdict) -> dict[str, Evaluation]:
    return {e.metric: e for e in verdict.evaluations}


def test_accuracy_drop_to_075_breaches_and_drop_to_088_does_not() -> None:
    monitor = _learned(AccuracyConfig(tolerance={"accuracy": 0.05}))
    assert monitor.baseline is not None and monitor.baseline["accuracy"] == pytest.approx(0.9)

    bad = monitor.evaluate("m", "v1", 600.0, 660.0, _binary(0.75), 1000, final=False)
    acc = _by_metric(bad)["accuracy"]
    assert bad.status == "evaluated"
    assert acc.breached and not acc.cleared
    assert acc.threshold == pytest.approx(0.85) and acc.comparator == "<"
    assert acc.interval == pytest.approx(wilson_interval(750, 1000))
    assert acc.details["baseline"] == pytest.approx(0.9) and acc.details["n_labeled"] == 1000
    assert acc.monitor == "accuracy" and acc.subject == "*"

    ok = monitor.evaluate("m", "v1", 660.0, 720.0, _binary(0.88), 1000, final=False)
    acc = _by_metric(ok)["accuracy"]
    assert not acc.breached and acc.cleared  # 0.88 >= 0.9 - 0.05/2


def test_a_drop_beyond_tolerance_that_sampling_noise_explains_does_not_breach() -> None:
    monitor = _learned()
    # 0.86 on 200 rows is 4 points under 0.90 (tolerance 2), but its standard error is 2.5 points
    verdict = monitor.evaluate("m", "v1", 600.0, 660.0, _binary(0.86, n=200), 1000, final=False, z_critical=4.0)
    acc = _by_metric(verdict)["accuracy"]
    assert acc.observed is not None and acc.observed < acc.threshold
    se, se_baseline = math.sqrt(0.86 * 0.14 / 200), math.sqrt(0.9 * 0.1 / 3000)
    assert acc.details["z"] == pytest.approx(0.04 / math.hypot(se, se_baseline))
    assert not acc.breached
    # the same drop on 3,000 rows is evidence
    verdict = monitor.evaluate("m", "v1", 660.0, 720.0, _binary(0.86, n=3000), 3000, final=False, z_critical=4.0)
    assert _by_metric(verdict)["accuracy"].breached


def test_alert_book_fires_and_resolves_from_verdicts() -> None:
    monitor = _learned()
    book = AlertBook(AlertRule(for_windows=1, resolve_windows=1))
    fired = [book.observe(e) for e in monitor.evaluate("m", "v1", 600, 660, _binary(0.7), 1000, False).evaluations]
    firing = [a for a in fired if a is not None and a.metric == "accuracy"]
    assert len(firing) == 1 and firing[0].status == "firing" and firing[0].confidence_interval is not None
    back = [book.observe(e) for e in monitor.evaluate("m", "v1", 660, 720, _binary(0.9), 1000, False).evaluations]
    assert any(a is not None and a.metric == "accuracy" and a.status == "resolved" for a in back)


def test_no_verdict_below_min_labeled_and_coverage_reported() -> None:
    monitor = _learned()
    verdict = monitor.evaluate("m", "v1", 600.0, 660.0, _binary(0.5, n=199, unlabeled=801), 1000, final=False)
    assert verdict.status == "insufficient_labels" and verdict.evaluations == []
    assert verdict.metrics["n_labeled"] == 199 and verdict.metrics["label_coverage"] == pytest.approx(0.199)
    assert "min_labeled" in verdict.skipped["accuracy"]
    exactly = monitor.evaluate("m", "v1", 600.0, 660.0, _binary(0.5, n=200), 1000, final=False)
    assert exactly.status == "evaluated" and _by_metric(exactly)["accuracy"].breached


def test_baseline_forms_from_first_k_final_windows_only_by_pooling_counts() -> None:
    monitor = AccuracyMonitor(AccuracyConfig(baseline_windows=2), "binary", None)
    # not final (label horizon not passed): never joins the baseline, and no verdict yet
    early = monitor.evaluate("m", "v1", 0.0, 60.0, _binary(0.5), 1000, final=False)
    assert early.status == "learning_baseline" and early.evaluations == [] and early.baseline is None
    # final but below min_labeled: skipped
    assert monitor.evaluate("m", "v1", 60.0, 120.0, _binary(0.5, n=150), 1000, True).status == "insufficient_labels"
    # two final windows of different size and accuracy: pooled counts, not averaged metrics
    monitor.evaluate("m", "v1", 120.0, 180.0, _binary(0.9, n=300), 300, True)
    again = monitor.evaluate("m", "v1", 120.0, 180.0, _binary(0.9, n=300), 300, True)  # same window twice
    assert again.status == "baseline_window" and monitor.baseline is None
    monitor.evaluate("m", "v1", 180.0, 240.0, _binary(0.8, n=1000), 1000, True)
    assert monitor.baseline is not None
    assert monitor.baseline["accuracy"] == pytest.approx((270 + 800) / 1300)
    assert monitor.baseline_windows == [(120.0, 180.0), (180.0, 240.0)]
    # later final windows no longer change it
    monitor.evaluate("m", "v1", 240.0, 300.0, _binary(0.5), 1000, True)
    assert monitor.baseline["accuracy"] == pytest.approx((270 + 800) / 1300)


def test_the_callers_aggregate_is_not_mutated_by_baseline_learning() -> None:
    monitor = AccuracyMonitor(AccuracyConfig(baseline_windows=2), "binary", None)
    agg = _binary(0.9)
    before = agg.to_dict()
    monitor.evaluate("m", "v1", 0.0, 60.0, agg, 1000, True)
    monitor.evaluate("m", "v1", 60.0, 120.0, agg, 1000, True)
    assert agg.to_dict() == before


def test_state_round_trips_through_json() -> None:
    monitor = AccuracyMonitor(AccuracyConfig(), "binary", None)
    monitor.evaluate("m", "v1", 0.0, 60.0, _binary(0.9), 1000, True)
    restored = AccuracyMonitor.from_dict(AccuracyConfig(), "binary", json.loads(json.dumps(monitor.to_dict())))
    for m in (monitor, restored):
        m.evaluate("m", "v1", 60.0, 120.0, _binary(0.91), 1000, True)
        m.evaluate("m", "v1", 120.0, 180.0, _binary(0.89), 1000, True)
    assert restored.to_dict() == monitor.to_dict()
    a = monitor.evaluate("m", "v1", 600, 660, _binary(0.7), 1000, False)
    b = restored.evaluate("m", "v1", 600, 660, _binary(0.7), 1000, False)
    assert a == b
    assert json.loads(json.dumps(a.to_dict(), allow_nan=False)) == a.to_dict() | {
        "intervals": {k: list(v) if v else None for k, v in a.intervals.items()}
    }


def test_reference_baseline_uses_profile_metrics_and_skips_missing_ones() -> None:
    config = AccuracyConfig(baseline="reference", baseline_metrics={"accuracy": 0.9, "roc_auc": 0.95})
    monitor = AccuracyMonitor(config, "binary", None)
    verdict = monitor.evaluate("m", "v1", 0.0, 60.0, _binary(0.75), 1000, final=False)
    assert verdict.status == "evaluated"
    assert set(_by_metric(verdict)) == {"accuracy", "roc_auc"}
    assert _by_metric(verdict)["accuracy"].breached
    assert verdict.skipped["f1"] == "no baseline value"


def test_log_loss_and_brier_are_tested_on_per_row_standard_errors() -> None:
    monitor = _learned()
    agg = _binary(0.7)
    verdict = monitor.evaluate("m", "v1", 600.0, 660.0, agg, 1000, False)
    n = 1000
    y = np.arange(n) % 2
    pred = np.where(np.arange(n) < 700, y, 1 - y)
    scores = np.where(pred == 1, 0.8, 0.2) + np.where(np.arange(n) % 4 < 2, 0.05, -0.05)
    rows = {"log_loss": -np.log(np.where(y == 1, scores, 1 - scores)), "brier": (y - scores) ** 2}
    for name, losses in rows.items():
        evaluation = _by_metric(verdict)[name]
        assert evaluation.details["interval_method"] == "normal" and evaluation.details["tolerance_kind"] == "relative"
        assert evaluation.threshold == pytest.approx(evaluation.details["baseline"] * 1.1)
        assert evaluation.interval is not None
        half = (evaluation.interval[1] - evaluation.interval[0]) / 2
        assert half == pytest.approx(1.959964 * losses.std(ddof=1) / math.sqrt(n), rel=1e-5)
    # an aggregate stored before it kept Σ loss² is judged on its point estimate
    old = {k: v for k, v in agg.to_dict().items() if not k.endswith("_sq_sum")}
    restored = ClassificationAggregate.from_dict(old)
    point = _by_metric(monitor.evaluate("m", "v1", 600.0, 660.0, restored, 1000, False))["log_loss"]
    assert point.interval is None and point.details["interval_method"] == "point" and point.details["z"] is None


def test_regression_mae_relative_tolerance_and_two_sided_bias() -> None:
    config = AccuracyConfig(metrics=["mae", "rmse", "r2", "bias"], tolerance={"bias": 0.5}, min_labeled=100)
    monitor = AccuracyMonitor(config, "regression", None)
    rng = np.random.default_rng(7)

    def window(noise: float, shift: float = 0.0, n: int = 2000) -> RegressionAggregate:
        y = rng.normal(10.0, 3.0, n)
        agg = RegressionAggregate()
        agg.update(y, y + rng.normal(shift, noise, n))
        return agg

    for i in range(3):
        monitor.evaluate("r", "v1", i, i + 1, window(1.0), 2000, True)
    assert monitor.baseline is not None
    worse = _by_metric(monitor.evaluate("r", "v1", 10, 11, window(1.5), 2000, False))
    assert worse["mae"].breached and worse["mae"].details["interval_method"] == "normal"
    assert worse["rmse"].breached and not worse["bias"].breached
    low = _by_metric(monitor.evaluate("r", "v1", 11, 12, window(1.0, shift=-1.0), 2000, False))
    assert low["bias"].breached and low["bias"].comparator == "<"
    same = _by_metric(monitor.evaluate("r", "v1", 12, 13, window(1.0), 2000, False))
    assert not any(e.breached for e in same.values()) and same["mae"].cleared


def test_multiclass_defaults() -> None:
    monitor = AccuracyMonitor(AccuracyConfig(), "multiclass", None)
    assert monitor.alerting == ("accuracy", "macro_f1", "log_loss")
    agg = ClassificationAggregate(["a", "b", "c"])
    y = np.arange(900) % 3
    agg.update(y, y, np.eye(3)[y] * 0.8 + 0.2 / 3)
    verdict = monitor.evaluate("m", "v1", 0, 1, agg, 900, False)
    assert verdict.metrics["macro_f1"] == 1.0 and verdict.status == "learning_baseline"


def test_config_validation() -> None:
    assert AccuracyConfig().label_horizon == 7 * 86400.0
    assert AccuracyConfig.model_validate({"label_horizon": "2h"}).label_horizon == 7200.0
    with pytest.raises(ValidationError, match="unknown metrics"):
        AccuracyConfig(tolerance={"acuracy": 0.1})
    with pytest.raises(ValidationError, match="both tolerance and relative_tolerance"):
        AccuracyConfig(tolerance={"mae": 0.1}, relative_tolerance={"mae": 0.1})
    with pytest.raises(ValidationError, match="no default tolerance"):
        AccuracyConfig(metrics=["bias"])
    with pytest.raises(ValidationError):
        AccuracyConfig(surprise=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not defined for task"):
        AccuracyMonitor(AccuracyConfig(metrics=["roc_auc"]), "regression", None)
    config = AccuracyConfig(relative_tolerance={"accuracy": 0.1})
    tol, kind = config.effective_tolerance("accuracy", 0.8)
    assert tol == pytest.approx(0.08) and kind == "relative"
    assert config.effective_tolerance("roc_auc", 0.8) == (0.02, "absolute")


# -- interval methods against direct formulas --------------------------------------------


def test_hanley_mcneil_matches_the_paper_and_a_direct_computation() -> None:
    # Hanley & McNeil (1982), Radiology 143:29-36, Table 1: CT ratings 1-5 (definitely normal
    # .. definitely abnormal) of 58 normal and 51 abnormal cases; A = 0.893, SE = 0.032.
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    agg = ClassificationAggregate(["normal", "abnormal"], score_bins=5)
    y = np.repeat([0] * 5 + [1] * 5, normal + abnormal)
    rating = np.tile(np.arange(1, 6), 2).repeat(normal + abnormal)
    agg.update(y, (rating >= 4).astype(int), (rating - 0.5) / 5)
    m = agg.compute(ece_bins=5)
    assert m.roc_auc == pytest.approx(0.893, abs=5e-4)
    assert m.roc_auc is not None
    assert hanley_mcneil_se(m.roc_auc, 51, 58) == pytest.approx(0.032, abs=1e-3)
    a, n1, n2 = 0.75, 40, 60
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    direct = math.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2))
    assert hanley_mcneil_se(a, n1, n2) == pytest.approx(direct, rel=1e-12)
    with pytest.raises(ValueError):
        hanley_mcneil_se(0.8, 0, 10)


def test_hanley_mcneil_is_close_to_delong_on_binormal_scores() -> None:
    rng = np.random.default_rng(11)
    pos, neg = rng.normal(1.2, 1.0, 400), rng.normal(0.0, 1.0, 600)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(psi.mean())
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)  # DeLong, DeLong & Clarke-Pearson (1988)
    delong = math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)
    assert hanley_mcneil_se(auc, pos.size, neg.size) == pytest.approx(delong, rel=0.15)


def test_f1_delta_method_closed_form_equals_the_generic_gradient() -> None:
    tn, fp, fn, tp = 500, 60, 90, 350
    value, se = confusion_delta_se([[tn, fp], [fn, tp]], "f1", average=1)
    assert value == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert se == pytest.approx(f1_delta_se(tp, fp, fn), rel=1e-9)


@pytest.mark.parametrize("kind", ["f1", "precision", "recall"])
def test_macro_delta_se_matches_multinomial_simulation(kind: str) -> None:
    cm = np.array([[300, 40, 10], [30, 200, 20], [15, 25, 160]])
    value, se = confusion_delta_se(cm, kind)  # type: ignore[arg-type]
    rng = np.random.default_rng(5)
    sims = rng.multinomial(cm.sum(), (cm / cm.sum()).ravel(), size=3000).reshape(-1, 3, 3)
    draws = [confusion_delta_se(s, kind)[0] for s in sims]  # type: ignore[arg-type]
    assert float(np.std(draws)) == pytest.approx(se, rel=0.1)
    assert float(np.mean(draws)) == pytest.approx(value, abs=0.01)
