"""Drift detection quality: false alarms on stationary data and detection delay after a shift.

Every scenario is run through the monitor code the worker runs: serialised prediction
events go through :meth:`MonitorRuntime.run_batch` (parse, stage 1, stage 2: window tests
with the double gate, calibrated CUSUMs, alert state machine), no broker. The model has
20 numeric N(0, 1) features and 2 categorical ones (5 categories, the first at 40 %), a
reference of 10,000 rows whose profile (with the sequential CUSUMs, model-level
``DriftConfig().sequential_arl_events``) is built once per reference seed and reused by every run,
windows of 10 s of event time at 100 events/s (exactly 1,000 events per window), default
``DriftConfig``.

Scenarios (``num_00`` or ``cat_0`` changes at a change point drawn in [10,000, 11,000)):

* ``stationary``: no change; firing alerts (any metric, any feature) per million events;
* ``mean_shift_0.1`` / ``_0.25`` / ``_0.5``: ``num_00`` mean + 0.1 / 0.25 / 0.5 σ;
* ``variance_x1.5``: ``num_00`` variance × 1.5 (σ × √1.5);
* ``category_shift``: ``cat_0`` first category 40 % → 30 %, 2.5 points to each other;
* ``missing_spike``: ``num_00`` missing rate 0 → 20 %;
* ``unseen_category``: ``cat_0`` gets a new category at 10 % (others scaled by 0.9).

Delay = events from the change point to the first firing alert on the changed feature
(a CUSUM alarm is placed at its bucket; a window alert at the window end plus the allowed
lateness, when the watermark lets the window close); detected within ``--cap`` events.
Alerts on other features (or before the change) are false alarms and are counted.

Anchors on the same data: River ``ADWIN()`` with defaults on each numeric feature, and
Evidently's ``DataDriftPreset`` defaults on 1,000-row windows (when installed). For speed
the Evidently anchor calls Evidently's own default column tests (``get_stattest`` with the
preset's defaults: normed Wasserstein ≥ 0.1 for numeric, Jensen–Shannon ≥ 0.1 for
categorical columns with a reference of ≥ 1,000 rows; missing values dropped) instead of
rendering a full report (~4 s each); ``--evidently-check N`` runs the real
``Report([DataDriftPreset()])`` on N windows and checks the drifted columns agree.

    .venv/bin/python load-tests/drift_quality.py --json load-tests/results/drift_quality.json
    .venv/bin/python load-tests/drift_quality.py --quick        # ~2 minutes, rough figures
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from tables import print_rows
from watchkeeper.config import DriftConfig, parse_config
from watchkeeper.monitor.engine import AlertRaised
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.runtime import MonitorRuntime

os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")

MODEL_ID = "quality-model"
N_NUMERIC = 20
NUMERIC = [f"num_{i:02d}" for i in range(N_NUMERIC)]
CATEGORICAL = ["cat_0", "cat_1"]
CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo"]
BASE_P = np.array([0.40, 0.15, 0.15, 0.15, 0.15])
NEW_CATEGORY = "foxtrot"
REFERENCE_ROWS = 10_000
RATE = 100  # events per second of event time
WINDOW_SECONDS = 10  # so every window holds exactly 1,000 events
WINDOW_EVENTS = RATE * WINDOW_SECONDS
LATENESS_SECONDS = 1
START = 1_700_000_000  # epoch seconds, a multiple of the window size
CHANGE_FROM = 10_000

SHIFT_SCENARIOS: dict[str, tuple[str, str]] = {
    # name: (changed feature, what changes)
    "mean_shift_0.1": ("num_00", "mean"),
    "mean_shift_0.25": ("num_00", "mean"),
    "mean_shift_0.5": ("num_00", "mean"),
    "variance_x1.5": ("num_00", "variance"),
    "category_shift": ("cat_0", "category"),
    "missing_spike": ("num_00", "missing"),
    "unseen_category": ("cat_0", "unseen"),
}
SCENARIOS = ["stationary", *SHIFT_SCENARIOS]
TARGETS = {
    "stationary": "<= 1 false alarm / 1M events",
    "mean_shift_0.1": "median <= 5,000",
    "mean_shift_0.25": "median <= 1,000",
    "variance_x1.5": "median <= 2,000",
    "category_shift": "median <= 3,000",
}


# -- data ------------------------------------------------------------------------------
@dataclass
class Stream:
    numeric: np.ndarray  # (n, 20) float, NaN = missing
    categorical: np.ndarray  # (n, 2) object (str)
    change: int | None = None

    @property
    def n(self) -> int:
        return len(self.numeric)


def generate(rng: np.random.Generator, n: int, scenario: str = "stationary", change: int | None = None) -> Stream:
    """n rows; from row ``change`` on, the scenario's change applies."""
    numeric = rng.standard_normal((n, N_NUMERIC))
    cats = np.asarray([*CATEGORIES, NEW_CATEGORY], dtype=object)
    p_before = np.append(BASE_P, 0.0)
    categorical = np.empty((n, 2), dtype=object)
    for j in range(2):
        categorical[:, j] = cats[rng.choice(len(cats), size=n, p=p_before)]
    if scenario == "stationary" or change is None:
        return Stream(numeric, categorical)
    after = slice(change, n)
    m = n - change
    if scenario.startswith("mean_shift_"):
        numeric[after, 0] += float(scenario.rsplit("_", 1)[1])
    elif scenario == "variance_x1.5":
        numeric[after, 0] *= math.sqrt(1.5)
    elif scenario == "missing_spike":
        numeric[after, 0] = np.where(rng.random(m) < 0.2, np.nan, numeric[after, 0])
    elif scenario in ("category_shift", "unseen_category"):
        if scenario == "category_shift":
            p_after = np.append(BASE_P + np.array([-0.10, 0.025, 0.025, 0.025, 0.025]), 0.0)
        else:
            p_after = np.append(BASE_P * 0.9, 0.1)
        categorical[after, 0] = cats[rng.choice(len(cats), size=m, p=p_after)]
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    return Stream(numeric, categorical, change)


def _second_strings(n: int) -> list[str]:
    seconds = n // RATE + 2
    return [datetime.fromtimestamp(START + s, UTC).strftime("%Y-%m-%dT%H:%M:%S") for s in range(seconds)]


def serialise(stream: Stream) -> list[bytes]:
    """PredictionEvents (JSON), event i at START + i / RATE seconds."""
    seconds = _second_strings(stream.n)
    numeric = stream.numeric.tolist()
    categorical = stream.categorical.tolist()
    has_nan = bool(np.isnan(stream.numeric).any())
    out = []
    for i in range(stream.n):
        row = numeric[i]
        if has_nan:
            row = [None if v != v else v for v in row]
        features: dict[str, Any] = dict(zip(NUMERIC, row, strict=True))
        features["cat_0"], features["cat_1"] = categorical[i]
        out.append(
            orjson.dumps(
                {
                    "event_id": f"e{i}",
                    "model_id": MODEL_ID,
                    "model_version": "1",
                    "timestamp": f"{seconds[i // RATE]}.{(i % RATE) * (1_000_000 // RATE):06d}+00:00",
                    "features": features,
                }
            )
        )
    return out


def build_profile(seed: int, arl_events: float) -> tuple[ReferenceProfile, Stream]:
    reference = generate(np.random.default_rng([seed, 0]), REFERENCE_ROWS)
    columns: dict[str, tuple[str, Any]] = {n: ("numeric", reference.numeric[:, j]) for j, n in enumerate(NUMERIC)}
    columns |= {n: ("categorical", list(reference.categorical[:, j])) for j, n in enumerate(CATEGORICAL)}
    drift = DriftConfig()
    profile = ReferenceProfile.build(
        MODEL_ID,
        columns,
        bins=drift.bins,
        sequential_arl_events=arl_events,
        bucket_size=drift.bucket_size,
        metadata={"data": "load-tests/drift_quality.py", "seed": seed},
    )
    return profile, reference


def model_config(arl_events: float) -> Any:
    features = {name: "numeric" for name in NUMERIC} | {name: "categorical" for name in CATEGORICAL}
    return parse_config(
        {
            "models": [
                {
                    "model_id": MODEL_ID,
                    "features": features,
                    "window": {"size": f"{WINDOW_SECONDS}s", "allowed_lateness": f"{LATENESS_SECONDS}s"},
                    "drift": {"sequential_arl_events": arl_events},
                }
            ]
        }
    )


# -- watchkeeper ------------------------------------------------------------------------
@dataclass
class Fired:
    position: int  # events read when the alarm is due (see module docstring)
    metric: str
    subject: str


def run_watchkeeper(
    config: Any, profile: ReferenceProfile, events: Sequence[bytes], batch: int, exact: set[str]
) -> list[Fired]:
    """Firing alerts of one fresh runtime over the events, in order of position."""
    runtime = MonitorRuntime(config, {MODEL_ID: profile})
    bucket = config.models[0].drift.bucket_size
    fired: list[Fired] = []

    def collect(outputs: Sequence[Any], batch_end: int) -> None:
        for out in outputs:
            if not isinstance(out, AlertRaised) or out.alert.status != "firing":
                continue
            alert = out.alert
            if alert.metric == "cusum" and alert.subject in exact:
                position = int(alert.details["bucket_index"]) * bucket
            elif alert.metric == "cusum":
                position = batch_end  # buckets count present values only: batch end is the bound
            else:
                window_end = round((alert.window.end.timestamp() - START) * RATE)
                position = min(window_end + LATENESS_SECONDS * RATE, len(events))
            fired.append(Fired(position, alert.metric, alert.subject))

    for offset in range(0, len(events), batch):
        chunk = events[offset : offset + batch]
        outputs, rejected = runtime.run_batch(chunk, "bench:0", offset)
        if rejected:
            raise RuntimeError(f"{len(rejected)} events rejected: {rejected[0]}")
        collect(outputs, offset + len(chunk))
    collect(runtime.flush(), len(events))
    return sorted(fired, key=lambda f: f.position)


# -- anchors -----------------------------------------------------------------------------
def adwin_alarms(values: np.ndarray) -> list[int]:
    """Positions (event index + 1) where River's ADWIN() with defaults detects; NaN skipped."""
    from river.drift import ADWIN

    detector = ADWIN()
    hits = []
    for i, v in enumerate(values.tolist()):
        if v != v:
            continue
        detector.update(v)
        if detector.drift_detected:
            hits.append(i + 1)
    return hits


class EvidentlyAnchor:
    """Evidently DataDriftPreset defaults, per column, on 1,000-row windows."""

    def __init__(self, reference: Stream) -> None:
        import pandas as pd
        from evidently.legacy.calculations.stattests.registry import get_stattest
        from evidently.legacy.core import ColumnType

        self.pd = pd
        self.get_stattest = get_stattest
        self.types = {n: ColumnType.Numerical for n in NUMERIC} | {n: ColumnType.Categorical for n in CATEGORICAL}
        self.reference = self.frame(reference, 0, reference.n)
        self.tests = {}

    def frame(self, stream: Stream, start: int, stop: int) -> Any:
        data = {n: stream.numeric[start:stop, j] for j, n in enumerate(NUMERIC)}
        data |= {n: stream.categorical[start:stop, j] for j, n in enumerate(CATEGORICAL)}
        return self.pd.DataFrame(data)

    def drifted(self, current: Any) -> list[str]:
        out = []
        for name, kind in self.types.items():
            ref = self.reference[name].replace([-np.inf, np.inf], np.nan).dropna()
            cur = current[name].replace([-np.inf, np.inf], np.nan).dropna()
            if cur.empty:
                continue
            test = self.get_stattest(ref, cur, kind, None)
            if test(ref, cur, kind, None).drifted:
                out.append(name)
        return out

    def report_drifted(self, current: Any) -> list[str]:
        """The real Report([DataDriftPreset()]) (slow): drifted columns, to check `drifted`."""
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(self.reference, data_definition=definition),
        )
        drifted = []
        for metric in snapshot.dict()["metrics"]:
            column = metric.get("config", {}).get("column")
            if column and float(metric["value"]) >= float(metric["config"]["threshold"]):
                drifted.append(column)
        return drifted


def evidently_available() -> str | None:
    try:
        import evidently  # noqa: F401
        from evidently.legacy.calculations.stattests.registry import get_stattest  # noqa: F401
    except Exception as exc:
        return f"not installed ({type(exc).__name__})"
    return None


# -- summaries ---------------------------------------------------------------------------
def poisson_upper(k: int, level: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson mean after k counts."""
    lo, hi = 0.0, 10.0 + 5.0 * k
    for _ in range(100):
        mid = (lo + hi) / 2
        cdf = sum(math.exp(-mid + i * math.log(mid) - math.lgamma(i + 1)) for i in range(k + 1)) if mid > 0 else 1.0
        lo, hi = (mid, hi) if cdf > 1 - level else (lo, mid)
    return hi


def rate_summary(alarms: int, events: int, runs: int, **extra: Any) -> dict[str, Any]:
    return {
        "false_alarms_per_million": alarms / events * 1e6,
        "upper95_per_million": poisson_upper(alarms) / events * 1e6,
        "alarms": alarms,
        "events": events,
        "runs": runs,
        **extra,
    }


def delay_summary(delays: list[int | None], cap: int, **extra: Any) -> dict[str, Any]:
    hit = sorted(d for d in delays if d is not None and d <= cap)
    runs = len(delays)
    capped = sorted(d if d is not None and d <= cap else math.inf for d in delays)

    def quantile(q: float) -> float | None:
        """Lower empirical quantile; None when it falls on an undetected run."""
        if not runs:
            return None
        value = capped[min(runs - 1, math.ceil(q * runs) - 1)]
        return float(value) if math.isfinite(value) else None

    return {
        "median_delay_events": quantile(0.5),
        "detected_share": len(hit) / runs if runs else 0.0,
        "p90_delay_events": quantile(0.9),
        "runs": runs,
        "cap_events": cap,
        **extra,
    }


# -- scenarios ---------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    config: Any
    profiles: list[tuple[ReferenceProfile, Stream]]
    evidently: list[EvidentlyAnchor] | None
    results: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"watchkeeper": {}, "adwin": {}, "evidently": {}}
    )
    timings: dict[str, float] = field(default_factory=dict)

    def stationary(self) -> None:
        a = self.args
        per_run = max(WINDOW_EVENTS, a.stationary_events // a.stationary_runs // WINDOW_EVENTS * WINDOW_EVENTS)
        wk_alarms, by_metric, ad_alarms, ev_windows, ev_any, ev_dataset = 0, {}, 0, 0, 0, 0
        by_subject: dict[str, int] = {}
        ev_budget = a.evidently_windows
        t0 = time.perf_counter()
        for run in range(a.stationary_runs):
            profile, _ = self.profiles[run % len(self.profiles)]
            stream = generate(np.random.default_rng([a.seed, 1, run]), per_run)
            fired = run_watchkeeper(self.config, profile, serialise(stream), a.batch_size, set(NUMERIC + CATEGORICAL))
            wk_alarms += len(fired)
            for f in fired:
                by_metric[f.metric] = by_metric.get(f.metric, 0) + 1
                by_subject[f"{f.subject}/{f.metric}"] = by_subject.get(f"{f.subject}/{f.metric}", 0) + 1
            ad_alarms += sum(len(adwin_alarms(stream.numeric[:, j])) for j in range(N_NUMERIC))
            if self.evidently is not None:
                anchor = self.evidently[run % len(self.evidently)]
                for w in range(0, per_run // WINDOW_EVENTS):
                    if ev_windows >= ev_budget:
                        break
                    drifted = anchor.drifted(anchor.frame(stream, w * WINDOW_EVENTS, (w + 1) * WINDOW_EVENTS))
                    ev_windows += 1
                    ev_any += bool(drifted)
                    ev_dataset += len(drifted) >= 0.5 * (N_NUMERIC + len(CATEGORICAL))
            print(
                f"  stationary run {run + 1}/{a.stationary_runs}: {per_run:,} events, {len(fired)} alarms",
                file=sys.stderr,
            )
        events = per_run * a.stationary_runs
        self.results["watchkeeper"]["stationary"] = rate_summary(
            wk_alarms,
            events,
            a.stationary_runs,
            by_metric=by_metric,
            by_subject=by_subject,
        )
        self.results["adwin"]["stationary"] = rate_summary(ad_alarms, events, a.stationary_runs, detectors=N_NUMERIC)
        if self.evidently is not None and ev_windows:
            self.results["evidently"]["stationary"] = {
                "false_alarm_window_share": ev_any / ev_windows,
                "false_alarms_per_million": ev_any / (ev_windows * WINDOW_EVENTS) * 1e6,
                "dataset_drift_window_share": ev_dataset / ev_windows,
                "windows": ev_windows,
                "events": ev_windows * WINDOW_EVENTS,
            }
        self.timings["stationary"] = time.perf_counter() - t0

    def shift(self, name: str) -> None:
        a = self.args
        feature, _ = SHIFT_SCENARIOS[name]
        exact = set(NUMERIC + CATEGORICAL) - ({feature} if name == "missing_spike" else set())
        wk_delays: list[int | None] = []
        wk_first_metric: dict[str, int] = {}
        wk_other, wk_before = 0, 0
        ad_delays: list[int | None] = []
        ad_other, ad_before = 0, 0
        ev_delays: list[int | None] = []
        numeric_feature = feature in NUMERIC
        t0 = time.perf_counter()
        for run in range(a.runs):
            rng = np.random.default_rng([a.seed, 2, SCENARIOS.index(name), run])
            change = CHANGE_FROM + int(rng.integers(0, WINDOW_EVENTS))
            stream = generate(rng, change + a.cap, name, change)
            profile, _ = self.profiles[run % len(self.profiles)]
            fired = run_watchkeeper(self.config, profile, serialise(stream), a.batch_size, exact)
            hit = next((f for f in fired if f.subject == feature and f.position > change), None)
            stop = hit.position if hit else stream.n
            wk_delays.append(hit.position - change if hit else None)
            if hit:
                wk_first_metric[hit.metric] = wk_first_metric.get(hit.metric, 0) + 1
            wk_other += sum(1 for f in fired if f.subject != feature and f.position <= stop)
            wk_before += sum(1 for f in fired if f.subject == feature and f.position <= change)
            if numeric_feature:
                j = NUMERIC.index(feature)
                own = adwin_alarms(stream.numeric[:, j])
                first = next((p for p in own if p > change), None)
                ad_delays.append(first - change if first else None)
                ad_before += sum(1 for p in own if p <= change)
                stop = first or stream.n
                ad_other += sum(
                    sum(1 for p in adwin_alarms(stream.numeric[:stop, k]) if p <= stop)
                    for k in range(N_NUMERIC)
                    if k != j
                )
            if self.evidently is not None and run < a.evidently_runs:
                anchor = self.evidently[run % len(self.evidently)]
                delay = None
                for w in range(change // WINDOW_EVENTS, (change + a.cap) // WINDOW_EVENTS):
                    end = (w + 1) * WINDOW_EVENTS
                    if feature in anchor.drifted(anchor.frame(stream, w * WINDOW_EVENTS, end)):
                        delay = end - change
                        break
                ev_delays.append(delay)
        self.results["watchkeeper"][name] = delay_summary(
            wk_delays,
            a.cap,
            first_metric=wk_first_metric,
            false_alarms_other_features=wk_other,
            false_alarms_before_change=wk_before,
        )
        if numeric_feature:
            self.results["adwin"][name] = delay_summary(
                ad_delays, a.cap, false_alarms_other_features=ad_other, false_alarms_before_change=ad_before
            )
        else:
            self.results["adwin"][name] = {
                "median_delay_events": None,
                "detected_share": None,
                "not_applicable": "ADWIN runs on the numeric features only",
            }
        if self.evidently is not None:
            self.results["evidently"][name] = delay_summary(ev_delays, a.cap, resolution_events=WINDOW_EVENTS)
        self.timings[name] = time.perf_counter() - t0
        print(f"  {name}: {a.runs} runs in {self.timings[name]:.0f} s", file=sys.stderr)

    def check_evidently(self, n: int) -> dict[str, Any]:
        """Run the real Report on n windows (stationary and shifted) and compare."""
        if self.evidently is None or n <= 0:
            return {}
        anchor = self.evidently[0]
        agree, checked = 0, 0
        rng = np.random.default_rng([self.args.seed, 3])
        for i in range(n):
            scenario = ["stationary", "mean_shift_0.25", "category_shift", "unseen_category"][i % 4]
            stream = generate(rng, WINDOW_EVENTS, scenario, 0)
            current = anchor.frame(stream, 0, WINDOW_EVENTS)
            fast, full = sorted(anchor.drifted(current)), sorted(anchor.report_drifted(current))
            checked += 1
            agree += fast == full
            if fast != full:
                print(f"  evidently check {scenario}: fast {fast} != report {full}", file=sys.stderr)
        return {"windows_checked": checked, "agree": agree}


# -- output ------------------------------------------------------------------------------
def cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "—"
    if "not_installed" in entry:
        return "not installed"
    if "not_applicable" in entry:
        return "n/a"
    if "false_alarms_per_million" in entry:
        text = f"{entry['false_alarms_per_million']:.2f} FA/M"
        if entry.get("alarms") == 0:
            text += f" (≤ {entry['upper95_per_million']:.2f})"
        if "false_alarm_window_share" in entry:
            text += f" ({entry['false_alarm_window_share']:.0%} windows)"
        return text
    median = entry["median_delay_events"]
    shown = f"{median:,.0f}" if median is not None else f"> {entry['cap_events']:,}"
    return f"{shown} ({entry['detected_share']:.0%})"


def print_table(bench: Bench) -> None:
    rows = [("scenario", "watchkeeper", "ADWIN", "Evidently", "target")]
    for name in SCENARIOS:
        if name not in bench.results["watchkeeper"]:
            continue
        rows.append(
            (
                name,
                cell(bench.results["watchkeeper"].get(name)),
                cell(bench.results["adwin"].get(name)),
                cell(bench.results["evidently"].get(name)) if bench.evidently else "not installed",
                TARGETS.get(name, "detected ≥ 95 %" if name != "stationary" else ""),
            )
        )
    print_rows(rows)
    print(
        "\nshift cells: median delay in events after the change (share detected within the cap); "
        "FA/M: firing alerts per million events at the model level (95 % upper bound when zero)."
    )
    for name in SHIFT_SCENARIOS:
        wk = bench.results["watchkeeper"].get(name)
        if wk:
            p90 = wk["p90_delay_events"]
            print(
                f"  {name}: watchkeeper p90 {p90 if p90 is None else f'{p90:,.0f}'}, "
                f"first alarm by {wk['first_metric']}, "
                f"false alarms on other features before detection {wk['false_alarms_other_features']}, "
                f"on the feature before the change {wk['false_alarms_before_change']}"
            )
    st = bench.results["watchkeeper"].get("stationary")
    if st:
        print(
            f"  stationary: {st['events']:,} events in {st['runs']} runs, {st['alarms']} firing alerts "
            f"{st['by_subject']}"
        )


def to_json(bench: Bench, checked: dict[str, Any], elapsed: float) -> dict[str, Any]:
    def shape(entries: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entries.items()}

    import river

    anchors: dict[str, Any] = {"adwin": shape(bench.results["adwin"]), "evidently": shape(bench.results["evidently"])}
    if bench.evidently is None:
        anchors["evidently"] = {"not_installed": evidently_available()}
    versions = {"numpy": np.__version__, "river": river.__version__}
    try:
        import evidently

        versions["evidently"] = evidently.__version__
    except Exception:
        pass
    return {
        "scenarios": shape(bench.results["watchkeeper"]),
        "anchors": anchors,
        "settings": {
            **{k: v for k, v in vars(bench.args).items() if k != "json"},
            "reference_rows": REFERENCE_ROWS,
            "window_events": WINDOW_EVENTS,
            "allowed_lateness_events": LATENESS_SECONDS * RATE,
            "change_point": f"uniform in [{CHANGE_FROM}, {CHANGE_FROM + WINDOW_EVENTS})",
            "drift_config": bench.config.models[0].drift.model_dump(),
        },
        "evidently_check": checked,
        "timings_s": {**bench.timings, "total": elapsed},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), **versions},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per shift scenario (default 20)")
    parser.add_argument("--stationary-events", type=int, default=2_500_000, help="stationary events in total")
    parser.add_argument("--stationary-runs", type=int, default=10, help="stationary runs (fresh monitor each)")
    parser.add_argument("--cap", type=int, default=20_000, help="events after the change a shift run lasts")
    parser.add_argument("--references", type=int, default=2, help="reference seeds (one profile each)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--evidently-windows", type=int, default=300, help="stationary windows for Evidently")
    parser.add_argument("--evidently-runs", type=int, default=20, help="runs per shift scenario for Evidently")
    parser.add_argument("--evidently-check", type=int, default=2, help="windows checked against the real Report")
    parser.add_argument("--scenarios", nargs="*", default=SCENARIOS, choices=SCENARIOS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sequential-arl-events",
        type=float,
        default=DriftConfig().sequential_arl_events,
        help="model-level CUSUM target (default: the DriftConfig default) for what-if runs",
    )
    parser.add_argument("--quick", action="store_true", help="5 runs, 500k stationary events, 1 reference")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.stationary_events, args.stationary_runs, args.references = 5, 500_000, 4, 1
        args.evidently_windows, args.evidently_runs, args.evidently_check = 100, 5, 0
    t0 = time.perf_counter()
    print(f"building {args.references} reference profile(s) ({REFERENCE_ROWS:,} rows, CUSUMs)...", file=sys.stderr)
    profiles = [build_profile(args.seed * 1000 + r, args.sequential_arl_events) for r in range(args.references)]
    print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    missing = None if not args.no_evidently else "disabled (--no-evidently)"
    missing = missing or evidently_available()
    anchors = None if missing else [EvidentlyAnchor(ref) for _, ref in profiles]
    bench = Bench(args, model_config(args.sequential_arl_events), profiles, anchors)
    bench.timings["profiles"] = time.perf_counter() - t0
    for name in args.scenarios:
        if name == "stationary":
            bench.stationary()
        else:
            bench.shift(name)
    checked = bench.check_evidently(args.evidently_check)
    elapsed = time.perf_counter() - t0
    print_table(bench)
    if missing:
        print(f"  Evidently: {missing}")
    elif checked:
        print(
            f"  Evidently fast path vs Report([DataDriftPreset()]): "
            f"{checked['agree']}/{checked['windows_checked']} windows agree"
        )
    print(f"  total {elapsed:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(
            orjson.dumps(to_json(bench, checked, elapsed), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
