"""Mergeable regression-accuracy aggregate (MAE, RMSE, MAPE, R², bias with intervals).

Stage 1 builds one `RegressionAggregate` per (model, window) from vectorised batches and ships
`to_dict()` as JSON; stage 2 rebuilds with `from_dict()`, `merge`s partials and calls
`compute()`. The state is sums plus centred second moments (M2 = Σ(x − x̄)²) merged with
Chan, Golub & LeVeque's pairwise update (1979, "Updating formulae and a pairwise algorithm
for computing sample variances"), which avoids the cancellation of Σx² − (Σx)²/n.
Definitions follow scikit-learn 1.9; see `docs/statistics-accuracy.md`.

Example:
    >>> import numpy as np
    >>> agg = RegressionAggregate()
    >>> agg.update(np.array([3.0, -0.5, 2.0, 7.0]), np.array([2.5, 0.0, 2.0, 8.0]))
    >>> m = agg.compute()
    >>> m.mae, m.mse, round(m.r2, 4), m.bias
    (0.5, 0.375, 0.9486, 0.25)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from watchkeeper.stats.intervals import z_value

__all__ = ["RegressionAggregate", "RegressionMetrics"]

_EPS = float(np.finfo(np.float64).eps)  # sklearn's MAPE divides by max(|y|, eps)
Interval = tuple[float, float]


@dataclass(frozen=True)
class RegressionMetrics:
    """Metrics of one `RegressionAggregate`; `None` marks an undefined value (e.g. n == 0)."""

    n: int
    n_zero_true: int  # rows with y_true == 0, whose APE is |e| / eps (as in sklearn)
    mae: float | None
    mae_interval: Interval | None  # normal approximation, sample variance of |e|
    mse: float | None
    rmse: float | None
    mape: float | None  # a fraction, not a percentage (sklearn's convention)
    r2: float | None  # None for n < 2 (sklearn returns NaN)
    bias: float | None  # mean(y_pred − y_true)
    bias_interval: Interval | None  # normal approximation, sample variance of e


def _as_float_array(name: str, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}: expected a 1-D array")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} contains {float(arr[bad][0])!r}: expected finite numbers")
    return arr


def _merge_m2(n_a: int, sum_a: float, m2_a: float, n_b: int, sum_b: float, m2_b: float) -> float:
    """Chan et al.: M2 = M2_a + M2_b + δ²·n_a·n_b / n with δ = x̄_b − x̄_a."""
    if not n_a or not n_b:
        return m2_a + m2_b
    delta = sum_b / n_b - sum_a / n_a
    return m2_a + m2_b + delta * delta * n_a * n_b / (n_a + n_b)


class RegressionAggregate:
    """Mergeable sums for regression error metrics (errors e = y_pred − y_true)."""

    _FLOATS = (
        "sum_true",
        "m2_true",
        "sum_err",
        "m2_err",
        "sum_abs_err",
        "m2_abs_err",
        "sum_sq_err",
        "sum_ape",
    )

    def __init__(self) -> None:
        self.n = 0
        self.n_zero_true = 0
        self.min_true = math.inf  # min == max marks a constant y exactly (R² convention)
        self.max_true = -math.inf
        self.sum_true = 0.0
        self.m2_true = 0.0
        self.sum_err = 0.0
        self.m2_err = 0.0
        self.sum_abs_err = 0.0
        self.m2_abs_err = 0.0
        self.sum_sq_err = 0.0
        self.sum_ape = 0.0  # Σ |e| / max(|y|, eps)

    def update(self, y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> None:
        """Add one batch of true values and predictions (1-D, same length, finite)."""
        yt = _as_float_array("y_true", y_true)
        yp = _as_float_array("y_pred", y_pred)
        if yt.shape != yp.shape:
            raise ValueError(f"y_pred has length {yp.size}: expected len(y_true) = {yt.size}")
        if not yt.size:
            return
        err = yp - yt
        abs_err = np.abs(err)
        batch = RegressionAggregate()
        batch.n = int(yt.size)
        batch.n_zero_true = int(np.count_nonzero(yt == 0.0))
        batch.min_true, batch.max_true = float(yt.min()), float(yt.max())
        for name, x in (("true", yt), ("err", err), ("abs_err", abs_err)):
            total = float(x.sum())
            setattr(batch, f"sum_{name}", total)
            setattr(batch, f"m2_{name}", float(np.sum((x - total / x.size) ** 2)))
        batch.sum_sq_err = float(np.sum(err * err))
        batch.sum_ape = float(np.sum(abs_err / np.maximum(np.abs(yt), _EPS)))
        self.merge(batch)

    def merge(self, other: RegressionAggregate) -> RegressionAggregate:
        """Add `other` into this aggregate (in place) and return self."""
        for name in ("true", "err", "abs_err"):
            m2 = _merge_m2(
                self.n,
                getattr(self, f"sum_{name}"),
                getattr(self, f"m2_{name}"),
                other.n,
                getattr(other, f"sum_{name}"),
                getattr(other, f"m2_{name}"),
            )
            setattr(self, f"m2_{name}", m2)
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + getattr(other, f"sum_{name}"))
        self.sum_sq_err += other.sum_sq_err
        self.sum_ape += other.sum_ape
        self.n += other.n
        self.n_zero_true += other.n_zero_true
        self.min_true = min(self.min_true, other.min_true)
        self.max_true = max(self.max_true, other.max_true)
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state; min/max of y are `None` while empty (JSON has no infinity)."""
        data: dict[str, Any] = {
            "kind": "regression",
            "version": 1,
            "n": self.n,
            "n_zero_true": self.n_zero_true,
            "min_true": self.min_true if self.n else None,
            "max_true": self.max_true if self.n else None,
        }
        data.update({name: getattr(self, name) for name in self._FLOATS})
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegressionAggregate:
        """Rebuild from `to_dict()` output; ValueError on a wrong kind or version."""
        if data.get("kind") != "regression" or data.get("version") != 1:
            raise ValueError(f"kind={data.get('kind')!r}, version={data.get('version')!r}: expected 'regression', 1")
        agg = cls()
        agg.n = int(data["n"])
        agg.n_zero_true = int(data["n_zero_true"])
        if agg.n:
            agg.min_true, agg.max_true = float(data["min_true"]), float(data["max_true"])
        for name in cls._FLOATS:
            setattr(agg, name, float(data[name]))
        return agg

    def compute(self, confidence: float = 0.95) -> RegressionMetrics:
        """MAE, MSE, RMSE, MAPE, R² and bias; normal-approximation intervals at `confidence`.

        R² = 1 − Σe² / Σ(y − ȳ)² with sklearn's `force_finite` conventions: 1.0 when Σe² == 0,
        0.0 when y is constant and Σe² > 0. Interval: x̄ ± z·s/√n, s² = M2/(n − 1), n ≥ 2.
        """
        z = z_value(confidence)
        n = self.n
        if not n:
            return RegressionMetrics(0, 0, None, None, None, None, None, None, None, None)
        mae, bias, mse = self.sum_abs_err / n, self.sum_err / n, self.sum_sq_err / n
        r2: float | None = None
        mae_interval = bias_interval = None
        if n >= 2:
            if self.sum_sq_err == 0.0:
                r2 = 1.0
            elif self.min_true == self.max_true or self.m2_true == 0.0:
                r2 = 0.0
            else:
                r2 = 1.0 - self.sum_sq_err / self.m2_true
            half_mae = z * math.sqrt(max(self.m2_abs_err, 0.0) / (n - 1) / n)
            half_bias = z * math.sqrt(max(self.m2_err, 0.0) / (n - 1) / n)
            mae_interval = (max(0.0, mae - half_mae), mae + half_mae)
            bias_interval = (bias - half_bias, bias + half_bias)
        return RegressionMetrics(
            n=n,
            n_zero_true=self.n_zero_true,
            mae=mae,
            mae_interval=mae_interval,
            mse=mse,
            rmse=math.sqrt(mse),
            mape=self.sum_ape / n,
            r2=r2,
            bias=bias,
            bias_interval=bias_interval,
        )
