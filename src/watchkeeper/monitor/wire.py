"""The wire partial: what stage 1 sends to stage 2 on the partials topic, as types.

This is the one definition of the format (docs/architecture.md, "Partials", explains each
field). The code that builds partials (:func:`watchkeeper.monitor.partials.build_partials`,
the label and watermark partials of :class:`watchkeeper.monitor.runtime.MonitorRuntime`,
the label entries of :mod:`watchkeeper.monitor.labels`) returns these types, and the code
that takes them apart (:meth:`watchkeeper.monitor.engine.ModelMonitor.apply`,
:class:`watchkeeper.monitor.learning.ReferenceLearner`) accepts them, so mypy holds both
ends to the same keys and value types.

They are TypedDicts rather than classes on purpose: a partial stays the plain dict that
``orjson`` writes and reads, so the JSON is exactly what it was (same keys, same order,
same values) and stage-2 state restored from existing changelogs stays readable. Stage 2
receives parsed JSON, so the types describe what a well-formed partial holds; they check
nothing at run time.

A partial has one of three shapes, told apart by ``kind`` (a tagged union, which mypy
narrows on ``partial["kind"] == ...``):

* ``stats``: window entries binned against the reference (:class:`StatsPartial`);
* ``sample``: raw rows, while the model learns its reference (:class:`SamplePartial`);
* ``labels`` (only outcomes of the model in the batch) and ``watermark`` (no data: a
  prediction partition became idle or active): no windows (:class:`WindowlessPartial`).

A partial too large for one Kafka record travels in pieces
(:func:`watchkeeper.monitor.partials.split_partial`); a piece that carries only windows has
the required keys alone, which is why ``watermarks`` and the others are optional.
"""

from __future__ import annotations

from typing import Any, Literal, Never, NotRequired, TypeAlias, TypedDict

__all__ = [
    "PARTIAL_VERSION",
    "LabelEntry",
    "Partial",
    "SampleEntry",
    "SamplePartial",
    "SampleRows",
    "Slices",
    "StatsEntry",
    "StatsPartial",
    "WindowlessPartial",
]

PARTIAL_VERSION = 4  # the ``v`` of every partial (4: a sample's numeric rows may hold invalid values as text)

Slices: TypeAlias = dict[str, dict[str, list[int]]]
"""CUSUM sufficient statistics: slice index (as text) → column → exact integer sums."""


class StatsEntry(TypedDict):
    """One event-time window of a ``stats`` partial: exact counts on the reference's grids."""

    start: float  # window start, epoch seconds
    n: int  # events
    t_max: float  # latest event time
    versions: dict[str, int]  # events per model version ("unversioned" for none)
    numeric: dict[str, list[int]]  # per numeric column: [underflow, fine bins..., overflow, missing]
    categorical: dict[str, list[int]]  # per categorical column: [vocabulary..., UNSEEN, MISSING]
    invalid: dict[str, int]  # per numeric column with any: values that were not numbers


class SampleRows(TypedDict):
    """Raw rows with their event times, model versions and ids.

    The body of a ``sample`` window entry, and also the shape of the chunks in which
    :class:`watchkeeper.monitor.learning.ReferenceLearner` stores them.
    """

    n: int  # rows
    rows: dict[str, list[float | str | None]]  # column → values (numbers; category texts cut at 200)
    times: list[float]
    model_versions: list[str]
    ids: list[str]  # prediction ids (the learned reference orders rows by time, then id)


class SampleEntry(SampleRows):
    """One event-time window of a ``sample`` partial."""

    start: float
    t_max: float


class LabelEntry(TypedDict):
    """Accuracy and fairness contributions to one prediction-time window.

    Prediction side (:func:`watchkeeper.monitor.labels.prediction_entries`):
    ``classification`` with unlabelled counts, ``fairness`` selections, ``cbpe``. Label side
    (:func:`watchkeeper.monitor.labels.label_entries`): ``n_labeled``, ``delays``, and
    ``classification`` or ``regression``, with per-group ``fairness``.
    """

    start: float
    fairness: dict[str, dict[str, Any]]  # subject → GroupFairnessAggregate.to_dict()
    checkpoint: NotRequired[int]  # label side: index into LABEL_CHECKPOINTS the labels count at
    classification: NotRequired[dict[str, Any]]  # ClassificationAggregate.to_dict()
    regression: NotRequired[dict[str, Any]]  # RegressionAggregate.to_dict()
    cbpe: NotRequired[list[float]]  # expected [TP, FP, FN, TN] from the scores (binary)
    n_labeled: NotRequired[int]
    delays: NotRequired[list[int]]  # label delay histogram (watchkeeper.stats.delays)
    errors: NotRequired[list[list[int]]]  # [prediction-time slot, wrong, labelled] (labels.ERROR_SLOTS a window)


class _PartialFields(TypedDict):
    """The keys every kind of partial has (the first four always, the rest where said)."""

    v: int  # PARTIAL_VERSION
    model_id: str  # also the Kafka key
    profile_id: str | None  # reference_id the counts were binned against (stats only)
    source: dict[str, list[int]]  # "topic:partition" → [first offset, last offset]
    watermarks: NotRequired[dict[str, float]]  # prediction "topic:partition" → latest event time
    idle: NotRequired[dict[str, bool]]  # prediction "topic:partition" → idle for this model
    outcome_watermarks: NotRequired[dict[str, float]]  # input partition number → latest outcome time of the model
    outcomes_idle: NotRequired[dict[str, bool]]  # input partition number → no outcomes of the model lately
    partitions: NotRequired[int]  # prediction partitions the watermark waits for
    slices: NotRequired[Slices]  # stats and sample partials (empty for sample)
    labels: NotRequired[list[LabelEntry]]
    late: NotRequired[int]  # predictions of the batch too late for their window (stage 1): not in ``windows``


class StatsPartial(_PartialFields):
    """Binned counts of the batch's events."""

    kind: Literal["stats"]
    windows: list[StatsEntry]


class SamplePartial(_PartialFields):
    """Raw rows of the batch's events, for a model that learns its reference."""

    kind: Literal["sample"]
    windows: list[SampleEntry]


class WindowlessPartial(_PartialFields):
    """Outcomes only (``labels``) or idleness news (``watermark``): no window entries."""

    kind: Literal["labels", "watermark"]
    windows: list[Never]  # always empty


Partial: TypeAlias = StatsPartial | SamplePartial | WindowlessPartial
"""A partial of any kind."""
