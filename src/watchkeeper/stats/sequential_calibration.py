"""Threshold calibration for one-sided CUSUMs by bootstrap simulation + Siegmund extrapolation.

Used by :mod:`watchkeeper.stats.sequential`. The problem: choose the threshold ``h`` of a
one-sided CUSUM ``S_n = max(0, S_{n-1} + D_n)``, alarm when ``S_n >= h`` (then restart at 0),
so that the average run length between false alarms (ARL0, in buckets) reaches a target
of the order of 10^6 buckets, when the increments ``D_n = X_n - k`` are i.i.d. draws from a
*bootstrap pool* (bucket statistics computed on resampled reference values, so heavy tails
and discrete features are represented as they are, not as normal).

Simulating 10^6-bucket run lengths directly is too slow, so (see ``docs/statistics-sequential.md``):

1. **Shape from theory.** Siegmund's (1985, *Sequential Analysis*, ch. II/X) approximation for
   the CUSUM under a negative drift ``mu = E[D] < 0`` is
   ``ARL0(h) ≈ (exp(θ·(h+ρ)) − θ·(h+ρ) − 1) / (θ·|mu|)`` where ``θ > 0`` solves
   ``E[exp(θ·D)] = 1`` (the Wald/Cramér–Lundberg adjustment coefficient) and ``ρ`` is an
   overshoot correction (``ρ = 2·0.583`` for unit-variance normal increments). ``θ`` and ``mu``
   are computed on the bootstrap pool (empirical cumulant generating function), so the
   exponential slope of ``log ARL0`` in ``h`` comes from the actual bucket distribution.
2. **Level from simulation.** Many CUSUM paths run in parallel (vectorised numpy), each
   restarting at 0 after an alarm (a renewal process: alarms / buckets → 1 / ARL0), at a grid
   of thresholds whose ARL0 is 20 … ~3·10^4 buckets (enough alarms to measure). ``ρ`` is fitted
   by weighted least squares of ``log`` rate (weights = alarm counts, the inverse Poisson
   variance of a log count).
3. **Extrapolate** the fitted formula to the target ARL0 and solve for ``h``.

**Reference uncertainty.** The reference mean/variance/proportions are estimates; a detector
built on them sees, on fresh data from the same population, a per-stream constant offset
``ε`` of its statistic (for a bucket mean in z units ``ε ~ N(0, b/n_ref)``). Such an offset
changes the CUSUM drift and, at large thresholds, dominates the false-alarm rate (Jones,
Champ & Rigdon 2004, "The run length distribution of the CUSUM with estimated parameters",
JQT 36(1)). With ``tau > 0`` each simulated path draws its own offset ``ε = tau·Z`` and the
formula is averaged over ``ε`` by Gauss–Hermite quadrature: the calibrated rate is the false
alarm rate *averaged over reference samples*, which is what a monitor experiences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["CalibrationResult", "calibrate_thresholds", "siegmund_rate"]

FloatArray = npt.NDArray[np.float64]

_N_THETA = 160
_N_QUADRATURE = 21
_MIN_ALARMS = 10
_FLOOR_THRESHOLD = 5.0


@dataclass(frozen=True)
class CalibrationResult:
    """Thresholds and diagnostics, one entry per component (JSON-able via :meth:`to_dict`)."""

    thresholds: tuple[float, ...]
    theta: tuple[float, ...]
    drift: tuple[float, ...]
    rho: tuple[float, ...]
    target_arl_buckets: float
    simulated_buckets: int
    #: per component: list of (threshold, alarms) from the simulation grid
    grid: tuple[tuple[tuple[float, int], ...], ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-able summary."""
        return {
            "thresholds": list(self.thresholds),
            "theta": list(self.theta),
            "drift": list(self.drift),
            "rho": list(self.rho),
            "target_arl_buckets": self.target_arl_buckets,
            "simulated_buckets": self.simulated_buckets,
            "grid": [[[h, a] for h, a in g] for g in self.grid],
        }


def _cgf(increments: FloatArray, theta: FloatArray) -> FloatArray:
    """Empirical cumulant generating function log mean exp(θ·D), stable (log-sum-exp)."""
    z = theta[:, None] * increments[None, :]
    top = z.max(axis=1)
    return np.asarray(top + np.log(np.mean(np.exp(z - top[:, None]), axis=1)), dtype=np.float64)


def _theta_of_offset(increments: FloatArray, offsets: FloatArray) -> FloatArray:
    """θ(ε) > 0 with mean exp(θ·(D + ε)) = 1, per offset ε (NaN where no positive root).

    Uses ε(θ) = −K(θ)/θ, which decreases monotonically in θ for convex K with K(0) = 0, so a
    single CGF evaluation on a θ grid serves every offset by interpolation.
    """
    scale = float(np.std(increments)) or 1.0
    thetas = np.geomspace(1e-4, 200.0, _N_THETA) / scale
    eps = -_cgf(increments, thetas) / thetas  # decreasing in theta
    # interpolate log θ as a function of ε (np.interp needs increasing abscissae)
    out = np.exp(np.interp(offsets, eps[::-1], np.log(thetas[::-1]), left=np.nan, right=np.nan))
    return np.asarray(out, dtype=np.float64)


def siegmund_rate(
    h: FloatArray | float, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: float
) -> FloatArray:
    """Alarm rate per bucket, 1/ARL0, averaged over offsets (arrays over the last axis).

    ``theta``/``drift`` are per quadrature node (``drift = E[D] + ε``); ``h`` broadcasts against a
    new trailing axis. Nodes with non-negative drift use Wald's linear ARL ``(h+ρ)/drift``;
    nodes without a root (the CUSUM can never reach ``h``) contribute 0.
    """
    hh = np.asarray(h, dtype=np.float64)[..., None] + rho
    x = np.maximum(theta * hh, 1e-12)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rate_neg = theta * np.abs(drift) / (np.expm1(x) - x)
        rate_pos = np.maximum(drift, 1e-12) / np.maximum(hh, 1e-12)
    rate = np.where(drift >= 0, np.minimum(rate_pos, 1.0), np.where(np.isfinite(theta), rate_neg, 0.0))
    rate = np.nan_to_num(np.minimum(rate, 1.0), nan=0.0)
    return np.asarray(np.sum(rate * weights, axis=-1), dtype=np.float64)


def _solve_h(target_rate: float, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: float) -> float:
    """Smallest h >= 0 with siegmund_rate(h) <= target_rate (bisection in h; rate decreases)."""
    lo, hi = 0.0, 1.0
    while float(siegmund_rate(hi, theta, drift, weights, rho)[()]) > target_rate:
        hi *= 2.0
        if hi > 1e9:
            return hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(siegmund_rate(mid, theta, drift, weights, rho)[()]) > target_rate:
            lo = mid
        else:
            hi = mid
    return hi


def _simulate_alarms(
    increments: FloatArray,
    thresholds: FloatArray,
    offsets: FloatArray,
    n_steps: int,
    rng: np.random.Generator,
    chunk: int = 64,
) -> npt.NDArray[np.int64]:
    """Alarm counts (components, grid) of renewal CUSUMs on bootstrap-pool increments.

    ``increments`` (P, m): pool of per-bucket increments, rows drawn i.i.d.; ``thresholds``
    (m, G); ``offsets`` (m, N) per-path constant offsets (N = number of paths).
    """
    pool_size, m = increments.shape
    n_paths = offsets.shape[1]
    state = np.zeros((m, thresholds.shape[1], n_paths))
    counts = np.zeros(thresholds.shape, dtype=np.int64)
    limits = thresholds[:, :, None]
    pool_t = np.ascontiguousarray(increments.T)
    done = 0
    while done < n_steps:
        steps = min(chunk, n_steps - done)
        idx = rng.integers(0, pool_size, size=(steps, n_paths))
        draws = pool_t[:, idx] + offsets[:, None, :]  # (m, steps, N)
        for t in range(steps):
            state += draws[:, t, None, :]
            np.maximum(state, 0.0, out=state)
            hit = state >= limits
            counts += hit.sum(axis=2)
            state[hit] = 0.0
        done += steps
    return counts


def calibrate_thresholds(
    increments: FloatArray,
    tau: FloatArray,
    path_noise_index: npt.NDArray[np.int64],
    path_noise_sign: FloatArray,
    target_arl_buckets: float,
    rng: np.random.Generator,
    n_paths: int = 1000,
    n_steps: int = 1000,
    n_grid: int = 6,
) -> CalibrationResult:
    """Thresholds h_j so that each one-sided CUSUM j has ARL0 ≈ ``target_arl_buckets``.

    Args:
        increments: (P, m) bootstrap pool of per-bucket increments ``X_j − k_j``.
        tau: (m,) standard deviation of the reference-estimation offset of component j.
        path_noise_index: (m,) which shared standard normal (per path) drives component j's
            offset (components on the same statistic share it, with ``path_noise_sign``).
        path_noise_sign: (m,) ±1.
        target_arl_buckets: ARL0 per component, in buckets.
        rng: numpy Generator (determinism).
        n_paths, n_steps: simulation size (n_paths·n_steps buckets per grid threshold).
        n_grid: number of thresholds simulated per component.
    """
    pool = np.asarray(increments, dtype=np.float64)
    m = pool.shape[1]
    nodes, node_weights = np.polynomial.hermite_e.hermegauss(_N_QUADRATURE)
    node_weights = node_weights / node_weights.sum()
    thetas: list[FloatArray] = []
    drifts: list[FloatArray] = []
    live = np.zeros(m, dtype=bool)
    for j in range(m):
        column = pool[:, j]
        mean = float(column.mean())
        if mean >= 0:
            raise ValueError(f"component {j}: mean increment {mean:.3g} >= 0; allowance k too small")
        eps = float(tau[j]) * nodes if tau[j] > 0 else np.zeros(1)
        thetas.append(_theta_of_offset(column, eps))
        drifts.append(mean + eps)
        live[j] = bool(column.max() > 0) or tau[j] > 0
    weights = [node_weights if tau[j] > 0 else np.ones(1) for j in range(m)]

    # grid thresholds: predicted ARL0 from 20 up to capacity/30 buckets (rho = 0 guess)
    capacity = n_paths * n_steps
    arl_grid = np.geomspace(20.0, max(40.0, min(target_arl_buckets, capacity / 30.0)), n_grid)
    grid = np.full((m, n_grid), np.inf)
    for j in range(m):
        if live[j]:
            grid[j] = [_solve_h(1.0 / a, thetas[j], drifts[j], weights[j], 0.0) for a in arl_grid]
    normals = rng.standard_normal((int(path_noise_index.max()) + 1 if m else 1, n_paths))
    offsets = (tau * path_noise_sign)[:, None] * normals[path_noise_index]
    counts = _simulate_alarms(pool, grid, offsets, n_steps, rng)

    thresholds: list[float] = []
    rhos: list[float] = []
    target_rate = 1.0 / target_arl_buckets
    for j in range(m):
        if not live[j]:
            thresholds.append(_FLOOR_THRESHOLD)
            rhos.append(0.0)
            continue
        ok = counts[j] >= _MIN_ALARMS
        if not np.any(ok):
            ok = counts[j] > 0
        rho = 0.0
        if np.any(ok):
            h_ok, c_ok = grid[j][ok], counts[j][ok].astype(np.float64)
            observed = np.log(c_ok / capacity)
            finite = thetas[j][np.isfinite(thetas[j])]
            spread = float(np.std(pool[:, j])) + (1.0 / float(np.median(finite)) if finite.size else 1.0)
            candidates = np.linspace(-0.5 * float(h_ok.min()), 4.0 * spread, 401)
            for _ in range(2):
                rates = np.stack([siegmund_rate(h_ok, thetas[j], drifts[j], weights[j], float(r)) for r in candidates])
                predicted = np.log(np.maximum(rates, 1e-300))
                loss = np.sum(c_ok * (observed - predicted) ** 2, axis=1)
                best = int(np.argmin(loss))
                step = candidates[1] - candidates[0]
                rho = float(candidates[best])
                candidates = np.linspace(rho - step, rho + step, 41)
        h = _solve_h(target_rate, thetas[j], drifts[j], weights[j], rho)
        thresholds.append(max(h, 1e-9))
        rhos.append(rho)
    return CalibrationResult(
        thresholds=tuple(thresholds),
        theta=tuple(float(_theta_of_offset(pool[:, j], np.zeros(1))[0]) for j in range(m)),
        drift=tuple(float(np.median(d)) for d in drifts),
        rho=tuple(rhos),
        target_arl_buckets=float(target_arl_buckets),
        simulated_buckets=capacity,
        grid=tuple(tuple((float(h), int(c)) for h, c in zip(grid[j], counts[j], strict=True)) for j in range(m)),
    )
