"""Has a binary model's calibration changed? A two-sample Hosmer–Lemeshow test on score bins.

ECE is a poor alarm statistic on its own: on a few hundred labels it is biased upward
(|Σy − Σs| per bin is at least its sampling noise, ≈ sqrt(n_b·p(1−p))), so a perfectly
calibrated model shows ECE ≈ 0.05–0.08 on 300 labels and a fixed threshold fires on noise.
This test asks instead whether the window's *calibration residuals* differ from the
baseline's, bin by bin, beyond their sampling error.

For each coarse score bin b with at least ``min_rows`` labelled rows on both sides, the
residual is d = (Σy − Σs)/n (observed minus predicted positive rate). Under "calibration
unchanged" d_window − d_baseline has mean ≈ 0 and variance ≈ v_b·(1/n_w + 1/n_b) with
v_b = p̄(1−p̄), p̄ the pooled positive rate of the bin, so

    X² = Σ_b (d_w − d_b)² / (v_b·(1/n_w + 1/n_b))  ~  χ²(B)

with B the bins used (Hosmer & Lemeshow 1980, *Communications in Statistics A* 9(10), for
the one-sample statistic against the model's own probabilities; here the reference is the
baseline's residual, so a model that was never perfectly calibrated is judged against
itself). Bins are ``⌊j·bins/score_bins⌋`` of the aggregate's fine bins, as for ECE.

Example:
    >>> import numpy as np
    >>> counts = np.array([[80, 20], [20, 80]])  # [bin][negatives, positives]
    >>> sums = np.array([20.0, 80.0])            # Σ score per bin: calibrated
    >>> same = calibration_shift(counts, sums, counts * 10, sums * 10, bins=2)
    >>> round(same.statistic, 6), same.bins
    (0.0, 2)
    >>> sharpened = calibration_shift(counts, np.array([5.0, 95.0]), counts * 10, sums * 10, bins=2)
    >>> sharpened.p_value < 0.001
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.hypothesis_tests import chi2_sf

__all__ = ["CalibrationShift", "calibration_shift"]


@dataclass(frozen=True)
class CalibrationShift:
    """The test's χ² statistic, its degrees of freedom (bins used) and p-value (1.0 without bins)."""

    statistic: float
    bins: int
    p_value: float


def _coarse(
    counts: npt.NDArray[np.int64], sums: npt.NDArray[np.float64], bins: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(rows, positives, Σ score) per coarse bin."""
    fine = counts.shape[0]
    coarse = np.arange(fine) * bins // fine
    rows = np.bincount(coarse, weights=counts.sum(axis=1), minlength=bins).astype(np.float64)
    positives = np.bincount(coarse, weights=counts[:, 1], minlength=bins).astype(np.float64)
    return rows, positives, np.bincount(coarse, weights=sums, minlength=bins).astype(np.float64)


def calibration_shift(
    window_counts: npt.ArrayLike,
    window_sums: npt.ArrayLike,
    baseline_counts: npt.ArrayLike,
    baseline_sums: npt.ArrayLike,
    bins: int = 10,
    min_rows: int = 10,
) -> CalibrationShift:
    """Test whether the window's calibration residuals differ from the baseline's (module doc).

    ``*_counts`` are ``[fine bin][negatives, positives]`` of labelled scored rows and
    ``*_sums`` the sum of their scores per fine bin (``ClassificationAggregate.score_counts``
    and ``score_sums``); both sides must use the same fine bins.
    """
    w_counts, b_counts = np.asarray(window_counts, dtype=np.int64), np.asarray(baseline_counts, dtype=np.int64)
    if w_counts.shape != b_counts.shape or w_counts.ndim != 2 or w_counts.shape[1] != 2:
        raise ValueError(
            f"window counts {w_counts.shape}, baseline counts {b_counts.shape}: expected equal (bins, 2) shapes"
        )
    if not 1 <= bins <= w_counts.shape[0]:
        raise ValueError(f"bins={bins!r}: expected 1 <= bins <= {w_counts.shape[0]}")
    n_w, pos_w, s_w = _coarse(w_counts, np.asarray(window_sums, dtype=np.float64), bins)
    n_b, pos_b, s_b = _coarse(b_counts, np.asarray(baseline_sums, dtype=np.float64), bins)
    pooled = np.divide(pos_w + pos_b, n_w + n_b, out=np.zeros(bins), where=(n_w + n_b) > 0)
    used = (n_w >= min_rows) & (n_b >= min_rows) & (pooled > 0) & (pooled < 1)
    if not used.any():
        return CalibrationShift(0.0, 0, 1.0)
    d_w = (pos_w[used] - s_w[used]) / n_w[used]
    d_b = (pos_b[used] - s_b[used]) / n_b[used]
    variance = pooled[used] * (1 - pooled[used]) * (1 / n_w[used] + 1 / n_b[used])
    statistic = float(np.sum((d_w - d_b) ** 2 / variance))
    df = int(used.sum())
    return CalibrationShift(statistic, df, chi2_sf(statistic, df))
