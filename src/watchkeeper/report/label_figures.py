"""Charts of the label windows: accuracy metrics with their intervals, label coverage and delay, fairness.

Each label window is drawn from its final evaluation (or its latest, while its labels are
still arriving): see :meth:`watchkeeper.report.records.ModelRecords.add_labels`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from watchkeeper.report.records import AttributeFairness, GroupStats, LabelsRecord
from watchkeeper.report.style import COLOURS, base_layout, utc, window_label

__all__ = [
    "accuracy_figure",
    "accuracy_metrics",
    "coverage_figure",
    "disparity_figure",
    "fairness_attributes",
    "group_rates_figure",
]

RATES = (("selection_rate", "selection rate"), ("tpr", "TPR"), ("fpr", "FPR"))
_METRIC_COLOURS = [
    ("#1f4e79", "rgba(31, 78, 121, 0.12)"),
    ("#e67e22", "rgba(230, 126, 34, 0.12)"),
    ("#8e44ad", "rgba(142, 68, 173, 0.12)"),
    ("#16a085", "rgba(22, 160, 133, 0.12)"),
]
_DELAY_UNITS = ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes"), (1.0, "seconds"))


def accuracy_metrics(labels: Sequence[LabelsRecord]) -> list[str]:
    """The metrics that alert (they have evaluations), else ``accuracy`` when it was computed."""
    verdicts = [r.accuracy for r in labels if r.accuracy is not None]
    alerting = list(dict.fromkeys(e.metric for v in verdicts for e in v.evaluations))
    if alerting:
        return alerting
    return ["accuracy"] if any(v.metrics.get("accuracy") is not None for v in verdicts) else []


def _band(
    figure: go.Figure,
    x: list[object],
    interval: Sequence[tuple[float, float] | None],
    name: str,
    colour: str = COLOURS["band"],
    group: str | None = None,
) -> None:
    """A shaded interval between two lines (gaps where an interval is unknown); ``group`` ties it to a line's legend."""
    high = [i[1] if i else None for i in interval]
    low = [i[0] if i else None for i in interval]
    figure.add_trace(go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"))
    figure.add_trace(
        go.Scatter(
            x=x,
            y=low,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=colour,
            name=name,
            legendgroup=group,
            showlegend=group is None,
            hoverinfo="skip",
        )
    )


def accuracy_figure(metric: str, labels: Sequence[LabelsRecord]) -> go.Figure:
    """One metric per window with its interval, the baseline and the alert threshold; breaches marked."""
    rows = [(r, r.accuracy) for r in labels if r.accuracy is not None and r.accuracy.metrics.get(metric) is not None]
    x: list[object] = [utc(r.window_start) for r, _ in rows]
    intervals = [v.intervals.get(metric) for _, v in rows]
    evaluations = [next((e for e in v.evaluations if e.metric == metric), None) for _, v in rows]
    figure = go.Figure()
    _band(figure, x, intervals, "interval")
    figure.add_trace(
        go.Scatter(
            x=x,
            y=[v.metrics[metric] for _, v in rows],
            customdata=[f"{v.status}, {r.n_labeled} labelled" + ("" if r.final else ", not final") for r, v in rows],
            hovertemplate="%{x}<br>" + metric + " %{y:.4g}<br>%{customdata}<extra></extra>",
            mode="lines+markers",
            name=metric,
            line={"color": COLOURS["line"]},
            marker={"symbol": ["circle" if v.status == "evaluated" else "circle-open" for _, v in rows], "size": 8},
        )
    )
    baseline = [v.baseline.get(metric) if v.baseline else None for _, v in rows]
    if any(b is not None for b in baseline):
        figure.add_trace(
            go.Scatter(
                x=x, y=baseline, mode="lines", name="baseline", line={"dash": "dot", "color": COLOURS["baseline"]}
            )
        )
    if any(evaluations):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[e.threshold if e else None for e in evaluations],
                mode="lines",
                name="alert threshold",
                line={"dash": "dash", "color": COLOURS["threshold"]},
            )
        )
    breached = [(xi, v.metrics[metric]) for xi, (_, v), e in zip(x, rows, evaluations, strict=True) if e and e.breached]
    if breached:
        figure.add_trace(
            go.Scatter(
                x=[b[0] for b in breached],
                y=[b[1] for b in breached],
                mode="markers",
                name="breached",
                marker={"color": COLOURS["firing"], "size": 12, "symbol": "x"},
            )
        )
    figure.update_xaxes(title_text="window start (UTC)")
    return base_layout(figure, f"{metric} per window (open markers: no verdict)", 320)


def _delay_unit(values: Sequence[float | None]) -> tuple[float, str]:
    largest = max((v for v in values if v is not None), default=0.0)
    return next(((size, name) for size, name in _DELAY_UNITS if largest >= 2 * size), (1.0, "seconds"))


def coverage_figure(labels: Sequence[LabelsRecord]) -> go.Figure:
    """Share of predictions labelled per window, and the label delay's p50 / p90 / p99."""
    x = [utc(r.window_start) for r in labels]
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=("label coverage", "label delay"))
    figure.add_trace(
        go.Bar(
            x=x,
            y=[r.label_coverage for r in labels],
            customdata=[
                f"{r.n_labeled} of {r.n_predictions} labelled, {r.expired} expired" + ("" if r.final else ", not final")
                for r in labels
            ],
            hovertemplate="%{x}<br>coverage %{y:.1%}<br>%{customdata}<extra></extra>",
            name="label coverage",
            marker={"color": COLOURS["line"]},
        ),
        row=1,
        col=1,
    )
    size, unit = _delay_unit([v for r in labels for v in r.label_delay_seconds.values()])
    for quantile, dash in (("p50", "solid"), ("p90", "dash"), ("p99", "dot")):
        delays = [r.label_delay_seconds.get(quantile) for r in labels]
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[d / size if d is not None else None for d in delays],
                mode="lines+markers",
                name=f"delay {quantile}",
                line={"dash": dash, "color": COLOURS["window"]},
            ),
            row=1,
            col=2,
        )
    figure.update_yaxes(tickformat=".0%", range=[0, 1.05], row=1, col=1)
    figure.update_yaxes(title_text=unit, rangemode="tozero", row=1, col=2)
    return base_layout(figure, "Labels: coverage and delay per window", 300, subplot_titles=True)


def fairness_attributes(labels: Sequence[LabelsRecord]) -> list[str]:
    return list(dict.fromkeys(a for r in labels if r.fairness for a in r.fairness.attributes))


def _group_label(name: str, group: GroupStats, min_support: int) -> str:
    if group.sufficient:
        return f"{name}<br>n={group.count}"
    return f"{name}<br>n={group.count} (insufficient, &lt; {min_support})"


def group_rates_figure(attribute: str, fairness: AttributeFairness, record: LabelsRecord) -> go.Figure:
    """Selection rate, TPR and FPR per group with their intervals; insufficient groups hollow and named so."""
    names = list(fairness.groups)
    x = [_group_label(n, fairness.groups[n], fairness.min_support) for n in names]
    figure = go.Figure()
    for offset, (field, title) in enumerate(RATES):
        rates = [getattr(fairness.groups[n], field) for n in names]
        values = [r.value if r else None for r in rates]
        figure.add_trace(
            go.Scatter(
                x=x,
                y=values,
                mode="markers",
                name=title,
                offsetgroup=str(offset),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        r.interval[1] - v if r and r.interval and v is not None else None
                        for r, v in zip(rates, values, strict=True)
                    ],
                    "arrayminus": [
                        v - r.interval[0] if r and r.interval and v is not None else None
                        for r, v in zip(rates, values, strict=True)
                    ],
                },
                marker={
                    "size": 10,
                    "symbol": ["circle" if fairness.groups[n].sufficient else "circle-open" for n in names],
                },
            )
        )
    figure.update_layout(scattermode="group")
    figure.update_yaxes(range=[0, 1.05], tickformat=".0%")
    reference = f", reference group {fairness.reference_group}" if fairness.reference_group else ""
    title = f"{attribute}: rates per group, window {window_label(record.window_start)}{reference}"
    return base_layout(figure, title, 340)


def disparity_figure(attribute: str, labels: Sequence[LabelsRecord], tolerances: dict[str, float]) -> go.Figure:
    """Each disparity metric of the attribute over the windows, with the gap's interval and the tolerance."""
    rows = [(r, r.fairness.attributes[attribute]) for r in labels if r.fairness and attribute in r.fairness.attributes]
    metrics = list(dict.fromkeys(m for _, a in rows for m in a.disparities))
    x: list[object] = [utc(r.window_start) for r, _ in rows]
    figure = go.Figure()
    for metric, (line, band) in zip(metrics, itertools.cycle(_METRIC_COLOURS)):
        disparities = [a.disparities.get(metric) for _, a in rows]
        gaps = [d.gap.interval if d and d.gap else None for d in disparities]
        _band(figure, x, gaps, f"{metric} interval", band, group=metric)
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[d.difference if d else None for d in disparities],
                mode="lines+markers",
                name=metric.removesuffix("_difference").replace("_", " "),
                legendgroup=metric,
                line={"color": line},
            )
        )
    for tolerance in sorted({tolerances[m] for m in metrics if m in tolerances}):
        figure.add_hline(
            y=tolerance,
            line={"dash": "dash", "color": COLOURS["threshold"]},
            annotation_text=f"tolerance {tolerance:g}",
            annotation_position="top left",
        )
    figure.update_xaxes(title_text="window start (UTC)")
    return base_layout(
        figure, f"{attribute}: disparities per window (gap between sufficient groups, with interval)", 320
    )
