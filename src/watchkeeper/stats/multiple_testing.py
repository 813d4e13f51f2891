"""Multiple-testing adjustment of p-values across features.

A monitor tests many features per window; adjusting the p-values keeps false alarms
under control. Two standard procedures, both returning *adjusted* p-values (reject
hypothesis i at level α iff adjusted_i <= α):

* Benjamini–Hochberg (1995, JRSS-B 57(1)) controls the false discovery rate:
  with p sorted ascending, adj_(i) = min_{j>=i} min(1, n·p_(j) / j).
* Holm (1979, Scand. J. Statist. 6(2)) controls the family-wise error rate:
  adj_(i) = max_{j<=i} min(1, (n − j + 1)·p_(j)).

Both equal statsmodels' ``multipletests(method='fdr_bh' / 'holm')``. NaN entries (tests
that could not be run) follow R's ``p.adjust``: they stay NaN and do not count in n.

Example:
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
    [0.02, 0.04, 0.04, 0.02]
    >>> holm([0.01, 0.04, 0.03, 0.005]).round(4).tolist()
    [0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["adjust", "benjamini_hochberg", "holm"]


def _validated(p_values: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return (all values as float64 1-D, mask of non-NaN entries); check 0 <= p <= 1."""
    array = np.asarray(p_values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"p_values: shape {array.shape}; expected a 1-D array")
    present = ~np.isnan(array)
    bad = present & ((array < 0) | (array > 1))
    if np.any(bad):
        raise ValueError(f"p_values={array[bad].tolist()!r}: expected probabilities in [0, 1] (or NaN)")
    return array, present


def benjamini_hochberg(p_values: npt.ArrayLike) -> np.ndarray:
    """Benjamini–Hochberg FDR-adjusted p-values, in the input order."""
    array, present = _validated(p_values)
    result = np.full(array.shape, np.nan)
    p = array[present]
    n = p.size
    if n == 0:
        return result
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * n / np.arange(1, n + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    # p·n/n can round 1 ulp below p; keep the guarantee adjusted >= raw.
    adjusted_sorted = np.maximum(adjusted_sorted, p[order])
    adjusted = np.empty(n)
    adjusted[order] = adjusted_sorted
    result[present] = adjusted
    return result


def holm(p_values: npt.ArrayLike) -> np.ndarray:
    """Holm step-down FWER-adjusted p-values, in the input order."""
    array, present = _validated(p_values)
    result = np.full(array.shape, np.nan)
    p = array[present]
    n = p.size
    if n == 0:
        return result
    order = np.argsort(p, kind="mergesort")
    scaled = p[order] * np.arange(n, 0, -1)
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    adjusted = np.empty(n)
    adjusted[order] = adjusted_sorted
    result[present] = adjusted
    return result


def adjust(p_values: npt.ArrayLike, method: Literal["bh", "holm", "none"] = "bh") -> np.ndarray:
    """Adjust ``p_values`` with ``method``: "bh" (FDR), "holm" (FWER) or "none" (copy)."""
    if method == "bh":
        return benjamini_hochberg(p_values)
    if method == "holm":
        return holm(p_values)
    if method == "none":
        return _validated(p_values)[0].copy()
    raise ValueError(f"method={method!r}: expected one of 'bh', 'holm', 'none'")
