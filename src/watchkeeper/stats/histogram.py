"""Reference-quantile binning for numeric features.

Drift statistics on a stream compare binned counts, not raw samples: the bin edges are
fixed once from the reference window, and each current window is reduced to a count
vector with the same layout, so memory is O(bins) per feature and windows can be summed.

Count-vector layout produced by :func:`bin_counts` (``len(edges) + 1`` entries)::

    [underflow, bin_1, ..., bin_(len(edges)-1), overflow]

* underflow: values ``< edges[0]`` (including ``-inf``);
* interior bin i: ``[edges[i-1], edges[i])``, except the last interior bin, which is
  closed on the right so that the reference maximum falls inside it;
* overflow: values ``> edges[-1]`` (including ``+inf``);
* NaN is "missing": it is not binned and is returned as a separate count.

Quantile edges follow the equal-frequency ("decile") binning customary for PSI
(Siddiqi 2006, "Credit Risk Scorecards", ch. 8). Quantiles use numpy's default
linear interpolation (Hyndman & Fan 1996, definition 7).

Example:
    >>> import numpy as np
    >>> edges = quantile_edges(np.arange(10.0), n_bins=2)
    >>> edges.tolist()
    [0.0, 4.5, 9.0]
    >>> counts, missing = bin_counts(np.array([-1.0, 0.0, 5.0, 9.0, 12.0, np.nan]), edges)
    >>> counts.tolist(), missing
    ([1, 1, 2, 1], 1)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["bin_counts", "quantile_edges", "validate_edges"]


def quantile_edges(values: npt.ArrayLike, n_bins: int = 10) -> np.ndarray:
    """Equal-frequency bin edges ``[min, q_1/n, ..., q_(n-1)/n, max]`` of the finite values.

    Non-finite values (NaN, ±inf) are ignored. Duplicate edges are removed, so heavy ties
    collapse bins: the result has between 2 and ``n_bins + 1`` strictly increasing float64
    edges. A constant column ``v`` yields ``[v, nextafter(v, +inf)]``: one interior bin
    holding exactly the value ``v`` (anything else is under/overflow).

    Raises:
        ValueError: if ``n_bins < 1`` or there is no finite value.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins={n_bins!r}: expected an integer >= 1")
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        raise ValueError(
            f"values: no finite value among {array.size} values; expected at least one "
            "finite value to compute bin edges"
        )
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        return np.array([low, np.nextafter(low, np.inf)], dtype=np.float64)
    levels = np.linspace(0.0, 1.0, int(n_bins) + 1)[1:-1]
    with np.errstate(over="ignore", invalid="ignore"):
        inner = np.quantile(finite, levels) if levels.size else np.empty(0)
    # Interpolation between huge values can overflow; such edges are dropped.
    inner = np.clip(inner[np.isfinite(inner)], low, high)
    edges = np.unique(np.concatenate(([low], inner, [high])))
    return edges.astype(np.float64, copy=False)


def validate_edges(edges: npt.ArrayLike) -> np.ndarray:
    """Return ``edges`` as float64, checking: 1-D, >= 2 entries, finite, strictly increasing."""
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or array.size < 2:
        raise ValueError(f"edges: shape {array.shape}; expected a 1-D array of at least 2 edges")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"edges={array.tolist()!r}: expected finite values")
    if not np.all(np.diff(array) > 0):
        raise ValueError(f"edges={array.tolist()!r}: expected strictly increasing values")
    return array


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> tuple[np.ndarray, int]:
    """Count ``values`` into ``[underflow, interior bins..., overflow]``; NaN counts as missing.

    Returns ``(counts, missing)`` where ``counts`` is int64 of length ``len(edges) + 1``
    (layout in the module docstring) and ``missing`` is the number of NaN values (``None``
    in an object array is converted to NaN). ``counts.sum() + missing == values.size``.
    """
    grid = validate_edges(edges)
    array = np.asarray(values, dtype=np.float64).ravel()
    is_missing = np.isnan(array)
    present = array[~is_missing]
    # side="right": index i means grid[i-1] <= x < grid[i]; 0 = underflow, len = overflow.
    index = np.searchsorted(grid, present, side="right")
    index[present == grid[-1]] = grid.size - 1  # last interior bin is closed on the right
    counts = np.bincount(index, minlength=grid.size + 1).astype(np.int64, copy=False)
    return counts, int(np.count_nonzero(is_missing))
