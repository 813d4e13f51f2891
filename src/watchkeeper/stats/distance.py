"""Effect sizes between a reference and a current binned distribution.

Every function takes two count vectors of equal length (reference first, current second),
in any common bin layout (e.g. :func:`watchkeeper.stats.histogram.bin_counts` output or
categorical counts), and normalises them to proportions ``p`` (reference) and ``q``
(current) internally. Counts must be finite, non-negative and each vector must have a
positive total. Bins are taken in order: the order matters for the KS and Wasserstein
statistics only.

Formulas and sources:

* PSI = Σ (q_i − p_i)·ln(q_i / p_i), proportions floored at ``epsilon`` (Siddiqi 2006,
  "Credit Risk Scorecards"; Yurdakul 2018, "Statistical Properties of Population
  Stability Index", WMU dissertation). Rule of thumb: < 0.1 stable, 0.1–0.25 moderate,
  > 0.25 major shift.
* Jensen–Shannon distance = sqrt(½ KL(p‖m) + ½ KL(q‖m)), m = (p+q)/2, base-2 logs, so it
  lies in [0, 1] (Endres & Schindelin 2003, IEEE Trans. Inf. Theory 49(7)); same as
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.
* Hellinger distance = ‖√p − √q‖₂ / √2, in [0, 1] (Le Cam & Yang 2000).
* Binned Kolmogorov–Smirnov D = max_i |P_i − Q_i| over cumulative proportions, with the
  asymptotic p-value of Numerical Recipes ``probks`` (Press et al. 2007, §14.3.3).
* Binned 1-Wasserstein = Σ |P_i − Q_i|·(x_(i+1) − x_i) with all mass at bin support
  points (Vallender 1974, W1 = ∫|F − G|).

Example:
    >>> ref, cur = [50, 30, 20], [30, 30, 40]
    >>> round(psi(ref, cur), 4), round(jensen_shannon_distance(ref, cur), 4)
    (0.2408, 0.2067)
    >>> round(hellinger_distance(ref, cur), 4), round(ks_statistic_binned(ref, cur), 4)
    (0.1728, 0.2)
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.histogram import validate_edges

__all__ = [
    "hellinger_distance",
    "jensen_shannon_distance",
    "ks_p_value",
    "ks_statistic_binned",
    "normalised_wasserstein",
    "psi",
    "wasserstein_binned",
]


def _proportions(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate two count vectors and return them as proportions (p, q)."""
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    for name, array in (("reference_counts", ref), ("current_counts", cur)):
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"{name}: shape {array.shape}; expected a non-empty 1-D array")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise ValueError(f"{name}={array.tolist()!r}: expected finite counts >= 0")
        if array.sum() <= 0:
            raise ValueError(f"{name}={array.tolist()!r}: expected a positive total count")
    if ref.shape != cur.shape:
        raise ValueError(
            f"reference_counts has {ref.size} bins, current_counts has {cur.size}: expected the same bin layout"
        )
    return ref / ref.sum(), cur / cur.sum()


def psi(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, epsilon: float = 1e-4) -> float:
    """Population stability index Σ (q − p)·ln(q / p).

    Convention: each proportion is floored at ``epsilon`` (``max(p, epsilon)``, no
    renormalisation), so an empty bin on one side contributes a large but finite term
    instead of infinity; a bin empty on both sides contributes 0. This matches the common
    industry practice (Evidently uses 1e-4). PSI is symmetric in its arguments.
    """
    if not (isinstance(epsilon, Real) and 0.0 < epsilon < 1.0):
        raise ValueError(f"epsilon={epsilon!r}: expected a number strictly between 0 and 1")
    p, q = _proportions(reference_counts, current_counts)
    p = np.maximum(p, epsilon)
    q = np.maximum(q, epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def _relative_entropy_terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise x·ln(x/y) with 0·ln(0/y) = 0 (as scipy.special.rel_entr, y > 0 where x > 0)."""
    positive = x > 0
    terms = np.zeros_like(x)
    terms[positive] = x[positive] * np.log(x[positive] / y[positive])
    return terms


def jensen_shannon_distance(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Jensen–Shannon distance with base-2 logarithms, in [0, 1].

    Square root of the JS divergence ½KL(p‖m) + ½KL(q‖m), m = (p + q)/2; a metric
    (Endres & Schindelin 2003). Equals ``scipy.spatial.distance.jensenshannon(p, q, 2)``.
    """
    p, q = _proportions(reference_counts, current_counts)
    m = (p + q) / 2.0
    divergence = (_relative_entropy_terms(p, m).sum() + _relative_entropy_terms(q, m).sum()) / 2.0
    return float(min(1.0, math.sqrt(max(0.0, divergence / math.log(2.0)))))


def hellinger_distance(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Hellinger distance ‖√p − √q‖₂ / √2, in [0, 1] (1 = disjoint supports)."""
    p, q = _proportions(reference_counts, current_counts)
    return min(1.0, float(np.linalg.norm(np.sqrt(p) - np.sqrt(q))) / math.sqrt(2.0))


def ks_statistic_binned(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> float:
    """Two-sample Kolmogorov–Smirnov D on binned data: max |P_i − Q_i| over bin boundaries.

    ``P_i``, ``Q_i`` are cumulative proportions after bin i, i.e. the two ECDFs evaluated
    at the bin boundaries. This is a lower bound of the exact D of the raw samples, and
    equals ``scipy.stats.ks_2samp(...).statistic`` when every bin holds at most one
    distinct value (then the ECDFs are constant between bin boundaries).
    """
    p, q = _proportions(reference_counts, current_counts)
    return min(1.0, float(np.max(np.abs(np.cumsum(p) - np.cumsum(q)))))


def ks_p_value(d: float, n_ref: int | np.integer[Any], n_cur: int | np.integer[Any]) -> float:
    """Asymptotic p-value of the two-sample KS statistic ``d`` (Numerical Recipes ``probks``).

    Q_KS(λ) = 2 Σ_{j≥1} (−1)^(j−1) exp(−2 j² λ²), λ = (√nₑ + 0.12 + 0.11/√nₑ)·d with
    nₑ = n·m/(n+m) (Stephens 1970 correction; Press et al. 2007, §14.3.3). For λ < 1.18
    the equivalent Jacobi-theta form 1 − (√(2π)/λ) Σ exp(−(2j−1)²π²/(8λ²)) is used, which
    converges fast there. Compared with scipy's ``ks_2samp(method='asymp')`` (which uses
    the exact one-sample law ``kstwo(round(nₑ))``), the absolute difference is below
    0.03 for nₑ >= 10, below 0.01 for nₑ >= 250, and in the tail (p < 0.1) the relative
    difference is below 5 % for nₑ >= 250. Ties (binned data) make any such p-value
    conservative.
    """
    if not (isinstance(d, Real) and 0.0 <= d <= 1.0):
        raise ValueError(f"d={d!r}: expected a KS statistic in [0, 1]")
    for name, n in (("n_ref", n_ref), ("n_cur", n_cur)):
        if isinstance(n, bool) or not (isinstance(n, (int, np.integer)) and n > 0):
            raise ValueError(f"{name}={n!r}: expected a positive integer sample size")
    effective = int(n_ref) * int(n_cur) / (int(n_ref) + int(n_cur))
    root = math.sqrt(effective)
    lam = (root + 0.12 + 0.11 / root) * d
    if lam <= 0.0:
        return 1.0
    j = np.arange(1, 101, dtype=np.float64)
    if lam < 1.18:
        odd = 2.0 * j - 1.0
        cdf = math.sqrt(2.0 * math.pi) / lam * float(np.sum(np.exp(-(odd**2) * math.pi**2 / (8.0 * lam**2))))
        p_value = 1.0 - cdf
    else:
        signs = np.where(j % 2 == 1, 1.0, -1.0)
        p_value = 2.0 * float(np.sum(signs * np.exp(-2.0 * j**2 * lam**2)))
    return float(min(1.0, max(0.0, p_value)))


def _support_points(edges: np.ndarray) -> np.ndarray:
    """Where each bin's mass sits: [edges[0], interior midpoints..., edges[-1]]."""
    midpoints = (edges[:-1] + edges[1:]) / 2.0
    return np.concatenate(([edges[0]], midpoints, [edges[-1]]))


def wasserstein_binned(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike, edges: npt.ArrayLike) -> float:
    """1-Wasserstein (earth mover's) distance between two binned distributions.

    Convention: each interior bin's mass sits at its midpoint, underflow mass at
    ``edges[0]`` and overflow mass at ``edges[-1]``; then W1 = ∫|F − G| = Σ |P_i − Q_i|·Δx_i
    over consecutive support points. Counts use the :func:`bin_counts` layout, so their
    length must be ``len(edges) + 1``. Equals ``scipy.stats.wasserstein_distance`` on
    samples whose values sit exactly at the support points; on raw data the error is at
    most half the widest interior bin (plus whatever lies beyond the outer edges).
    """
    grid = validate_edges(edges)
    p, q = _proportions(reference_counts, current_counts)
    if p.size != grid.size + 1:
        raise ValueError(
            f"counts have {p.size} bins, edges has {grid.size} entries: expected "
            "len(counts) == len(edges) + 1 (underflow, interior bins, overflow)"
        )
    cdf_gap = np.abs(np.cumsum(p) - np.cumsum(q))[:-1]
    return float(np.sum(cdf_gap * np.diff(_support_points(grid))))


def normalised_wasserstein(
    reference_counts: npt.ArrayLike,
    current_counts: npt.ArrayLike,
    edges: npt.ArrayLike,
    reference_std: float,
) -> float:
    """:func:`wasserstein_binned` divided by the reference standard deviation.

    A scale-free effect size, as in Evidently's ``wasserstein`` drift method (threshold
    0.1 by default there). ``reference_std`` is computed by the caller on the raw
    reference values (not from the bins), and must be finite and > 0: a constant
    reference column has no scale, and the caller should report drift there by other
    means (e.g. the share of values outside the single bin).
    """
    if not (isinstance(reference_std, Real) and math.isfinite(reference_std)):
        raise ValueError(f"reference_std={reference_std!r}: expected a finite number > 0")
    if reference_std <= 0:
        raise ValueError(f"reference_std={reference_std!r}: expected a finite number > 0")
    return wasserstein_binned(reference_counts, current_counts, edges) / float(reference_std)
