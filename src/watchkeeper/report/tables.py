"""The report's HTML tables: alerts, retraining triggers and fairness groups (every value escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from watchkeeper.events import Alert
from watchkeeper.report.label_figures import RATES
from watchkeeper.report.records import AttributeFairness, Rate, Trigger
from watchkeeper.report.style import utc
from watchkeeper.report.timeline import alert_row

__all__ = ["alerts_table", "groups_table", "table", "triggers_table"]


def table(css_class: str, header: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A table of already escaped cells; each row is ``(row css class, cells)``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{row_class}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
        for row_class, cells in rows
    )
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _time(moment: datetime) -> str:
    return escape(utc(moment).strftime("%Y-%m-%d %H:%M"))


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def alerts_table(alerts: Sequence[Alert]) -> str:
    """Every alert transition in time order: when, status, severity, what, observed vs threshold, summary."""
    rows = [
        (
            f"alert alert-{a.status}",
            [
                _time(a.window.end),
                f'<span class="status {a.status}">{a.status}</span>',
                escape(a.severity),
                escape(alert_row(a)),
                escape(f"{_number(a.observed)} {a.comparator} {a.threshold:.4g}"),
                str(a.window.n),
                escape(a.summary),
            ],
        )
        for a in alerts
    ]
    header = ["window end (UTC)", "status", "severity", "alert", "observed", "n", "summary"]
    return table("alerts", header, rows)


def triggers_table(triggers: Sequence[Trigger]) -> str:
    """Every retraining trigger: when, rule, category, evidence and data window, with its idempotency key."""
    rows = []
    for event in triggers:
        trigger = event.data
        evidence = "; ".join(f"{e.metric} {e.subject} = {_number(e.value)}" for e in trigger.evidence)
        window = trigger.data_window
        rows.append(
            (
                "trigger",
                [
                    _time(event.time),
                    escape(trigger.reason.rule),
                    escape(f"{trigger.reason.category} ({trigger.reason.severity})"),
                    escape(evidence),
                    escape(f"{_time(window.start)} – {_time(window.end)}, {window.n_predictions} predictions"),
                    f"<code>{escape(trigger.id)}</code>",
                ],
            )
        )
    return table("triggers", ["time (UTC)", "rule", "category", "evidence", "data window", "id"], rows)


def _rate(rate: Rate | None) -> str:
    if rate is None or rate.value is None:
        return "–"
    interval = f" [{rate.interval[0]:.3f}, {rate.interval[1]:.3f}]" if rate.interval else ""
    return f"{rate.value:.3f}{interval}"


def groups_table(fairness: AttributeFairness) -> str:
    """One row per group: support, status (insufficient groups say so) and each rate with its interval."""
    rows = []
    for name, group in fairness.groups.items():
        status = escape(group.status) + ("" if group.sufficient else f" (&lt; {fairness.min_support})")
        rows.append(
            (
                "group" if group.sufficient else "group insufficient",
                [
                    escape(name),
                    str(group.count),
                    str(group.n_labeled),
                    status,
                    *(_rate(getattr(group, field)) for field, _ in RATES),
                ],
            )
        )
    header = ["group", "predictions", "labelled", "status", *(f"{title} [interval]" for _, title in RATES)]
    return table("groups", header, rows)
