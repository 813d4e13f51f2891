"""Memory of the outcome join: process RSS per waiting prediction, in RAM and on RocksDB.

Each row runs in a fresh Python process: it creates an :class:`OutcomeJoiner` on a
:class:`MemoryJoinStore` or a :class:`RocksJoinStore` (in a temporary directory), measures
the RSS (``VmRSS`` of ``/proc/self/status``, after ``gc.collect()``), fills the joiner with
N predictions whose outcomes have not arrived (``OutcomeJoiner.join`` in batches of
``--batch-size``; a 7-day horizon, so nothing expires) and measures the RSS again. The
events are generated batch by batch and dropped, so what stays is the join state.

Events are realistic: a 36-character uuid4 ``prediction_id``, two models (``credit-risk``
version ``v7`` with sensitive attributes ``sex`` and ``age_band``, ``churn`` version
``2026.11.2`` with ``region``), a score and a label, plus 8 features the join drops.

    .venv/bin/python load-tests/join_memory.py --json load-tests/results/join_memory.json

Targets: ≤ 300 bytes of RSS per waiting prediction with the memory store; with RocksDB
an RSS flat within 20 % from 100k to 1M waiting predictions.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

SIZES = (100_000, 300_000, 1_000_000)
STORES = ("memory", "rocksdb")
HORIZON = 7 * 86400.0
RATE = 1000.0  # predictions per second of event time
MODELS = {
    "credit-risk": ("v7", ("sex", "age_band")),
    "churn": ("2026.11.2", ("region",)),
}
VALUES = {
    "sex": ["f", "m", "x"],
    "age_band": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"],
    "region": ["north", "south", "east", "west", "central"],
}


def rss_bytes() -> int:
    """Resident set size of this process, after a full garbage collection."""
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def events(rng: random.Random, start: int, count: int) -> list[tuple[dict[str, Any], float]]:
    batch: list[tuple[dict[str, Any], float]] = []
    for i in range(start, start + count):
        model_id = "credit-risk" if i % 3 else "churn"
        version, attributes = MODELS[model_id]
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        score = rng.random()
        time = 1_790_000_000.0 + i / RATE
        event: dict[str, Any] = {
            "event_id": pid,
            "model_id": model_id,
            "model_version": version,
            "timestamp": time,
            "features": {f"f{k}": rng.random() for k in range(8)},
            "prediction": {"score": score, "label": int(score > 0.5)},
            "attributes": {name: rng.choice(VALUES[name]) for name in attributes},
        }
        batch.append((event, time))
    return batch


def child(store_kind: str, size: int, batch_size: int, directory: str, markers: bool) -> dict[str, Any]:
    from watchkeeper.monitor.join import JoinModel, JoinStore, MemoryJoinStore, OutcomeJoiner

    store: JoinStore
    if store_kind == "memory":
        store = MemoryJoinStore()
    else:
        from watchkeeper.stream.join_store import RocksJoinStore

        store = RocksJoinStore(Path(directory) / "join")
    models = {name: JoinModel(HORIZON, attributes) for name, (_, attributes) in MODELS.items()}
    joiner = OutcomeJoiner(models, store)
    # warm up: one batch's worth of generated events (their transient allocations) and the join's code
    # paths on a throwaway joiner, so that "before" holds everything but the state of N predictions
    OutcomeJoiner(models, MemoryJoinStore()).join(events(random.Random(-1), 0, batch_size), [])
    rng = random.Random(size)
    events(rng, 0, 100)
    before = rss_bytes()
    elapsed = 0.0  # in OutcomeJoiner.join only (not generating the events)
    for start in range(0, size, batch_size):
        batch = events(rng, start, min(batch_size, size - start))
        started = time.perf_counter()
        joiner.join(batch, [])
        elapsed += time.perf_counter() - started
    del batch
    assert joiner.waiting == size, (joiner.waiting, size)
    after = rss_bytes()
    row = {
        "store": store_kind,
        "what": "waiting predictions",
        "n": size,
        "rss_before_mb": before / 2**20,
        "rss_mb": after / 2**20,
        "bytes_per_entry": (after - before) / size,
        "join_s": elapsed,
        "entries": len(store),
    }
    if not markers:
        return row
    # the same predictions again (same seed), answered: each becomes a joined marker kept until the horizon
    rng = random.Random(size)
    events(rng, 0, 100)
    elapsed = 0.0
    for start in range(0, size, batch_size):
        answers = [
            ({"prediction_id": event["event_id"], "model_id": event["model_id"], "label": 1}, t + 60.0)
            for event, t in events(rng, start, min(batch_size, size - start))
        ]
        started = time.perf_counter()
        joiner.join([], answers)
        elapsed += time.perf_counter() - started
    assert joiner.waiting == 0
    after = rss_bytes()
    row.update(
        what="joined markers",
        rss_mb=after / 2**20,
        bytes_per_entry=(after - before) / size,
        join_s=elapsed,
        entries=len(store),
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N")
    parser.add_argument("--stores", default=",".join(STORES), help="memory,rocksdb")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--markers-n", type=int, default=300_000, help="also measure N joined markers, memory store (0: skip)"
    )
    parser.add_argument("--child", nargs=2, metavar=("STORE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--markers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child[0], int(args.child[1]), args.batch_size, args.dir, args.markers)
        print(json.dumps(result))
        return

    runs = [(store, size, False) for store in args.stores.split(",") for size in map(int, args.sizes.split(","))]
    if args.markers_n and "memory" in args.stores.split(","):
        runs.append(("memory", args.markers_n, True))
    rows = []
    for store, size, markers in runs:
        with tempfile.TemporaryDirectory(prefix="join-memory-") as directory:
            command = [sys.executable, __file__, "--child", store, str(size)]
            command += ["--batch-size", str(args.batch_size), "--dir", directory]
            command += ["--markers"] if markers else []
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"  {row['store']:8} N={row['n']:>9,} {row['what']}: RSS {row['rss_before_mb']:.1f} -> "
            f"{row['rss_mb']:.1f} MB ({row['join_s']:.1f} s in join)",
            file=sys.stderr,
        )

    print("\n| store | entries | N | RSS MB (before → after) | bytes per entry | join calls, events/s |")
    print("|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['store']} | {row['what']} | {row['n']:,} | {row['rss_before_mb']:.1f} → {row['rss_mb']:.1f} "
            f"| {row['bytes_per_entry']:.0f} | {row['n'] / row['join_s']:,.0f} |"
        )
    verdicts: dict[str, Any] = {}
    memory = [r for r in rows if r["store"] == "memory" and r["what"] == "waiting predictions"]
    if memory:
        worst = max(r["bytes_per_entry"] for r in memory)
        verdicts["memory_bytes_per_waiting_max"] = worst
        verdicts["memory_target_met"] = worst <= 300
        print(
            f"\nmemory store: at most {worst:.0f} B per waiting prediction (target ≤ 300): "
            f"{'met' if worst <= 300 else 'NOT met'}"
        )
    rocks = sorted((r for r in rows if r["store"] == "rocksdb"), key=lambda r: r["n"])
    if len(rocks) > 1:
        growth = rocks[-1]["rss_mb"] / rocks[0]["rss_mb"] - 1
        verdicts["rocksdb_rss_growth"] = growth
        verdicts["rocksdb_target_met"] = growth <= 0.20
        print(
            f"rocksdb store: RSS {rocks[0]['rss_mb']:.1f} MB at N={rocks[0]['n']:,} → "
            f"{rocks[-1]['rss_mb']:.1f} MB at N={rocks[-1]['n']:,} ({growth:+.0%}; target within 20 %): "
            f"{'met' if growth <= 0.20 else 'NOT met'}"
        )
    if args.json:
        import orjson
        import rocksdict

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "results": rows,
                    "verdicts": verdicts,
                    "settings": {"batch_size": args.batch_size, "horizon_s": HORIZON, "rate": RATE},
                    "machine": {
                        "python": platform.python_version(),
                        "platform": platform.platform(),
                        "orjson": orjson.__version__,
                        "rocksdict": getattr(rocksdict, "__version__", "?"),
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
