"""The alert timeline of a model: one row per alert (fingerprint), a bar per firing episode.

An episode starts at the window of its first ``firing`` transition and ends at the
``resolved`` one, or runs to the model's last window when it is still firing. Markers show
each transition (repeats included) with its summary on hover; retraining triggers get a
row of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import plotly.graph_objects as go

from watchkeeper.events import Alert
from watchkeeper.report.records import Trigger
from watchkeeper.report.style import COLOURS, MONITOR_COLOURS, base_layout, utc

__all__ = ["Episode", "alert_row", "episodes", "timeline_figure"]


@dataclass(frozen=True)
class Episode:
    row: str
    monitor: str
    start: datetime
    end: datetime
    resolved: bool


def alert_row(alert: Alert) -> str:
    """The row (and table) name of an alert: monitor/metric and subject."""
    return f"{alert.monitor}/{alert.metric} · {alert.subject}"


def episodes(alerts: Sequence[Alert], last_end: datetime) -> list[Episode]:
    """Firing episodes per fingerprint; one still firing at the end runs to ``last_end``."""
    by_fingerprint: dict[str, list[Alert]] = {}
    for alert in alerts:
        by_fingerprint.setdefault(alert.fingerprint, []).append(alert)
    found = []
    for transitions in by_fingerprint.values():
        opened: Alert | None = None
        for alert in sorted(transitions, key=lambda a: a.sequence):
            if alert.status == "firing" and opened is None:
                opened = alert
            elif alert.status == "resolved" and opened is not None:
                found.append(
                    Episode(
                        alert_row(opened), opened.monitor, opened.window.start, alert.ends_at or alert.window.end, True
                    )
                )
                opened = None
        if opened is not None:
            found.append(Episode(alert_row(opened), opened.monitor, opened.window.start, last_end, False))
    return found


def _transitions(alerts: Sequence[Alert], status: str) -> go.Scatter:
    chosen = [a for a in alerts if a.status == status]
    return go.Scatter(
        x=[utc(a.window.end) for a in chosen],
        y=[alert_row(a) for a in chosen],
        customdata=[a.summary for a in chosen],
        hovertemplate="%{x}<br>%{customdata}<extra>" + status + "</extra>",
        mode="markers",
        name=status,
        marker={
            "symbol": "triangle-up" if status == "firing" else "triangle-down",
            "size": 11,
            "color": COLOURS[status],
            "line": {"width": 1, "color": "white"},
        },
    )


def timeline_figure(alerts: Sequence[Alert], triggers: Sequence[Trigger], last_end: datetime) -> go.Figure:
    """Episodes as bars coloured by monitor, transitions as markers, retraining triggers as diamonds."""
    rows = list(dict.fromkeys(alert_row(a) for a in alerts))
    trigger_rows = [f"retraining · {t.data.reason.rule}" for t in triggers]
    figure = go.Figure()
    found = episodes(alerts, last_end)
    for monitor in dict.fromkeys(e.monitor for e in found):
        x: list[datetime | None] = []
        y: list[str | None] = []
        for episode in (e for e in found if e.monitor == monitor):
            x += [utc(episode.start), utc(episode.end), None]
            y += [episode.row, episode.row, None]
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"{monitor} firing",
                line={"width": 9, "color": MONITOR_COLOURS.get(monitor, COLOURS["line"])},
                opacity=0.55,
                hoverinfo="skip",
            )
        )
    figure.add_trace(_transitions(alerts, "firing"))
    figure.add_trace(_transitions(alerts, "resolved"))
    if triggers:
        figure.add_trace(
            go.Scatter(
                x=[utc(t.time) for t in triggers],
                y=trigger_rows,
                customdata=[t.data.reason.summary for t in triggers],
                hovertemplate="%{x}<br>%{customdata}<extra>retraining</extra>",
                mode="markers",
                name="retraining trigger",
                marker={"symbol": "diamond", "size": 12, "color": COLOURS["retraining"]},
            )
        )
    order = [*rows, *dict.fromkeys(trigger_rows)]
    figure.update_yaxes(categoryorder="array", categoryarray=order[::-1], type="category")
    figure.update_xaxes(title_text="event time (UTC)")
    return base_layout(figure, "Alerts and retraining triggers over time", 150 + 26 * len(order))
