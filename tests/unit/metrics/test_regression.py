"""RegressionAggregate against scikit-learn on hypothesis-generated data."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import norm
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
    root_mean_squared_error,
)

from watchkeeper.stats.regression import RegressionAggregate

SETTINGS = settings(max_examples=200, deadline=None)
TOL = 1e-9

values = st.one_of(
    st.floats(-1e6, 1e6, allow_subnormal=False),
    st.integers(-1000, 1000).map(float),  # ties, zeros and constant columns
)


@st.composite
def pairs(draw: Any, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_size, 80))
    y = draw(hnp.arrays(np.float64, n, elements=values))
    pred = draw(
        st.one_of(
            hnp.arrays(np.float64, n, elements=values),
            hnp.arrays(np.float64, n, elements=st.floats(-10, 10)).map(lambda d: y + d),
            st.just(y.copy()),
        )
    )
    return y, pred


def close(a: float | None, b: float, tol: float = TOL) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def roundtrip(agg: RegressionAggregate) -> RegressionAggregate:
    return RegressionAggregate.from_dict(json.loads(json.dumps(agg.to_dict())))


@SETTINGS
@given(pairs())
def test_matches_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, pred = data
    agg = RegressionAggregate()
    agg.update(y, pred)
    m = agg.compute()
    assert m.n == y.size and m.n_zero_true == int((y == 0).sum())
    assert close(m.mae, mean_absolute_error(y, pred))
    assert close(m.mse, mean_squared_error(y, pred))
    assert close(m.rmse, root_mean_squared_error(y, pred))
    assert close(m.mape, mean_absolute_percentage_error(y, pred))
    assert close(m.bias, float(np.mean(pred - y)))
    if y.size < 2:
        assert m.r2 is None and m.mae_interval is None and m.bias_interval is None
        return
    residual = float(np.sum((y - pred) ** 2))
    if residual == 0.0:
        assert m.r2 == 1.0 == r2_score(y, pred)
    elif y.min() == y.max():
        # sklearn's denominator is Σ(y − mean(y))², which is not always exactly 0 for a
        # constant y in floating point (mean of [0.1] * 3); the convention is 0.0.
        assert m.r2 == 0.0
    else:
        expected = r2_score(y, pred)
        assert m.r2 is not None and abs(m.r2 - expected) <= TOL * max(1.0, abs(expected))


@SETTINGS
@given(pairs(min_size=2), st.sampled_from([0.8, 0.95, 0.99]))
def test_normal_intervals(data: tuple[np.ndarray, np.ndarray], confidence: float) -> None:
    y, pred = data
    agg = RegressionAggregate()
    agg.update(y, pred)
    m = agg.compute(confidence)
    z = norm.ppf(0.5 + confidence / 2)
    e = pred - y
    for interval, x, floor in ((m.mae_interval, np.abs(e), 0.0), (m.bias_interval, e, None)):
        assert interval is not None
        half = z * np.std(x, ddof=1) / math.sqrt(x.size)
        scale = max(1.0, float(np.max(np.abs(x))))
        low = x.mean() - half if floor is None else max(floor, x.mean() - half)
        assert abs(interval[0] - low) <= 1e-9 * scale
        assert abs(interval[1] - (x.mean() + half)) <= 1e-9 * scale


@SETTINGS
@given(pairs(), st.data())
def test_merge_of_split_equals_whole_and_json_roundtrip(data: tuple[np.ndarray, np.ndarray], d: Any) -> None:
    y, pred = data
    cuts = sorted(d.draw(st.lists(st.integers(0, y.size), min_size=1, max_size=3)))
    whole = RegressionAggregate()
    whole.update(y, pred)
    merged = RegressionAggregate()
    for lo, hi in zip([0, *cuts], [*cuts, y.size], strict=True):
        part = RegressionAggregate()
        part.update(y[lo:hi], pred[lo:hi])
        merged.merge(roundtrip(part))
    a, b = merged.to_dict(), whole.to_dict()
    for key, value in b.items():
        if isinstance(value, float) and key.startswith("m2_"):
            # M2 merges add rounding relative to the data's magnitude, not to M2 itself
            scale = y.size * float(np.max(np.abs(np.concatenate([y, pred - y])))) ** 2
            assert abs(a[key] - value) <= TOL * max(1.0, abs(value), scale * 1e-6), key
        elif isinstance(value, float):
            assert close(a[key], value), key
        else:
            assert a[key] == value, key
    assert roundtrip(whole).to_dict() == whole.to_dict()


def test_r2_is_stable_for_large_offsets() -> None:
    rng = np.random.default_rng(11)
    y = 1e9 + rng.normal(size=20_000)
    pred = y + 0.5 * rng.normal(size=y.size)
    agg = RegressionAggregate()
    for chunk in np.array_split(np.arange(y.size), 17):
        agg.update(y[chunk], pred[chunk])
    m = agg.compute()
    assert close(m.r2, r2_score(y, pred), 1e-9)
    naive = 1 - np.sum((y - pred) ** 2) / (np.sum(y * y) - np.sum(y) ** 2 / y.size)
    assert not close(float(naive), r2_score(y, pred), 1e-3)  # what the Σy² formula would give


def test_conventions_and_empty() -> None:
    m = RegressionAggregate().compute()
    assert m.n == 0 and m.mae is None and m.r2 is None and m.mae_interval is None
    agg = RegressionAggregate()
    agg.update(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]))
    assert agg.compute().r2 == 0.0 == r2_score([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    agg = RegressionAggregate()
    agg.update(np.array([0.1, 0.1, 0.1]), np.array([0.1, 0.1, 0.1]))
    assert agg.compute().r2 == 1.0
    agg = RegressionAggregate()
    agg.update(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    assert agg.compute().mape == mean_absolute_percentage_error([0.0, 1.0], [1.0, 1.0])
    assert agg.compute().n_zero_true == 1
    empty = RegressionAggregate()
    empty.update(np.array([]), np.array([]))
    assert roundtrip(empty).to_dict() == RegressionAggregate().to_dict()
    assert roundtrip(RegressionAggregate().merge(agg)).compute() == agg.compute()


@pytest.mark.parametrize(
    ("y", "pred", "match"),
    [
        ([1.0, np.nan], [1.0, 2.0], "y_true contains nan"),
        ([1.0, 2.0], [np.inf, 2.0], "y_pred contains inf"),
        ([1.0, 2.0], [1.0], "y_pred has length 1"),
        ([[1.0]], [[1.0]], r"y_true has shape \(1, 1\)"),
    ],
)
def test_update_errors_name_argument_and_value(y: Any, pred: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RegressionAggregate().update(np.asarray(y), np.asarray(pred))


def test_bad_inputs_to_compute_and_from_dict() -> None:
    with pytest.raises(ValueError, match="confidence=0"):
        RegressionAggregate().compute(confidence=0)
    with pytest.raises(ValueError, match="kind='classification'"):
        RegressionAggregate.from_dict({**RegressionAggregate().to_dict(), "kind": "classification"})
