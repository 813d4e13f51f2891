"""Our ADWIN against River's: the same detections (and window statistics) on the same streams; JSON state."""

from __future__ import annotations

import copy
import doctest
import math
import random
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river.drift import ADWIN as RiverADWIN

from watchkeeper.stats import adwin as adwin_module
from watchkeeper.stats.adwin import ADWIN

Params = dict[str, Any]


def our_run(stream: Sequence[float], params: Params, detector: ADWIN | None = None) -> tuple[list[int], ADWIN]:
    detector = detector if detector is not None else ADWIN(**params)
    hits = [i for i, x in enumerate(stream) if detector.update(x)]
    return hits, detector


def assert_same_as_river(stream: Sequence[float], params: Params | None = None) -> list[int]:
    """Same drift indices, and the same window statistics (bit for bit) after every update."""
    params = params or {}
    theirs, ours = RiverADWIN(**params), ADWIN(**params)
    hits = []
    for i, x in enumerate(stream):
        theirs.update(x)
        detected = ours.update(x)
        assert detected == theirs.drift_detected == ours.drift_detected, f"index {i}"
        if detected:
            hits.append(i)
        width = theirs.width
        assert (ours.width, ours.total, ours.estimation) == (width, theirs.total, theirs.estimation), f"index {i}"
        # River's ADWIN.variance is the sum of squared deviations; ours is that divided by the width
        assert ours.variance == (theirs.variance / width if width else 0.0), f"index {i}"
    assert ours.to_dict()["sum_squared_deviations"] == theirs.variance
    return hits


def bernoulli(seed: int, n: int, p0: float, p1: float, change_at: int) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < (p0 if i < change_at else p1)) for i in range(n)]


def gaussian(seed: int, n: int, mu0: float, mu1: float, sd: float, change_at: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mu0 if i < change_at else mu1, sd) for i in range(n)]


configs = st.fixed_dictionaries(
    {
        "delta": st.sampled_from([0.002, 0.5, 0.1, 1e-4]),
        "clock": st.integers(1, 40),
        "max_buckets": st.integers(2, 8),
        "min_window_length": st.integers(1, 12),
        "grace_period": st.integers(0, 60),
    }
)


def test_doctests() -> None:
    assert doctest.testmod(adwin_module).failed == 0


# -- equivalence with River, seeded --------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_bernoulli_rate_change_same_detections_as_river(seed: int) -> None:
    rng = random.Random(1000 + seed)
    p0, p1 = rng.uniform(0.01, 0.5), rng.uniform(0.01, 0.99)
    stream = bernoulli(seed, 8_000, p0, p1, change_at=rng.randint(1_000, 6_000))
    assert_same_as_river(stream)


def test_bernoulli_rate_change_is_detected_after_the_change() -> None:
    hits = assert_same_as_river(bernoulli(7, 6_000, 0.1, 0.4, change_at=3_000))
    assert hits and 3_000 <= hits[0] < 3_400


@pytest.mark.parametrize("seed", range(20))
def test_stationary_streams_same_as_river(seed: int) -> None:
    rng = random.Random(2000 + seed)
    p = rng.uniform(0.0, 1.0)
    assert_same_as_river(bernoulli(seed, 20_000, p, p, change_at=0))
    assert_same_as_river(gaussian(seed, 5_000, 3.0, 3.0, rng.uniform(0.1, 10.0), change_at=0))


@pytest.mark.parametrize("seed", range(20))
def test_real_valued_streams_same_as_river(seed: int) -> None:
    rng = random.Random(3000 + seed)
    stream = gaussian(seed, 6_000, rng.uniform(-5, 5), rng.uniform(-5, 5), rng.uniform(0.05, 5), rng.randint(0, 6_000))
    assert_same_as_river(stream)
    # heavy-tailed values of very different magnitudes
    wild = [rng.choice([0.0, 1.0, -1e3, 2.5, rng.uniform(0, 1e6)]) for _ in range(4_000)]
    assert_same_as_river(wild)


def test_constant_streams_and_steps_same_as_river() -> None:
    # exact-zero variance and its rounding after cuts: River's sqrt of a negative is NaN (no cut); ours too
    assert assert_same_as_river([1.0] * 5_000) == []
    assert_same_as_river([0.0] * 2_000 + [1.0] * 2_000 + [0.3] * 2_000)
    assert_same_as_river([0.1] * 3_000 + [0.7] * 3_000, {"clock": 1, "min_window_length": 1, "grace_period": 0})


def test_non_default_parameters_same_as_river() -> None:
    rng = random.Random(5)
    for params in (
        {"clock": 1},
        {"delta": 0.5, "clock": 1, "min_window_length": 1, "grace_period": 0},
        {"max_buckets": 2, "clock": 3},
        {"max_buckets": 9, "min_window_length": 20, "grace_period": 100},
    ):
        assert_same_as_river(bernoulli(rng.randint(0, 10**6), 6_000, 0.2, 0.35, change_at=2_500), params)
        assert_same_as_river(gaussian(rng.randint(0, 10**6), 4_000, 0.0, 0.3, 1.0, change_at=2_000), params)


def test_small_parameters_exhaustively_same_as_river() -> None:
    """Every boundary (grace period, minimum sub-window, clock) on short step streams."""
    rng = random.Random(9)
    streams = [
        [0.0] * 8 + [1.0] * 30,
        [1.0, 0.0] * 6 + [1.0] * 20,
        [0.0, 5.0, 5.0, 5.0, -5.0, 0.0, 20.0],
        [rng.gauss(0, 1) + (i > 20) * 3 for i in range(50)],
    ]
    hits = 0
    for clock in (1, 2, 3, 5):
        for grace_period in range(13):
            for min_window_length in range(1, 7):
                for delta in (0.9, 0.5, 0.1, 0.002):
                    params = {
                        "clock": clock,
                        "grace_period": grace_period,
                        "min_window_length": min_window_length,
                        "delta": delta,
                        "max_buckets": 2 + (grace_period % 3),
                    }
                    hits += sum(len(assert_same_as_river(stream, params)) for stream in streams)
    assert hits > 1_000


# -- equivalence with River, property-based ------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    p0=st.floats(0.0, 1.0),
    p1=st.floats(0.0, 1.0),
    n=st.integers(0, 5_000),
    change=st.floats(0.0, 1.0),
    params=configs,
)
def test_property_bernoulli_streams(seed: int, p0: float, p1: float, n: int, change: float, params: Params) -> None:
    assert_same_as_river(bernoulli(seed, n, p0, p1, int(change * n)), params)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    mu0=st.floats(-100, 100),
    mu1=st.floats(-100, 100),
    sd=st.floats(0.0, 50.0),
    n=st.integers(0, 4_000),
    change=st.floats(0.0, 1.0),
    params=configs,
)
def test_property_real_valued_streams(
    seed: int, mu0: float, mu1: float, sd: float, n: int, change: float, params: Params
) -> None:
    assert_same_as_river(gaussian(seed, n, mu0, mu1, sd, int(change * n)), params)


@settings(max_examples=100, deadline=None)
@given(
    stream=st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, 1.0]), max_size=600),
    params=configs,
)
def test_property_arbitrary_values(stream: list[float], params: Params) -> None:
    assert_same_as_river(stream, params)


# -- state -------------------------------------------------------------------------------------


def json_round_trip(detector: ADWIN) -> ADWIN:
    return ADWIN.from_dict(orjson.loads(orjson.dumps(detector.to_dict())))


def assert_round_trip_continues_identically(stream: Sequence[float], split: int, params: Params) -> None:
    expected, reference = our_run(stream, params)
    first, detector = our_run(stream[:split], params)
    restored = json_round_trip(detector)
    assert restored.to_dict() == detector.to_dict()
    rest, restored = our_run(stream[split:], params, restored)
    assert first + [split + i for i in rest] == expected
    assert restored.to_dict() == reference.to_dict()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 5_000),
    split=st.floats(0.0, 1.0),
    real=st.booleans(),
    params=configs,
)
def test_property_round_trip_mid_stream(seed: int, n: int, split: float, real: bool, params: Params) -> None:
    stream = gaussian(seed, n, 0.0, 1.0, 1.0, n // 2) if real else bernoulli(seed, n, 0.1, 0.5, n // 2)
    assert_round_trip_continues_identically(stream, int(split * n), params)


def test_round_trip_right_after_a_detection() -> None:
    """The pending clear-on-next-update after a detection survives the round trip."""
    stream = bernoulli(11, 8_000, 0.1, 0.6, change_at=3_000)
    hits, _ = our_run(stream, {})
    assert hits
    for hit in hits[:3]:
        _, detector = our_run(stream[: hit + 1], {})
        assert detector.drift_detected and detector.to_dict()["drift_detected"] is True
        assert_round_trip_continues_identically(stream, hit + 1, {})


def walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        return [x for v in value.values() for x in walk(v)]
    if isinstance(value, list):
        return [x for v in value for x in walk(v)]
    return [value]


def test_state_is_plain_json() -> None:
    _, detector = our_run(gaussian(3, 3_000, 0.0, 2.0, 1.0, 1_500), {})
    state = detector.to_dict()
    assert state["version"] == 1
    leaves = walk(state)
    assert all(type(x) in (int, float, bool) for x in leaves)
    assert not any(isinstance(x, bytes | bytearray | memoryview | str) for x in leaves)
    assert orjson.loads(orjson.dumps(state)) == state
    assert orjson.loads(orjson.dumps(ADWIN().to_dict())) == ADWIN().to_dict()


def sample_state() -> dict[str, Any]:
    _, detector = our_run(bernoulli(4, 2_000, 0.2, 0.2, 0), {})
    return detector.to_dict()


def replaced(path: Sequence[str | int], value: Any) -> dict[str, Any]:
    state = copy.deepcopy(sample_state())
    target: Any = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return state


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (replaced(["version"], 2), "version"),
        (replaced(["version"], True), "version"),
        (replaced(["delta"], 1.5), "delta"),
        (replaced(["delta"], "0.002"), "delta"),
        (replaced(["clock"], 0), "clock"),
        (replaced(["clock"], 32.0), "clock"),
        (replaced(["max_buckets"], 1), "max_buckets"),
        (replaced(["min_window_length"], True), "min_window_length"),
        (replaced(["grace_period"], -1), "grace_period"),
        (replaced(["width"], 3), "width"),
        (replaced(["total"], math.nan), "total"),
        (replaced(["sum_squared_deviations"], math.inf), "sum_squared_deviations"),
        (replaced(["tick"], -1), "tick"),
        (replaced(["drift_detected"], 1), "drift_detected"),
        (replaced(["bucket_totals"], "AAAA"), "bucket_totals"),
        (replaced(["bucket_totals"], []), "bucket_totals"),
        (replaced(["bucket_totals", 0], [1.0] * 9), "bucket_totals[0]"),
        (replaced(["bucket_totals", 1, 0], b"x"), "bucket_totals[1][0]"),
        (replaced(["bucket_totals", 1], []), "bucket_totals[1]"),
        (replaced(["bucket_squared_deviations", 2, 0], -1.0), "bucket_squared_deviations[2][0]"),
        (replaced(["bucket_squared_deviations", 2], [0.0] * 7), "bucket_squared_deviations[2]"),
        (replaced(["bucket_squared_deviations"], [[0.0]]), "bucket_squared_deviations"),
        ({k: v for k, v in sample_state().items() if k != "tick"}, "tick"),
    ],
)
def test_bad_state_raises_value_error_naming_the_field(state: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ADWIN.from_dict(state)


def test_not_a_mapping_and_bad_parameters_and_input() -> None:
    with pytest.raises(ValueError, match="mapping"):
        ADWIN.from_dict("gASV...")  # type: ignore[arg-type]
    for kwargs, name in (
        ({"delta": 0.0}, "delta"),
        ({"clock": 0}, "clock"),
        ({"max_buckets": 1}, "max_buckets"),
        ({"min_window_length": 0}, "min_window_length"),
        ({"grace_period": -1}, "grace_period"),
    ):
        with pytest.raises(ValueError, match=name):
            ADWIN(**kwargs)
    detector = ADWIN()
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            detector.update(bad)
    assert detector.width == 0 and detector.estimation == 0.0 and detector.variance == 0.0


def test_properties() -> None:
    detector = ADWIN()
    for x in (1.0, 2.0, 3.0, 4.0, 5.0):
        assert detector.update(x) is False
    assert (detector.width, detector.total, detector.estimation, detector.variance) == (5, 15.0, 3.0, 2.0)
    assert detector.drift_detected is False
