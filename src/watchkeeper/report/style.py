"""What every chart of the report shares: times on a UTC axis, colours and the base layout."""

from __future__ import annotations

from datetime import UTC, datetime

import plotly.graph_objects as go

__all__ = ["COLOURS", "MONITOR_COLOURS", "base_layout", "utc", "window_label"]

COLOURS = {
    "line": "#1f4e79",
    "band": "rgba(31, 78, 121, 0.18)",
    "threshold": "#c0392b",
    "baseline": "#7f8c8d",
    "drifted": "#c0392b",
    "firing": "#c0392b",
    "resolved": "#27ae60",
    "retraining": "#8e44ad",
    "reference": "#95a5a6",
    "window": "#e67e22",
    "insufficient": "#b0b0b0",
}
MONITOR_COLOURS = {"drift": "#e67e22", "data_quality": "#2980b9", "accuracy": "#c0392b", "fairness": "#8e44ad"}


def utc(moment: float | datetime) -> datetime:
    """A naive UTC datetime (plotly draws those as given; the axes say UTC) from epoch seconds or an aware datetime."""
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).replace(tzinfo=None)
    return datetime.fromtimestamp(moment, UTC).replace(tzinfo=None)


def window_label(start: float | datetime) -> str:
    """A window named by its start, to the minute (UTC)."""
    return utc(start).strftime("%Y-%m-%d %H:%M")


def base_layout(figure: go.Figure, title: str, height: int, subplot_titles: bool = False) -> go.Figure:
    """The report's look: white template, the title top left and the legend in one row under it.

    Both sit in the top margin (positioned in pixels from the top of the figure), so neither
    covers the plot nor its subplots' titles.
    """
    top = 96 if subplot_titles else 72
    total = height + top - 72
    figure.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.01, "xanchor": "left", "y": 1 - 8 / total, "yanchor": "top", "font": {"size": 15}},
        height=total,
        margin={"l": 60, "r": 20, "t": top, "b": 50},
        legend={
            "orientation": "h",
            "xref": "container",
            "x": 0.01,
            "yref": "container",
            "y": 1 - 34 / total,
            "yanchor": "top",
        },
        hoverlabel={"align": "left"},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    )
    return figure
