"""Accuracy and fairness aggregates per prediction-time window (stage 1 side).

Two contributions meet in stage 2, both attributed to the window of the *prediction's*
event time:

* at prediction time (:func:`prediction_entries`): every prediction adds itself unlabelled
  (``n``, predicted class, score; per group selections for fairness);
* at label time (:func:`label_entries`): each joined outcome completes its prediction with
  ``late=True`` (only the labelled counters move), plus its label delay; predictions whose
  horizon passed without an outcome are counted as expired.

So ``n`` counts predictions once, ``n_labeled`` counts outcomes once, and label coverage is
their ratio. All aggregates are the mergeable ones of :mod:`watchkeeper.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.join import LabelledRow
from watchkeeper.monitor.partials import window_starts
from watchkeeper.stats.cbpe import expected_confusion
from watchkeeper.stats.classification import MISSING, ClassificationAggregate
from watchkeeper.stats.delays import delay_counts
from watchkeeper.stats.fairness import GroupFairnessAggregate, intersection_values
from watchkeeper.stats.regression import RegressionAggregate

__all__ = ["expired_entries", "label_entries", "new_classification", "prediction_entries", "uses_labels"]


def uses_labels(config: ModelConfig) -> bool:
    """Whether the model's outcomes are joined (accuracy or fairness monitoring is on)."""
    return config.accuracy.enabled or (config.fairness.enabled and bool(config.sensitive_attributes))


def new_classification(config: ModelConfig) -> ClassificationAggregate:
    return ClassificationAggregate(config.classes)


def _class_index(config: ModelConfig, labels: Sequence[Any], scores: np.ndarray) -> np.ndarray:
    """Index into ``config.classes`` of each predicted label (-1 unknown).

    A binary model that sends only a score predicts the positive class at score >= 0.5.
    """
    lookup = {name: i for i, name in enumerate(config.classes)}
    index = np.asarray([lookup.get(str(v), -1) if v is not None else -1 for v in labels], dtype=np.int64)
    if config.task == "binary":
        from_score = np.where(np.isnan(scores), -1, (scores >= 0.5).astype(np.int64))
        index = np.where((index < 0) & ~np.isnan(scores), from_score, index)
    return index


def _subjects(config: ModelConfig) -> list[str]:
    if not config.fairness.enabled or config.task != "binary":
        return []
    return config.fairness.subjects(config.sensitive_attributes)


def _group_column(subject: str, attributes: Sequence[dict[str, Any]]) -> np.ndarray:
    names = subject.split("|")
    columns = [np.asarray([a.get(n) for a in attributes], dtype=object) for n in names]
    return columns[0] if len(columns) == 1 else intersection_values(columns)


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.asarray([v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in values])


def prediction_entries(
    config: ModelConfig, events: Sequence[dict[str, Any]], times: np.ndarray
) -> dict[float, dict[str, Any]]:
    """Unlabelled contributions of predictions, per window start (classification tasks)."""
    if not uses_labels(config) or config.task == "regression" or not events:
        return {}
    predictions = [e.get("prediction") or {} for e in events]
    scores = _floats([p.get("score") for p in predictions])
    predicted = _class_index(config, [p.get("label") for p in predictions], scores)
    attributes = [e.get("attributes") or {} for e in events]
    starts = window_starts(times, config.window.size)
    out: dict[float, dict[str, Any]] = {}
    for start in np.unique(starts):
        mask = (starts == start) & (predicted >= 0)
        if not mask.any():
            continue
        aggregate = new_classification(config)
        binary_scores = scores[mask] if config.task == "binary" else None
        aggregate.update(np.full(int(mask.sum()), MISSING), predicted[mask], binary_scores)
        entry: dict[str, Any] = {"start": float(start), "classification": aggregate.to_dict(), "fairness": {}}
        if config.task == "binary":
            entry["cbpe"] = expected_confusion(scores[mask], predicted[mask]).tolist()
        selected = [a for a, keep in zip(attributes, mask, strict=True) if keep]
        for subject in _subjects(config):
            groups = GroupFairnessAggregate(subject, max_groups=config.fairness.max_groups)
            groups.update(_group_column(subject, selected), predicted[mask], scores[mask])
            entry["fairness"][subject] = groups.to_dict()
        out[float(start)] = entry
    return out


def label_entries(config: ModelConfig, rows: Sequence[LabelledRow]) -> tuple[list[dict[str, Any]], int, list[int]]:
    """Labelled contributions per prediction window.

    Returns (entries, rows with unusable labels, 0/1 errors of the usable rows in arrival
    order — classification only — for the error-stream detector).
    """
    if not rows:
        return [], 0, []
    times = np.asarray([r.prediction_time for r in rows])
    delays = np.asarray([r.outcome_time - r.prediction_time for r in rows])
    starts = window_starts(times, config.window.size)
    invalid = 0
    if config.task == "regression":
        truth = np.asarray([np.nan if r.true_value is None else r.true_value for r in rows])
        predicted = np.asarray([np.nan if r.value is None else r.value for r in rows])
        usable = ~np.isnan(truth) & ~np.isnan(predicted)
    else:
        scores = _floats([r.score for r in rows])
        predicted = _class_index(config, [r.label for r in rows], scores)
        lookup = {name: i for i, name in enumerate(config.classes)}
        truth = np.asarray([lookup.get(r.true_label, -1) if r.true_label is not None else -1 for r in rows])
        usable = (truth >= 0) & (predicted >= 0)
    invalid = int((~usable).sum())
    errors = [] if config.task == "regression" else (predicted[usable] != truth[usable]).astype(int).tolist()
    entries = []
    for start in np.unique(starts[usable]):
        mask = usable & (starts == start)
        entry: dict[str, Any] = {
            "start": float(start),
            "n_labeled": int(mask.sum()),
            "delays": delay_counts(delays[mask]).tolist(),
            "fairness": {},
        }
        if config.task == "regression":
            regression = RegressionAggregate()
            regression.update(truth[mask], predicted[mask])
            entry["regression"] = regression.to_dict()
        else:
            aggregate = new_classification(config)
            aggregate.update(truth[mask], predicted[mask], scores[mask] if config.task == "binary" else None, late=True)
            entry["classification"] = aggregate.to_dict()
            selected = [r.attributes for r, keep in zip(rows, mask, strict=True) if keep]
            for subject in _subjects(config):
                groups = GroupFairnessAggregate(subject, max_groups=config.fairness.max_groups)
                groups.update(_group_column(subject, selected), predicted[mask], scores[mask], truth[mask], late=True)
                entry["fairness"][subject] = groups.to_dict()
        entries.append(entry)
    return entries, invalid, errors


def expired_entries(config: ModelConfig, prediction_times: Sequence[float]) -> dict[float, int]:
    """Predictions whose horizon passed unlabelled, counted per window start."""
    starts, counts = np.unique(window_starts(np.asarray(prediction_times), config.window.size), return_counts=True)
    return {float(s): int(c) for s, c in zip(starts, counts, strict=True)}
