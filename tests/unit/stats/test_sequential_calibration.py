"""CUSUM threshold calibration: the vectorised implementation against the straightforward one.

``_ref_*`` below is the straightforward algorithm (160-point CGF grid per call, scalar
bisections, one Siegmund evaluation per ρ candidate, boolean-mask simulation), copied
unchanged from the implementation it replaced. The vectorised module performs the same
floating-point operations, so thresholds are compared at 1e-6 relative (the contract) and the
whole calibration result is expected to be identical.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from watchkeeper.stats import sequential, sequential_calibration
from watchkeeper.stats.sequential import CalibratedCusum
from watchkeeper.stats.sequential_calibration import CalibrationResult, calibrate_thresholds, siegmund_rate

FloatArray = npt.NDArray[np.float64]

# ------------------------------------------------------------------ reference implementation
_N_THETA = 160
_N_QUADRATURE = 21
_MIN_ALARMS = 10
_FLOOR_THRESHOLD = 5.0


def _ref_cgf(increments: FloatArray, theta: FloatArray) -> FloatArray:
    z = theta[:, None] * increments[None, :]
    top = z.max(axis=1)
    return np.asarray(top + np.log(np.mean(np.exp(z - top[:, None]), axis=1)), dtype=np.float64)


def _ref_theta_of_offset(increments: FloatArray, offsets: FloatArray) -> FloatArray:
    scale = float(np.std(increments)) or 1.0
    thetas = np.geomspace(1e-4, 200.0, _N_THETA) / scale
    eps = -_ref_cgf(increments, thetas) / thetas
    out = np.exp(np.interp(offsets, eps[::-1], np.log(thetas[::-1]), left=np.nan, right=np.nan))
    return np.asarray(out, dtype=np.float64)


def _ref_siegmund_rate(
    h: FloatArray | float, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: float
) -> FloatArray:
    hh = np.asarray(h, dtype=np.float64)[..., None] + rho
    x = np.maximum(theta * hh, 1e-12)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rate_neg = theta * np.abs(drift) / (np.expm1(x) - x)
        rate_pos = np.maximum(drift, 1e-12) / np.maximum(hh, 1e-12)
    rate = np.where(drift >= 0, np.minimum(rate_pos, 1.0), np.where(np.isfinite(theta), rate_neg, 0.0))
    rate = np.nan_to_num(np.minimum(rate, 1.0), nan=0.0)
    return np.asarray(np.sum(rate * weights, axis=-1), dtype=np.float64)


def _ref_solve_h(target_rate: float, theta: FloatArray, drift: FloatArray, weights: FloatArray, rho: float) -> float:
    lo, hi = 0.0, 1.0
    while float(_ref_siegmund_rate(hi, theta, drift, weights, rho)[()]) > target_rate:
        hi *= 2.0
        if hi > 1e9:
            return hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if float(_ref_siegmund_rate(mid, theta, drift, weights, rho)[()]) > target_rate:
            lo = mid
        else:
            hi = mid
    return hi


def _ref_simulate_alarms(
    increments: FloatArray,
    thresholds: FloatArray,
    offsets: FloatArray,
    n_steps: int,
    rng: np.random.Generator,
    chunk: int = 64,
) -> npt.NDArray[np.int64]:
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
        draws = pool_t[:, idx] + offsets[:, None, :]
        for t in range(steps):
            state += draws[:, t, None, :]
            np.maximum(state, 0.0, out=state)
            hit = state >= limits
            counts += hit.sum(axis=2)
            state[hit] = 0.0
        done += steps
    return counts


def _ref_calibrate_thresholds(
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
        thetas.append(_ref_theta_of_offset(column, eps))
        drifts.append(mean + eps)
        live[j] = bool(column.max() > 0) or tau[j] > 0
    weights = [node_weights if tau[j] > 0 else np.ones(1) for j in range(m)]
    capacity = n_paths * n_steps
    arl_grid = np.geomspace(20.0, max(40.0, min(target_arl_buckets, capacity / 30.0)), n_grid)
    grid = np.full((m, n_grid), np.inf)
    for j in range(m):
        if live[j]:
            grid[j] = [_ref_solve_h(1.0 / a, thetas[j], drifts[j], weights[j], 0.0) for a in arl_grid]
    normals = rng.standard_normal((int(path_noise_index.max()) + 1 if m else 1, n_paths))
    offsets = (tau * path_noise_sign)[:, None] * normals[path_noise_index]
    counts = _ref_simulate_alarms(pool, grid, offsets, n_steps, rng)
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
                rates = np.stack(
                    [_ref_siegmund_rate(h_ok, thetas[j], drifts[j], weights[j], float(r)) for r in candidates]
                )
                predicted = np.log(np.maximum(rates, 1e-300))
                loss = np.sum(c_ok * (observed - predicted) ** 2, axis=1)
                best = int(np.argmin(loss))
                step = candidates[1] - candidates[0]
                rho = float(candidates[best])
                candidates = np.linspace(rho - step, rho + step, 41)
        h = _ref_solve_h(target_rate, thetas[j], drifts[j], weights[j], rho)
        thresholds.append(max(h, 1e-9))
        rhos.append(rho)
    return CalibrationResult(
        thresholds=tuple(thresholds),
        theta=tuple(float(_ref_theta_of_offset(pool[:, j], np.zeros(1))[0]) for j in range(m)),
        drift=tuple(float(np.median(d)) for d in drifts),
        rho=tuple(rhos),
        target_arl_buckets=float(target_arl_buckets),
        simulated_buckets=capacity,
        grid=tuple(tuple((float(h), int(c)) for h, c in zip(grid[j], counts[j], strict=True)) for j in range(m)),
    )


# ------------------------------------------------------------------ helpers
def _same(a: Any, b: Any) -> bool:
    """Structural equality with NaN == NaN (θ is NaN where an offset has no root)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


Kind = Literal["numeric", "categorical"]


def _calibrate_both(
    reference: Any, kind: Kind = "numeric", **kwargs: Any
) -> tuple[CalibrationResult, CalibrationResult]:
    """Run ``from_reference`` and, on the same inputs and generator state, the reference algorithm."""
    captured: dict[str, Any] = {}

    def capture(*args: Any, **kw: Any) -> CalibrationResult:
        captured["args"], captured["kw"] = copy.deepcopy(args), copy.deepcopy(kw)
        result = calibrate_thresholds(*args, **kw)
        captured["result"] = result
        return result

    original = sequential.__dict__["calibrate_thresholds"]
    setattr(sequential, "calibrate_thresholds", capture)  # noqa: B010 (the caller's imported name)
    try:
        CalibratedCusum.from_reference(reference, kind, **kwargs)
    finally:
        setattr(sequential, "calibrate_thresholds", original)  # noqa: B010
    expected = _ref_calibrate_thresholds(*captured["args"], **captured["kw"])
    return captured["result"], expected


def _max_relative(new: tuple[float, ...], old: tuple[float, ...]) -> float:
    a, b = np.asarray(new), np.asarray(old)
    return float(np.max(np.abs(a - b) / np.abs(b))) if b.size else 0.0


_FAST: dict[str, Any] = {"pool_size": 5000, "n_paths": 400, "n_steps": 400}
CASES: dict[str, tuple[Callable[[np.random.Generator], Any], Kind, dict[str, Any]]] = {
    "normal": (lambda rng: rng.normal(size=3000), "numeric", {"target_arl_events": 1e6}),
    "student_t3": (lambda rng: rng.standard_t(3, size=5000), "numeric", {"seed": 4, **_FAST}),
    "lognormal": (lambda rng: rng.lognormal(size=5000), "numeric", {"seed": 5, "target_arl_events": 1e5, **_FAST}),
    "poisson": (lambda rng: rng.poisson(1.5, size=5000).astype(float), "numeric", {"seed": 6, **_FAST}),
    "exact_reference": (
        lambda rng: rng.exponential(size=4000),
        "numeric",
        {"seed": 7, "reference_uncertainty": False, **_FAST},
    ),
    "per_event": (lambda rng: rng.normal(size=2000), "numeric", {"bucket_size": 1, "target_arl_events": 1e4, **_FAST}),
    "constant": (
        lambda rng: np.full(500, 2.0),
        "numeric",
        {"target_arl_events": 1e4, "bucket_size": 10, "n_paths": 100, "n_steps": 100},
    ),
    "categorical_rare": (
        lambda rng: rng.choice(list("abcdef"), p=[0.5, 0.3, 0.15, 0.04, 0.008, 0.002], size=6000),
        "categorical",
        {"seed": 8, **_FAST},
    ),
    "categorical_rare_exact": (
        lambda rng: rng.choice(list("abcde"), p=[0.6, 0.3, 0.08, 0.015, 0.005], size=8000),
        "categorical",
        {"seed": 9, "reference_uncertainty": False, **_FAST},
    ),
}


# ------------------------------------------------------------------ end to end
@functools.cache
def _case(name: str) -> tuple[CalibrationResult, CalibrationResult]:
    draw, kind, kwargs = CASES[name]
    return _calibrate_both(draw(np.random.default_rng(sum(map(ord, name)))), kind, **kwargs)


@pytest.mark.parametrize("name", list(CASES))
def test_thresholds_match_reference_implementation(name: str) -> None:
    new, old = _case(name)
    assert len(new.thresholds) == len(old.thresholds) > 0
    assert _max_relative(new.thresholds, old.thresholds) <= 1e-6, (new.thresholds, old.thresholds)
    # the same floating-point operations: the whole result (grid, alarm counts, θ, ρ) is identical
    assert _same(new.to_dict(), old.to_dict()), "thresholds agree, but the calibration is no longer bit-identical"


def test_rare_category_components_are_floored_like_the_reference() -> None:
    new, old = _case("categorical_rare_exact")
    floored = [j for j, g in enumerate(new.grid) if all(math.isinf(h) for h, _ in g)]
    assert floored, "expected a component that never exceeds 0 (down on a rare category)"
    assert all(new.thresholds[j] == old.thresholds[j] == 5.0 for j in floored)


def test_deterministic_for_a_seed() -> None:
    reference = np.random.default_rng(3).standard_t(4, size=3000)
    one = CalibratedCusum.from_reference(reference, target_arl_events=1e5, seed=2, **_FAST)
    two = CalibratedCusum.from_reference(reference, target_arl_events=1e5, seed=2, **_FAST)
    assert one.to_dict() == two.to_dict()


def test_cgf_work_is_a_fraction_of_the_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Performance guard without timing: exact CGF points per component (the reference used 2 × 160)."""
    points: list[int] = []
    cgf = sequential_calibration._cgf

    def counting(increments: FloatArray, theta: FloatArray) -> FloatArray:
        points.append(theta.shape[0])
        return cgf(increments, theta)

    monkeypatch.setattr(sequential_calibration, "_cgf", counting)
    detector = CalibratedCusum.from_reference(np.random.default_rng(0).normal(size=3000), target_arl_events=1e6)
    assert sum(points) <= 64 * len(detector.components), points


# ------------------------------------------------------------------ θ(ε): same as the grid, solves its equation
def _pool(family: str, size: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    if family == "normal":
        raw = rng.normal(size=size)
    elif family == "t2":
        raw = rng.standard_t(2, size=size)
    elif family == "lognormal":
        raw = rng.lognormal(sigma=1.5, size=size)
    elif family == "discrete":
        raw = rng.poisson(0.3, size=size).astype(float)
    elif family == "binary_rare":
        raw = (rng.random(size) < 0.01).astype(float)
    elif family == "near_constant":  # ε(θ) is flat to rounding: the whole grid is evaluated
        return np.asarray(-0.5 + 1e-13 * rng.normal(size=size), dtype=np.float64)
    else:
        return np.full(size, -0.7)
    spread = float(raw.std()) or 1.0
    return np.asarray((raw - raw.mean()) / spread - rng.uniform(0.02, 2.0), dtype=np.float64)


FAMILIES = ["normal", "t2", "lognormal", "discrete", "binary_rare", "near_constant", "constant"]


@settings(max_examples=60, deadline=None)
@given(
    family=st.sampled_from(FAMILIES),
    size=st.integers(2, 3000),
    seed=st.integers(0, 2**32 - 1),
    tau=st.floats(0.0, 3.0),
)
def test_theta_of_offset_matches_whole_grid(family: str, size: int, seed: int, tau: float) -> None:
    pool = _pool(family, size, seed)
    nodes = np.polynomial.hermite_e.hermegauss(_N_QUADRATURE)[0]
    offsets = np.concatenate([tau * nodes, [0.0]])
    np.testing.assert_array_equal(
        sequential_calibration._theta_of_offset(pool, offsets), _ref_theta_of_offset(pool, offsets)
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_theta_of_offset_at_grid_values_and_ends(family: str) -> None:
    """Offsets equal to grid values (np.interp's exact-hit branches) and just outside the ends."""
    pool = _pool(family, 2000, 11)
    scale = float(np.std(pool)) or 1.0
    thetas = np.geomspace(1e-4, 200.0, _N_THETA) / scale
    eps = -_ref_cgf(pool, thetas) / thetas
    offsets = np.concatenate([eps[::7], eps[[0, -1]], np.nextafter(eps[[0, -1]], [np.inf, -np.inf])])
    np.testing.assert_array_equal(
        sequential_calibration._theta_of_offset(pool, offsets), _ref_theta_of_offset(pool, offsets)
    )


def _log_mgf(pool: FloatArray, theta: float, offset: float) -> float:
    z = theta * (pool + offset)
    top = float(z.max())
    return top + math.log(float(np.mean(np.exp(z - top))))


@settings(max_examples=40, deadline=None)
@given(
    family=st.sampled_from(["normal", "t2", "lognormal", "discrete"]),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-1.5, 1.5),
)
def test_solved_theta_satisfies_its_equation(family: str, seed: int, offset: float) -> None:
    """θ(ε) > 0 solves log mean exp(θ·(D + ε)) = 0, up to the θ grid's interpolation error."""
    pool = _pool(family, 2000, seed)
    theta = float(sequential_calibration._theta_of_offset(pool, np.array([offset]))[0])
    scale = float(np.std(pool))
    lowest, highest = 1e-4 / scale, 200.0 / scale
    if math.isnan(theta):  # no root on the grid: the equation does not change sign over it
        assert _log_mgf(pool, lowest, offset) > -1e-12 or _log_mgf(pool, highest, offset) < 1e-12
        return
    ratio = (200.0 / 1e-4) ** (1.0 / (_N_THETA - 1))
    # θ and the root share a grid cell: the equation is negative one cell below θ, positive one above
    below, above = _log_mgf(pool, theta / ratio, offset), _log_mgf(pool, theta * ratio, offset)
    assert below < 1e-12 and above > -1e-12
    if below < 0 < above:
        root = brentq(lambda t: _log_mgf(pool, t, offset), theta / ratio, theta * ratio, xtol=1e-15, rtol=1e-13)
        assert abs(theta / root - 1.0) < 0.01  # linear interpolation of log θ on a 9.5 % grid


# ------------------------------------------------------------------ Siegmund rate and h
def _quadrature(tau: float, mean: float, theta_scale: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(_N_QUADRATURE)
    drift = mean + tau * nodes
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(drift < 0, -2.0 * drift * theta_scale, np.nan)
    return theta, drift, weights / weights.sum()


@settings(max_examples=60, deadline=None)
@given(
    tau=st.floats(0.0, 2.0),
    mean=st.floats(-3.0, -0.01),
    theta_scale=st.floats(0.2, 5.0),
    rho=st.floats(-2.0, 4.0),
    h=st.lists(st.floats(-5.0, 200.0), min_size=1, max_size=8),
)
def test_siegmund_rate_matches_reference(
    tau: float, mean: float, theta_scale: float, rho: float, h: list[float]
) -> None:
    theta, drift, weights = _quadrature(tau, mean, theta_scale)
    for hh in (np.array(h), np.array(h).reshape(-1, 1)[:1], h[0]):
        np.testing.assert_array_equal(
            siegmund_rate(hh, theta, drift, weights, rho), _ref_siegmund_rate(hh, theta, drift, weights, rho)
        )


def _nodes(tau: float, mean: float, theta_scale: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-component arrays as calibrate_thresholds builds them: 21 nodes, or 1 node when tau = 0."""
    if tau > 0:
        return _quadrature(tau, mean, theta_scale)
    return np.array([-2.0 * mean * theta_scale]), np.array([mean]), np.ones(1)


@settings(max_examples=25, deadline=None)
@given(
    tau=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=4),
    mean=st.floats(-3.0, -0.01),
    theta_scale=st.floats(0.2, 5.0),
    rho=st.floats(-1.0, 3.0),
    log_arl=st.lists(st.floats(0.5, 16.0), min_size=1, max_size=6),
)
def test_solved_h_matches_reference_and_its_equation(
    tau: list[float], mean: float, theta_scale: float, rho: float, log_arl: list[float]
) -> None:
    """Lock-step bisection over components × targets = scalar bisections; h is the smallest root."""
    targets = np.exp(-np.asarray(log_arl))
    components = [_nodes(t, mean, theta_scale) for t in tau]
    # padded (components, nodes) arrays, as calibrate_thresholds builds them
    theta = np.full((len(tau), _N_QUADRATURE), np.nan)
    drift = np.full((len(tau), _N_QUADRATURE), -1.0)
    weight = np.zeros((len(tau), _N_QUADRATURE))
    for j, (th, dr, wt) in enumerate(components):
        theta[j, : th.size], drift[j, : th.size], weight[j, : th.size] = th, dr, wt
    solved = sequential_calibration._solve_h(
        np.broadcast_to(targets, (len(tau), targets.size)), theta, drift, weight, np.full(len(tau), rho)
    )
    for j, (th, dr, wt) in enumerate(components):
        for k, target in enumerate(targets):
            h = float(solved[j, k])
            assert h == _ref_solve_h(float(target), th, dr, wt, rho)
            # siegmund_rate(h) = target: h is past the root, and anything noticeably below is not
            assert float(siegmund_rate(h, th, dr, wt, rho)) <= target
            if h > 1e-6:
                assert float(siegmund_rate(h * (1.0 - 1e-9), th, dr, wt, rho)) > target * (1.0 - 1e-12)


# ------------------------------------------------------------------ simulation
@settings(max_examples=20, deadline=None)
@given(
    m=st.integers(1, 4),
    n_grid=st.integers(1, 4),
    n_paths=st.integers(1, 60),
    n_steps=st.integers(1, 400),
    chunk=st.sampled_from([1, 7, 64, 70, 300]),
    dead=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_simulation_matches_reference(
    m: int, n_grid: int, n_paths: int, n_steps: int, chunk: int, dead: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.normal(size=(int(rng.integers(1, 300)), m)) - 0.3
    thresholds = np.sort(rng.uniform(0.0, 4.0, size=(m, n_grid)), axis=1)
    if dead:
        thresholds[0] = np.inf
    offsets = 0.2 * rng.normal(size=(m, n_paths))
    new = sequential_calibration._simulate_alarms(
        pool, thresholds, offsets, n_steps, np.random.default_rng(seed + 1), chunk=chunk
    )
    old = _ref_simulate_alarms(pool, thresholds, offsets, n_steps, np.random.default_rng(seed + 1), chunk=chunk)
    np.testing.assert_array_equal(new, old)
    if dead:
        assert not new[0].any()


def test_solved_h_gives_up_like_the_reference() -> None:
    """A rate that stays above target up to h = 1e9 (positive drift) returns the doubled bound."""
    theta, drift, weight = np.array([np.nan, 1.0]), np.array([0.5, -0.5]), np.array([0.5, 0.5])
    solved = sequential_calibration._solve_h(
        np.array([[1e-12, 1e-3]]), theta[None], drift[None], weight[None], np.zeros(1)
    )
    assert solved[0, 0] == _ref_solve_h(1e-12, theta, drift, weight, 0.0) == 2.0**30
    assert solved[0, 1] == _ref_solve_h(1e-3, theta, drift, weight, 0.0)


def test_no_components_consume_the_generator_like_the_reference() -> None:
    args = (np.zeros((100, 0)), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0), 1e4)
    one, two = np.random.default_rng(5), np.random.default_rng(5)
    new = calibrate_thresholds(*args, one, n_paths=50, n_steps=70)
    old = _ref_calibrate_thresholds(*args, two, n_paths=50, n_steps=70)
    assert new == old and new.thresholds == ()
    assert one.integers(0, 2**62) == two.integers(0, 2**62)
