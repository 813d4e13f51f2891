"""Drift on real data: Elec2 (NSW electricity market, 1996–1998) replayed through the monitor.

The 45,312 half-hourly rows of ``electricity.csv`` become prediction events in time order
(event time = a synthetic start + 30 min × row index; the start is a multiple of a week so
every weekly window holds exactly 336 rows). The reference profile (with the calibrated
CUSUMs, default ``DriftConfig`` otherwise) is built from the first ``--reference-rows``
rows (default 2,016 = 6 weeks); the rest is replayed through
:meth:`MonitorRuntime.run_batch` with tumbling windows of 1 week and ``min_count`` 300.

Features: ``nswprice``, ``nswdemand``, ``vicprice``, ``vicdemand``, ``transfer`` (numeric) and
``day`` (categorical, day of week). ``date``, ``period`` and ``class`` are not model inputs here.

Prints, and writes as JSON with ``--json``: per feature and per alert metric (``psi`` = the
window double gate, ``cusum`` = the sequential detector) the first week an alert fired,
the number of firing alerts, and the number of weekly windows the double gate flagged.

    .venv/bin/python load-tests/elec2_drift.py --json load-tests/results/elec2_drift.json
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from watchkeeper.config import DriftConfig, parse_config
from watchkeeper.monitor.engine import AlertRaised, WindowClosed
from watchkeeper.monitor.profile import ReferenceProfile, calibrated_detector
from watchkeeper.monitor.runtime import MonitorRuntime

DATA = Path("/work/shared/data/electricity.csv")
MODEL_ID = "elec2"
NUMERIC = ["nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"]
CATEGORICAL = ["day"]
STEP = 1800  # seconds between rows
WEEK_ROWS = 7 * 48
START = 604_800 * 1379  # 1996-06-06T00:00Z, a multiple of the window: weeks align with rows


def load(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def features(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {name: float(row[name]) for name in NUMERIC}
    out["day"] = str(int(float(row["day"])))
    return out


def events(rows: Sequence[dict[str, str]], first: int) -> list[bytes]:
    out = []
    for i in range(first, len(rows)):
        stamp = datetime.fromtimestamp(START + STEP * i, UTC).isoformat()
        out.append(
            orjson.dumps(
                {"event_id": f"elec2-{i}", "model_id": MODEL_ID, "timestamp": stamp, "features": features(rows[i])}
            )
        )
    return out


def week_of(epoch: float) -> int:
    return int((epoch - START) // (STEP * WEEK_ROWS))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--reference-rows", type=int, default=6 * WEEK_ROWS)
    parser.add_argument("--batch-size", type=int, default=WEEK_ROWS // 2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    rows = load(args.data)
    reference = rows[: args.reference_rows]
    drift = DriftConfig(min_count=300)
    columns: dict[str, tuple[str, Any]] = {n: ("numeric", np.array([float(r[n]) for r in reference])) for n in NUMERIC}
    columns["day"] = ("categorical", [features(r)["day"] for r in reference])
    profile = ReferenceProfile.build(
        MODEL_ID,
        columns,
        bins=drift.bins,
        sequential_arl_events=drift.sequential_arl_events,
        bucket_size=drift.bucket_size,
        metadata={"data": "electricity.csv", "rows": f"0..{args.reference_rows - 1}"},
    )
    no_cusum = {n: c.sequential.get("unavailable") for n, c in profile.columns.items() if not calibrated_detector(c)}
    config = parse_config(
        {
            "models": [
                {
                    "model_id": MODEL_ID,
                    "task": "regression",  # no prediction columns: the features only
                    "features": {**{n: "numeric" for n in NUMERIC}, "day": "categorical"},
                    "window": {"size": "7d", "allowed_lateness": "1s"},
                    "drift": drift.model_dump(),
                }
            ]
        }
    )
    runtime = MonitorRuntime(config, {MODEL_ID: profile})
    stream = events(rows, args.reference_rows)
    subjects = [*NUMERIC, *CATEGORICAL]
    kinds = ("psi", "cusum", "quality")  # window gate, sequential detector, data-quality rates
    first_alert: dict[str, dict[str, int | None]] = {n: dict.fromkeys(kinds) for n in subjects}
    alerts: dict[str, dict[str, int]] = {n: dict.fromkeys(kinds, 0) for n in subjects}
    drifted_windows = dict.fromkeys(subjects, 0)
    timeline: list[dict[str, Any]] = []
    windows = 0

    def collect(outputs: Sequence[Any]) -> None:
        nonlocal windows
        for out in outputs:
            if isinstance(out, WindowClosed) and out.report.evaluated:
                windows += 1
                week = week_of(out.report.window_start)
                for name in out.report.drifted:
                    drifted_windows[name] += 1
                timeline.append(
                    {
                        "week": week,
                        "n": out.report.n,
                        "drifted": out.report.drifted,
                        "psi": {c.column: round(c.psi, 4) for c in out.report.columns},
                        "out_of_range_rate": {
                            c.column: round(c.out_of_range_rate, 4) for c in out.report.columns if c.kind == "numeric"
                        },
                    }
                )
            elif isinstance(out, AlertRaised) and out.alert.status == "firing":
                alert = out.alert
                week = week_of(alert.window.start.timestamp())
                kind = alert.metric if alert.metric in ("psi", "cusum") else "quality"
                alerts[alert.subject][kind] += 1
                if first_alert[alert.subject][kind] is None:
                    first_alert[alert.subject][kind] = week

    for offset in range(0, len(stream), args.batch_size):
        outputs, rejected = runtime.run_batch(stream[offset : offset + args.batch_size], "elec2:0", offset)
        if rejected:
            raise RuntimeError(f"{len(rejected)} rejected: {rejected[0]}")
        collect(outputs)
    collect(runtime.flush())
    elapsed = time.perf_counter() - t0

    first_week = week_of(START + STEP * args.reference_rows)
    print(
        f"Elec2: {len(rows):,} rows; reference rows 0..{args.reference_rows - 1} (weeks 0-{first_week - 1}); "
        f"replayed {len(stream):,} events = weeks {first_week}-{week_of(START + STEP * (len(rows) - 1))}, "
        f"{windows} weekly windows evaluated (min_count {drift.min_count}); {elapsed:.1f} s"
    )
    if no_cusum:
        print(f"no CUSUM calibrated (reference constant or too narrow): {no_cusum}")
    header = f"{'feature':<10} | {'first psi alert (week)':>22} | {'first cusum alert (week)':>24} | "
    header += f"{'first data-quality alert':>24} | {'psi alerts':>10} | {'cusum alerts':>12} | {'drifted windows':>15}"
    print(header)
    print("-" * len(header))
    for name in subjects:
        psi_week, cusum_week, quality_week = (("—" if w is None else w) for w in (first_alert[name][k] for k in kinds))
        print(
            f"{name:<10} | {psi_week:>22} | {cusum_week:>24} | {quality_week:>24} | "
            f"{alerts[name]['psi']:>10} | {alerts[name]['cusum']:>12} | {drifted_windows[name]:>6} / {windows:<6}"
        )
    print("share of values outside the reference range (the data_quality out_of_range_rate alert):")
    for name in NUMERIC:
        rates = [(w["week"], w["out_of_range_rate"].get(name, 0.0)) for w in timeline]
        above = [week for week, rate in rates if rate >= 0.5]
        print(
            f"  {name:<10} mean {np.mean([r for _, r in rates]):.2f}; >= 50 % in {len(above)} windows"
            + (f", first in week {above[0]}" if above else "")
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "data": str(args.data),
            "rows": len(rows),
            "reference_rows": args.reference_rows,
            "window_rows": WEEK_ROWS,
            "windows_evaluated": windows,
            "first_replayed_week": first_week,
            "no_cusum": no_cusum,
            "first_alert_week": first_alert,
            "firing_alerts": alerts,
            "drifted_windows": drifted_windows,
            "timeline": timeline,
            "drift_config": drift.model_dump(),
            "seconds": elapsed,
        }
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
