"""ADWIN change detection (adaptive windowing) with its state as plain, JSON-able data.

ADWIN (Bifet & Gavaldà 2007) keeps a window of recent values, compressed into an
exponential histogram: level ``i`` holds up to ``max_buckets`` buckets of ``2**i`` values
each (their sum and the sum of squared deviations from their mean); a new value enters level
0 and a level that overflows merges its two oldest buckets into one bucket of the next
level. Every ``clock`` values (once the window is longer than ``grace_period``) each bucket
boundary splits the window into an older part W0 (n0 values) and a recent part W1 (n1
values); when both have at least ``min_window_length`` values and

    |mean(W0) − mean(W1)| > sqrt(2 · m · σ² · δ') + 2/3 · δ' · m,
    m = 1/(n0 − min_window_length + 1) + 1/(n1 − min_window_length + 1),
    δ' = ln(2 · ln(width) / δ),   σ² = variance of the whole window,

the oldest bucket is dropped and the scan repeats; a drop means drift was detected. As in
River, the whole window is cleared on the update *after* a detection.

This follows ``river.drift.ADWIN`` (River 0.26, its ``AdaptiveWindowing`` core, a port of
the earlier Cython ``adwin_c``) operation for operation, so the same stream gives the same
floating-point values and drift at exactly the same indices (checked against River by
``tests/unit/stats/test_adwin.py``). Differences: ``variance`` is the window's variance
(River's ``ADWIN.variance`` returns the sum of squared deviations), non-finite input raises
``ValueError``, ``max_buckets`` must be at least 2, ``min_window_length`` at least 1, and the
state is :meth:`ADWIN.to_dict` / :meth:`ADWIN.from_dict` plain data, never a serialised object.

Reference: A. Bifet & R. Gavaldà (2007), "Learning from Time-Changing Data with Adaptive
Windowing", Proceedings of the 2007 SIAM International Conference on Data Mining (SDM),
pp. 443–448.

Example:
    >>> import random
    >>> rng = random.Random(7)
    >>> detector = ADWIN()
    >>> stream = [float(rng.random() < 0.1) for _ in range(2000)] + [float(rng.random() < 0.5) for _ in range(2000)]
    >>> hits = [i for i, x in enumerate(stream) if detector.update(x)]
    >>> 2000 <= hits[0] < 2200
    True
    >>> restored = ADWIN.from_dict(detector.to_dict())
    >>> restored.width == detector.width and restored.estimation == detector.estimation
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["ADWIN"]

_STATE_VERSION = 1


def _int(data: Mapping[str, Any], field: str, minimum: int) -> int:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"ADWIN state: {field}={value!r}: expected an integer >= {minimum}")
    return value


def _float(value: Any, field: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"ADWIN state: {field}={value!r}: expected a finite number")
    if minimum is not None and value < minimum:
        raise ValueError(f"ADWIN state: {field}={value!r}: expected >= {minimum}")
    return float(value)


def _levels(data: Mapping[str, Any], field: str, max_buckets: int, minimum: float | None) -> list[list[float]]:
    levels = data[field]
    if not isinstance(levels, list) or not levels:
        raise ValueError(f"ADWIN state: {field}={levels!r}: expected a non-empty list of lists")
    out: list[list[float]] = []
    for i, level in enumerate(levels):
        if not isinstance(level, list) or len(level) > max_buckets or (not level and len(levels) > 1):
            raise ValueError(
                f"ADWIN state: {field}[{i}]={level!r}: expected a list of 1 to max_buckets={max_buckets} numbers"
            )
        out.append([_float(x, f"{field}[{i}][{k}]", minimum) for k, x in enumerate(level)])
    return out


class ADWIN:
    """ADWIN drift detector; ``update(x)`` returns whether drift was detected at ``x``.

    Parameters are River's: significance ``delta``, a check every ``clock`` values, at most
    ``max_buckets`` buckets per histogram level, sub-windows of at least ``min_window_length``
    values, and no check until the window holds more than ``grace_period`` values.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_delta",
        "_drift",
        "_grace_period",
        "_m2",
        "_max_buckets",
        "_min_window_length",
        "_squares",
        "_tick",
        "_total",
        "_width",
    )

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"ADWIN: delta={delta!r}: expected 0 < delta < 1")
        for name, value, minimum in (
            ("clock", clock, 1),
            ("max_buckets", max_buckets, 2),
            ("min_window_length", min_window_length, 1),
            ("grace_period", grace_period, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"ADWIN: {name}={value!r}: expected an integer >= {minimum}")
        self._delta = float(delta)
        self._clock = clock
        self._max_buckets = max_buckets
        self._min_window_length = float(min_window_length)
        self._grace_period = float(grace_period)
        self._clear()

    def _clear(self) -> None:
        """Empty the window (the tick counter restarts too, as River builds a new helper)."""
        # _buckets[i] / _squares[i]: sums / sums of squared deviations of the buckets of 2**i values, oldest first
        self._buckets: list[list[float]] = [[]]
        self._squares: list[list[float]] = [[]]
        self._total = 0.0
        self._m2 = 0.0  # sum of squared deviations from the window mean
        self._width = 0.0
        self._tick = 0
        self._drift = False

    # -- read-only views ------------------------------------------------------------------

    @property
    def drift_detected(self) -> bool:
        """Whether the last update detected drift."""
        return self._drift

    @property
    def width(self) -> int:
        """Number of values in the window."""
        return int(self._width)

    @property
    def total(self) -> float:
        """Sum of the values in the window."""
        return self._total

    @property
    def estimation(self) -> float:
        """Mean of the window (0.0 when empty)."""
        return self._total / self._width if self._width else 0.0

    @property
    def variance(self) -> float:
        """Population variance of the window (0.0 when empty)."""
        return self._m2 / self._width if self._width else 0.0

    # -- the algorithm --------------------------------------------------------------------

    def update(self, x: float) -> bool:
        """Add ``x``; True when the window was cut (drift detected)."""
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"ADWIN: x={x!r}: expected a finite number")
        if self._drift:
            self._clear()
        self._insert(value)
        self._drift = self._detect()
        return self._drift

    def _insert(self, value: float) -> None:
        first = self._buckets[0]
        first.append(value)
        self._squares[0].append(0.0)
        width = self._width + 1.0
        self._width = width
        if width > 1.0:
            deviation = value - self._total / (width - 1.0)
            self._m2 += (width - 1.0) * deviation * deviation / width
        self._total += value
        if len(first) > self._max_buckets:
            self._compress()

    def _compress(self) -> None:
        buckets, squares, limit = self._buckets, self._squares, self._max_buckets
        level = 0
        while len(buckets[level]) == limit + 1:
            size = float(1 << level)
            sums, sq = buckets[level], squares[level]
            mean0 = sums[0] / size
            mean1 = sums[1] / size
            merged_sq = sq[0] + sq[1] + size * 0.5 * (mean0 - mean1) * (mean0 - mean1)
            if level + 1 == len(buckets):
                buckets.append([])
                squares.append([])
            buckets[level + 1].append(sums[0] + sums[1])
            squares[level + 1].append(merged_sq)
            del sums[:2], sq[:2]
            if len(buckets[level + 1]) <= limit:
                return
            level += 1

    def _drop_oldest(self) -> None:
        last = len(self._buckets) - 1
        size = float(1 << last)
        total, sq = self._buckets[last][0], self._squares[last][0]
        mean = total / size
        self._width -= size
        self._total -= total
        window_mean = self._total / self._width
        self._m2 -= sq + size * self._width * (mean - window_mean) * (mean - window_mean) / (size + self._width)
        del self._buckets[last][0], self._squares[last][0]
        if not self._buckets[last]:
            self._buckets.pop()
            self._squares.pop()

    def _detect(self) -> bool:
        self._tick += 1
        if self._tick % self._clock or not self._width > self._grace_period:
            return False
        detected = False
        while self._cut_found():
            detected = True
            self._drop_oldest()
        return detected

    def _cut_found(self) -> bool:
        """Scan the bucket boundaries, oldest first, for a cut that passes the test."""
        width, min_length = self._width, self._min_window_length
        if width < 2.0:
            return False
        delta_prime = math.log(2.0 * math.log(width) / self._delta)
        variance = self._m2 / width
        n0, n1, u0, u1 = 0.0, width, 0.0, self._total
        for level in range(len(self._buckets) - 1, -1, -1):
            size = float(1 << level)
            sums = self._buckets[level]
            last = len(sums) - 1
            for k, bucket_total in enumerate(sums):
                n0 += size
                n1 -= size
                u0 += bucket_total
                u1 -= bucket_total
                if level == 0 and k == last:
                    return False
                if n1 >= min_length and n0 >= min_length:
                    m_recip = 1.0 / (n0 - min_length + 1.0) + 1.0 / (n1 - min_length + 1.0)
                    radicand = 2.0 * m_recip * variance * delta_prime
                    if not radicand >= 0.0:  # rounding made the variance negative: River's sqrt is NaN, no cut
                        continue
                    epsilon = math.sqrt(radicand) + 2.0 / 3.0 * delta_prime * m_recip
                    if abs(u0 / n0 - u1 / n1) > epsilon:
                        return True
        return False

    # -- state ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The detector as JSON-able data (numbers, lists, a bool); :meth:`from_dict` restores it."""
        return {
            "version": _STATE_VERSION,
            "delta": self._delta,
            "clock": self._clock,
            "max_buckets": self._max_buckets,
            "min_window_length": int(self._min_window_length),
            "grace_period": int(self._grace_period),
            "width": int(self._width),
            "total": self._total,
            "sum_squared_deviations": self._m2,
            "tick": self._tick,
            "drift_detected": self._drift,
            "bucket_totals": [list(level) for level in self._buckets],
            "bucket_squared_deviations": [list(level) for level in self._squares],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ADWIN:
        """Restore :meth:`to_dict` data; ValueError naming the field on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"ADWIN state: expected a mapping, got {type(data).__name__}")
        missing = [
            field
            for field in (
                "version",
                "delta",
                "clock",
                "max_buckets",
                "min_window_length",
                "grace_period",
                "width",
                "total",
                "sum_squared_deviations",
                "tick",
                "drift_detected",
                "bucket_totals",
                "bucket_squared_deviations",
            )
            if field not in data
        ]
        if missing:
            raise ValueError(f"ADWIN state: missing field(s) {', '.join(missing)}")
        if type(data["version"]) is not int or data["version"] != _STATE_VERSION:
            raise ValueError(f"ADWIN state: version={data['version']!r}: expected {_STATE_VERSION}")
        delta = _float(data["delta"], "delta")
        if not 0.0 < delta < 1.0:
            raise ValueError(f"ADWIN state: delta={delta!r}: expected 0 < delta < 1")
        max_buckets = _int(data, "max_buckets", 2)
        detector = cls(
            delta=delta,
            clock=_int(data, "clock", 1),
            max_buckets=max_buckets,
            min_window_length=_int(data, "min_window_length", 1),
            grace_period=_int(data, "grace_period", 0),
        )
        buckets = _levels(data, "bucket_totals", max_buckets, None)
        squares = _levels(data, "bucket_squared_deviations", max_buckets, 0.0)
        if len(squares) != len(buckets):
            raise ValueError(
                f"ADWIN state: bucket_squared_deviations has {len(squares)} levels: expected {len(buckets)}, "
                "as bucket_totals"
            )
        for i, (sums, sq) in enumerate(zip(buckets, squares, strict=True)):
            if len(sums) != len(sq):
                raise ValueError(
                    f"ADWIN state: bucket_squared_deviations[{i}]={sq!r}: expected the shape of bucket_totals[{i}]"
                )
        width = _int(data, "width", 0)
        held = sum(len(level) << i for i, level in enumerate(buckets))
        if width != held:
            raise ValueError(f"ADWIN state: width={width!r}: expected {held}, the number of values in the buckets")
        drift = data["drift_detected"]
        if not isinstance(drift, bool):
            raise ValueError(f"ADWIN state: drift_detected={drift!r}: expected true or false")
        detector._buckets = buckets
        detector._squares = squares
        detector._width = float(width)
        detector._total = _float(data["total"], "total")
        detector._m2 = _float(data["sum_squared_deviations"], "sum_squared_deviations")
        detector._tick = _int(data, "tick", 0)
        detector._drift = drift
        return detector
