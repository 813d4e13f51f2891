"""What stage 1 makes of a batch besides its partials: rejections' companions, late and
overflowing events, and the values no statistic counts (:class:`Ignored`), which the shell
counts (``watchkeeper_ignored_total``) and logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.columns import monitored_columns, nested, unknown_names
from watchkeeper.monitor.grouping import pick
from watchkeeper.monitor.parse import Rejected
from watchkeeper.monitor.wire import Partial

__all__ = ["Ignored", "IgnoredReason", "Late", "Overflow", "Stage1Result", "ignored", "unmonitored"]

IgnoredReason = Literal["not_in_profile", "unknown_feature", "invalid", "unknown_label", "unusable_prediction"]
_IGNORED_NAMES = 10  # names (columns, features, labels) an Ignored carries at most, for its log line


@dataclass(frozen=True)
class Overflow:
    """An event the join could not keep (its partition is at ``max_waiting``); copied to the dead letters."""

    index: int
    reason: str


@dataclass(frozen=True)
class Late:
    """A prediction for a window its input partition has already closed: counted, not windowed."""

    index: int
    model_id: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    """Values of one model's events in a batch that no statistic counts, for one reason.

    ``not_in_profile``: configured columns the reference profile lacks (events × columns);
    ``unknown_feature``: event features the models config does not name; ``invalid``: values
    of the wrong type (not numbers in a numeric column: counted as invalid, not missing);
    ``unknown_label``: joined outcomes whose label is not one of the model's ``classes``;
    ``unusable_prediction``: joined outcomes whose prediction has no usable class or value.
    ``names``: the columns, features or labels concerned (at most :data:`_IGNORED_NAMES`).
    """

    model_id: str
    reason: IgnoredReason
    count: int
    names: tuple[str, ...]


@dataclass
class Stage1Result:
    """What stage 1 made of a batch."""

    partials: list[Partial]
    rejected: list[Rejected]
    expired_outcomes: list[bytes] = field(default_factory=list)  # for the dead-letter topic
    outcomes: dict[str, int] = field(default_factory=dict)  # joined / waiting / duplicate / embedded / overflow
    ignored: list[Ignored] = field(default_factory=list)  # values not monitored, to count and log (the shell)
    overflow: list[Overflow] = field(default_factory=list)
    late: list[Late] = field(default_factory=list)  # dead-lettered where the model's window.dead_letter_late
    decoded: dict[str, int] = field(default_factory=dict)  # prediction records by decoder: native / generic


def ignored(model_id: str, reason: IgnoredReason, counts: Counter[str]) -> Ignored:
    """An :class:`Ignored` of per-name counts: their total, and the most frequent names."""
    names = tuple(name for name, _ in counts.most_common(_IGNORED_NAMES))
    return Ignored(model_id, reason, sum(counts.values()), names)


def unmonitored(
    events: Sequence[dict[str, Any]],
    groups: Mapping[str, np.ndarray | None],
    models: Mapping[str, tuple[ModelConfig, ColumnBinner | None]],
    partials: Sequence[Partial],
    features: Mapping[str, frozenset[str]],
) -> list[Ignored]:
    """What of a batch's predictions no statistic counts: unknown features, configured columns
    the profile lacks, and invalid values (from the partials' window entries).

    ``groups``: each model's positions in ``events`` (None: all of them); ``models``: each
    model's config and binner (None while its reference is being learned); ``features``: each
    model's configured feature names.
    """
    found: list[Ignored] = []
    for model_id, index in groups.items():
        config, binner = models[model_id]
        sent = nested(pick(events, index), "features")
        unknown = unknown_names(sent, features[model_id])
        if unknown:
            found.append(ignored(model_id, "unknown_feature", Counter(unknown)))
        if binner is not None:
            known = {*binner.numeric, *binner.categorical}
            absent = [c for c in monitored_columns(config) if c not in known]
            if absent:
                found.append(ignored(model_id, "not_in_profile", Counter(dict.fromkeys(absent, len(sent)))))
    for partial in partials:
        invalid: Counter[str] = Counter()
        if partial["kind"] == "stats":
            for window in partial["windows"]:
                invalid.update(window["invalid"])
        elif partial["kind"] == "sample":  # (a numeric column's rows hold an invalid value as its text)
            kinds = monitored_columns(models[partial["model_id"]][0])
            for entry in partial["windows"]:
                for name, values in entry["rows"].items():
                    if kinds.get(name) == "numeric":
                        invalid[name] += sum(isinstance(v, str) for v in values)
            invalid = +invalid
        if invalid:
            found.append(ignored(partial["model_id"], "invalid", invalid))
    return found
