"""One model's part of the report: summary, alerts, drift, distributions, accuracy, fairness, retraining.

A part with nothing to show (no label windows, no fairness attributes, ...) says so in one
line instead of drawing an empty chart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from html import escape

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.profile import MULTIVARIATE, ReferenceProfile
from watchkeeper.report.drift_figures import column_drift_figure, drift_columns, drift_heatmap, histogram_figure
from watchkeeper.report.histograms import histogram
from watchkeeper.report.html import figure_div, slug
from watchkeeper.report.label_figures import (
    accuracy_figure,
    accuracy_metrics,
    coverage_figure,
    disparity_figure,
    fairness_attributes,
    group_rates_figure,
)
from watchkeeper.report.records import LabelsRecord, ModelRecords, WindowRecord
from watchkeeper.report.style import utc, window_label
from watchkeeper.report.tables import alerts_table, groups_table, triggers_table
from watchkeeper.report.thresholds import drift_thresholds, fairness_tolerances
from watchkeeper.report.timeline import episodes, timeline_figure

__all__ = ["ModelContext", "chosen_window", "histogram_columns", "model_section"]

LISTED_FIRING = 5  # the summary names at most this many alerts still firing, else counts them
OPEN_TABLE_ROWS = 10  # an alert table with more rows starts folded (the timeline shows them all)


@dataclass(frozen=True)
class ModelContext:
    """What a model's part is drawn with besides its records."""

    config: ModelConfig | None
    profile: ReferenceProfile | None
    profile_origin: str  # where the profile came from, for the summary
    window_counts: dict[str, np.ndarray] | None  # the chosen window's counts per column; None without --events
    window_at: float | None = None  # --window: the histograms' window is the one holding this time (epoch s)


def _holding(windows: Iterable[WindowRecord], at: float) -> WindowRecord | None:
    """The window of ``windows`` whose span holds the time ``at``."""
    return next((w for w in windows if w.window_start <= at < w.window_end), None)


def chosen_window(model: ModelRecords, at: float | None = None) -> WindowRecord | None:
    """The window whose histograms are drawn: the judged one holding ``at`` (``--window``), else
    the latest with drift, else the latest judged one."""
    judged = [w for w in model.windows if w.evaluated]
    if at is not None:
        return _holding(judged, at)
    return next((w for w in reversed(judged) if w.drifted), judged[-1] if judged else None)


def histogram_columns(window: WindowRecord, profile: ReferenceProfile, every: bool = False) -> list[str]:
    """The window's drifted columns (``every``: all its columns) that the profile has bins for (the
    derived PCA column has no events to count)."""
    columns = list(window.columns) if every and not window.drifted else window.drifted
    return [c for c in columns if c in profile.columns and c != MULTIVARIATE]


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _last_end(model: ModelRecords) -> datetime:
    ends = [utc(w.window_end) for w in model.windows] + [utc(r.window_end) for r in model.labels.values()]
    ends += [utc(a.window.end) for a in model.alerts] + [utc(t.time) for t in model.triggers]
    return max(ends)


def _summary(model: ModelRecords, context: ModelContext, last_end: datetime) -> str:
    windows = model.windows
    span = (
        f"{window_label(windows[0].window_start)} – {window_label(windows[-1].window_end)} UTC" if windows else "none"
    )
    firing = sorted({e.row for e in episodes(model.alerts, last_end) if not e.resolved})
    still_firing = ", ".join(firing) if len(firing) <= LISTED_FIRING else f"{len(firing)} (see the timeline)"
    thresholds = drift_thresholds(model, context.config)
    items = [
        f"drift windows: {len(windows)} ({sum(w.evaluated for w in windows)} judged, "
        f"{sum(bool(w.drifted) for w in windows)} with drift), {span}",
        f"label windows: {len(model.labels)} ({sum(r.final for r in model.labels.values())} final)",
        f"alert transitions: {len(model.alerts)}; still firing at the end: {still_firing or 'none'}",
        f"retraining triggers: {len(model.triggers)}",
        f"drift thresholds ({thresholds.source}): PSI >= {thresholds.min_psi:g} and "
        f"{thresholds.correction}-adjusted p < {thresholds.alpha:g}",
        f"reference: {context.profile_origin}" if context.profile else "reference: no profile given",
    ]
    return '<ul class="summary">' + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _alerts_part(model: ModelRecords, prefix: str, last_end: datetime) -> str:
    if not model.alerts and not model.triggers:
        return _note("No alerts and no retraining triggers.")
    figure = figure_div(timeline_figure(model.alerts, model.triggers, last_end), f"{prefix}-timeline")
    if not model.alerts:
        return figure + _note("No alerts.")
    shown = " open" if len(model.alerts) <= OPEN_TABLE_ROWS else ""  # a long table starts folded
    listing = f"<details{shown}><summary>All {len(model.alerts)} alert transitions</summary>"
    return figure + listing + alerts_table(model.alerts) + "</details>"


def _drift_part(model: ModelRecords, context: ModelContext, prefix: str) -> str:
    if not model.windows:
        return _note("No drift windows.")
    thresholds = drift_thresholds(model, context.config)
    parts = [figure_div(drift_heatmap(model.windows, thresholds), f"{prefix}-heatmap"), '<div class="grid">']
    parts += [
        figure_div(column_drift_figure(column, model.windows, thresholds), f"{prefix}-drift-{slug(column)}")
        for column in drift_columns(model.windows)
    ]
    return "".join([*parts, "</div>"])


def _distributions_part(model: ModelRecords, context: ModelContext, prefix: str) -> str:
    chosen = context.window_at is not None
    window = chosen_window(model, context.window_at)
    if window is None and context.window_at is not None:
        at = context.window_at
        held = _holding(model.windows, at)
        if held is not None:
            label = window_label(held.window_start)
            return _note(f"The window of --window, {label} (n={held.n}), was not judged (too few events).")
        return _note(f"No drift window holds --window {window_label(at)}.")
    if window is None:
        return _note("No judged drift window.")
    if not window.drifted and not chosen:
        return _note(f"No window drifted; the latest judged window is {window_label(window.window_start)}.")
    if context.profile is None:
        return _note(
            f"Window {window_label(window.window_start)} drifted in {', '.join(window.drifted)}; histograms need the "
            "reference profile (--profile, --config, or the references topic)."
        )
    columns = histogram_columns(window, context.profile, every=chosen)
    if not chosen:
        intro = f"The latest window with drift, {window_label(window.window_start)} (n={window.n}): its drifted columns"
    elif window.drifted:
        intro = f"The window of --window, {window_label(window.window_start)} (n={window.n}): its drifted columns"
    else:
        intro = f"The window of --window, {window_label(window.window_start)} (n={window.n}), drifted in no column: all"
    intro += " on the bins PSI compares." if context.window_counts is not None else "; pass --events for its side."
    figures = [
        figure_div(
            histogram_figure(
                histogram(c, context.profile.columns[c], (context.window_counts or {}).get(c)),
                window,
            ),
            f"{prefix}-hist-{slug(c)}",
        )
        for c in columns
    ]
    return _note(intro) + '<div class="grid">' + "".join(figures) + "</div>"


def _accuracy_part(labels: list[LabelsRecord], prefix: str) -> str:
    if not labels:
        return _note("No label windows (the model has no accuracy or fairness monitor, or no outcomes yet).")
    figures = [figure_div(accuracy_figure(m, labels), f"{prefix}-accuracy-{slug(m)}") for m in accuracy_metrics(labels)]
    figures.append(figure_div(coverage_figure(labels), f"{prefix}-labels"))
    return '<div class="grid">' + "".join(figures) + "</div>"


def _fairness_part(model: ModelRecords, context: ModelContext, labels: list[LabelsRecord], prefix: str) -> str:
    attributes = fairness_attributes(labels)
    if not attributes:
        return _note("No fairness statistics (no sensitive_attributes, or no label windows).")
    tolerances, source = fairness_tolerances(model, context.config)
    parts = [_note(f"Tolerances ({source}): " + ", ".join(f"{k} {v:g}" for k, v in sorted(tolerances.items())))]
    for attribute in attributes:
        evaluated = [
            (r, r.fairness.attributes[attribute]) for r in labels if r.fairness and attribute in r.fairness.attributes
        ]
        record, fairness = next(((r, f) for r, f in reversed(evaluated) if r.final), evaluated[-1])
        key = slug(attribute)
        parts += [
            '<div class="grid">',
            figure_div(group_rates_figure(attribute, fairness, record), f"{prefix}-fairness-{key}-groups"),
            figure_div(disparity_figure(attribute, labels, tolerances), f"{prefix}-fairness-{key}-disparities"),
            "</div>",
            groups_table(fairness),
        ]
    return "".join(parts)


def model_section(model: ModelRecords, context: ModelContext) -> tuple[str, str, str]:
    """``(id, title, html)`` of the model's part of the page."""
    prefix = slug(model.model_id)
    last_end = _last_end(model)
    labels = list(model.labels.values())
    parts = [
        f"<h2>Model {escape(model.model_id)}</h2>",
        _summary(model, context, last_end),
        "<h3>Alerts</h3>",
        _alerts_part(model, prefix, last_end),
        "<h3>Drift per column and window</h3>",
        _drift_part(model, context, prefix),
        "<h3>Distributions: reference vs window</h3>",
        _distributions_part(model, context, prefix),
        "<h3>Accuracy and labels</h3>",
        _accuracy_part(labels, prefix),
        "<h3>Fairness</h3>",
        _fairness_part(model, context, labels, prefix),
        "<h3>Retraining triggers</h3>",
        triggers_table(model.triggers) if model.triggers else _note("No retraining triggers."),
    ]
    section_id = f"model-{prefix}"
    return section_id, model.model_id, f'<section class="model" id="{section_id}">' + "".join(parts) + "</section>"
