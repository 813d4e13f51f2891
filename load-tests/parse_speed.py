"""Speed of stage 1's input decoding: parse_predictions and the column matrices, no Kafka.

Times, over the same serialised events in batches of ``--batch-size`` (the worker's stage-1
batch), the candidates taking turns batch by batch, ``--repeat`` passes each:

  (a) bare ``orjson.loads`` per record: the baseline every row is compared to;
  (b) the previous ``parse_predictions`` (orjson + hand-written dict checks), loaded from
      git (``--baseline-rev``);
  (c) the current ``parse_predictions`` (msgspec decoder generated from the contract);
  (c') orjson + numpy-mask checks: a sketch of the alternative decoder (the valid-event
      checks only, vectorised per column; no rejection reasons), to choose between the two;
  (d) parse + ``object_matrix`` + ``as_float`` for the 22 feature columns, what
      ``columns.extract_columns`` / ``partials.stats_windows`` do next, for (b) and (c).

Events: 20 numeric N(0, 1) features and 2 categorical ones, score and label, one
attribute, RFC 3339 timestamps (~890 bytes of JSON each). Three variants: all valid; 5 %
replaced by malformed records of assorted kinds; and one valid batch parsed over and over
("cache-hot": the CPU cost without the cache misses of reading 200k fresh events). Rates
are events per second of process CPU time (the median over the repeats), which other work
on a shared machine distorts less than wall-clock time; the candidates take turns batch
by batch, and ratios are taken within each repeat, then the median. The generated inputs
are moved out of the garbage collector's reach (``gc.freeze``) before timing.

    .venv/bin/python load-tests/parse_speed.py --json load-tests/results/parse_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Container, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import orjson

from watchkeeper.monitor import contracts, parse, reasons

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "f35ad92894d1c598d4e06665cf6ed3c4cbe1f67f"  # the last commit with the hand-written checks
MODEL_ID = "bench-model"
MODELS = frozenset({MODEL_ID, "other-model"})
NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = ["cat_0", "cat_1"]
CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo"]
COLUMNS = NUMERIC + CATEGORICAL

ROWS = {
    "orjson": "(a) orjson.loads per record (baseline)",
    "parse_before": "(b) parse_predictions, before (orjson + dict checks)",
    "parse": "(c) parse_predictions, now (msgspec, generated)",
    "orjson_masks": "(c') orjson + numpy-mask checks (sketch)",
    "columns_before": "(d) (b) + object_matrix + as_float, 22 columns",
    "columns": "(d) (c) + object_matrix + as_float, 22 columns",
}


# -- events ---------------------------------------------------------------------------------
def make_events(rng: np.random.Generator, n: int) -> list[bytes]:
    numeric = rng.standard_normal((n, len(NUMERIC))).tolist()
    categorical = rng.integers(0, len(CATEGORIES), size=(n, len(CATEGORICAL))).tolist()
    scores = rng.random(n).tolist()
    start = 1_767_225_600.0
    out = []
    for i in range(n):
        event_id = uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i).hex
        features: dict[str, Any] = dict(zip(NUMERIC, numeric[i], strict=True))
        features.update((name, CATEGORIES[c]) for name, c in zip(CATEGORICAL, categorical[i], strict=True))
        event = {
            "event_id": event_id,
            "prediction_id": event_id,
            "model_id": MODEL_ID,
            "model_version": "3",
            "timestamp": datetime.fromtimestamp(start + i / 1000, UTC).isoformat(),
            "features": features,
            "prediction": {"score": scores[i], "label": int(scores[i] >= 0.5)},
            "attributes": {"sex": "female" if i % 2 else "male"},
        }
        out.append(orjson.dumps(event))
    return out


def _replace_feature(raw: bytes, literal: bytes) -> bytes:
    record = orjson.loads(raw)
    record["features"]["num_03"] = "__literal__"
    return orjson.dumps(record).replace(b'"__literal__"', literal)


def _mutate(raw: bytes, fields: dict[str, Any]) -> bytes:
    return orjson.dumps({**orjson.loads(raw), **fields})


MALFORMED: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("truncated JSON", lambda r: r[: len(r) // 2]),
    ("not an object", lambda r: b"[" + r + b"]"),
    ("features missing", lambda r: orjson.dumps({k: v for k, v in orjson.loads(r).items() if k != "features"})),
    ("feature value a list", lambda r: _replace_feature(r, b"[1, 2]")),
    ("score 1.7", lambda r: _mutate(r, {"prediction": {"score": 1.7, "label": 1}})),
    ("score a bool", lambda r: _mutate(r, {"prediction": {"score": True}})),
    ("naive timestamp", lambda r: _mutate(r, {"timestamp": "2026-01-01T00:00:00"})),
    ("unknown model", lambda r: _mutate(r, {"model_id": "nope"})),
    ("NaN feature", lambda r: _replace_feature(r, b"NaN")),
    ("1e400 feature", lambda r: _replace_feature(r, b"1e400")),
    ("empty value", lambda r: b""),
    ("empty event_id", lambda r: _mutate(r, {"event_id": ""})),
]


def with_malformed(rng: np.random.Generator, raw: list[bytes], fraction: float) -> list[bytes]:
    out = list(raw)
    where = rng.choice(len(raw), size=int(len(raw) * fraction), replace=False)
    for k, i in enumerate(sorted(where.tolist())):
        out[i] = MALFORMED[k % len(MALFORMED)][1](raw[i])
    return out


# -- candidates -----------------------------------------------------------------------------
def load_baseline(rev: str) -> types.ModuleType | None:
    """The parse module as of ``rev`` (None without git or that commit)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{rev}:src/watchkeeper/monitor/parse.py"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("parse_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev[:10]}:monitor/parse.py", "exec"), module.__dict__)
    return module


_SCALARS = frozenset({str, int, float, bool, type(None)})
_LABELS = frozenset({str, int, bool, type(None)})


def orjson_masks(raw: Sequence[bytes | None], models: Container[str]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The alternative: orjson per record, then the contract's checks column by column.

    Only what a valid prediction event needs (no reasons, no outcome rules): enough to
    see what the per-column Python and numpy work costs next to orjson.
    """
    events: list[Any] = []
    for payload in raw:
        try:
            events.append(orjson.loads(payload) if payload else None)
        except orjson.JSONDecodeError:
            events.append(None)
    n = len(events)
    ok = np.fromiter((type(e) is dict for e in events), dtype=bool, count=n)
    rows = [e if type(e) is dict else {} for e in events]

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in rows]

    def check(values: list[Any], test: Callable[[Any], bool]) -> np.ndarray:
        return np.fromiter(map(test, values), dtype=bool, count=n)

    ok &= check(column("event_id"), lambda v: type(v) is str and v != "")
    ok &= check(column("model_id"), lambda v: type(v) is str and v in models)
    ok &= check(column("prediction_id"), lambda v: v is None or type(v) is str)
    ok &= check(column("model_version"), lambda v: v is None or type(v) is str)
    for name in ("features", "attributes"):
        values = column(name)
        ok &= check(values, lambda v: type(v) is dict and _SCALARS.issuperset(map(type, v.values())))
        if name == "features":
            ok &= np.fromiter((v is not None for v in values), dtype=bool, count=n)
    predictions = [p if type(p) is dict else {} for p in column("prediction")]
    scores = [p.get("score") for p in predictions]
    kinds = check(scores, lambda v: v is None or type(v) in (int, float))
    as_number = np.array([v if k and v is not None else 0.0 for v, k in zip(scores, kinds, strict=True)], dtype=float)
    ok &= kinds & (as_number >= 0) & (as_number <= 1)
    ok &= check([p.get("label") for p in predictions], lambda v: type(v) in _LABELS)
    times = np.full(n, math.nan)
    for i, value in enumerate(column("timestamp")):
        if type(value) is str:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(value)
                if moment.tzinfo is not None:
                    times[i] = moment.timestamp()
        elif type(value) in (int, float):
            times[i] = value
    ok &= np.isfinite(times)
    return events, times, ok


def columns_of(module: Any) -> Callable[[Sequence[bytes | None], Container[str]], Any]:
    def run(raw: Sequence[bytes | None], models: Container[str]) -> Any:
        batch = module.parse_predictions(raw, models)
        matrix = module.object_matrix([e.get("features") or {} for e in batch.events], COLUMNS)
        return module.as_float(matrix[:, : len(NUMERIC)])

    return run


# -- timing -----------------------------------------------------------------------------------
def measure(
    candidates: dict[str, Callable[..., Any]], batches: list[list[bytes]], n: int, repeat: int
) -> dict[str, dict[str, float]]:
    """CPU and wall seconds per pass over all batches, per candidate.

    The candidates take turns batch by batch (in an order that rotates, so that none is
    always the first to read a batch), so that a slow phase of a shared machine hits all
    of them alike.
    """
    names = list(candidates)
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    wall: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeat):
        spent = dict.fromkeys(names, 0.0)
        elapsed = dict.fromkeys(names, 0.0)
        gc.collect()
        for i, batch in enumerate(batches):
            for k in range(len(names)):
                name = names[(i + k) % len(names)]
                c, w = time.process_time(), time.perf_counter()
                candidates[name](batch, MODELS)
                spent[name] += time.process_time() - c
                elapsed[name] += time.perf_counter() - w
        for name in names:
            cpu[name].append(spent[name])
            wall[name].append(elapsed[name])
    out = {}
    for name in candidates:
        ratios = [base / mine for base, mine in zip(cpu["orjson"], cpu[name], strict=True)]
        median = statistics.median(cpu[name])
        out[name] = {
            "events_per_s": n / median,
            "ratio_to_orjson": statistics.median(ratios),
            "cpu_s_median": median,
            "cpu_s_min": min(cpu[name]),
            "wall_s_median": statistics.median(wall[name]),
        }
    return out


def decisions(raw: list[bytes], before: Any) -> dict[str, Any]:
    """Accepted records per implementation, and whether the fast path matches the reference."""
    now = parse.parse_predictions(raw, MODELS)
    accepted = set(now.indices)
    reference = {
        i for i, payload in enumerate(raw) if reasons.reference_decision(payload, MODELS, contracts.PREDICTIONS)[0]
    }
    masks = orjson_masks(raw, MODELS)[2]
    out: dict[str, Any] = {
        "records": len(raw),
        "accepted_now": len(accepted),
        "now_equals_reference": accepted == reference,
        "orjson_masks_equal_now": set(np.flatnonzero(masks).tolist()) == accepted,
    }
    if before is not None:
        then = set(before.parse_predictions(raw, MODELS).indices)
        out["accepted_before"] = len(then)
        out["before_equals_now"] = then == accepted
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model or platform.processor(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "orjson": orjson.__version__,
        "msgspec": msgspec.__version__,
    }


def table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    variants = list(results)
    head = "| row | " + " | ".join(f"{v} events/s | vs (a)" for v in variants) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(variants)]
    for key, label in ROWS.items():
        cells = []
        for variant in variants:
            row = results[variant].get(key)
            cells += [f"{row['events_per_s']:,.0f}", f"{row['ratio_to_orjson']:.2f}"] if row else ["-", "-"]
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=2000, help="records per parse call (a stage-1 batch)")
    parser.add_argument("--malformed", type=float, default=0.05, help="fraction of malformed records (variant 2)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per candidate (median reported)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the previous parse.py")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    info = machine()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    valid = make_events(rng, args.events)
    mixed = with_malformed(rng, valid, args.malformed)
    size = sum(map(len, valid)) / len(valid)
    print(f"generated {args.events:,} events ({size:.0f} bytes each) in {time.perf_counter() - started:.1f}s")
    before = load_baseline(args.baseline_rev)
    if before is None:
        print(f"no git revision {args.baseline_rev[:10]}: the 'before' rows are skipped")

    def split(raw: list[bytes]) -> list[list[bytes]]:
        return [raw[i : i + args.batch_size] for i in range(0, len(raw), args.batch_size)]

    checks = {"valid": decisions(valid, before), "malformed": decisions(mixed, before)}
    print(f"decisions: {checks}")
    # The inputs (400k bytes objects) stay alive for the whole run: keep them out of the
    # collector's full passes, so that those cost what the parsing allocates, not this heap.
    gc.collect()
    gc.freeze()
    results: dict[str, dict[str, dict[str, float]]] = {}
    variants = {
        "valid": split(valid),
        f"{args.malformed:.0%} malformed": split(mixed),
        "cache-hot": [valid[: args.batch_size]] * (len(valid) // args.batch_size),
    }
    for variant, batches in variants.items():
        candidates: dict[str, Callable[..., Any]] = {
            "orjson": lambda batch, _models: [orjson.loads(p) for p in batch if p],  # (the empty value raises)
            "parse": parse.parse_predictions,
            "orjson_masks": orjson_masks,
            "columns": columns_of(parse),
        }
        if "malformed" in variant:
            candidates["orjson"] = _orjson_tolerant
        if before is not None:
            candidates["parse_before"] = before.parse_predictions
            candidates["columns_before"] = columns_of(before)
        print(f"timing the {variant} variant ({args.repeat} passes per row) ...", flush=True)
        results[variant] = measure(candidates, batches, sum(map(len, batches)), args.repeat)
    print()
    print(table(results))
    speedups = {
        variant: {
            "parse": rows["parse"]["ratio_to_orjson"] / rows["parse_before"]["ratio_to_orjson"],
            "parse_and_columns": rows["columns"]["ratio_to_orjson"] / rows["columns_before"]["ratio_to_orjson"],
        }
        for variant, rows in results.items()
        if "parse_before" in rows
    }
    for variant, values in speedups.items():
        parse_x, columns_x = values["parse"], values["parse_and_columns"]
        print(f"{variant}: now / before = {parse_x:.2f}x (parse), {columns_x:.2f}x (parse + columns)")
    print(f"load average at start {info['load_average_at_start']}, at end {list(os.getloadavg())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "events": args.events,
            "bytes_per_event": size,
            "timing": "process CPU time per pass over all events; median of the repeats",
            "results": results,
            "speedups_now_over_before": speedups,
            "decisions": checks,
            "malformed_kinds": [name for name, _ in MALFORMED],
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {**info, "load_average_at_end": list(os.getloadavg())},
        }
        args.json.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}")
    return 0


def _orjson_tolerant(batch: Sequence[bytes | None], _models: Container[str]) -> list[Any]:
    out = []
    for payload in batch:
        try:
            out.append(orjson.loads(payload) if payload else None)
        except orjson.JSONDecodeError:
            out.append(None)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
