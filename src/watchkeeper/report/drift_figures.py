"""Drift charts: the columns × windows PSI heatmap, each column's PSI and p-value over windows, histograms.

Windows with fewer events than ``drift.min_count`` get no verdict (``evaluated: false``);
their statistics are left out of the charts rather than drawn as if judged.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from watchkeeper.report.histograms import Histogram
from watchkeeper.report.records import WindowRecord
from watchkeeper.report.style import COLOURS, base_layout, utc, window_label
from watchkeeper.report.thresholds import DriftThresholds

__all__ = ["column_drift_figure", "drift_columns", "drift_heatmap", "histogram_figure"]

P_FLOOR = 1e-12  # smaller p-values are drawn at this floor (the hover shows the value)
HEATMAP_SATURATION = 2.5  # the heatmap's colour saturates at this multiple of min_psi


def drift_columns(windows: list[WindowRecord]) -> list[str]:
    """Every column that has statistics, in the order the windows list them."""
    return list(dict.fromkeys(name for w in windows for name in w.columns))


def _format_p(p: float | None) -> str:
    return "–" if p is None else f"{p:.3g}"


def drift_heatmap(windows: list[WindowRecord], thresholds: DriftThresholds) -> go.Figure:
    """PSI per column (rows) and window (columns); ● marks a drifted column (significant and large)."""
    columns = drift_columns(windows)
    starts = [utc(w.window_start) for w in windows]
    z: list[list[float | None]] = []
    marks: list[list[str]] = []
    hover: list[list[str]] = []
    for name in columns:
        stats = [w.columns.get(name) if w.evaluated else None for w in windows]
        z.append([s.psi if s is not None else None for s in stats])
        marks.append(["●" if name in w.drifted else "" for w in windows])
        hover.append(
            [
                f"{name}<br>window {window_label(w.window_start)} (n={w.n})<br>"
                + (
                    f"PSI {s.psi:.3g}, p adjusted {_format_p(s.p_adjusted)}"
                    if s and s.psi is not None
                    else "no verdict"
                )
                + ("<br><b>drifted</b>" if name in w.drifted else "")
                for w, s in zip(windows, stats, strict=True)
            ]
        )
    saturation = HEATMAP_SATURATION * thresholds.min_psi or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=starts,
            y=columns,
            text=marks,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            zmin=0.0,
            zmax=saturation,
            colorscale=[[0.0, "#f4f8fb"], [1 / HEATMAP_SATURATION, "#f9d56e"], [1.0, "#b03a2e"]],
            colorbar={"title": {"text": "PSI"}, "thickness": 12},
            xgap=1,
            ygap=1,
            name="PSI",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_xaxes(title_text="window start (UTC)")
    title = f"PSI per column and window (● drifted; colour saturates at {saturation:.3g})"
    return base_layout(figure, title, 120 + 28 * len(columns))


def column_drift_figure(column: str, windows: list[WindowRecord], thresholds: DriftThresholds) -> go.Figure:
    """A column's PSI (min_psi drawn) and adjusted p-value (alpha drawn, log scale) over the windows."""
    judged = [w for w in windows if w.evaluated and column in w.columns]
    starts = [utc(w.window_start) for w in judged]
    psi = [w.columns[column].psi for w in judged]
    p_adjusted = [w.columns[column].p_adjusted for w in judged]
    kind = judged[0].columns[column].kind if judged else ""
    figure = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.1,
        subplot_titles=("PSI", f"p-value ({thresholds.correction}-adjusted, log scale)"),
    )
    figure.add_trace(
        go.Scatter(x=starts, y=psi, mode="lines+markers", name="PSI", line={"color": COLOURS["line"]}), row=1, col=1
    )
    drifted = [(s, v) for s, v, w in zip(starts, psi, judged, strict=True) if column in w.drifted]
    figure.add_trace(
        go.Scatter(
            x=[s for s, _ in drifted],
            y=[v for _, v in drifted],
            mode="markers",
            name="drifted",
            marker={"color": COLOURS["drifted"], "size": 10, "symbol": "x"},
        ),
        row=1,
        col=1,
    )
    shown_p = [max(p, P_FLOOR) if p is not None else None for p in p_adjusted]
    figure.add_trace(
        go.Scatter(
            x=starts,
            y=shown_p,
            customdata=[_format_p(p) for p in p_adjusted],
            hovertemplate="%{x}<br>p adjusted %{customdata}<extra></extra>",
            mode="lines+markers",
            name="p adjusted",
            line={"color": COLOURS["baseline"]},
        ),
        row=1,
        col=2,
    )
    source = f" ({thresholds.source})"
    figure.add_hline(
        y=thresholds.min_psi,
        line={"dash": "dash", "color": COLOURS["threshold"]},
        annotation_text=f"min_psi {thresholds.min_psi:g}{source}",
        annotation_position="top left",
        row=1,
        col=1,
    )
    figure.add_hline(
        y=thresholds.alpha,
        line={"dash": "dash", "color": COLOURS["threshold"]},
        annotation_text=f"alpha {thresholds.alpha:g}{source}",
        annotation_position="top left",
        row=1,
        col=2,
    )
    decades = -math.log10(min([p for p in shown_p if p is not None] + [thresholds.alpha]))
    figure.update_yaxes(type="log", exponentformat="power", dtick=max(1, math.ceil(decades / 6)), row=1, col=2)
    figure.update_yaxes(rangemode="tozero", row=1, col=1)
    figure.update_layout(showlegend=False)
    title = f"{column} ({kind}); × drifted window" if kind else column
    return base_layout(figure, title, 300)


def histogram_figure(histogram: Histogram, window: WindowRecord) -> go.Figure:
    """Reference and window shares per bin, side by side (the bins PSI compares)."""
    stats = window.columns.get(histogram.column)
    psi = f", PSI {stats.psi:.3g}" if stats is not None and stats.psi is not None else ""
    label = window_label(window.window_start)
    figure = go.Figure(
        go.Bar(x=histogram.bins, y=histogram.reference, name="reference", marker={"color": COLOURS["reference"]})
    )
    if histogram.window is not None:
        figure.add_trace(
            go.Bar(
                x=histogram.bins,
                y=histogram.window,
                name=f"window {label} (n={histogram.window_n})",
                marker={"color": COLOURS["window"]},
            )
        )
        title = f"{histogram.column}: reference vs window {label}{psi}"
    else:
        title = f"{histogram.column}: reference (window side: pass --events){psi}"
    figure.update_layout(barmode="group", bargap=0.15)
    figure.update_yaxes(title_text="share", tickformat=".0%")
    figure.update_xaxes(type="category")
    return base_layout(figure, title, 320)
