"""The vectorised stage 1 equals a straightforward per-event computation, bit for bit.

Each test pits the batch code (column building, binning by cell search, dict-lookup
encoding, integer version codes, one sort per batch for the CUSUM slices, grouping by
model, window and partition) against a reference written the slow, obvious way: one event
at a time with plain Python, and ``bin_counts`` / per-window masks for the statistics. The
partials are compared as serialised bytes, so key order and int/float types count too.
Batches mix NaN, None, bools, integers and strings in numeric columns, unknown categories
and non-string values in categorical ones, several windows, slices, versions and models.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any
from unittest import mock

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from watchkeeper.config import ModelConfig, parse_config
from watchkeeper.monitor import columns
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.columns import monitored_columns
from watchkeeper.monitor.labels import new_classification, prediction_entries
from watchkeeper.monitor.partials import build_partials
from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, CategoricalProfile, ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.monitor.wire import PARTIAL_VERSION
from watchkeeper.stats.categorical import OTHER, CategoryEncoder
from watchkeeper.stats.cbpe import expected_confusion
from watchkeeper.stats.classification import MISSING
from watchkeeper.stats.fairness import GroupFairnessAggregate
from watchkeeper.stats.histogram import bin_counts
from watchkeeper.stats.sequential import SliceGroups, numeric_slice_sums

T0 = 1_700_000_000.0
FEATURES = {
    "x": "numeric",
    "k": "numeric",
    "tail": "numeric",
    "c": "categorical",
    "d": "categorical",
    "many": "categorical",
}
MODELS = {
    "models": [
        {"model_id": "m1", "features": FEATURES, "window": {"size": "10s"}},
        {
            "model_id": "m2",
            "features": FEATURES,
            "window": {"size": "5s"},
            "drift": {"slices_per_window": 5},
            "accuracy": {"label_horizon": "1m"},
            "sensitive_attributes": ["group", "region"],
            "fairness": {"intersections": [["group", "region"]]},
        },
        {"model_id": "learning", "features": FEATURES, "window": {"size": "10s"}},
    ]
}


def _profile(model_id: str, seed: int) -> ReferenceProfile:
    """Columns of several shapes: normal, few integers (tied edges), heavy-tailed (binary search), categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, tuple[str, Any]] = {
        "x": ("numeric", rng.normal(size=400)),
        "k": ("numeric", rng.integers(0, 4, 400).astype(float)),
        "tail": ("numeric", np.exp(rng.normal(size=400) * 4)),
        "c": ("categorical", list(rng.choice(["a", "b", "c"], 400, p=[0.6, 0.3, 0.1]))),
        "d": ("categorical", [*rng.choice(["u", "v"], 390), *[f"rare{i}" for i in range(10)]]),
        "many": ("categorical", [f"k{i}" for i in rng.integers(0, 25, 400)]),  # the CUSUM keeps 20 of them
        PREDICTION_SCORE: ("numeric", rng.uniform(size=400)),
        PREDICTION_LABEL: ("categorical", [str(v) for v in rng.integers(0, 2, 400)]),
    }
    return ReferenceProfile.build(model_id, columns, max_categories={"d": 2}, sequential_arl_events=1e5, bucket_size=20)


CONFIG = parse_config(MODELS)
CONFIGS = {m.model_id: m for m in CONFIG.models}
PROFILES = {"m1": _profile("m1", 1), "m2": _profile("m2", 2)}


def _binner(model_id: str) -> ColumnBinner | None:
    profile = PROFILES.get(model_id)
    if profile is None:
        return None
    return ColumnBinner.from_profile(profile, monitored_columns(CONFIGS[model_id]))


BINNERS = {model_id: _binner(model_id) for model_id in CONFIGS}


# -- events ---------------------------------------------------------------------------------
def _edge_values() -> list[float]:
    edges = [float(v) for p in PROFILES.values() for c in p.columns.values() if hasattr(c, "edges") for v in c.edges]
    return edges + [float(np.nextafter(e, np.inf)) for e in edges] + [float(np.nextafter(e, -np.inf)) for e in edges]


numbers = st.one_of(
    st.floats(-4, 4),
    st.sampled_from(_edge_values()),
    st.integers(-3, 5),
    st.booleans(),
    st.none(),
    st.sampled_from(["3", "x", ""]),
    st.floats(0, 1e6),
)
categories = st.one_of(
    st.sampled_from(["a", "b", "c", "u", "v", "rare3", "zz", "a\x00", "", OTHER, "k3", "k17", "k24"]),
    st.integers(0, 2),
    st.booleans(),
    st.none(),
    st.just(float("nan")),
    st.just(2.5),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    features = {name: draw(numbers if kind == "numeric" else categories) for name, kind in FEATURES.items()}
    for name in draw(st.lists(st.sampled_from(list(FEATURES)), max_size=2)):
        features.pop(name, None)  # an absent feature is missing
    prediction = {}
    score = draw(st.one_of(st.floats(0, 1), st.none()))
    label = draw(st.sampled_from([0, 1, "1", "0", True, "x", None]))
    if score is not None:
        prediction["score"] = score
    if label is not None:
        prediction["label"] = label
    event: dict[str, Any] = {
        "event_id": f"e{draw(st.integers(0, 10**6))}",
        "model_id": draw(st.sampled_from(list(CONFIGS))),
        "timestamp": T0 + draw(st.floats(0, 30)),
        "features": features,
        "prediction": prediction,
        "attributes": {"group": draw(st.sampled_from(["g1", "g2", None, 3])), "region": draw(st.sampled_from("ns"))},
    }
    version = draw(st.sampled_from([None, "", "v1", "v2", "v1\x00", "v10"]))
    if version is not None:
        event["model_version"] = version
    return event


batches = st.lists(events(), max_size=120)


# -- the reference: one event at a time -------------------------------------------------------
def _raw(event: dict[str, Any], name: str) -> Any:
    prediction = event.get("prediction") or {}
    if name == PREDICTION_SCORE:
        return prediction.get("score")
    if name == PREDICTION_LABEL:
        label = prediction.get("label")
        return None if label is None else str(label)
    return (event.get("features") or {}).get(name)


def _number(value: Any) -> tuple[float, bool]:
    """(float, is not a number): bools are 0/1, None is missing, strings are not numbers."""
    if value is None:
        return math.nan, False
    if isinstance(value, bool | int | float):
        return float(value), False
    return math.nan, True


def _code(encoder: CategoryEncoder, value: Any) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return encoder.missing_index
    text = str(value).rstrip("\x00")  # compared as numpy unicode: trailing NULs do not count
    if text in encoder.vocabulary:
        return encoder.vocabulary.index(text)
    if text in encoder.pooled:
        return encoder.vocabulary.index(OTHER)
    return encoder.unseen_index


def _reference_entry(binner: ColumnBinner, events: list[dict[str, Any]], times: list[float], start: float) -> Any:
    versions = Counter(str(e.get("model_version") or "unversioned").rstrip("\x00") for e in events)
    entry: dict[str, Any] = {
        "start": start,
        "n": len(events),
        "t_max": max(times),
        "versions": {name: versions[name] for name in sorted(versions)},
        "numeric": {},
        "categorical": {},
        "invalid": {},
    }
    for name in binner.numeric:
        values, flags = zip(*(_number(_raw(e, name)) for e in events), strict=True)
        counts, missing = bin_counts(np.asarray(values), binner.profile.columns[name].edges)  # type: ignore[union-attr]
        entry["numeric"][name] = [*counts.tolist(), missing]
        if sum(flags):
            entry["invalid"][name] = sum(flags)
    for name in binner.categorical:
        column = binner.profile.columns[name]
        assert isinstance(column, CategoricalProfile)
        counts = [0] * (len(column.encoder.vocabulary) + 2)
        for e in events:
            counts[_code(column.encoder, _raw(e, name))] += 1
        entry["categorical"][name] = counts
    return entry


def _reference_slices(
    binner: ColumnBinner, events: list[dict[str, Any]], times: list[float], config: ModelConfig
) -> Any:
    per_slice = config.drift.slices_per_window / config.window.size
    slices: dict[int, list[int]] = {}
    for i, t in enumerate(times):
        slices.setdefault(int(np.floor(t * per_slice)), []).append(i)
    out: dict[str, dict[str, list[int]]] = {}
    for key in sorted(slices):
        out[str(key)] = {}
        for name, detector in binner.detectors.items():
            values = [_raw(events[i], name) for i in slices[key]]
            if detector.kind == "numeric":
                sums = [0, 0, 0]
                ref = detector.reference
                for value in values:
                    x, _ = _number(value)
                    if not math.isfinite(x):
                        continue
                    if "clip" in ref:
                        x = min(max(x, ref["clip"][0]), ref["clip"][1])
                    z = (x - ref["mean"]) / ref["std"]
                    sums[0] += 1
                    sums[1] += int(np.rint(z * 2.0**20))
                    sums[2] += int(np.rint(z * z * 2.0**20))
            else:
                encoder = CategoryEncoder.from_dict(detector.reference["encoder"])
                sums = [0] * len(encoder.vocabulary)
                for value in values:
                    code = _code(encoder, value)
                    if code < len(encoder.vocabulary):
                        sums[code] += 1
            out[str(key)][name] = sums
    return out


def _reference_samples(config: ModelConfig, events: list[dict[str, Any]], times: list[float], start: float) -> Any:
    rows: dict[str, list[Any]] = {}
    for name, kind in monitored_columns(config).items():
        raw = [_raw(e, name) for e in events]
        if kind == "numeric":  # a value that is not a number travels as its text
            rows[name] = [str(v)[:200] if _number(v)[1] else _number(v)[0] for v in raw]
        else:
            rows[name] = [None if v is None else str(v)[:200] for v in raw]
    return {
        "start": start,
        "n": len(events),
        "t_max": max(times),
        "times": times,
        "model_versions": [str(e.get("model_version") or "unversioned") for e in events],
        "ids": [str(e.get("prediction_id") or e["event_id"]) for e in events],
        "rows": rows,
    }


def reference_partials(events: list[dict[str, Any]], sources: list[str], offsets: list[int]) -> list[dict[str, Any]]:
    out = []
    for model_id in sorted({e["model_id"] for e in events}):
        config, binner = CONFIGS[model_id], BINNERS[model_id]
        mine = [i for i, e in enumerate(events) if e["model_id"] == model_id]
        ranges: dict[str, list[int]] = {}
        for i in mine:
            low, high = ranges.get(sources[i], [offsets[i], offsets[i]])
            ranges[sources[i]] = [min(low, offsets[i]), max(high, offsets[i])]
        windows: dict[float, list[int]] = {}
        for i in mine:
            windows.setdefault(math.floor(events[i]["timestamp"] / config.window.size) * config.window.size, [])
            windows[math.floor(events[i]["timestamp"] / config.window.size) * config.window.size].append(i)
        entries = []
        for start in sorted(windows):
            chosen = [events[i] for i in windows[start]]
            times = [e["timestamp"] for e in chosen]
            if binner is None:
                entries.append(_reference_samples(config, chosen, times, float(start)))
            else:
                entries.append(_reference_entry(binner, chosen, times, float(start)))
        chosen = [events[i] for i in mine]
        partial_slices = (
            {} if binner is None else _reference_slices(binner, chosen, [e["timestamp"] for e in chosen], config)
        )
        out.append(
            {
                "v": PARTIAL_VERSION,
                "kind": "sample" if binner is None else "stats",
                "model_id": model_id,
                "profile_id": None if binner is None else binner.profile.reference_id,
                "source": {s: ranges[s] for s in sorted(ranges)},
                "watermarks": {},
                "windows": entries,
                "slices": partial_slices,
            }
        )
    return out


def _bytes(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


# -- tests ------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches, st.data(), st.sampled_from([128, 1, 7]))
def test_partials_equal_the_per_event_reference(batch: list[dict[str, Any]], data: st.DataObject, chunk: int) -> None:
    sources = [data.draw(st.sampled_from(["in:0", "in:1", "in:2"])) for _ in batch]
    offsets = data.draw(st.lists(st.integers(0, 10**9), min_size=len(batch), max_size=len(batch), unique=True))
    times = np.asarray([e["timestamp"] for e in batch], dtype=np.float64)
    models = {m: (CONFIGS[m], BINNERS[m]) for m in CONFIGS}
    with mock.patch.object(columns, "_READ_CHUNK", chunk):  # columns read in chunks of any size
        built = build_partials(batch, times, sources, np.asarray(offsets, dtype=np.int64), models)
    assert _bytes(built) == _bytes(reference_partials(batch, sources, offsets))


edge_pool = np.asarray([*_edge_values(), np.inf, -np.inf, np.nan, 1e308, -1e308, 0.0, -0.0, 5e-324])


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(0, 80), st.just(4)), elements=st.sampled_from(edge_pool.tolist())),
    arrays(np.float64, st.tuples(st.integers(0, 80), st.just(4)), elements=st.floats(allow_nan=True)),
    st.integers(1, 3),
    st.integers(0, 2**31),
)
def test_fine_counts_equal_bin_counts_on_edges_neighbours_and_extremes(
    edgy: np.ndarray, anything: np.ndarray, n_windows: int, seed: int
) -> None:
    binner = BINNERS["m1"]
    assert binner is not None
    matrix = np.concatenate([edgy, anything])
    rng = np.random.default_rng(seed)
    matrix = matrix[rng.permutation(len(matrix))]
    windows = rng.integers(0, n_windows, size=len(matrix))
    counts = binner.fine_counts(matrix, windows, n_windows)
    for j, name in enumerate(binner.numeric):
        edges = binner.profile.columns[name].edges  # type: ignore[union-attr]
        for w in range(n_windows):
            expected, missing = bin_counts(matrix[windows == w, j], edges)
            assert counts[w, j, : len(edges) + 1].tolist() == expected.tolist()
            assert counts[w, j, -1] == missing
            assert not counts[w, j, len(edges) + 1 : -1].any()  # the padding stays empty


def test_both_search_strategies_and_both_encodings_are_exercised() -> None:
    binner = BINNERS["m1"]
    assert binner is not None
    _, table, searched = binner._searches
    assert table is not None and searched == [binner.numeric.index("tail")]  # heavy tail: binary search
    assert binner.shared_encoders == {"c", "d", PREDICTION_LABEL}  # "many": the CUSUM has its own vocabulary


mixed = st.lists(
    st.one_of(
        categories,
        st.text(max_size=3),
        st.floats(allow_nan=True),
        st.integers(-(2**70), 2**70),
        st.sampled_from([np.str_("a"), np.float64("nan"), np.int64(2), ("a", "b")]),
    ),
    max_size=40,
)


def _outcome(encode: Any, values: Any) -> Any:
    """The codes, or the kind of error (numpy cannot read a tuple inside a 1-D array as one value)."""
    try:
        return encode(values).tolist()
    except ValueError as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(mixed)
def test_encoder_lookup_equals_the_numpy_route(values: list[Any]) -> None:
    encoder = CategoryEncoder(["a", "b", "2", "a\x00b", "True"], pooled=["c", "nan"])
    if all(not isinstance(v, tuple) for v in values):
        assert encoder.encode(values).tolist() == [_code(encoder, v) for v in values]
    assert _outcome(encoder.encode, values) == _outcome(encoder._encode_array, values)
    assert _outcome(encoder.encode, iter(values)) == _outcome(encoder._encode_array, values)
    array = np.asarray([*values, None], dtype=object)[:-1]
    assert _outcome(encoder.encode, array) == _outcome(encoder._encode_array, array)


@settings(max_examples=100, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(0, 60), st.just(3)), elements=st.floats(-50, 50) | st.just(np.nan)),
    st.integers(1, 5),
    st.integers(0, 2**31),
)
def test_numeric_slice_sums_of_many_columns_equal_each_column_alone(
    values: np.ndarray, n_slots: int, seed: int
) -> None:
    binner = BINNERS["m2"]
    assert binner is not None
    detectors = [binner.detectors[name] for name in ("x", "k", PREDICTION_SCORE)]
    slots = np.random.default_rng(seed).integers(0, n_slots, size=len(values))
    groups = SliceGroups.of(slots, n_slots)
    together = numeric_slice_sums(detectors, values.T, groups)
    for i, detector in enumerate(detectors):
        alone = detector.slice_sums(values[:, i], slots, n_slots)
        assert together[i].tolist() == alone.tolist()
        for s in range(n_slots):
            x = values[slots == s, i]
            ref = detector.reference
            z = (np.clip(x[np.isfinite(x)], *ref.get("clip", (-np.inf, np.inf))) - ref["mean"]) / ref["std"]
            expected = [z.size, int(np.rint(z * 2.0**20).sum()), int(np.rint(z * z * 2.0**20).sum())]
            assert alone[s].tolist() == expected


def _reference_prediction_entries(config: ModelConfig, events: list[dict[str, Any]]) -> dict[float, Any]:
    """Per window: one mask, the aggregates fed row by row in input order."""
    lookup = {name: i for i, name in enumerate(config.classes)}
    out: dict[float, Any] = {}
    starts = [math.floor(e["timestamp"] / config.window.size) * config.window.size for e in events]
    for start in sorted(set(starts)):
        rows = []
        for e, s in zip(events, starts, strict=True):
            prediction = e.get("prediction") or {}
            score = prediction.get("score")
            score = float(score) if isinstance(score, float) else math.nan
            label = prediction.get("label")
            index = lookup.get(str(label), -1) if label is not None else -1
            if index < 0 and not math.isnan(score):
                index = int(score >= 0.5)
            if s == start and index >= 0:
                rows.append((index, score, e.get("attributes") or {}))
        if not rows:
            continue
        predicted = np.asarray([r[0] for r in rows], dtype=np.int64)
        scores = np.asarray([r[1] for r in rows])
        aggregate = new_classification(config)
        aggregate.update(np.full(len(rows), MISSING), predicted, scores)
        entry: dict[str, Any] = {"start": float(start), "classification": aggregate.to_dict(), "fairness": {}}
        entry["cbpe"] = expected_confusion(scores, predicted).tolist()
        for subject in config.fairness.subjects(config.sensitive_attributes):
            parts = [
                ["__missing__" if r[2].get(n) is None else str(r[2].get(n)) for r in rows] for n in subject.split("|")
            ]
            groups = ["|".join(p) for p in zip(*parts, strict=True)]
            fairness = GroupFairnessAggregate(subject, max_groups=config.fairness.max_groups)
            fairness.update(np.asarray(groups), predicted, scores)
            entry["fairness"][subject] = fairness.to_dict()
        out[float(start)] = entry
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_prediction_entries_equal_the_per_window_reference(batch: list[dict[str, Any]]) -> None:
    batch = [e for e in batch if e["model_id"] == "m2" and (e["prediction"].get("score") is not None)]
    times = np.asarray([e["timestamp"] for e in batch], dtype=np.float64)
    entries = prediction_entries(CONFIGS["m2"], batch, times)
    assert _bytes(list(entries.items())) == _bytes(list(_reference_prediction_entries(CONFIGS["m2"], batch).items()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stage1_watermarks_and_offset_ranges_equal_the_per_event_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    runtime = MonitorRuntime(CONFIG, PROFILES)
    raw, sources, flags = [], [], []
    expected_marks: dict[tuple[str, str], float] = {}
    expected_ranges: dict[str, dict[str, list[int]]] = {}
    ignored = 0
    for i in range(600):
        model_id = str(rng.choice(list(CONFIGS)))
        source = f"in:{int(rng.integers(0, 4))}"
        t = T0 + float(rng.uniform(0, 60))
        if rng.random() < 0.3:  # an outcome
            raw.append(orjson.dumps({"prediction_id": f"p{i}", "model_id": model_id, "timestamp": t, "label": 1}))
            flags.append(True)
            if model_id == "m2":  # the only model with labels
                low, high = expected_ranges.setdefault(model_id, {}).get(source, [i, i])
                expected_ranges[model_id][source] = [min(low, i), max(high, i)]
            else:
                ignored += 1
        else:
            event = {"event_id": f"p{i}", "model_id": model_id, "timestamp": t, "features": {"x": 1.0}}
            raw.append(orjson.dumps({**event, "prediction": {"score": 0.5}}))
            flags.append(False)
            expected_marks[model_id, source] = max(expected_marks.get((model_id, source), -math.inf), t)
            low, high = expected_ranges.setdefault(model_id, {}).get(source, [i, i])
            expected_ranges[model_id][source] = [min(low, i), max(high, i)]
        sources.append(source)
    result = runtime.stage1(raw, sources, list(range(len(raw))), is_outcome=flags, wall_clock=T0 + 100)
    assert runtime.watermarks == expected_marks
    assert runtime.reported_idle == dict.fromkeys(expected_marks, False)
    assert runtime.last_event_at == dict.fromkeys(expected_marks, T0 + 100)
    assert {p["model_id"]: p["source"] for p in result.partials} == expected_ranges
    assert result.outcomes.get("ignored", 0) == ignored
