"""The calibration-shift test: its false-alarm rate under the null, by Monte Carlo, and its power."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from watchkeeper.stats.calibration_shift import calibration_shift
from watchkeeper.stats.classification import ClassificationAggregate


def _aggregate(rng: np.random.Generator, n: int, sharpen: float = 1.0) -> ClassificationAggregate:
    """A calibrated model's labelled scores; ``sharpen`` > 1 pushes scores toward 0/1 (same ranking)."""
    truth_p = rng.beta(2, 2, size=n)
    labels = (rng.random(n) < truth_p).astype(np.int64)
    logit = np.log(truth_p / (1 - truth_p)) * sharpen
    scores = 1 / (1 + np.exp(-logit))
    aggregate = ClassificationAggregate(["0", "1"])
    aggregate.update(labels, (scores >= 0.5).astype(np.int64), scores)
    return aggregate


def _shift(window: ClassificationAggregate, baseline: ClassificationAggregate) -> float:
    return calibration_shift(window.score_counts, window.score_sums, baseline.score_counts, baseline.score_sums).p_value


@pytest.mark.parametrize("n_window", [300, 3000])
def test_false_rejections_under_unchanged_calibration_match_the_level(n_window: int) -> None:
    rng = np.random.default_rng(11)
    baseline = _aggregate(rng, 10_000)
    runs, level = 1500, 0.05
    rejected = sum(_shift(_aggregate(rng, n_window), baseline) < level for _ in range(runs))
    # within the 99.9 % binomial band around the nominal level (chi-square approximation)
    low, high = stats.binom.ppf([0.0005, 0.9995], runs, level)
    assert low <= rejected <= high * 1.2, rejected


def test_a_sharpened_model_is_detected_on_one_window_of_labels() -> None:
    rng = np.random.default_rng(3)
    baseline = _aggregate(rng, 10_000)
    detected = [_shift(_aggregate(rng, 1000, sharpen=2.0), baseline) < 1e-5 for _ in range(50)]
    assert all(detected)


def test_the_statistic_is_the_sum_of_squared_standardised_residual_differences() -> None:
    rng = np.random.default_rng(5)
    window, baseline = _aggregate(rng, 500), _aggregate(rng, 5000)
    result = calibration_shift(window.score_counts, window.score_sums, baseline.score_counts, baseline.score_sums)
    coarse = np.arange(100) * 10 // 100
    expected = 0.0
    for b in range(10):
        rows = coarse == b
        n_w, n_b = window.score_counts[rows].sum(), baseline.score_counts[rows].sum()
        pos_w, pos_b = window.score_counts[rows, 1].sum(), baseline.score_counts[rows, 1].sum()
        d_w = (pos_w - window.score_sums[rows].sum()) / n_w
        d_b = (pos_b - baseline.score_sums[rows].sum()) / n_b
        p = (pos_w + pos_b) / (n_w + n_b)
        expected += (d_w - d_b) ** 2 / (p * (1 - p) * (1 / n_w + 1 / n_b))
    assert result.bins == 10
    assert result.statistic == pytest.approx(expected, rel=1e-12)
    assert result.p_value == pytest.approx(stats.chi2.sf(expected, 10), rel=1e-9)
