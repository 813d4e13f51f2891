"""Accuracy and fairness aggregates per prediction-time window (stage 1 side).

Two contributions meet in stage 2, both attributed to the window of the *prediction's*
event time:

* at prediction time (:func:`prediction_entries`): every prediction adds itself unlabelled
  (``n``, predicted class, score; per group selections for fairness);
* at label time (:func:`label_entries`): each joined outcome completes its prediction with
  ``late=True`` (only the labelled counters move), plus its label delay. Each label is filed under the
  first *checkpoint* of its window at or after the outcome's event time (window end plus
  ``LABEL_CHECKPOINTS`` × the label horizon), so that which labels a checkpoint counts is a
  function of the events' timestamps, never of when they were read.

So ``n`` counts predictions once, ``n_labeled`` counts outcomes once, and label coverage is
their ratio. All aggregates are the mergeable ones of :mod:`watchkeeper.stats`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.columns import field_values, nested
from watchkeeper.monitor.grouping import pick, window_starts
from watchkeeper.monitor.join import LabelledRow
from watchkeeper.monitor.wire import LabelEntry
from watchkeeper.stats.cbpe import expected_confusion
from watchkeeper.stats.classification import MISSING, ClassificationAggregate
from watchkeeper.stats.delays import delay_counts
from watchkeeper.stats.fairness import GroupFairnessAggregate, group_values, intersection_values
from watchkeeper.stats.regression import RegressionAggregate

__all__ = [
    "LABEL_CHECKPOINTS",
    "checkpoint_times",
    "label_entries",
    "new_classification",
    "prediction_entries",
    "uses_labels",
]

LABEL_CHECKPOINTS: tuple[float, ...] = (0.25, 0.5, 1.0)
"""Where a label window is evaluated: its end plus these fractions of the label horizon."""

ERROR_SLOTS = 64
"""Prediction-time slots of a window in which labelled errors are counted (the error stream's order)."""


def checkpoint_times(config: ModelConfig, start: float) -> list[float]:
    """Event times of the checkpoints of the label window starting at ``start``."""
    end = start + config.window.size
    return [end + fraction * config.accuracy.label_horizon for fraction in LABEL_CHECKPOINTS]


def uses_labels(config: ModelConfig) -> bool:
    """Whether the model's outcomes are joined (accuracy or fairness monitoring is on)."""
    return config.accuracy.enabled or (config.fairness.enabled and bool(config.sensitive_attributes))


def new_classification(config: ModelConfig) -> ClassificationAggregate:
    return ClassificationAggregate(config.classes)


def _class_index(config: ModelConfig, labels: Sequence[Any], scores: np.ndarray) -> np.ndarray:
    """Index into ``config.classes`` of each predicted label (-1 unknown), ``str(label)`` compared.

    A binary model that sends only a score predicts the positive class at score >= 0.5.
    """
    lookup = {name: i for i, name in enumerate(config.classes)}
    index = np.fromiter(map(lookup.get, map(str, labels), repeat(-1)), np.int64, count=len(labels))
    if "None" in lookup:  # str(None): a missing label is no class, whatever the classes are called
        index[[i for i, v in enumerate(labels) if v is None]] = -1
    if config.task == "binary":
        from_score = np.where(np.isnan(scores), -1, (scores >= 0.5).astype(np.int64))
        index = np.where((index < 0) & ~np.isnan(scores), from_score, index)
    return index


def _subjects(config: ModelConfig) -> list[str]:
    if not config.fairness.enabled or config.task != "binary":
        return []
    return config.fairness.subjects(config.sensitive_attributes)


def _group_column(subject: str, attributes: Sequence[Mapping[str, Any]]) -> np.ndarray:
    names = subject.split("|")
    columns = [np.asarray(field_values(attributes, n), dtype=object) for n in names]
    return columns[0] if len(columns) == 1 else intersection_values(columns)


def _floats(values: Sequence[Any]) -> np.ndarray:
    """float64 of the numbers among the values (bools are not numbers); NaN for the rest."""
    if set(map(type, values)) <= {float}:  # (the usual case: a C pass)
        return np.asarray(values, dtype=np.float64)
    return np.asarray([v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values])


def _row_groups(usable: np.ndarray, *keys: np.ndarray) -> list[np.ndarray]:
    """The usable rows' positions grouped by their values of ``keys``, groups in the keys' order
    (the first key first) and each group's rows in input order: one stable sort, not a pass
    over the rows per group."""
    rows = np.flatnonzero(usable)
    if not rows.size:
        return []
    rows = rows[np.lexsort([key[rows] for key in reversed(keys)])]
    changed = np.zeros(rows.size - 1, dtype=bool)
    for key in keys:
        changed |= key[rows[1:]] != key[rows[:-1]]
    return np.split(rows, np.flatnonzero(changed) + 1)


def _window_rows(starts: np.ndarray, usable: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """(window start, positions of its usable rows in input order) per window with any, by start."""
    return [(float(starts[rows[0]]), rows) for rows in _row_groups(usable, starts)]


def prediction_entries(
    config: ModelConfig, events: Sequence[dict[str, Any]], times: np.ndarray
) -> dict[float, LabelEntry]:
    """Unlabelled contributions of predictions, per window start (classification tasks)."""
    if not uses_labels(config) or config.task == "regression" or not events:
        return {}
    predictions = nested(events, "prediction")
    scores = _floats(field_values(predictions, "score"))
    predicted = _class_index(config, field_values(predictions, "label"), scores)
    windows = _window_rows(window_starts(times, config.window.size), predicted >= 0)
    subjects = _subjects(config)
    groups: dict[str, np.ndarray] = {}
    if subjects and windows:  # each subject's group of every row used, in window order (a window is a slice)
        used = pick(nested(events, "attributes"), np.concatenate([rows for _, rows in windows]))
        groups = {subject: group_values(_group_column(subject, used)) for subject in subjects}
    out: dict[float, LabelEntry] = {}
    first = 0
    for start, rows in windows:
        aggregate = new_classification(config)
        binary_scores = scores[rows] if config.task == "binary" else None
        aggregate.update(np.full(rows.size, MISSING), predicted[rows], binary_scores)
        entry: LabelEntry = {"start": start, "classification": aggregate.to_dict(), "fairness": {}}
        if config.task == "binary":
            entry["cbpe"] = expected_confusion(scores[rows], predicted[rows]).tolist()
        for subject in subjects:
            fairness = GroupFairnessAggregate(subject, max_groups=config.fairness.max_groups)
            fairness.update(groups[subject][first : first + rows.size], predicted[rows], scores[rows])
            entry["fairness"][subject] = fairness.to_dict()
        out[start] = entry
        first += rows.size
    return out


def label_entries(
    config: ModelConfig, rows: Sequence[LabelledRow]
) -> tuple[list[LabelEntry], Counter[str], Counter[str]]:
    """Labelled contributions per prediction window and checkpoint (see the module doc).

    Returns (entries, unknown labels, unusable predictions): the rows left out, counted by
    the label sent (as text). An unknown label is an outcome's label that is not one of the
    model's ``classes`` (or a regression outcome without a value); an unusable prediction
    has no class among them and no score (or, for regression, no value).
    """
    if not rows:
        return [], Counter(), Counter()
    # each field's column, in one C pass (LabelledRow's fields in order)
    _, _, at, outcome_at, labels, sent_scores, values, true_labels, true_values, attributes = zip(*rows, strict=True)
    times = np.asarray(at, dtype=np.float64)
    outcome_times = np.asarray(outcome_at, dtype=np.float64)
    delays = outcome_times - times
    starts = window_starts(times, config.window.size)
    ends = starts + config.window.size
    horizon = config.accuracy.label_horizon
    checkpoints = np.zeros(len(rows), dtype=np.int64)
    for fraction in LABEL_CHECKPOINTS[:-1]:  # the first checkpoint at or after the outcome's time
        checkpoints += outcome_times > ends + fraction * horizon
    if config.task == "regression":
        truth = np.asarray([np.nan if v is None else v for v in true_values])
        predicted = np.asarray([np.nan if v is None else v for v in values])
        no_truth, no_prediction = np.isnan(truth), np.isnan(predicted)
    else:
        scores = _floats(sent_scores)
        predicted = _class_index(config, labels, scores)
        lookup: dict[str | None, int] = {name: i for i, name in enumerate(config.classes)}
        lookup[None] = -1  # (no label: no class, whatever the classes are called)
        truth = np.fromiter(map(lookup.get, true_labels, repeat(-1)), np.int64, count=len(rows))
        no_truth, no_prediction = truth < 0, predicted < 0
    usable = ~no_truth & ~no_prediction
    # (only the rows left out are looked at one by one)
    unknown = Counter(str(rows[i].true_label) for i in np.flatnonzero(no_truth).tolist())
    unusable = Counter(str(rows[i].label) for i in np.flatnonzero(no_prediction & ~no_truth).tolist())
    entries = []
    by_row = attributes if config.task != "regression" and _subjects(config) else ()
    for group in _row_groups(usable, starts, checkpoints):
        start, checkpoint = float(starts[group[0]]), int(checkpoints[group[0]])
        entry: LabelEntry = {
            "start": start,
            "checkpoint": checkpoint,
            "n_labeled": int(group.size),
            "delays": delay_counts(delays[group]).tolist(),
            "fairness": {},
        }
        if config.task == "regression":
            regression = RegressionAggregate()
            regression.update(truth[group], predicted[group])
            entry["regression"] = regression.to_dict()
        else:
            aggregate = new_classification(config)
            aggregate.update(
                truth[group], predicted[group], scores[group] if config.task == "binary" else None, late=True
            )
            entry["classification"] = aggregate.to_dict()
            slots = np.minimum(
                ((times[group] - start) / config.window.size * ERROR_SLOTS).astype(np.int64), ERROR_SLOTS - 1
            )
            wrong = np.bincount(slots, weights=predicted[group] != truth[group], minlength=ERROR_SLOTS)
            counts = np.bincount(slots, minlength=ERROR_SLOTS)
            entry["errors"] = [[int(k), int(wrong[k]), int(counts[k])] for k in np.flatnonzero(counts)]
            selected = pick(by_row, group) if by_row else []
            for subject in _subjects(config):
                groups = GroupFairnessAggregate(subject, max_groups=config.fairness.max_groups)
                groups.update(
                    _group_column(subject, selected), predicted[group], scores[group], truth[group], late=True
                )
                entry["fairness"][subject] = groups.to_dict()
        entries.append(entry)
    return entries, unknown, unusable
