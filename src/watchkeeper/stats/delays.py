"""Label delay: a mergeable log-binned histogram and its quantiles.

Delays (outcome time − prediction time) span seconds to months, so bins are log-spaced:
edge k is 10^(k/4) seconds (four bins a decade, ≈ ±33 % resolution), from 1 s to 10^8 s,
with one bin below 1 s and one above the top. Quantiles interpolate geometrically inside
the bin, which bounds their relative error by the bin width.

Example:
    >>> counts = delay_counts([30.0, 60.0, 90.0, 3600.0])
    >>> round(delay_quantile(counts, 0.5))
    75
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["DELAY_EDGES", "delay_counts", "delay_quantile"]

DELAY_EDGES = 10.0 ** (np.arange(0, 33) / 4.0)  # 1 s .. 1e8 s


def delay_counts(delays: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Counts of ``len(DELAY_EDGES) + 1`` bins; negative delays count in the first bin."""
    values = np.asarray(delays, dtype=np.float64)
    index = np.searchsorted(DELAY_EDGES, values[np.isfinite(values)], side="right")
    return np.bincount(index, minlength=len(DELAY_EDGES) + 1).astype(np.int64)


def delay_quantile(counts: npt.ArrayLike, q: float) -> float | None:
    """The q-quantile (0 < q < 1) of the binned delays in seconds; None without data."""
    histogram = np.asarray(counts, dtype=np.float64)
    total = histogram.sum()
    if total <= 0:
        return None
    target = q * total
    cumulative = np.cumsum(histogram)
    k = int(np.searchsorted(cumulative, target, side="left"))
    before = cumulative[k - 1] if k > 0 else 0.0
    fraction = (target - before) / histogram[k] if histogram[k] else 0.0
    low = DELAY_EDGES[k - 1] if k > 0 else 0.0
    high = DELAY_EDGES[k] if k < len(DELAY_EDGES) else DELAY_EDGES[-1]
    if low <= 0:
        return float(high * fraction)
    return float(low * (high / low) ** fraction)
