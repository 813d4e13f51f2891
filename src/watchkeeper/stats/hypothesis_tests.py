"""Chi-square survival function and Pearson's test of homogeneity, numpy/stdlib only.

``chi2_sf(x, k) = Q(k/2, x/2)``, the regularised upper incomplete gamma function, computed
as in Numerical Recipes (Press et al. 2007, §6.2): the series for P(a, x) when
x < a + 1, otherwise the continued fraction for Q(a, x) evaluated with the modified
Lentz method. The prefactor exp(−x + a·ln x − ln Γ(a)) is kept in log space so the
result does not underflow before it is genuinely below ~1e-308. Relative accuracy is
~1e-13 for dof up to a few hundred and degrades slowly (≈ dof·1e-16) beyond.

The homogeneity test is Pearson's χ² on the 2×k table [reference; current]
(Pearson 1900; Agresti 2013, "Categorical Data Analysis", §3.2), with expected counts
E_ij = R_i·C_j / N, no continuity correction, dof = k − 1 after dropping all-zero columns.
The test assumes independent observations and large expected counts (rule of thumb:
E_ij >= 5); with very large windows any tiny shift becomes "significant", so pair the
p-value with an effect size from :mod:`watchkeeper.stats.distance`.

Example:
    >>> round(chi2_sf(3.841458820694124, 1), 6)
    0.05
    >>> result = chi_square_homogeneity([30, 20, 50], [20, 30, 50])
    >>> round(result.statistic, 4), result.dof, round(result.p_value, 4)
    (4.0, 2, 0.1353)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ChiSquareResult", "chi2_sf", "chi_square_homogeneity", "regularized_gamma_q"]

_EPS = 1e-16
_TINY = 1e-300


def _max_iterations(a: float, x: float) -> int:
    """Both expansions need O(√max(a, x)) terms; leave a wide margin."""
    return int(200 + 20 * math.sqrt(max(a, x, 1.0)))


def _log_prefactor(a: float, x: float) -> float:
    """ln(x^a · e^(−x) / Γ(a))."""
    return a * math.log(x) - x - math.lgamma(a)


def _lower_series(a: float, x: float) -> float:
    """P(a, x) by the series e^(−x) x^a / Γ(a) · Σ x^n / (a(a+1)…(a+n)) (NR gser)."""
    term = total = 1.0 / a
    denominator = a
    for _ in range(_max_iterations(a, x)):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    else:  # pragma: no cover - the iteration budget is generous
        raise ArithmeticError(f"gamma series did not converge for a={a!r}, x={x!r}")
    return math.exp(_log_prefactor(a, x) + math.log(total))


def _upper_continued_fraction(a: float, x: float) -> float:
    """Q(a, x) by the Legendre continued fraction, modified Lentz method (NR gcf)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _max_iterations(a, x)):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    else:  # pragma: no cover - the iteration budget is generous
        raise ArithmeticError(f"gamma continued fraction did not converge for a={a!r}, x={x!r}")
    log_q = _log_prefactor(a, x) + math.log(h)
    return math.exp(log_q) if log_q > -745.0 else 0.0


def regularized_gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a), for a > 0, x >= 0."""
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"a={a!r}: expected a finite shape parameter > 0")
    if math.isnan(x) or x < 0:
        raise ValueError(f"x={x!r}: expected a number >= 0")
    if x == 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _lower_series(a, x))
    return _upper_continued_fraction(a, x)


def chi2_sf(x: float, dof: float | np.integer[Any]) -> float:
    """Survival function P(χ²_dof > x) = Q(dof/2, x/2); 1 for x <= 0, 0 for x = +inf."""
    if not (isinstance(dof, Real) and math.isfinite(dof) and dof > 0):
        raise ValueError(f"dof={dof!r}: expected a finite number of degrees of freedom > 0")
    if not isinstance(x, Real) or math.isnan(x):
        raise ValueError(f"x={x!r}: expected a real number (not NaN)")
    if x <= 0:
        return 1.0
    return regularized_gamma_q(float(dof) / 2.0, float(x) / 2.0)


@dataclass(frozen=True)
class ChiSquareResult:
    """Outcome of a χ² test: statistic, degrees of freedom and p-value."""

    statistic: float
    dof: int
    p_value: float


def chi_square_homogeneity(reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> ChiSquareResult:
    """Pearson χ² test that reference and current counts come from one distribution.

    Columns where both counts are 0 are dropped. With fewer than 2 non-empty columns, or an
    empty row (one side has no data), there is no evidence of a difference and the result
    is ``ChiSquareResult(0.0, 0, 1.0)``. Otherwise equal to
    ``scipy.stats.chi2_contingency([ref, cur], correction=False)``.
    """
    ref = np.asarray(reference_counts, dtype=np.float64)
    cur = np.asarray(current_counts, dtype=np.float64)
    for name, array in (("reference_counts", ref), ("current_counts", cur)):
        if array.ndim != 1:
            raise ValueError(f"{name}: shape {array.shape}; expected a 1-D array")
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise ValueError(f"{name}={array.tolist()!r}: expected finite counts >= 0")
    if ref.shape != cur.shape:
        raise ValueError(
            f"reference_counts has {ref.size} columns, current_counts has {cur.size}: expected the same layout"
        )
    table = np.vstack((ref, cur))
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(rows == 0):
        return ChiSquareResult(0.0, 0, 1.0)
    expected = np.outer(rows, table.sum(axis=0)) / rows.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return ChiSquareResult(statistic, dof, chi2_sf(statistic, dof))
