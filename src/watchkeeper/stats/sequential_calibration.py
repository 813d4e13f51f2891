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

**Implementation.** The arithmetic is that of the straightforward algorithm (each CGF value,
Siegmund rate, bisection step and CUSUM step is computed by the same floating-point
operations), so the thresholds are identical bit for bit; only the amount of work differs:

* θ(ε) needs the CGF at the two grid points bracketing each offset (and at the grid ends), not
  on the whole 160-point grid: a cheap approximate CGF (the top of the sorted pool exactly, the
  rest as group means) predicts the bracket, exact evaluations confirm it (or narrow it down by
  secant and bisection steps). A pool whose ε(θ) curve is too flat to be sure of its
  monotonicity gets the whole grid.
* Siegmund rates are evaluated for every ρ candidate, grid threshold and component at once;
  the bisections for ``h`` run in lock-step over components and targets.
* The simulation skips components that cannot alarm and updates the CUSUM state in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["CalibrationResult", "calibrate_thresholds", "siegmund_rate"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

_N_THETA = 160
_N_QUADRATURE = 21
_MIN_ALARMS = 10
_FLOOR_THRESHOLD = 5.0
_BISECTION_STEPS = 80
_MAX_DOUBLING_H = 1e9

# exact CGF evaluation: rows of theta per chunk (~1 MB blocks stay in cache)
_CGF_BLOCK_ELEMENTS = 1 << 17
# approximate CGF used to predict brackets: the top of the sorted pool exactly, the rest thinned
_APPROX_TOP = 128
_APPROX_REST = 512
_MAX_ROUNDS = 24
# the sparse θ(ε) search needs a curve ε(θ) whose grid steps are far above rounding noise
_GAP_NOISE = 1e-12


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


# ---------------------------------------------------------------------------------- θ(ε)
def _cgf(increments: FloatArray, theta: FloatArray) -> FloatArray:
    """Empirical cumulant generating function log mean exp(θ·D) for θ > 0, stable (log-sum-exp).

    Row blocks of θ keep the (θ, pool) products in cache. ``max_p θ·D_p == θ·max_p D_p`` exactly
    for θ > 0 (rounding is monotone), so the shift needs no pass over the products.
    """
    d = np.ascontiguousarray(increments, dtype=np.float64)
    t_all = np.asarray(theta, dtype=np.float64)
    out = np.empty(t_all.shape[0], dtype=np.float64)
    if out.size == 0:
        return out
    if not (np.all(np.isfinite(t_all)) and np.all(t_all > 0)):  # outside the θ grid's range: as written
        z_all = t_all[:, None] * d[None, :]
        top_all = z_all.max(axis=1)
        return np.asarray(top_all + np.log(np.mean(np.exp(z_all - top_all[:, None]), axis=1)), dtype=np.float64)
    d_max = d.max()
    if d_max == d.min():  # a constant pool: exp(0) = 1 everywhere, log(mean) = log(1) = 0
        return np.asarray(t_all * d_max + 0.0, dtype=np.float64)
    rows = max(1, min(t_all.shape[0], _CGF_BLOCK_ELEMENTS // max(d.shape[0], 1)))
    block = np.empty((rows, d.shape[0]), dtype=np.float64)
    for start in range(0, t_all.shape[0], rows):
        t = t_all[start : start + rows]
        z = block[: t.shape[0]]
        np.multiply(t[:, None], d[None, :], out=z)
        top = t * d_max
        np.subtract(z, top[:, None], out=z)
        np.exp(z, out=z)
        out[start : start + t.shape[0]] = top + np.log(np.mean(z, axis=1))
    return out


def _theta_grid(std: float) -> FloatArray:
    """The θ grid for a pool of standard deviation ``std``."""
    scale = std or 1.0
    return np.asarray(np.geomspace(1e-4, 200.0, _N_THETA) / scale, dtype=np.float64)


def _approx_eps(increments: FloatArray, thetas: FloatArray) -> FloatArray:
    """Cheap approximation of ε(θ) = −K(θ)/θ on the grid (only used to predict brackets).

    The largest pool values (which dominate K at large θ) are kept exactly; the rest of the
    sorted pool is replaced by the means of equal-count groups (the mean, which dominates at
    small θ, is kept).
    """
    ordered = np.sort(increments)
    top = ordered[-_APPROX_TOP:]
    rest = ordered[:-_APPROX_TOP]
    groups = min(_APPROX_REST, rest.shape[0])
    bounds = (np.arange(groups) * rest.shape[0]) // groups
    sizes = np.diff(np.append(bounds, rest.shape[0])).astype(np.float64)
    values = np.concatenate([np.add.reduceat(rest, bounds) / sizes if groups else rest, top])
    weights = np.concatenate([sizes, np.ones(top.shape[0])])
    peak = thetas * ordered[-1]
    with np.errstate(under="ignore"):
        mass = np.sum(np.exp(thetas[:, None] * values[None, :] - peak[:, None]) * weights, axis=1)
    return np.asarray(-(peak + np.log(mass / ordered.shape[0])) / thetas, dtype=np.float64)


def _theta_of_offset(increments: FloatArray, offsets: FloatArray) -> FloatArray:
    """θ(ε) > 0 with mean exp(θ·(D + ε)) = 1, per offset ε (NaN where no positive root).

    Uses ε(θ) = −K(θ)/θ, which decreases monotonically in θ for convex K with K(0) = 0, so one
    CGF curve on a θ grid serves every offset by interpolation (log θ linear in ε between grid
    points). The result is exactly ``np.interp`` on the whole grid, but the CGF is evaluated only
    at the grid ends and at the two points bracketing each offset.
    """
    std = float(np.std(increments))
    d = np.ascontiguousarray(increments, dtype=np.float64)
    x = np.asarray(offsets, dtype=np.float64)
    thetas = _theta_grid(std)
    n = _N_THETA
    # reversed order (ε increasing), as np.interp needs: position r holds grid point n−1−r
    rev_eps = np.full(n, np.nan)
    known = np.zeros(n, dtype=bool)
    log_rev = np.log(thetas[::-1])

    def evaluate(positions: IntArray) -> None:
        new = np.unique(positions[~known[positions]])
        if new.size:
            t = thetas[n - 1 - new]
            rev_eps[new] = -_cgf(d, t) / t
            known[new] = True

    def whole_grid() -> FloatArray:
        evaluate(np.arange(n))
        out = np.exp(np.interp(x, rev_eps, log_rev, left=np.nan, right=np.nan))
        return np.asarray(out, dtype=np.float64)

    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(d)) and std > 0):
        return whole_grid()
    evaluate(np.array([0, n - 1]))
    noise = _GAP_NOISE * (float(np.max(np.abs(d))) + 1.0 / float(thetas[0]))

    def monotone() -> bool:
        where = np.flatnonzero(known)
        return bool(np.all(np.diff(rev_eps[where]) > noise * np.diff(where)))

    if not monotone():
        return whole_grid()
    inside = (x >= rev_eps[0]) & (x < rev_eps[n - 1])
    xs = x[inside]
    if xs.size:
        # first probe: the approximate curve's bracket; then the known points' bracket [lo, hi]
        # narrowed by secant and bisection steps in turn, until hi = lo + 1 for every offset
        guess = np.maximum.accumulate(_approx_eps(d, thetas)[::-1])
        j = np.clip(np.searchsorted(guess, xs, side="right") - 1, 0, n - 2).astype(np.intp)
        for step in range(_MAX_ROUNDS):
            evaluate(np.concatenate([j, j + 1]))
            if not monotone():
                return whole_grid()
            where = np.flatnonzero(known)
            pos = np.searchsorted(rev_eps[where], xs, side="right")  # E[lo] <= x < E[hi]
            lo, hi = where[pos - 1], where[pos]
            if np.all(hi - lo == 1):
                break
            if step % 2 == 0:
                frac = (xs - rev_eps[lo]) / (rev_eps[hi] - rev_eps[lo])
                j = lo + np.floor(frac * (hi - lo)).astype(np.intp)
            else:
                j = (lo + hi) // 2
            j = np.clip(j, lo, hi - 1)
        else:
            return whole_grid()
    where = np.flatnonzero(known)
    out = np.exp(np.interp(x, rev_eps[where], log_rev[where], left=np.nan, right=np.nan))
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------------- Siegmund
def _rate(hh: FloatArray, theta: FloatArray, drift: FloatArray, weights: FloatArray) -> FloatArray:
    """:func:`siegmund_rate` with ``hh = h + ρ`` already formed (nodes on the last axis)."""
    x = np.maximum(theta * hh, 1e-12)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rate_neg = theta * np.abs(drift) / (np.expm1(x) - x)
        rate_pos = np.maximum(drift, 1e-12) / np.maximum(hh, 1e-12)
    rate = np.where(drift >= 0, np.minimum(rate_pos, 1.0), np.where(np.isfinite(theta), rate_neg, 0.0))
    rate = np.minimum(rate, 1.0)
    # rates are >= 0 or NaN here (+inf is capped above): the same as nan_to_num(nan=0.0)
    rate[np.isnan(rate)] = 0.0
    return np.asarray(np.sum(rate * weights, axis=-1), dtype=np.float64)


def siegmund_rate(
    h: FloatArray | float, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: float
) -> FloatArray:
    """Alarm rate per bucket, 1/ARL0, averaged over offsets (arrays over the last axis).

    ``theta``/``drift`` are per quadrature node (``drift = E[D] + ε``); ``h`` broadcasts against a
    new trailing axis. Nodes with non-negative drift use Wald's linear ARL ``(h+ρ)/drift``;
    nodes without a root (the CUSUM can never reach ``h``) contribute 0.

    >>> float(siegmund_rate(0.0, np.array([1.0]), np.array([-0.5]), np.ones(1), 0.0)) > 0.5
    True
    """
    hh = np.asarray(h, dtype=np.float64)[..., None] + rho
    return _rate(hh, theta, drift, weights)


def _solve_h(
    target_rate: FloatArray, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: FloatArray
) -> FloatArray:
    """Smallest h >= 0 with siegmund_rate(h) <= target_rate (bisection in h; rate decreases).

    Lock-step over components (rows of ``theta``/``drift``/``weights``/``rho``, nodes on the last
    axis) and targets (``target_rate`` is (components, targets)); each entry follows exactly the
    steps of a scalar bisection: double ``hi`` from 1 until the rate is below target (giving up
    beyond 1e9), then 80 halvings of [0, hi]. A step is a function of [lo, hi] alone, so once a
    step changes no entry (the interval is down to adjacent floats) the remaining ones are skipped.
    """
    targets = np.asarray(target_rate, dtype=np.float64)
    th, dr, wt = theta[:, None, :], drift[:, None, :], weights[:, None, :]
    shift = np.asarray(rho, dtype=np.float64)[:, None, None]

    def above(h: FloatArray) -> npt.NDArray[np.bool_]:
        return np.asarray(_rate(h[..., None] + shift, th, dr, wt) > targets)

    hi = np.ones_like(targets)
    lo = np.zeros_like(targets)
    searching = above(hi)
    gave_up = np.zeros(targets.shape, dtype=bool)
    while searching.any():
        hi = np.where(searching, hi * 2.0, hi)
        gave_up |= searching & (hi > _MAX_DOUBLING_H)
        searching &= ~gave_up
        searching &= above(hi)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        up = above(mid) & ~gave_up
        new_lo = np.where(up, mid, lo)
        new_hi = np.where(up | gave_up, hi, mid)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break  # [lo, hi] is down to adjacent floats: every further step repeats this one
        lo, hi = new_lo, new_hi
    return hi


def _fit_rho(
    h_ok: FloatArray,
    c_ok: FloatArray,
    observed: FloatArray,
    theta: FloatArray,
    drift: FloatArray,
    weights: FloatArray,
    low: float,
    high: float,
) -> float:
    """Overshoot ρ by weighted least squares of log rates: a 401-point scan, then a 41-point refinement."""
    candidates = np.linspace(low, high, 401)
    rho = 0.0
    for _ in range(2):
        rates = _rate(h_ok[None, :, None] + candidates[:, None, None], theta, drift, weights)
        predicted = np.log(np.maximum(rates, 1e-300))
        loss = np.sum(c_ok * (observed - predicted) ** 2, axis=1)
        best = int(np.argmin(loss))
        step = candidates[1] - candidates[0]
        rho = float(candidates[best])
        candidates = np.linspace(rho - step, rho + step, 41)
    return rho


# ---------------------------------------------------------------------------------- simulation
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
    (m, G); ``offsets`` (m, N) per-path constant offsets (N = number of paths). Components whose
    thresholds are all infinite cannot alarm and are not simulated (the draws are the same).
    The state is laid out (G, m, N) and the thresholds are expanded to full arrays, so that every
    per-step operation runs over contiguous rows (numpy's fast loops) without temporaries.
    """
    pool_size = increments.shape[0]
    n_paths = offsets.shape[1]
    counts = np.zeros(thresholds.shape, dtype=np.int64)
    rows = np.flatnonzero(np.isfinite(thresholds).any(axis=1))
    m, n_grid = rows.size, thresholds.shape[1]
    pool_t = np.ascontiguousarray(increments.T[rows])
    shift = offsets[rows][:, None, :]
    shape = (n_grid, m, n_paths)
    limits = np.ascontiguousarray(np.broadcast_to(thresholds[rows].T[:, :, None], shape))
    zeros = np.zeros(shape)
    state = np.zeros(shape)
    hit = np.empty(shape, dtype=bool)
    small = chunk <= 255  # alarms per chunk fit a byte: count them on the bool mask's bytes
    hits = np.zeros(shape, dtype=np.uint8 if small else np.int64)
    tally = hit.view(np.uint8) if small else hit
    total = np.zeros((n_grid, m), dtype=np.int64)
    buffer = np.empty((m, min(chunk, n_steps), n_paths))
    done = 0
    while done < n_steps:
        steps = min(chunk, n_steps - done)
        idx = rng.integers(0, pool_size, size=(steps, n_paths))
        draws = buffer if steps == buffer.shape[1] else np.empty((m, steps, n_paths))
        np.take(pool_t, idx, axis=1, out=draws, mode="clip")  # = pool_t[:, idx] (indices are in range)
        np.add(draws, shift, out=draws)  # (m, steps, N)
        hits[...] = 0
        for t in range(steps):
            np.add(state, draws[None, :, t, :], out=state)
            np.maximum(state, zeros, out=state)
            np.greater_equal(state, limits, out=hit)
            np.copyto(state, 0.0, where=hit)  # restart at 0 after an alarm
            np.add(hits, tally, out=hits)
        total += hits.sum(axis=2, dtype=np.int64)
        done += steps
    counts[rows] = total.T
    return counts


# ---------------------------------------------------------------------------------- driver
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
    theta_zero: list[float] = []
    live = np.zeros(m, dtype=bool)
    for j in range(m):
        column = pool[:, j]
        mean = float(column.mean())
        if mean >= 0:
            raise ValueError(f"component {j}: mean increment {mean:.3g} >= 0; allowance k too small")
        eps = float(tau[j]) * nodes if tau[j] > 0 else np.zeros(1)
        # θ at the quadrature offsets and at offset 0 (reported) from one CGF curve
        solved = _theta_of_offset(column, np.concatenate([eps, np.zeros(1)]))
        thetas.append(solved[:-1])
        theta_zero.append(float(solved[-1]))
        drifts.append(mean + eps)
        live[j] = bool(column.max() > 0) or tau[j] > 0
    weights = [node_weights if tau[j] > 0 else np.ones(1) for j in range(m)]
    # padded (m, nodes) arrays for the lock-step solver; padding nodes have weight 0 and rate 0,
    # and adding exact zeros leaves every sum unchanged
    width = max((t.shape[0] for t in thetas), default=1)
    theta_pad = np.full((m, width), np.nan)
    drift_pad = np.full((m, width), -1.0)
    weight_pad = np.zeros((m, width))
    for j in range(m):
        size = thetas[j].shape[0]
        theta_pad[j, :size], drift_pad[j, :size], weight_pad[j, :size] = thetas[j], drifts[j], weights[j]
    live_rows = np.flatnonzero(live)

    # grid thresholds: predicted ARL0 from 20 up to capacity/30 buckets (rho = 0 guess)
    capacity = n_paths * n_steps
    arl_grid = np.geomspace(20.0, max(40.0, min(target_arl_buckets, capacity / 30.0)), n_grid)
    grid = np.full((m, n_grid), np.inf)
    if live_rows.size:
        grid[live_rows] = _solve_h(
            np.broadcast_to(1.0 / arl_grid, (live_rows.size, n_grid)),
            theta_pad[live_rows],
            drift_pad[live_rows],
            weight_pad[live_rows],
            np.zeros(live_rows.size),
        )
    normals = rng.standard_normal((int(path_noise_index.max()) + 1 if m else 1, n_paths))
    offsets = (tau * path_noise_sign)[:, None] * normals[path_noise_index]
    counts = _simulate_alarms(pool, grid, offsets, n_steps, rng)

    rhos = np.zeros(m)
    for j in live_rows.tolist():
        ok = counts[j] >= _MIN_ALARMS
        if not np.any(ok):
            ok = counts[j] > 0
        if np.any(ok):
            h_ok, c_ok = grid[j][ok], counts[j][ok].astype(np.float64)
            observed = np.log(c_ok / capacity)
            finite = thetas[j][np.isfinite(thetas[j])]
            spread = float(np.std(pool[:, j])) + (1.0 / float(np.median(finite)) if finite.size else 1.0)
            rhos[j] = _fit_rho(
                h_ok, c_ok, observed, thetas[j], drifts[j], weights[j], -0.5 * float(h_ok.min()), 4.0 * spread
            )
    thresholds = np.full(m, _FLOOR_THRESHOLD)
    if live_rows.size:
        solved_h = _solve_h(
            np.full((live_rows.size, 1), 1.0 / target_arl_buckets),
            theta_pad[live_rows],
            drift_pad[live_rows],
            weight_pad[live_rows],
            rhos[live_rows],
        )[:, 0]
        thresholds[live_rows] = np.maximum(solved_h, 1e-9)
    return CalibrationResult(
        thresholds=tuple(float(h) for h in thresholds),
        theta=tuple(theta_zero),
        drift=tuple(float(np.median(d)) for d in drifts),
        rho=tuple(float(r) for r in rhos),
        target_arl_buckets=float(target_arl_buckets),
        simulated_buckets=capacity,
        grid=tuple(tuple((float(h), int(c)) for h, c in zip(grid[j], counts[j], strict=True)) for j in range(m)),
    )
