"""Label-monitor quality: false alerts and detection delay of the accuracy, calibration and fairness alerts.

Every scenario of ``load-tests/label_scenarios.py`` (the synthetic model, its exact design
and the outcome stream are described there) is run through the monitor core the worker
runs, in process and without Kafka, exactly as ``watchkeeper replay`` does: the events
(predictions and outcomes merged in arrival order) are serialised to JSON and fed to
:meth:`MonitorRuntime.run_batch` in batches of ``--batch-size`` (1,000, replay's default),
then :meth:`MonitorRuntime.flush`. One fresh runtime per run.

Configuration (``label_scenarios.model_config``): hourly windows (``window.size: 1h``),
``accuracy: {label_horizon: 7h}``, ``sensitive_attributes: [group]``, and the defaults for
everything else: the accuracy metrics accuracy, ROC AUC, F1, log loss, Brier and ECE with
their default tolerances, ``min_labeled`` 200, the error-rate ADWIN, the four fairness
metrics with their tolerances and ``min_support`` 30, drift and data quality on.

Reference and baseline, as a user would set them up: the drift reference is a profile
built like ``watchkeeper profile build --config`` does (``ReferenceProfile.build`` with the
model's ``drift`` settings, calibrated CUSUMs on) from ``--reference-rows`` rows of the
stationary model (features, ``prediction.score``, ``prediction.label``), built once in the
parent process and shared by every run; the accuracy baseline is the default
``baseline: first_windows``: learned by the core from the first 3 final windows (windows
0-2, final 8-10 h into the run), so every window from 10 on is judged against it.

What is counted
---------------
Every firing alert (a transition to ``firing``; repeats are off by default) is classified
by its monitor and metric into a *family*: ``accuracy`` (accuracy, F1, ROC AUC, log loss,
Brier, the error-rate ADWIN, any other ``accuracy`` metric), ``calibration`` (ECE, or any
metric or monitor named calibration), ``cbpe`` (label-free estimates: a monitor or metric
named cbpe/estimated; none alerts today), ``fairness`` (the fairness monitor), and
``drift`` (drift and data quality, reported separately and never counted as a label
alert); and by the window it is attributed to (``alert.window.start``). Its *emission*
is the event time of the stream when the core emitted it: the largest event timestamp
fed so far, at the end of the batch that produced it (so its resolution is one batch,
about 500 s of event time at 1,000 events).

* Monitored windows of a run: from window ``--monitored-from`` (10, the first that starts
  after the baseline is learned) to the last full window. Alerts on earlier windows are
  listed as ``warmup_alerts`` and not in the rates.
* ``stationary``, ``small_group_noise``: false alerts per 1,000 monitored windows, per
  family and all label families together, with the exact one-sided 95 % Poisson upper
  bound; also the share of windows with at least one new firing alert (Clopper–Pearson
  upper bound) and the share of windows during which an alert of the family was firing
  ("on": an alert that never clears counts once but is on all the time).
* ``accuracy_drop``, ``group_fpr_rise``, ``calibration_break``: the change starts with
  window ``label_scenarios.CHANGE_WINDOW`` (12). Detection delay = (window of the first
  alert of the family attributed to a window >= the change window) − change window, in
  windows; a run detects *within k windows* when that delay is <= k (k = 2, 2, 3); runs
  last ``--cap`` windows after the change (else: not detected). Event-time latency = the
  first alert's emission − the change time, in hours. Alerts on monitored windows before
  the change are false and counted, and so are the runs where an alert of the family was
  still firing at the change (it cannot announce the change again).
* ``label_delay_shift``: label alerts (any family) on windows from the change on, per
  1,000 windows: all of them are false.
* Before the alert state machine: the breached evaluations handed to the alert rules, per
  window (the monitor's ``_observe`` is wrapped), and the share of windows with one per
  family; and the label count, ECE and breached accuracy metrics of each window's first
  ready report and final report.

Each run ends with 8 sparse tail windows (one prediction a minute; label horizon + 1 window)
so that the watermark passes the last full windows' label horizon while their outcomes
arrive, as it would in a longer stream; then the remaining outcomes and a flush.

Anchor: NannyML's realized ``PerformanceCalculator`` (metrics accuracy, f1, roc_auc, its
default thresholds: reference mean ± 3 standard deviations of the reference chunks'
values), chunked by hour (``chunk_period="h"``), reference = the first
``--nannyml-reference`` (10) hourly chunks of the same run's stream, analysis = the
following full windows; targets = every outcome that ever arrives (NannyML has no notion
of label delay: it is given the final labels). Optional: ``pip install nannyml``
(``[bench]`` extra); without it the row is skipped with the reason.

    .venv/bin/python load-tests/label_quality.py --json load-tests/results/label_quality.json
    .venv/bin/python load-tests/label_quality.py --quick

Every finished run is appended to ``<json>.partial.jsonl``; ``--resume`` continues an
interrupted run from there. ``--summarise OLD.json [--json NEW.json]`` recomputes the
summaries and the table from the runs a JSON holds (e.g. after changing a definition here).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import label_scenarios as ls
from tables import print_rows

os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

FAMILIES = ("accuracy", "calibration", "cbpe", "fairness")
COLUMNS = (*FAMILIES, "label")  # "label": all label families together
CHANGE_SCENARIOS = {"accuracy_drop": 2, "group_fpr_rise": 2, "calibration_break": 3}  # → k of "within k"
TARGETS = {
    "stationary": "<= 1 false alert / 1,000 windows (label)",
    "accuracy_drop": "detected within 2 windows",
    "group_fpr_rise": "detected within 2 windows",
    "small_group_noise": "no false alerts",
    "calibration_break": "detected within 3 windows",
    "label_delay_shift": "no accuracy / fairness alerts",
}
TAIL = math.ceil((ls.HORIZON + ls.WINDOW) / ls.WINDOW)  # sparse windows after the last full one (8)
NANNYML_METRICS = ("accuracy", "f1", "roc_auc")
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_DETAIL_KEYS = (
    "baseline",
    "tolerance",
    "n_labeled",
    "rate",
    "group_max",
    "group_min",
    "rate_max",
    "rate_min",
    "n_max",
    "n_min",
    "group",
    "reference_group",
    "n_reference",
)


# -- classification -------------------------------------------------------------------------
def family(monitor: str, metric: str, details: dict[str, Any] | None = None) -> str:
    """The family of an alert (see the module docstring)."""
    text = f"{monitor}/{metric}".lower()
    method = str((details or {}).get("method", "")).lower()
    if monitor in ("drift", "data_quality"):
        return "drift"
    if monitor == "fairness":
        return "fairness"
    if "cbpe" in text or "estimated" in text or method == "cbpe":
        return "cbpe"
    if metric == "ece" or "calibration" in text:
        return "calibration"
    if monitor == "accuracy":
        return "accuracy"
    return "other"


# -- one run (in a worker process) ------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    scenario: str
    run: int
    seed: int
    windows: int  # full windows
    change_window: int
    monitored_from: int = 10  # first window counted (the accuracy baseline exists before it starts)


_STATE: dict[str, Any] = {}


def _init_worker(profile: dict[str, Any], settings: dict[str, Any]) -> None:
    from watchkeeper.monitor.profile import ReferenceProfile

    warnings.simplefilter("ignore")
    _STATE["profile"] = ReferenceProfile.from_dict(profile)
    _STATE["config"] = ls.model_config()
    _STATE["settings"] = settings


def run_task(task: Task) -> dict[str, Any]:
    from watchkeeper.monitor.engine import AlertRaised, LabelsEvaluated
    from watchkeeper.monitor.runtime import MonitorRuntime

    settings = _STATE["settings"]
    batch = settings["batch_size"]
    t0, cpu0 = time.perf_counter(), time.process_time()
    runtime = MonitorRuntime(_STATE["config"], {ls.MODEL_ID: _STATE["profile"]})
    breaches = _record_breaches(runtime.monitor(ls.MODEL_ID))
    alerts: list[dict[str, Any]] = []
    reports: dict[int, dict[str, Any]] = {}  # window → what its label reports said
    baseline: dict[str, float] = {}
    stream_time = -math.inf
    truth: list[tuple[np.ndarray, ...]] = []
    n_events = 0
    core_s = 0.0

    def collect(outputs: Iterable[Any], flushed: bool) -> None:
        for out in outputs:
            if isinstance(out, AlertRaised):
                a = out.alert
                alerts.append(
                    {
                        "status": a.status,
                        "repeat": bool(a.details.get("repeat")),
                        "monitor": a.monitor,
                        "metric": a.metric,
                        "subject": a.subject,
                        "family": family(a.monitor, a.metric, a.details),
                        "window": ls.window_index(a.window.start.timestamp()),
                        "emitted": stream_time,
                        "flushed": flushed,
                        "observed": a.observed,
                        "threshold": a.threshold,
                        "interval": [a.confidence_interval.low, a.confidence_interval.high]
                        if a.confidence_interval
                        else None,
                        "n": a.window.n,
                        "details": {k: a.details[k] for k in _DETAIL_KEYS if k in a.details},
                    }
                )
            elif isinstance(out, LabelsEvaluated):
                _note_report(out.report, reports, baseline)

    pending: list[bytes] = []
    pending_times: list[np.ndarray] = []
    offset = 0
    chunks = ls.iter_windows(task.scenario, task.seed, task.windows, task.change_window, tail=TAIL)
    for chunk in chunks:
        if 0 <= chunk.window < task.windows:
            truth.append((chunk.times, chunk.scores, chunk.predicted, chunk.truth, chunk.arrives))
        pending += map(orjson.dumps, chunk.events)
        pending_times.append(chunk.event_times)
        times = np.concatenate(pending_times)
        last = chunk.window < 0
        start = 0
        while len(pending) - start >= batch or (last and start < len(pending)):
            part = pending[start : start + batch]
            t1 = time.perf_counter()
            outputs, rejected = runtime.run_batch(part, "bench:0", offset)
            core_s += time.perf_counter() - t1
            if rejected:
                raise RuntimeError(f"{task}: {len(rejected)} events rejected: {rejected[0]}")
            stream_time = max(stream_time, float(times[start : start + len(part)].max()))
            offset += len(part)
            start += len(part)
            collect(outputs, False)
        n_events += start
        pending, pending_times = pending[start:], [times[start:]]
    t1 = time.perf_counter()
    outputs = runtime.flush()
    core_s += time.perf_counter() - t1
    collect(outputs, True)
    evaluated = sorted(w for w, r in reports.items() if r.get("evaluated"))
    result = {
        "task": asdict(task),
        "alerts": alerts,
        "first_evaluated": evaluated[0] if evaluated else None,
        "breaches": {str(w): sorted(names) for w, names in sorted(breaches.items())},
        "observations": _observations(reports, task),
        "baseline": baseline,
        "events": n_events,
        "core_s": core_s,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
    }
    if settings["nannyml"]:
        result["nannyml"] = nannyml_run(truth, task, settings["nannyml_reference"])
    return result


def _record_breaches(monitor: Any) -> dict[int, set[str]]:
    """Per window, the breached evaluations the alert rules were given ("family/metric[/subject]"),
    whatever the alert state machine made of them: the monitor's ``_observe`` is wrapped (left
    alone if a later version has no such method)."""
    seen: dict[int, set[str]] = {}
    observe = getattr(monitor, "_observe", None)
    if observe is None:
        return seen

    def recording(evaluation: Any, *args: Any) -> Any:
        if evaluation.breached:
            fam = family(evaluation.monitor, evaluation.metric, evaluation.details)
            name = f"{fam}/{evaluation.metric}" + (f"/{evaluation.subject}" if fam == "fairness" else "")
            seen.setdefault(ls.window_index(evaluation.window_start), set()).add(name)
        return observe(evaluation, *args)

    monitor._observe = recording
    return seen


def _note_report(report: Any, reports: dict[int, dict[str, Any]], baseline: dict[str, float]) -> None:
    """Per window: the first ready report (on the code of 2026-11 the one whose verdicts the
    alert rules observe) and the final one: label count, accuracy status, breached metrics."""
    w = ls.window_index(report.window_start)
    entry = reports.setdefault(w, {})
    verdict = report.accuracy
    status = verdict.status if verdict is not None else None
    if status == "evaluated":
        entry["evaluated"] = True
        if verdict.baseline and not baseline:
            baseline.update(verdict.baseline)
    if not report.ready:
        return
    breached = sorted(e.metric for e in verdict.evaluations if e.breached) if status == "evaluated" else []
    seen = {
        "n_labeled": report.n_labeled,
        "status": status,
        "checkpoint": getattr(report, "checkpoint", None),
        "ece": verdict.metrics.get("ece") if verdict is not None else None,
        "breached": breached,
    }
    entry.setdefault("first", seen)
    if report.final:
        entry["final"] = seen
    for metric in breached:
        entry.setdefault("ever_breached", set()).add(metric)


def _observations(reports: dict[int, dict[str, Any]], task: Task) -> dict[str, Any]:
    """Per full window: label count, accuracy status, ECE and breached metrics at the first
    ready report and at the final one (a diagnosis of the rules, before the alert state machine)."""
    out: dict[str, Any] = {}
    windows = [w for w in sorted(reports) if w < task.windows]
    for which in ("first", "final"):
        rows = [(w, reports[w][which]) for w in windows if which in reports[w]]
        out[which] = {key: [r[key] for _, r in rows] for key in ("n_labeled", "status", "ece", "breached")}
        out[which]["windows"] = [w for w, _ in rows]
    out["ever_breached"] = {str(w): sorted(reports[w].get("ever_breached", ())) for w in windows}
    return out


# -- NannyML anchor ----------------------------------------------------------------------------
def nannyml_available() -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nannyml  # noqa: F401
    except Exception as exc:
        return f"nannyml not importable ({type(exc).__name__}: {exc}); pip install nannyml (the [bench] extra)"
    return None


def nannyml_run(truth: Sequence[tuple[np.ndarray, ...]], task: Task, reference_chunks: int) -> dict[str, Any]:
    """Realized performance per hourly chunk, default thresholds; alerts per analysis chunk."""
    import nannyml as nml
    import pandas as pd

    times, scores, predicted, y, arrives = (np.concatenate(parts) for parts in zip(*truth, strict=True))
    keep = arrives
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(times[keep], unit="s"),
            "y_pred_proba": scores[keep],
            "y_pred": predicted[keep].astype(np.int64),
            "y_true": y[keep].astype(np.int64),
        }
    )
    window = ((times[keep] - ls.START) // ls.WINDOW).astype(np.int64)
    reference = frame[window < reference_chunks]
    analysis = frame[window >= reference_chunks]
    calculator = nml.PerformanceCalculator(
        metrics=list(NANNYML_METRICS),
        y_true="y_true",
        y_pred="y_pred",
        y_pred_proba="y_pred_proba",
        problem_type="classification_binary",
        timestamp_column_name="timestamp",
        chunk_period="h",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calculator.fit(reference)
        table = calculator.calculate(analysis).filter(period="analysis").to_df()
    starts = np.asarray(pd.to_datetime(table[("chunk", "start_date")]), dtype="datetime64[s]").astype(np.int64)
    chunk_windows = ((starts - ls.START) // ls.WINDOW).astype(int).tolist()
    alerts = {m: [bool(v) for v in table[(m, "alert")].tolist()] for m in NANNYML_METRICS}
    low = {m: [float(v) for v in table[(m, "lower_threshold")].tolist()] for m in NANNYML_METRICS}
    values = {m: [float(v) for v in table[(m, "value")].tolist()] for m in NANNYML_METRICS}
    below = {m: [v < lo for v, lo in zip(values[m], low[m], strict=True)] for m in NANNYML_METRICS}
    return {"windows": chunk_windows, "alerts": alerts, "below_lower": below, "values": values}


# -- summaries ---------------------------------------------------------------------------------
def poisson_upper(k: int, level: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a Poisson mean after k counts."""
    from scipy.stats import chi2

    return float(chi2.ppf(level, 2 * (k + 1)) / 2)


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    """Exact one-sided upper bound of a binomial proportion (Clopper–Pearson)."""
    from scipy.stats import beta

    if n == 0:
        return 1.0
    return 1.0 if k >= n else float(beta.ppf(level, k + 1, n - k))


def _firing(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["status"] == "firing" and not a["repeat"]]


def _active_windows(alerts: Sequence[dict[str, Any]], fam: str, lo: int, hi: int) -> set[int]:
    """Windows in [lo, hi) during which an alert of the family was firing (by window attribution)."""
    active: set[int] = set()
    since: dict[tuple[str, str, str], int] = {}
    for a in alerts:
        if (fam != "label" and a["family"] != fam) or (fam == "label" and a["family"] not in FAMILIES):
            continue
        key = (a["monitor"], a["metric"], a["subject"])
        if a["status"] == "firing" and not a["repeat"]:
            since.setdefault(key, a["window"])
        elif a["status"] == "resolved" and key in since:
            active.update(range(max(lo, since.pop(key)), min(hi, a["window"])))
    for start in since.values():
        active.update(range(max(lo, start), hi))
    return active


def _active_at(alerts: Sequence[dict[str, Any]], fam: str, change: int) -> bool:
    """Whether an alert of the family fired on a window before ``change`` and was not resolved
    on a window before it (then a new alert cannot announce the change)."""
    since: dict[tuple[str, str, str], int] = {}
    for a in alerts:
        if not _in(fam, a) or a["window"] >= change:
            continue
        key = (a["monitor"], a["metric"], a["subject"])
        if a["status"] == "firing":
            since[key] = a["window"]
        else:
            since.pop(key, None)
    return bool(since)


def _in(fam: str, a: dict[str, Any]) -> bool:
    return a["family"] == fam or (fam == "label" and a["family"] in FAMILIES)


def false_alert_summary(results: Sequence[dict[str, Any]], lo_of: Any, hi_of: Any) -> dict[str, Any]:
    """Firing label alerts per 1,000 windows on windows [lo_of(r), hi_of(r)) of each run."""
    windows = 0
    counts: Counter[str] = Counter()
    alerting: Counter[str] = Counter()
    active: Counter[str] = Counter()
    metrics: Counter[str] = Counter()
    warmup: Counter[str] = Counter()
    breached: Counter[str] = Counter()  # windows with a breached evaluation of the family
    breached_metrics: Counter[str] = Counter()
    recorded = all("breaches" in r for r in results)
    for r in results:
        lo, hi = lo_of(r), hi_of(r)
        if lo is None or hi <= lo:
            continue
        windows += hi - lo
        for w, names in r.get("breaches", {}).items():
            if lo <= int(w) < hi:
                families = {n.split("/", 1)[0] for n in names}
                breached.update(families | ({"label"} if families & set(FAMILIES) else set()))
                breached_metrics.update(names)
        firing = _firing(r["alerts"])
        for fam in (*COLUMNS, "drift"):
            mine = [a for a in firing if _in(fam, a) and lo <= a["window"] < hi]
            counts[fam] += len(mine)
            alerting[fam] += len({a["window"] for a in mine})
            if fam != "drift":
                active[fam] += len(_active_windows(r["alerts"], fam, lo, hi))
        for a in firing:
            if lo <= a["window"] < hi:
                metrics[f"{a['family']}/{a['metric']}" + (f"/{a['subject']}" if a["family"] == "fairness" else "")] += 1
            elif a["window"] < lo:
                warmup[a["family"]] += 1
    out: dict[str, Any] = {"windows": windows, "runs": len(results), "by_metric": dict(metrics.most_common())}
    for fam in (*COLUMNS, "drift"):
        k = counts[fam]
        entry = {
            "alerts": k,
            "per_1000_windows": 1000 * k / windows if windows else None,
            "upper95_per_1000_windows": 1000 * poisson_upper(k) / windows if windows else None,
            "alerting_windows": alerting[fam],
            "alerting_window_share": alerting[fam] / windows if windows else None,
            "alerting_window_share_upper95": clopper_pearson_upper(alerting[fam], windows),
        }
        if fam != "drift":
            entry["active_window_share"] = active[fam] / windows if windows else None
        if recorded:
            entry["breached_window_share"] = breached[fam] / windows if windows else None
        out[fam] = entry
    out["warmup_alerts"] = dict(warmup)
    if recorded:
        out["breached_windows_by_metric"] = dict(breached_metrics.most_common())
    return out


def delay_summary(results: Sequence[dict[str, Any]], k: int, cap: int) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(results), "within": k, "cap_windows": cap}
    for fam in COLUMNS:
        delays: list[int | None] = []
        latencies: list[float | None] = []
        first_metric: Counter[str] = Counter()
        pre = active = 0
        for r in results:
            change = r["task"]["change_window"]
            lo = r["task"]["monitored_from"]
            firing = [a for a in _firing(r["alerts"]) if _in(fam, a)]
            pre += sum(1 for a in firing if lo <= a["window"] < change)
            active += _active_at(r["alerts"], fam, change)
            after = sorted(
                (a for a in firing if change <= a["window"] < change + cap), key=lambda a: (a["emitted"], a["window"])
            )
            hit = min(after, key=lambda a: a["window"]) if after else None
            delays.append(hit["window"] - change if hit else None)
            first = after[0] if after else None
            latencies.append((first["emitted"] - (ls.START + change * ls.WINDOW)) / 3600 if first else None)
            if hit:
                first_metric[f"{hit['family']}/{hit['metric']}"] += 1
        found = sorted(d for d in delays if d is not None)
        late = sorted(x for x in latencies if x is not None)
        out[fam] = {
            "delays": delays,
            "median_delay_windows": _lower_median(delays),
            "detected_share": len(found) / len(delays) if delays else 0.0,
            "within_share": sum(1 for d in found if d <= k) / len(delays) if delays else 0.0,
            "latencies_hours": latencies,
            "median_latency_hours": float(np.median(late)) if late and len(late) * 2 > len(delays) else None,
            "first_metric": dict(first_metric),
            "false_alerts_before_change": pre,
            "already_active_at_change": active,
        }
    return out


def _lower_median(values: Sequence[int | None]) -> float | None:
    """Median with undetected runs as +inf; None when it falls on an undetected run."""
    if not values:
        return None
    ordered = sorted(math.inf if v is None else v for v in values)
    m = ordered[(len(ordered) - 1) // 2]
    return float(m) if math.isfinite(m) else None


def nannyml_summary(results: Sequence[dict[str, Any]], scenario: str, cap: int) -> dict[str, Any] | None:
    runs = [r["nannyml"] for r in results if "nannyml" in r]
    if not runs:
        return None
    if scenario in CHANGE_SCENARIOS:
        delays, pre, pre_windows = [], 0, 0
        for r, res in zip(runs, results, strict=True):
            change = res["task"]["change_window"]
            any_alert = [any(r["alerts"][m][i] for m in NANNYML_METRICS) for i in range(len(r["windows"]))]
            hits = [w for w, a in zip(r["windows"], any_alert, strict=True) if a and change <= w < change + cap]
            delays.append(hits[0] - change if hits else None)
            pre += sum(1 for w, a in zip(r["windows"], any_alert, strict=True) if a and w < change)
            pre_windows += sum(1 for w in r["windows"] if w < change)
        k = CHANGE_SCENARIOS[scenario]
        found = [d for d in delays if d is not None]
        return {
            "delays": delays,
            "median_delay_windows": _lower_median(delays),
            "detected_share": len(found) / len(delays),
            "within_share": sum(1 for d in found if d <= k) / len(delays),
            "false_alerts_before_change": pre,
            "windows_before_change": pre_windows,
        }
    windows, alerting, by_metric, below = 0, 0, Counter(), 0
    for r, res in zip(runs, results, strict=True):
        change = res["task"]["change_window"] if scenario == "label_delay_shift" else -1
        for i, w in enumerate(r["windows"]):
            if w < change:
                continue
            windows += 1
            hit = [m for m in NANNYML_METRICS if r["alerts"][m][i]]
            alerting += bool(hit)
            below += any(r["below_lower"][m][i] for m in NANNYML_METRICS)
            by_metric.update(hit)
    return {
        "windows": windows,
        "alerting_windows": alerting,
        "per_1000_windows": 1000 * alerting / windows if windows else None,
        "upper95_per_1000_windows": 1000 * poisson_upper(alerting) / windows if windows else None,
        "alerting_window_share_upper95": clopper_pearson_upper(alerting, windows),
        "degradation_side_windows": below,
        "by_metric": dict(by_metric),
    }


def summarise(scenario: str, results: Sequence[dict[str, Any]], cap: int) -> dict[str, Any]:
    full = {r["task"]["windows"] for r in results}
    if scenario in CHANGE_SCENARIOS:
        out = delay_summary(results, CHANGE_SCENARIOS[scenario], cap)
        out["drift_alerts_after_change"] = sum(
            1
            for r in results
            for a in _firing(r["alerts"])
            if a["family"] == "drift" and a["window"] >= r["task"]["change_window"]
        )
    elif scenario == "label_delay_shift":
        out = false_alert_summary(results, lambda r: r["task"]["change_window"], lambda r: r["task"]["windows"])
        out["before_change"] = false_alert_summary(
            results, lambda r: r["task"]["monitored_from"], lambda r: r["task"]["change_window"]
        )
    else:
        out = false_alert_summary(results, lambda r: r["task"]["monitored_from"], lambda r: r["task"]["windows"])
    out["observations"] = _pool_observations(results, scenario)
    out["baseline"] = [r["baseline"] for r in results]
    out["full_windows_per_run"] = sorted(full)
    anchor = nannyml_summary(results, scenario, cap)
    if anchor is not None:
        out["nannyml"] = anchor
    return out


def _pool_observations(results: Sequence[dict[str, Any]], scenario: str) -> dict[str, Any]:
    """Breach shares of the accuracy metrics at the first ready report (with the baseline
    learned) and at the final one, over windows without a change."""
    pooled: dict[str, Any] = {}
    for which in ("first", "final"):
        n, breached, labels, eces = 0, Counter(), [], []
        for r in results:
            obs = r.get("observations", {}).get(which)
            if not obs:
                continue
            change = (
                r["task"]["change_window"] if scenario in CHANGE_SCENARIOS or scenario == "label_delay_shift" else None
            )
            rows = zip(obs["windows"], obs["status"], obs["n_labeled"], obs["ece"], obs["breached"], strict=True)
            for w, status, n_labeled, ece, metrics in rows:
                if status != "evaluated" or w < r["task"]["monitored_from"] or (change is not None and w >= change):
                    continue
                n += 1
                breached.update(metrics)
                labels.append(n_labeled)
                if ece is not None:
                    eces.append(ece)
        if n:
            pooled[which] = {
                "windows": n,
                "breach_share": {m: c / n for m, c in breached.most_common()},
                "n_labeled_median": float(np.median(labels)),
                "ece_median": float(np.median(eces)) if eces else None,
                "ece_p90": float(np.quantile(eces, 0.9)) if eces else None,
            }
    bases = [r["baseline"].get("ece") for r in results if r["baseline"].get("ece") is not None]
    if bases:
        pooled["baseline_ece_median"] = float(np.median(bases))
    return pooled


# -- output ------------------------------------------------------------------------------------
def _rate_cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("per_1000_windows") is None:
        return "—"
    text = f"{entry['per_1000_windows']:.1f} (≤ {entry['upper95_per_1000_windows']:.1f})"
    if entry.get("active_window_share"):
        text += f", on {entry['active_window_share']:.0%}"
    return text


def _delay_cell(entry: dict[str, Any]) -> str:
    median = entry["median_delay_windows"]
    shown = f"{median:.0f}" if median is not None else "—"
    return f"{shown} ({entry['within_share']:.0%})"


def table_rows(summaries: dict[str, dict[str, Any]], nannyml_missing: str | None) -> list[tuple[str, ...]]:
    rows = [("scenario", *COLUMNS, "drift (separate)", "NannyML", "target")]
    for name in ls.SCENARIOS:
        s = summaries.get(name)
        if s is None:
            continue
        anchor = s.get("nannyml")
        if name in CHANGE_SCENARIOS:
            cells = [_delay_cell(s[fam]) for fam in COLUMNS]
            drift = f"{s['drift_alerts_after_change']} after change"
            nml = _delay_cell(anchor) if anchor else "skipped"
        else:
            cells = [_rate_cell(s[fam]) for fam in COLUMNS]
            drift = _rate_cell(s["drift"])
            nml = _rate_cell(anchor) if anchor else "skipped"
        if anchor is None and nannyml_missing is None and name in summaries:
            nml = "—"
        rows.append((name, *cells, drift, nml, TARGETS[name]))
    return rows


def print_table(summaries: dict[str, dict[str, Any]], nannyml_missing: str | None) -> None:
    rows = table_rows(summaries, nannyml_missing)
    print_rows(rows)
    print(
        "\nrates: firing alerts per 1,000 monitored windows (exact one-sided 95 % Poisson upper bound); "
        "change scenarios: median delay in windows after the change (share of runs detected within k windows); "
        "label = all label families together."
    )
    for name, s in summaries.items():
        if name in CHANGE_SCENARIOS:
            for fam in COLUMNS:
                e = s[fam]
                if e["detected_share"] or e["false_alerts_before_change"]:
                    lat = e["median_latency_hours"]
                    print(
                        f"  {name} {fam}: delays {e['delays']}, median event-time latency "
                        f"{'—' if lat is None else f'{lat:.2f} h'}, first by {e['first_metric']}, "
                        f"false alerts before the change {e['false_alerts_before_change']}, "
                        f"runs with one still firing at the change {e['already_active_at_change']}"
                    )
        else:
            print(f"  {name}: {s['windows']} windows in {s['runs']} runs; label alerts by metric {s['by_metric']}")
            shares = {f: round(s[f]["active_window_share"], 4) for f in COLUMNS}
            print(f"    share of windows with an active alert: {shares}; warm-up alerts {s['warmup_alerts']}")
            if "breached_window_share" in s["label"]:
                shares = {f: round(s[f]["breached_window_share"], 4) for f in (*COLUMNS, "drift")}
                print(f"    share of windows with a breached evaluation (before the alert state machine): {shares}")
            if name == "label_delay_shift":
                b = s["before_change"]
                print(f"    before the change: {b['windows']} windows, label alerts {b['label']['alerts']}")
        obs = s.get("observations", {})
        for which in ("first", "final"):
            o = obs.get(which)
            if o:
                top = {m: round(v, 4) for m, v in list(o["breach_share"].items())[:6]}
                print(
                    f"    {which} ready report: {o['windows']} windows, median n_labeled {o['n_labeled_median']:.0f}, "
                    f"ECE median {o['ece_median']:.4f} p90 {o['ece_p90']:.4f}, breach share {top}"
                )
        if "baseline_ece_median" in obs:
            print(f"    learned baseline ECE (median over runs) {obs['baseline_ece_median']:.4f}")
    if nannyml_missing:
        print(f"  NannyML: skipped: {nannyml_missing}")


def source_info() -> dict[str, Any]:
    import watchkeeper

    root = Path(__file__).resolve().parent.parent
    info: dict[str, Any] = {"watchkeeper": str(Path(watchkeeper.__file__).parent)}
    try:
        info["commit"] = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout
        info["changed_in_work_tree"] = [line[3:] for line in status.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        pass
    info["runs_work_tree_src"] = Path(info["watchkeeper"]).resolve() == (root / "src" / "watchkeeper").resolve()
    if not info["runs_work_tree_src"]:  # e.g. an exported commit on PYTHONPATH: say which, if it says
        info["work_tree_changes_not_used"] = info.pop("changed_in_work_tree", [])
        marker = Path(info["watchkeeper"]).parent.parent / "COMMIT"
        if marker.exists():
            info["imported_commit"] = marker.read_text().strip()
    return info


# -- main ----------------------------------------------------------------------------------------
def build_tasks(args: argparse.Namespace) -> list[Task]:
    tasks = []
    for name in args.scenarios:
        index = list(ls.SCENARIOS).index(name)
        if name == "stationary":
            runs, per = args.stationary_runs, math.ceil(args.stationary_windows / args.stationary_runs)
            windows = [args.monitored_from + per] * runs
        elif name == "small_group_noise":
            runs, per = args.noise_runs, math.ceil(args.noise_windows / args.noise_runs)
            windows = [args.monitored_from + per] * runs
        elif name == "label_delay_shift":
            runs = args.shift_runs
            windows = [ls.CHANGE_WINDOW + math.ceil(args.shift_windows / runs)] * runs
        else:
            runs = args.runs
            windows = [ls.CHANGE_WINDOW + args.cap] * runs
        tasks += [
            Task(name, run, args.seed * 1000 + 100 * index + run, w, ls.CHANGE_WINDOW, args.monitored_from)
            for run, w in enumerate(windows)
        ]
    return sorted(tasks, key=lambda t: -t.windows)


def resummarise(args: argparse.Namespace) -> int:
    """Summaries and table again from the runs stored in a JSON (e.g. after changing a definition here)."""
    payload = orjson.loads(args.summarise.read_bytes())
    cap = payload["settings"]["cap"]
    runs: dict[str, list[dict[str, Any]]] = payload["runs"]
    for rs in runs.values():
        for r in rs:
            r["task"].setdefault("monitored_from", args.monitored_from)
    missing = payload["anchors"]["nannyml"].get("skipped")
    summaries = {name: summarise(name, rs, cap) for name, rs in runs.items() if rs}
    for name, summary in summaries.items():  # runs stored without their observations: keep the old pooled ones
        if not summary["observations"].get("first") and "observations" in payload["scenarios"].get(name, {}):
            summary["observations"] = payload["scenarios"][name]["observations"]
    print_table(summaries, missing)
    if args.json:
        payload["scenarios"], payload["table"] = summaries, table_rows(summaries, missing)
        args.json.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        print(f"  wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="*", default=list(ls.SCENARIOS), choices=list(ls.SCENARIOS))
    parser.add_argument("--stationary-windows", type=int, default=2000, help="monitored stationary windows in total")
    parser.add_argument("--stationary-runs", type=int, default=4)
    parser.add_argument("--runs", type=int, default=10, help="runs per change scenario")
    parser.add_argument("--cap", type=int, default=6, help="windows a change run lasts after the change")
    parser.add_argument("--noise-windows", type=int, default=200, help="monitored small_group_noise windows")
    parser.add_argument("--noise-runs", type=int, default=2)
    parser.add_argument("--shift-windows", type=int, default=160, help="label_delay_shift windows after the change")
    parser.add_argument("--shift-runs", type=int, default=4)
    parser.add_argument("--monitored-from", type=int, default=10, help="first window counted in every run")
    parser.add_argument("--reference-rows", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=1000, help="events per run_batch (replay's default)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes (at most 2 on this machine)")
    parser.add_argument("--nannyml-reference", type=int, default=10, help="hourly reference chunks for NannyML")
    parser.add_argument("--no-nannyml", action="store_true")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="a small version of every scenario (~2 min)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--summarise", type=Path, help="recompute the summaries and table of a JSON written before")
    parser.add_argument("--resume", action="store_true", help="keep the runs of an interrupted --json run")
    args = parser.parse_args(argv)
    if args.summarise:
        return resummarise(args)
    if args.quick:
        args.stationary_windows, args.stationary_runs = 40, 2
        args.runs, args.cap = 2, 2
        args.noise_windows, args.noise_runs = 20, 1
        args.shift_windows, args.shift_runs = 4, 1
        args.reference_rows = 5_000
    args.processes = max(1, min(args.processes, 2))
    t0, load_start = time.perf_counter(), os.getloadavg()
    missing = "disabled (--no-nannyml)" if args.no_nannyml else nannyml_available()
    from watchkeeper.monitor.profile import ReferenceProfile

    config = ls.model_config()
    drift = config.models[0].drift
    ls.design()
    print(f"building the reference profile ({args.reference_rows:,} rows, CUSUMs)...", file=sys.stderr)
    profile = ReferenceProfile.build(
        ls.MODEL_ID,
        ls.reference_columns(args.seed, args.reference_rows),
        bins=drift.bins,
        sequential_arl_events=drift.sequential_arl_events,
        bucket_size=drift.bucket_size,
        metadata={"data": "load-tests/label_scenarios.py", "seed": args.seed},
    )
    t_profile = time.perf_counter() - t0
    print(f"  {t_profile:.0f} s", file=sys.stderr)
    tasks = build_tasks(args)
    settings = {
        "batch_size": args.batch_size,
        "nannyml": missing is None,
        "nannyml_reference": args.nannyml_reference,
    }
    total = sum(t.windows + TAIL for t in tasks)
    print(
        f"{len(tasks)} runs, {total:,} windows (~{total * ls.WINDOW * 2:,} events) on {args.processes} processes",
        file=sys.stderr,
    )
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in args.scenarios}
    # every finished run is appended to <json>.partial.jsonl; --resume skips the runs found there
    partial = args.json.with_name(args.json.stem + ".partial.jsonl") if args.json else None
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
    if partial is not None and args.resume and partial.exists():
        wanted = {orjson.dumps(asdict(t)) for t in tasks}
        for line in partial.read_bytes().splitlines():
            result = orjson.loads(line)
            if orjson.dumps(result["task"]) in wanted:
                wanted.discard(orjson.dumps(result["task"]))
                results[result["task"]["scenario"]].append(result)
        tasks = [t for t in tasks if orjson.dumps(asdict(t)) in wanted]
        print(f"  resumed {sum(map(len, results.values()))} runs from {partial}", file=sys.stderr)
    elif partial is not None:
        partial.unlink(missing_ok=True)
    with multiprocessing.get_context("fork").Pool(args.processes, _init_worker, (profile.to_dict(), settings)) as pool:
        for done, result in enumerate(pool.imap_unordered(run_task, tasks), 1):
            task = result["task"]
            results[task["scenario"]].append(result)
            if partial is not None:
                with partial.open("ab") as sink:
                    sink.write(orjson.dumps(result, option=_JSON_OPTIONS) + b"\n")
            fired = Counter(a["family"] for a in _firing(result["alerts"]))
            print(
                f"  [{done}/{len(tasks)}] {task['scenario']} run {task['run']}: {task['windows']} windows, "
                f"{result['events']:,} events in {result['wall_s']:.0f} s ({result['cpu_s']:.0f} s CPU; "
                f"{result['core_s'] / max(result['events'], 1) * 1e6:.0f} µs/event in the core), firing {dict(fired)}",
                file=sys.stderr,
            )
    summaries = {
        name: summarise(name, sorted(rs, key=lambda r: r["task"]["run"]), args.cap)
        for name, rs in results.items()
        if rs
    }
    elapsed = time.perf_counter() - t0
    print_table(summaries, missing)
    cpu = sum(r.get("cpu_s", 0.0) for rs in results.values() for r in rs)
    print(f"  total {elapsed:.0f} s on {args.processes} processes; the runs took {cpu:.0f} s of CPU")
    if args.json:
        versions = {"numpy": np.__version__, "python": platform.python_version()}
        if missing is None:
            import nannyml

            versions["nannyml"] = nannyml.__version__
        payload = {
            "scenarios": summaries,
            "table": table_rows(summaries, missing),
            "anchors": {
                "nannyml": {"skipped": missing}
                if missing
                else {"metrics": list(NANNYML_METRICS), "reference_chunks": args.nannyml_reference}
            },
            "design": {**asdict(ls.design()), "calibration_k": ls.CALIBRATION_K, "change_window": ls.CHANGE_WINDOW},
            "settings": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "tail_windows": TAIL,
                "model_config": config.models[0].model_dump(mode="json"),
            },
            "runs": results,
            "timings_s": {
                "profile": t_profile,
                "total": elapsed,
                "runs_wall": sum(r["wall_s"] for rs in results.values() for r in rs),
                "runs_cpu": sum(r.get("cpu_s", 0.0) for rs in results.values() for r in rs),
            },
            "machine": {
                "cores": os.cpu_count(),
                "load_average_start": load_start,
                "load_average_end": os.getloadavg(),
                **versions,
            },
            "source": source_info(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | _JSON_OPTIONS))
        if partial is not None:
            partial.unlink(missing_ok=True)
        print(f"  wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
