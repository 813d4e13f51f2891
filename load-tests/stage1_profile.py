"""CPU cost of stage 1 of the monitor core (``MonitorRuntime.stage1``), no Kafka, with a profile.

The model and events of ``throughput.py``: 20 numeric and 2 categorical features, a score
and a label, a sensitive attribute ``group``; a reference profile as ``watchkeeper profile
build`` makes it (``ReferenceProfile.build`` from ``--reference-rows`` rows, 10 bins,
calibrated CUSUMs with ``sequential_arl_events=2e6, bucket_size=50``); 10 s windows, 60 s
allowed lateness; 1,000 events per second of event time over ``--partitions`` input
partitions (record i from partition i mod 4, the offsets counting per partition).

Three configurations, each on a fresh runtime over the same serialised events:

* ``predictions``: drift only (CUSUM on);
* ``labels``: plus ``accuracy: {label_horizon: 7h}`` and ``sensitive_attributes: [group]``
  (the prediction side of accuracy and fairness, and the join store of every prediction);
* ``outcomes``: the ``labels`` model fed the predictions *and* ``throughput.py``'s outcomes
  (97 % of the predictions, up to 6 h later, in outcome-time order; each in its
  prediction's partition), the two topics read at the same byte rate as a consumer
  fetching both does (so most outcomes arrive before their prediction and wait in the
  join); its rate is per record (predictions + outcomes), as the benchmark's row.

``stage1`` runs on ``--events`` predictions in batches of ``--batch-size`` with the worker's
``wall_clock`` (so the future check and idleness tracking run too). The rate is process CPU
time per event (``time.process_time``), median over ``--repeat`` passes; then one more pass
under cProfile, whose top functions (by own time, and by cumulative time) are printed. A
``parse`` row times ``parse_predictions`` alone over the same batches: the part of stage 1
that is decoding and validation. ``--no-gc`` turns the cyclic garbage collector off while
timing (decoding allocates some 30 objects per event, so collections are part of the cost).

    .venv/bin/python load-tests/stage1_profile.py
    .venv/bin/python load-tests/stage1_profile.py --events 50000 --top 30 --configs labels
    .venv/bin/python load-tests/stage1_profile.py --top 0 --no-gc --profile-cache /tmp/profile.json
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import MODEL_ID, OUTCOME_DELAY_MAX, build_profile, make_outcomes, make_predictions, model_config
from watchkeeper.config import Settings, parse_config
from watchkeeper.monitor.parse import parse_predictions
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime

CONFIGS = ("predictions", "labels", "outcomes")
ROWS = ("parse", *CONFIGS)
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the event time of the first event


def load_or_build_profile(rng: np.random.Generator, rows: int, cache: Path | None) -> ReferenceProfile:
    """The reference profile, read from ``cache`` when it exists (building it takes a while)."""
    if cache is not None and cache.exists():
        return ReferenceProfile.from_dict(orjson.loads(cache.read_bytes()))
    started = time.perf_counter()
    profile = build_profile(rng, rows)
    print(f"reference profile built in {time.perf_counter() - started:.1f}s", flush=True)
    if cache is not None:
        cache.write_bytes(orjson.dumps(profile.to_dict()))
    return profile


def make_runtime(profile: ReferenceProfile, profile_path: Path, labels: bool) -> MonitorRuntime:
    config = parse_config(model_config(profile_path, "10s", "60s", labels=labels))
    return MonitorRuntime(config, {MODEL_ID: profile})


Batch = tuple[list[bytes], list[str], list[int], list[bool] | None]


def batches(values: list[bytes], batch_size: int, partitions: int) -> list[Batch]:
    """(raw, sources, offsets, None) per batch; record i comes from partition i mod ``partitions``."""
    out: list[Batch] = []
    for first in range(0, len(values), batch_size):
        raw = values[first : first + batch_size]
        index = range(first, first + len(raw))
        sources = [f"bench.predictions:{i % partitions}" for i in index]
        offsets = [i // partitions for i in index]
        out.append((raw, sources, offsets, None))
    return out


def mixed_batches(
    values: list[bytes], outcome_keys: list[bytes], outcomes: list[bytes], batch_size: int, partitions: int
) -> list[Batch]:
    """Predictions and outcomes interleaved at equal byte rates, in batches (an outcome in its
    prediction's partition, offsets counting per topic and partition)."""
    partition_of = {orjson.loads(v)["prediction_id"].encode(): i % partitions for i, v in enumerate(values)}
    records: list[tuple[bytes, str, int, bool]] = []
    next_offset: dict[str, int] = {}
    read = [0, 0]  # bytes read of predictions, outcomes
    i = j = 0
    while i < len(values) or j < len(outcomes):
        outcome = j < len(outcomes) and (i >= len(values) or read[1] < read[0])
        value = outcomes[j] if outcome else values[i]
        part = partition_of[outcome_keys[j]] if outcome else i % partitions
        source = f"bench.{'outcomes' if outcome else 'predictions'}:{part}"
        offset = next_offset.get(source, 0)
        next_offset[source] = offset + 1
        records.append((value, source, offset, outcome))
        read[outcome] += len(value)
        j, i = (j + 1, i) if outcome else (j, i + 1)
    out: list[Batch] = []
    for first in range(0, len(records), batch_size):
        raw, sources, offsets, flags = map(list, zip(*records[first : first + batch_size], strict=True))
        out.append((raw, sources, offsets, flags))
    return out


def run_pass(runtime: MonitorRuntime, work: list[Batch], wall_clock: float) -> float:
    """Process CPU seconds of one pass of stage 1 over every batch."""
    started = time.process_time()
    for raw, sources, offsets, flags in work:
        result = runtime.stage1(raw, sources, offsets, is_outcome=flags, wall_clock=wall_clock)
        if result.rejected:
            raise RuntimeError(f"stage 1 rejected {len(result.rejected)} events: {result.rejected[0].reason}")
    return time.process_time() - started


def parse_pass(runtime: MonitorRuntime, work: list[Batch], _: float) -> float:
    """Process CPU seconds of decoding and validating every batch (the first step of stage 1)."""
    started = time.process_time()
    for raw, _sources, _offsets, _flags in work:
        parse_predictions(raw, runtime.models, runtime.features)
    return time.process_time() - started


def profile_text(stats: pstats.Stats, sort: str, top: int) -> str:
    buffer = io.StringIO()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(top)
    lines = buffer.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(lines[start:])


def measure(
    name: str,
    profile: ReferenceProfile,
    profile_path: Path,
    work: list[Batch],
    args: argparse.Namespace,
) -> dict[str, Any]:
    wall_clock = START + args.events / args.rate + 60.0 + (OUTCOME_DELAY_MAX if name == "outcomes" else 0.0)
    timed = parse_pass if name == "parse" else run_pass
    labels = name in ("labels", "outcomes")
    records = sum(len(raw) for raw, *_ in work)
    seconds = []
    for _ in range(args.repeat):
        runtime = make_runtime(profile, profile_path, labels=labels)
        gc.collect()
        if args.no_gc:
            gc.disable()
        try:
            seconds.append(timed(runtime, work, wall_clock))
        finally:
            gc.enable()
    per_event = [s / records * 1e6 for s in seconds]
    result = {"us_per_event": statistics.median(per_event), "passes": per_event}
    print(
        f"{name:>12}: {result['us_per_event']:6.1f} µs/record (CPU; median of {args.repeat}: "
        f"{', '.join(f'{v:.1f}' for v in per_event)})",
        flush=True,
    )
    if args.top and name != "parse":
        runtime = make_runtime(profile, profile_path, labels=labels)
        profiler = cProfile.Profile()
        profiler.enable()
        run_pass(runtime, work, wall_clock)
        profiler.disable()
        stats = pstats.Stats(profiler)
        print(f"\n-- {name}: top {args.top} by own time --\n{profile_text(stats, 'tottime', args.top)}")
        print(f"\n-- {name}: top {args.top} by cumulative time --\n{profile_text(stats, 'cumulative', args.top)}\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=Settings.model_fields["batch_size"].default)
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second of event time")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per configuration (median reported)")
    parser.add_argument("--top", type=int, default=20, help="functions shown from the cProfile pass (0: no profile)")
    parser.add_argument("--configs", default=",".join(ROWS), help=f"comma-separated rows, of {','.join(ROWS)}")
    parser.add_argument("--no-gc", action="store_true", help="cyclic garbage collector off while timing")
    parser.add_argument("--profile-cache", type=Path, help="read the reference profile here, or write it once built")
    parser.add_argument("--json", type=Path, help="write the rates here")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    if set(names) - set(ROWS):
        parser.error(f"--configs: expected some of {','.join(ROWS)}")

    rng = np.random.default_rng(args.seed)
    profile = load_or_build_profile(rng, args.reference_rows, args.profile_cache)
    times = START + np.arange(args.events) / args.rate
    keys, values, data = make_predictions(rng, times)
    work = batches(values, args.batch_size, args.partitions)
    mixed: list[Batch] = []
    if "outcomes" in names:
        outcome_keys, outcomes, _ = make_outcomes(rng, keys, times, data["score"])
        mixed = mixed_batches(values, outcome_keys, outcomes, args.batch_size, args.partitions)
    gc.freeze()  # the inputs are not the collector's business during the timing
    print(
        f"{args.events:,} events ({sum(map(len, values)) / len(values):.0f} bytes each), batches of {args.batch_size}"
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        profile_path = Path(tmp) / "profile.json"  # named by the config only; the runtime gets the object
        profile_path.write_bytes(b"{}")
        for name in names:
            results[name] = measure(name, profile, profile_path, mixed if name == "outcomes" else work, args)
    if args.json is not None:
        args.json.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
