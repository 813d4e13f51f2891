"""Multivariate drift through PCA reconstruction error.

Univariate tests miss a change in how features move together (a correlation that flips
leaves every marginal distribution unchanged). Fit principal components on the
standardised reference, keep the k components explaining ``variance`` of it (k below the
number of features), and score each event by its squared reconstruction error
‖z − z·P·Pᵀ‖² / d. Under no drift the score follows its reference distribution; when
the joint distribution moves out of the reference subspace the score grows. The score is
an ordinary numeric column for the monitor, so the window tests and a CUSUM calibrated by
bootstrap on the reference scores watch it (the approach of Alibi Detect's and NannyML's
"data reconstruction drift", written from the description: Jolliffe, "Principal Component
Analysis", 2nd ed., 2002, §10.1 on residuals).

Missing values are imputed with the reference mean (z = 0), so they add no error.

Example:
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 1))
    >>> reference = np.hstack([x, x + 0.1 * rng.normal(size=(2000, 1))])
    >>> pca = PCAReconstruction.fit(reference, names=["a", "b"])
    >>> pca.k
    1
    >>> flipped = np.hstack([x, -x])
    >>> bool(pca.errors(flipped).mean() > 10 * pca.errors(reference).mean())
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PCAReconstruction"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PCAReconstruction:
    """Standardisation and principal subspace of a reference; scores reconstruction error."""

    names: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    components: FloatArray  # (k, d), orthonormal rows

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, matrix: npt.ArrayLike, names: Sequence[str], variance: float = 0.9) -> PCAReconstruction:
        """Fit on an (n, d) reference matrix (NaN = missing); d >= 2 numeric columns."""
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < 2 or x.shape[1] != len(names):
            raise ValueError(f"matrix: shape {x.shape}: expected (n, d) with d = len(names) >= 2")
        mean = np.nanmean(x, axis=0)
        scale = np.nanstd(x, axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = np.nan_to_num((x - mean) / scale, nan=0.0)
        _, singular, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
        explained = np.cumsum(singular**2) / max(float((singular**2).sum()), 1e-300)
        k = int(min(np.searchsorted(explained, variance) + 1, x.shape[1] - 1))
        return cls(tuple(names), mean, scale, vt[:k])

    def errors(self, matrix: npt.ArrayLike) -> FloatArray:
        """Per-row squared reconstruction error divided by d (0 for an all-missing row)."""
        x = np.asarray(matrix, dtype=np.float64)
        z = np.nan_to_num((x - self.mean) / self.scale, nan=0.0)
        residual = z - (z @ self.components.T) @ self.components
        return np.asarray((residual**2).sum(axis=1) / x.shape[1], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PCAReconstruction:
        return cls(
            tuple(data["names"]),
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["scale"], dtype=np.float64),
            np.asarray(data["components"], dtype=np.float64).reshape(-1, len(data["names"])),
        )
