"""Stage-1 partials are exact: binning equals bin_counts, and merging equals one big batch."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from watchkeeper.config import parse_config
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.partials import build_partials, split_partial
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime
from watchkeeper.monitor.window import WindowAggregate
from watchkeeper.stats.histogram import bin_counts

values = arrays(
    np.float64,
    st.integers(0, 60),
    elements=st.one_of(st.floats(-5, 5), st.just(np.nan), st.sampled_from([0.0, 1.0, 2.0, -3.0])),
)


@settings(max_examples=200, deadline=None)
@given(values, values, st.integers(0, 2**31))
def test_fine_counts_equal_bin_counts_per_column_and_window(a: np.ndarray, b: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    profile = ReferenceProfile.build(
        "m", {"a": ("numeric", rng.normal(size=300)), "b": ("numeric", rng.integers(0, 4, 300).astype(float))}
    )
    binner = ColumnBinner.from_profile(profile, {"a": "numeric", "b": "numeric"})
    n = min(len(a), len(b))
    matrix = np.column_stack([a[:n], b[:n]])
    windows = rng.integers(0, 3, size=n)
    counts = binner.fine_counts(matrix, windows, 3)
    for j, name in enumerate(["a", "b"]):
        edges = profile.columns[name].edges  # type: ignore[union-attr]
        for w in range(3):
            expected, missing = bin_counts(matrix[windows == w, j], edges)
            assert counts[w, j, : len(edges) + 1].tolist() == expected.tolist()
            assert counts[w, j, -1] == missing


def _config() -> object:
    return parse_config(
        {
            "models": [
                {
                    "model_id": "m",
                    "features": {"x": "numeric", "c": "categorical"},
                    "window": {"size": "10s", "allowed_lateness": "1m"},  # events come up to 35 s out of order
                }
            ]
        }
    )


def _events(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "event_id": str(i),
            "model_id": "m",
            "model_version": "v1" if i % 3 else "v2",
            "timestamp": 1000.0 + float(rng.uniform(0, 35)),
            "features": {"x": float(rng.normal()) if i % 7 else None, "c": str(rng.choice(["p", "q", "new"]))},
            "prediction": {"score": float(rng.uniform()), "label": int(rng.integers(0, 2))},
        }
        for i in range(n)
    ]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400), st.integers(0, 1000))
def test_partials_of_any_split_merge_to_the_partial_of_the_whole(split: int, seed: int) -> None:
    config = _config()
    rng = np.random.default_rng(0)
    reference = {
        "x": ("numeric", rng.normal(size=500)),
        "c": ("categorical", list(rng.choice(["p", "q"], 500))),
        "prediction.score": ("numeric", rng.uniform(size=500)),
        "prediction.label": ("categorical", [str(v) for v in rng.integers(0, 2, 500)]),
    }
    runtime = MonitorRuntime(config, {"m": ReferenceProfile.build("m", reference)})  # type: ignore[arg-type]
    raw = [orjson.dumps(e) for e in _events(400, seed)]
    split = min(split, len(raw) - 1)

    def merged(batches: list[list[bytes]]) -> dict[float, dict]:
        windows: dict[float, WindowAggregate] = {}
        offset = 0
        for batch in batches:
            partials = runtime.stage1(batch, ["in:0"] * len(batch), list(range(offset, offset + len(batch)))).partials
            offset += len(batch)
            for partial in orjson.loads(orjson.dumps(partials)):  # through JSON, as on the wire
                for entry in partial["windows"]:
                    windows.setdefault(entry["start"], WindowAggregate(entry["start"])).add(entry)
        return {k: v.to_dict() for k, v in windows.items()}

    assert merged([raw[:split], raw[split:]]) == merged([raw])


def test_a_model_without_profile_sends_bounded_samples() -> None:
    config = _config()
    models = {"m": (config.models[0], None)}  # type: ignore[attr-defined]
    events = _events(50, 1)
    partials = build_partials(events, np.array([e["timestamp"] for e in events]), ["in:0"] * 50, np.arange(50), models)
    assert [p["kind"] for p in partials] == ["sample"]
    assert sum(w["n"] for w in partials[0]["windows"]) == 50
    assert partials[0]["source"] == {"in:0": [0, 49]}
    entry = partials[0]["windows"][0]
    assert len(entry["times"]) == len(entry["ids"]) == len(entry["model_versions"]) == entry["n"]


def test_a_partial_larger_than_the_record_limit_travels_in_pieces_that_merge_back() -> None:
    config = _config()
    models = {"m": (config.models[0], None)}  # type: ignore[attr-defined]
    events = _events(400, 2)
    times = np.array([e["timestamp"] for e in events])
    (partial,) = build_partials(events, times, ["in:0"] * 400, np.arange(400), models)
    pieces = [orjson.loads(piece) for piece in split_partial(partial, 4000)]
    assert len(pieces) > 4 and all(len(orjson.dumps(p)) <= 8000 for p in pieces[:-1])
    assert [p["source"] for p in pieces[:-1]] == [{}] * (len(pieces) - 1)  # offsets only on the last piece
    assert pieces[-1]["source"] == partial["source"] and pieces[-1]["windows"] == []
    assert sum(w["n"] for p in pieces for w in p["windows"]) == 400
    ids = sorted(i for p in pieces for w in p["windows"] for i in w["ids"])
    assert ids == sorted(str(i) for i in range(400))
