"""Retraining policies: due exactly when the policy says, rate limited, deterministic, restorable."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from watchkeeper.config import DAY, RetrainingPolicy
from watchkeeper.events import (
    Alert,
    AlertWindow,
    ConfidenceInterval,
    Monitor,
    RetrainingTrigger,
    Severity,
    alert_cloudevent,
    deterministic_id,
    trigger_cloudevent,
)
from watchkeeper.monitor.alerts import AlertBook, AlertRule, Evaluation
from watchkeeper.monitor.retraining import RetrainingPlanner, WindowSpan

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "retraining-trigger.v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

T0 = 1_700_000_040.0  # a window end (multiple of 60 s)
MODEL = "credit"
MONITORS: tuple[Monitor, ...] = ("drift", "accuracy", "fairness", "data_quality")
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
FP_MONITOR: dict[str, Monitor] = {"fp0": "drift", "fp1": "accuracy", "fp2": "fairness", "fp3": "drift"}
CTX: dict[str, Any] = {"reference_id": "ref-1", "monitor_version": "0.1.0", "config_hash": "cfg"}


def _time(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def make_alert(
    fp: str,
    end: float,
    *,
    status: str = "firing",
    severity: Severity = "error",
    monitor: Monitor | None = None,
    observed: float | None = 0.3,
    details: dict[str, Any] | None = None,
    version: str = "7",
) -> Alert:
    return Alert(
        fingerprint=fp,
        status=status,  # type: ignore[arg-type]
        severity=severity,
        model_id=MODEL,
        model_version=version,
        monitor=monitor or FP_MONITOR.get(fp, "drift"),
        metric="psi",
        subject=f"feature-{fp}",
        observed=observed,
        threshold=0.2,
        comparator=">=",
        confidence_interval=ConfidenceInterval(low=0.25, high=0.35),
        window=AlertWindow(start=_time(end - 60), end=_time(end), n=1000),
        starts_at=_time(end - 60),
        ends_at=_time(end) if status == "resolved" else None,
        summary=f"{fp} {status}",
        description="",
        details=details or {},
    )


def policy(**fields: Any) -> RetrainingPolicy:
    """A policy from config-style values (durations as strings)."""
    return RetrainingPolicy.model_validate(fields)


def window(end: float) -> WindowSpan:
    return (end - 60.0, end, 1000, 10)


def alert_id(alert: Alert) -> str:
    return alert_cloudevent(alert, "test").id


# -- random sequences ------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    dt: float  # event time since the previous step (0 = same window end)
    fp: str | None  # None: a closed window without a new alert
    status: str = "firing"


policies_st = st.lists(
    st.builds(
        RetrainingPolicy,
        name=st.just("p"),
        monitors=st.lists(st.sampled_from(MONITORS), min_size=1, max_size=4, unique=True),
        severities=st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=4, unique=True),
        firing_for=st.sampled_from([0.0, 60.0, 600.0, 3600.0]),
        min_alerts=st.integers(1, 3),
        cooldown=st.sampled_from([60.0, 600.0, 3600.0, 6 * 3600.0, DAY, 2 * DAY]),
        max_per_day=st.integers(1, 4),
        training_window=st.sampled_from([DAY, 30 * DAY]),
    ),
    min_size=1,
    max_size=3,
).map(lambda ps: [p.model_copy(update={"name": f"p{i}"}) for i, p in enumerate(ps)])

steps_st = st.lists(
    st.builds(
        Step,
        dt=st.sampled_from([0.0, 60.0, 60.0, 600.0, 3600.0, 6 * 3600.0, 20 * 3600.0]),
        fp=st.sampled_from([None, None, "fp0", "fp1", "fp2", "fp3"]),
        status=st.sampled_from(["firing", "firing", "firing", "resolved"]),
    ),
    min_size=5,
    max_size=80,
)
fp_severity_st = st.fixed_dictionaries({fp: st.sampled_from(SEVERITIES) for fp in FP_MONITOR})

Run = list[tuple[float, list[RetrainingTrigger]]]


def run(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity], split: int | None = None
) -> tuple[Run, dict[str, Any]]:
    """Drive a planner through the steps; at ``split`` restore it from its JSON state."""
    planner = RetrainingPlanner(MODEL, policies)
    out: Run = []
    at = T0
    for i, s in enumerate(steps):
        if i == split:
            planner = RetrainingPlanner.from_dict(
                json.loads(json.dumps(planner.to_dict())), model_id=MODEL, policies=policies
            )
        at += s.dt
        if s.fp is None:
            out.append((at, planner.observe_window(window(at), **CTX)))
        else:
            alert = make_alert(s.fp, at, status=s.status, severity=severity[s.fp])
            out.append((at, planner.observe(alert, window=window(at), alert_id=alert_id(alert), **CTX)))
    return out, planner.to_dict()


def trigger_times(out: Run) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for at, triggers in out:
        for trigger in triggers:
            times.setdefault(trigger.reason.rule, []).append(at)
    return times


@settings(max_examples=300, deadline=None)
@given(policies_st, steps_st, fp_severity_st)
def test_never_more_than_one_trigger_per_cooldown(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity]
) -> None:
    out, _ = run(policies, steps, severity)
    cooldown = {p.name: p.cooldown for p in policies}
    for name, times in trigger_times(out).items():
        assert all(b - a >= cooldown[name] for a, b in itertools.pairwise(times))


@settings(max_examples=300, deadline=None)
@given(policies_st, steps_st, fp_severity_st)
def test_never_more_than_max_per_day_in_any_24h(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity]
) -> None:
    out, _ = run(policies, steps, severity)
    cap = {p.name: p.max_per_day for p in policies}
    for name, times in trigger_times(out).items():
        for start in times:  # any 24 h span holding triggers can start at one of them
            assert sum(1 for t in times if start <= t < start + DAY) <= cap[name]


@settings(max_examples=300, deadline=None)
@given(policies_st, steps_st, fp_severity_st)
def test_triggers_exactly_when_due(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity]
) -> None:
    """An independent model of the policy: due ⇔ enough matching alerts firing long enough, not rate limited."""
    out, _ = run(policies, steps, severity)
    since: dict[str, float] = {}
    sent: dict[str, list[float]] = {p.name: [] for p in policies}
    at = T0
    for s, (_, triggers) in zip(steps, out, strict=True):
        at += s.dt
        if s.fp is not None and s.status == "resolved":
            since.pop(s.fp, None)
        elif s.fp is not None:
            since.setdefault(s.fp, at)
        fired = {t.reason.rule: t for t in triggers}
        for p in policies:
            match = sorted(
                fp
                for fp, t in since.items()
                if FP_MONITOR[fp] in p.monitors and severity[fp] in p.severities and at - t >= p.firing_for
            )
            history = sent[p.name]
            due = (
                len(match) >= p.min_alerts
                and (not history or at - history[-1] >= p.cooldown)
                and sum(1 for t in history if t > at - DAY) < p.max_per_day
            )
            assert (p.name in fired) == due
            if due:
                history.append(at)
                trigger = fired[p.name]
                assert sorted(e.subject for e in trigger.evidence) == [f"feature-{fp}" for fp in match]
                assert trigger.reason.severity == max((severity[fp] for fp in match), key=SEVERITIES[::-1].index)
                assert trigger.id == deterministic_id(MODEL, "7", p.name, _time(at).isoformat())


@settings(max_examples=200, deadline=None)
@given(policies_st, steps_st, fp_severity_st)
def test_same_input_gives_the_same_trigger_ids(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity]
) -> None:
    first, state1 = run(policies, steps, severity)
    second, state2 = run(policies, steps, severity)
    assert [[t.model_dump() for t in ts] for _, ts in first] == [[t.model_dump() for t in ts] for _, ts in second]
    assert json.dumps(state1) == json.dumps(state2)
    ids = [t.id for _, ts in first for t in ts]
    assert len(ids) == len(set(ids))


@settings(max_examples=300, deadline=None)
@given(policies_st, steps_st, fp_severity_st, st.data())
def test_json_state_round_trip_mid_sequence_changes_nothing(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(steps)))
    straight, state1 = run(policies, steps, severity)
    restored, state2 = run(policies, steps, severity, split=split)
    assert [[t.model_dump() for t in ts] for _, ts in straight] == [[t.model_dump() for t in ts] for _, ts in restored]
    assert state1 == state2


@settings(max_examples=50, deadline=None)
@given(policies_st, steps_st, fp_severity_st)
def test_every_trigger_cloudevent_validates_against_the_schema(
    policies: list[RetrainingPolicy], steps: list[Step], severity: dict[str, Severity]
) -> None:
    out, _ = run(policies, steps, severity)
    for _, triggers in out:
        for trigger in triggers:
            event = trigger_cloudevent(trigger, "watchkeeper", trigger.data_window.end)
            VALIDATOR.validate(json.loads(event.model_dump_json()))
            assert event.id == trigger.id


# -- examples ----------------------------------------------------------------------------


def test_evidence_carries_the_alert_numbers_and_the_trigger_its_context() -> None:
    rule = policy(name="drift-retrain", monitors=["drift"], cooldown="6h", training_window="7d")
    planner = RetrainingPlanner(MODEL, [rule])
    alert = make_alert("fp0", T0, severity="critical", observed=0.31, details={"baseline": 0.05, "p_value": 1e-9})
    [trigger] = planner.observe(
        alert, window=(T0 - 60, T0, 5000, 1200), alert_id=alert_id(alert), reference_id="ref-1",
        monitor_version="0.1.0", config_hash="abc",
    )  # fmt: skip
    [evidence] = trigger.evidence
    assert evidence.model_dump() == {
        "alert_id": alert_id(alert),
        "metric": "psi",
        "subject": "feature-fp0",
        "value": 0.31,
        "baseline": 0.05,
        "threshold": 0.2,
        "confidence_interval": {"low": 0.25, "high": 0.35, "level": 0.95},
        "n": 1000,
    }
    assert trigger.id == deterministic_id(MODEL, "7", "drift-retrain", _time(T0).isoformat())
    assert (trigger.model.id, trigger.model.version) == (MODEL, "7")
    assert (trigger.reason.category, trigger.reason.rule, trigger.reason.severity) == (
        "drift",
        "drift-retrain",
        "critical",
    )
    assert trigger.data_window.model_dump() == {
        "start": _time(T0 - 60),
        "end": _time(T0),
        "n_predictions": 5000,
        "n_labeled": 1200,
    }
    assert trigger.suggested_training_window is not None
    assert trigger.suggested_training_window.start == _time(T0 - 7 * DAY)
    assert trigger.suggested_training_window.end == _time(T0)
    assert trigger.reference_id == "ref-1"
    assert trigger.policy == {
        "name": "drift-retrain",
        "cooldown_until": _time(T0 + 6 * 3600).isoformat().replace("+00:00", "Z"),
        "triggers_last_24h": 1,
    }
    assert trigger.monitor == {"version": "0.1.0", "config_hash": "abc"}


def test_a_missing_or_non_numeric_baseline_is_null() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p")])
    alert = make_alert("fp0", T0, details={"baseline": "n/a"})
    [trigger] = planner.observe(alert, window=window(T0), alert_id="a", **CTX)
    assert trigger.evidence[0].baseline is None


def test_a_resolved_alert_no_longer_counts() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", firing_for="10m")])
    firing = make_alert("fp0", T0)
    assert planner.observe(firing, window=window(T0), alert_id="a1", **CTX) == []
    resolved = make_alert("fp0", T0 + 120, status="resolved")
    assert planner.observe(resolved, window=window(T0 + 120), alert_id="a2", **CTX) == []
    assert planner.firing == {}
    for k in range(3, 30):
        assert planner.observe_window(window(T0 + 60 * k), **CTX) == []


def test_a_refiring_alert_starts_its_firing_for_again() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", firing_for="5m")])
    planner.record(make_alert("fp0", T0), alert_id="a1")
    planner.record(make_alert("fp0", T0 + 240, status="resolved"), alert_id="a2")
    planner.record(make_alert("fp0", T0 + 300), alert_id="a3")
    assert planner.observe_window(window(T0 + 540), **CTX) == []
    [trigger] = planner.observe_window(window(T0 + 600), **CTX)
    assert [e.alert_id for e in trigger.evidence] == ["a3"]


def test_firing_for_is_satisfied_by_closed_windows_without_repeats() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", firing_for="5m")])
    alert = make_alert("fp0", T0)
    assert planner.observe(alert, window=window(T0), alert_id="a", **CTX) == []
    due = [k for k in range(1, 10) if planner.observe_window(window(T0 + 60 * k), **CTX)]
    assert due == [5]


def test_firing_for_is_satisfied_by_a_repeat_announcement() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", firing_for="1h")])
    assert planner.observe(make_alert("fp0", T0), window=window(T0), alert_id="a", **CTX) == []
    repeat = make_alert("fp0", T0 + 3600, observed=0.5)
    [trigger] = planner.observe(repeat, window=window(T0 + 3600), alert_id="r", **CTX)
    assert [(e.alert_id, e.value) for e in trigger.evidence] == [("r", 0.5)]  # the latest announcement


def test_severity_and_monitor_filters() -> None:
    rule = policy(name="p", monitors=["accuracy"], severities=["critical"])
    planner = RetrainingPlanner(MODEL, [rule])
    cases: list[tuple[str, Severity, Monitor]] = [
        ("fp0", "critical", "drift"),  # wrong monitor
        ("fp1", "error", "accuracy"),  # wrong severity
        ("fp1", "warning", "accuracy"),
    ]
    for k, (fp, severity, monitor) in enumerate(cases):
        alert = make_alert(fp, T0 + 60 * k, severity=severity, monitor=monitor)
        assert planner.observe(alert, window=window(T0 + 60 * k), alert_id=f"a{k}", **CTX) == []
    alert = make_alert("fp1", T0 + 600, severity="critical", monitor="accuracy")
    [trigger] = planner.observe(alert, window=window(T0 + 600), alert_id="hit", **CTX)
    assert [e.alert_id for e in trigger.evidence] == ["hit"]
    assert (trigger.reason.category, trigger.reason.severity) == ("accuracy", "critical")


def test_default_policy_ignores_info_alerts() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p")])
    assert planner.observe(make_alert("fp0", T0, severity="info"), window=window(T0), alert_id="a", **CTX) == []
    assert planner.observe(make_alert("fp1", T0, severity="warning"), window=window(T0), alert_id="b", **CTX)


def test_min_alerts_counts_distinct_fingerprints_and_record_then_window_collects_all() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", min_alerts=2)])
    assert planner.observe(make_alert("fp0", T0), window=window(T0), alert_id="a", **CTX) == []
    assert planner.observe(make_alert("fp0", T0 + 60), window=window(T0 + 60), alert_id="b", **CTX) == []
    planner.record(make_alert("fp1", T0 + 120, severity="critical"), alert_id="c")
    planner.record(make_alert("fp2", T0 + 120), alert_id="d")
    [trigger] = planner.observe_window(window(T0 + 120), **CTX)
    assert [e.alert_id for e in trigger.evidence] == ["c", "b", "d"]  # most severe, then longest firing
    assert trigger.reason.category == "accuracy"


def test_continuous_drift_through_the_alert_book_triggers_once_per_cooldown() -> None:
    """Three days of drift, every window closed: one trigger a day, the first after firing_for."""
    book = AlertBook(rule=AlertRule(for_windows=2, resolve_windows=2))
    planner = RetrainingPlanner(MODEL, [policy(name="p", firing_for="10m", cooldown="1d")])
    triggers: list[tuple[float, RetrainingTrigger]] = []
    for k in range(3 * 24 * 60):
        end = T0 + 60 * k
        evaluation = Evaluation(
            model_id=MODEL, model_version="7", monitor="drift", metric="psi", subject="income", observed=0.4,
            threshold=0.1, comparator=">=", breached=True, cleared=False, window_start=end - 60, window_end=end,
            n=500, severity="warning", summary="income drifted", description="",
        )  # fmt: skip
        alert = book.observe(evaluation)
        if alert is not None:
            planner.record(alert, alert_id=alert_id(alert))
        triggers += [(end, t) for t in planner.observe_window(window(end), **CTX)]
    fired_at = T0 + 60  # for_windows=2
    assert [end for end, _ in triggers] == [fired_at + 600, fired_at + 600 + DAY, fired_at + 600 + 2 * DAY]
    assert len({t.id for _, t in triggers}) == 3


def test_daily_cap_blocks_when_cooldown_is_short() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", cooldown="1h", max_per_day=2)])
    planner.record(make_alert("fp0", T0), alert_id="a")
    fired = [k for k in range(0, 49) if planner.observe_window(window(T0 + 3600 * k), **CTX)]
    assert fired == [0, 1, 24, 25, 48]


def test_out_of_order_window_is_blocked_by_the_cooldown() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="p", cooldown="1h")])
    planner.record(make_alert("fp0", T0), alert_id="a")
    assert planner.observe_window(window(T0 + 7200), **CTX)
    assert planner.observe_window(window(T0), **CTX) == []


def test_policy_config_parsing() -> None:
    parsed = policy(name="p", firing_for="0s", cooldown="6h", training_window="2w", severities=["critical"])
    assert (parsed.firing_for, parsed.cooldown, parsed.training_window) == (0.0, 21600.0, 14 * DAY)
    assert RetrainingPolicy.model_validate({"name": "p", "firing_for": "15m"}).firing_for == 900.0
    default = RetrainingPolicy(name="p")
    assert default.monitors == list(MONITORS)
    assert default.severities == ["critical", "error", "warning"]
    assert (default.firing_for, default.min_alerts, default.cooldown, default.max_per_day) == (0.0, 1, DAY, 3)
    assert default.training_window == 30 * DAY
    for bad in (
        {"name": "p", "extra": 1},
        {"name": "p", "cooldown": "0s"},
        {"name": "p", "firing_for": "-5m"},
        {"name": "p", "monitors": ["latency"]},
        {"name": "p", "severities": []},
        {"name": "p", "max_per_day": 0},
        {"name": ""},
    ):
        with pytest.raises(ValidationError):
            RetrainingPolicy.model_validate(bad)
    with pytest.raises(ValidationError):
        default.name = "q"


def test_policy_names_must_be_unique_and_alerts_of_the_model() -> None:
    with pytest.raises(ValueError, match="unique"):
        RetrainingPlanner(MODEL, [policy(name="p"), policy(name="p")])
    planner = RetrainingPlanner("other", [policy(name="p")])
    with pytest.raises(ValueError, match="credit"):
        planner.record(make_alert("fp0", T0), alert_id="a")


def test_state_of_removed_policies_is_dropped() -> None:
    planner = RetrainingPlanner(MODEL, [policy(name="old"), policy(name="p")])
    planner.record(make_alert("fp0", T0), alert_id="a")
    assert len(planner.observe_window(window(T0), **CTX)) == 2
    restored = RetrainingPlanner.from_dict(planner.to_dict(), model_id=MODEL, policies=[policy(name="p")])
    assert set(restored.to_dict()["last_trigger"]) == {"p"}
    assert set(restored.to_dict()["firing"]) == {"fp0"}


def test_the_docs_example_is_what_the_code_prints() -> None:
    """docs/retraining.md shows a real trigger: 12 one-minute windows of drift, policy drift-retrain."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "retraining.md").read_text()
    shown = json.loads(doc.split("```json\n", 1)[1].split("```", 1)[0])
    rule = policy(name="drift-retrain", monitors=["drift"], firing_for="10m", cooldown="1d", max_per_day=1)
    book = AlertBook(rule=AlertRule(for_windows=2, resolve_windows=2))
    planner = RetrainingPlanner("demo-credit", [rule])
    t0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC).timestamp()
    events = []
    for k in range(12):
        end, psi = t0 + 60 * k, 0.21 + 0.002 * k
        evaluation = Evaluation(
            model_id="demo-credit", model_version="3", monitor="drift", metric="psi", subject="income",
            observed=psi, threshold=0.1, comparator=">=", breached=True, cleared=False, window_start=end - 60,
            window_end=end, n=1840, severity="warning", summary=f"demo-credit: income drifted (PSI {psi:.3f} >= 0.1)",
            description="", details={"p_adjusted": 1.2e-14, "jensen_shannon": 0.061},
        )  # fmt: skip
        alert = book.observe(evaluation)
        if alert is not None:
            planner.record(alert, alert_id=alert_cloudevent(alert, "watchkeeper").id)
        for trigger in planner.observe_window(
            (end - 60, end, 1840, 312),
            reference_id="7c1e5a0b93d24f68a1b0c9e2d4f67a35",
            monitor_version="0.1.0",
            config_hash="5be0c2a19f3d7e64",
        ):
            events.append(trigger_cloudevent(trigger, "watchkeeper", trigger.data_window.end))
    assert len(events) == 1
    assert json.loads(events[0].model_dump_json()) == shown
    VALIDATOR.validate(shown)
