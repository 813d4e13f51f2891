"""Event-time admission for stage 1: which events of a batch are refused or late, and why.

Three checks, each a function of the batch and the per-(model, input partition) latest
event times seen so far (``watermarks``), so that a verdict never depends on where batches
are cut (earlier events of the same batch count as seen):

* :func:`not_ahead`: events stamped more than the model's ``window.max_future`` ahead of
  the worker's clock are rejected (a bad clock must not close every window);
* :func:`plausible`: events at or before the Unix epoch, and predictions more than
  ``window.max_past`` behind their model's latest event time in their partition, are
  rejected;
* :func:`late`: predictions whose window already closed in their partition (ended
  ``window.allowed_lateness`` or more before its latest event time) are counted, not windowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.grouping import window_starts
from watchkeeper.monitor.parse import ParsedBatch, Rejected

__all__ = ["Groups", "late", "not_ahead", "plausible"]

Groups = tuple[list[Any], np.ndarray, np.ndarray]  # (distinct keys, positions by key, where each key starts)


def _without(batch: ParsedBatch, reasons: Mapping[int, str]) -> ParsedBatch:
    """``batch`` less the events at the positions of ``reasons``, which become rejections."""
    keep = np.ones(len(batch.events), dtype=bool)
    keep[list(reasons)] = False
    return ParsedBatch(
        [e for e, k in zip(batch.events, keep, strict=True) if k],
        batch.times[keep],
        [i for i, k in zip(batch.indices, keep, strict=True) if k],
        list(batch.rejected) + [Rejected(batch.indices[i], reason) for i, reason in sorted(reasons.items())],
        batch.native,
    )


def not_ahead(batch: ParsedBatch, wall_clock: float | None, models: Mapping[str, ModelConfig]) -> ParsedBatch:
    """Reject events stamped more than their model's ``window.max_future`` ahead of ``wall_clock``."""
    if wall_clock is None or not batch.events:
        return batch
    limits = np.asarray([wall_clock + models[e["model_id"]].window.max_future for e in batch.events])
    ahead = np.flatnonzero(batch.times > limits).tolist()
    if not ahead:
        return batch
    return _without(
        batch,
        {
            i: f"timestamp: {batch.events[i].get('timestamp')!r}: more than "
            f"{models[batch.events[i]['model_id']].window.max_future:g} s ahead of the worker's clock"
            for i in ahead
        },
    )


def plausible(
    batch: ParsedBatch,
    sources: Sequence[str] | None,
    models: Mapping[str, ModelConfig],
    watermarks: Mapping[tuple[str, str], float],
) -> ParsedBatch:
    """Reject events stamped at or before the Unix epoch and, for predictions (``sources``
    given), those more than the model's ``window.max_past`` behind the latest event time
    of that model in the same input partition (``watermarks``, then earlier events of this
    batch).
    """
    if not batch.events:
        return batch
    times = batch.times
    newest = max([*watermarks.values(), float(times.max())])
    shortest = min(m.window.max_past for m in models.values())
    oldest = float(times.min())
    if oldest > 0 and (sources is None or oldest >= newest - shortest):
        return batch  # the usual batch: every event plausible, nothing to look at one by one
    reasons: dict[int, str] = {}
    running: dict[tuple[str, str], float] = {}
    for i, (event, t) in enumerate(zip(batch.events, times.tolist(), strict=True)):
        if not t > 0:
            reasons[i] = f"timestamp: {event.get('timestamp')!r}: expected a time after 1970-01-01T00:00:00Z"
        elif sources is not None:
            key = (event["model_id"], sources[i])
            latest = running.get(key, watermarks.get(key, float("-inf")))
            max_past = models[event["model_id"]].window.max_past
            if t < latest - max_past:
                reasons[i] = (
                    f"timestamp: {event.get('timestamp')!r}: more than {max_past:g} s behind the latest "
                    f"event time of model {event['model_id']!r} in its partition ({latest:.3f}); "
                    "expected within window.max_past"
                )
            else:
                running[key] = max(latest, t)
    return _without(batch, reasons) if reasons else batch


def late(
    times: np.ndarray,
    by_source: Groups,
    models: Mapping[str, ModelConfig],
    watermarks: Mapping[tuple[str, str], float],
) -> dict[int, str]:
    """Why each late prediction is late, by position: its window ended ``window.allowed_lateness``
    or more before the latest event time of its model in its input partition (``watermarks``,
    then earlier events of this batch). ``by_source``: the events' :func:`pair_groups` by model
    and input partition.

    Stage 2 closes a window no earlier (its watermark is the least of the partitions'), so
    such an event could only be counted late there, without its source to dead-letter it.
    """
    distinct, order, starts = by_source
    if not distinct:
        return {}
    reasons: dict[int, str] = {}
    bounds = [*starts.tolist(), len(times)]
    for k, key in enumerate(distinct):
        at = order[bounds[k] : bounds[k + 1]]
        t = times[at]
        window = models[key[0]].window
        ends = window_starts(t, window.size) + window.size
        before = np.maximum.accumulate(np.concatenate(([watermarks.get(key, -np.inf)], t[:-1])))
        for i in np.flatnonzero(ends + window.allowed_lateness <= before).tolist():
            reasons[int(at[i])] = (
                f"late: timestamp {t[i]:.3f}: its window [{ends[i] - window.size:.3f}, {ends[i]:.3f}) of model "
                f"{key[0]!r} closed at {ends[i] + window.allowed_lateness:.3f} (end + window.allowed_lateness), "
                f"behind the latest event time in its partition ({before[i]:.3f})"
            )
    return reasons
