"""Stage 1 join of outcome events to their predictions, by ``prediction_id``.

Predictions and outcomes are co-partitioned (same key, same partition count, murmur2),
so both sides of a key meet in one worker, and the worker keeps one
:class:`OutcomeJoiner` (with its own :class:`JoinStore`) per input partition. Whichever
side comes first waits in the store until the other arrives or the model's label horizon
passes (event time):

* a prediction waits (kind ``p``); when its outcome arrives the pair becomes a
  :class:`LabelledRow` and a *joined* marker (kind ``j``) remembers the key until the
  horizon, so a duplicate outcome is counted once;
* an outcome that arrives first waits (kind ``o``); the prediction completes it;
* an outcome that embeds its prediction needs no join (it is still deduplicated; when a
  plain outcome of the same ``prediction_id`` is already waiting, the first outcome wins
  and the embedded one is a duplicate);
* at the horizon, a waiting prediction is counted as unlabeled and a waiting outcome is
  returned so the caller can dead-letter it with the reason.

:meth:`OutcomeJoiner.join` takes one batch of one partition: all its predictions are
applied first, then all its outcomes, each in input order, with exactly one
:meth:`JoinStore.get_many` and one :meth:`JoinStore.write` (the only mutation, so a
shell can capture it into a changelog). The rows and the final p/o/j entries do not
depend on how the events are cut into batches (only which outcomes count as ``waiting``
rather than ``joined`` does); that is why a plain outcome that waits wins over a later
embedded copy, as it would over a plain one. ``max_waiting`` caps the waiting
predictions + outcomes of the partition: an event that would exceed it is not stored and
is reported in :attr:`JoinResult.overflow` (joined markers do not count).

The store's keys and values (format version 2) are :mod:`watchkeeper.monitor.join_records`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from watchkeeper.monitor.join_records import (
    CHUNK_ID,
    KIND_J,
    KIND_O,
    KIND_P,
    WaitingPrediction,
    check_version,
    chunk_key,
    decode_chunk,
    decode_prediction,
    due_of,
    encode_chunk,
    encode_joined,
    encode_outcome,
    encode_prediction,
    is_chunk_key,
    kind_of,
    kinds_of,
    label_text,
    number,
    outcome_event,
    outcome_truth,
    store_keys,
)

__all__ = [
    "Expired",
    "JoinModel",
    "JoinResult",
    "JoinStatus",
    "JoinStore",
    "LabelledRow",
    "MemoryJoinStore",
    "OutcomeJoiner",
]

JoinStatus = Literal["joined", "waiting", "duplicate", "embedded", "overflow", "ignored"]
STATUSES: tuple[JoinStatus, ...] = ("joined", "waiting", "duplicate", "embedded", "overflow", "ignored")
_BUCKET = 60.0  # expiry index granularity (seconds of event time)

_EMPTY: Mapping[str, Any] = {}


class JoinStore(Protocol):
    """Key-value store of the join; `write` is the ONLY mutation (one atomic batch).

    ``write`` applies ``deletes`` then ``puts`` (a key in both ends up put); deleting a
    missing key is a no-op. ``items`` must not be interleaved with ``write``.
    """

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> None: ...

    def items(self) -> Iterator[tuple[bytes, bytes]]: ...

    def __len__(self) -> int: ...

    def clear(self) -> None: ...


class MemoryJoinStore:
    """The default store: a dict of bytes (the joiner's key objects are stored as they are)."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return list(map(self._data.get, keys))

    def write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> None:
        data = self._data
        for key in deletes:
            data.pop(key, None)
        data.update(puts)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


@dataclass(frozen=True)
class JoinModel:
    """What the join needs of a model: its horizon and the attributes to carry along."""

    horizon: float
    attributes: tuple[str, ...] = ()


class LabelledRow(NamedTuple):
    """A prediction with its ground truth, attributed to the prediction's event time.

    A named tuple, not a frozen dataclass: the join makes one per labelled prediction, and
    a frozen dataclass takes about three times as long to build.
    """

    model_id: str
    model_version: str
    prediction_time: float
    outcome_time: float
    label: str | None
    score: float | None
    value: float | None
    true_label: str | None
    true_value: float | None
    attributes: dict[str, Any]


@dataclass
class JoinResult:
    """What one :meth:`OutcomeJoiner.join` call produced.

    ``rows``: completed pairs, in processing order (predictions that completed a waiting
    outcome, in input order, then outcomes that completed a pair, in input order).
    ``status``: every outcome counted once by what happened to it (the keys of
    :data:`STATUSES`; ``ignored`` = model not joined); predictions are not counted here.
    ``overflow``: ``("prediction" | "outcome", index into the given sequence)`` of the
    events not stored because the partition had ``max_waiting`` events waiting.
    """

    rows: list[LabelledRow] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    overflow: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Expired:
    """What the horizon removed: unlabeled predictions and unmatched outcomes (by due time)."""

    predictions: list[tuple[str, str, float]]  # (model_id, model_version, prediction_time)
    outcomes: list[bytes]  # the stored outcome events (JSON), for the dead-letter topic


# -- events -------------------------------------------------------------------------------
_PredictionFields = tuple[str, str, float, str | None, float | None, float | None, dict[str, Any]]


def _fields(event: Mapping[str, Any], prediction: Any, time: float, model: JoinModel) -> _PredictionFields:
    """What the join keeps of a prediction (``event`` is a prediction, or an outcome embedding one):
    model id, version, time, label, score, value, sensitive attributes."""
    prediction = prediction or _EMPTY
    attributes = event.get("attributes") or _EMPTY
    return (
        event["model_id"],
        str(event.get("model_version") or "unversioned"),
        time,
        label_text(prediction.get("label")),
        number(prediction.get("score")),
        number(prediction.get("value")),
        {name: attributes.get(name) for name in model.attributes},  # (faster than dict(zip(..., strict=True)))
    )


def _compact(event: Mapping[str, Any], prediction: Any, time: float, model: JoinModel) -> WaitingPrediction:
    """A prediction to keep waiting for its outcome."""
    return WaitingPrediction(*_fields(event, prediction, time, model))


def _row(prediction: WaitingPrediction, outcome: Mapping[str, Any], outcome_time: float) -> LabelledRow:
    return LabelledRow(
        prediction.model_id,
        prediction.model_version,
        prediction.time,
        outcome_time,
        prediction.label,
        prediction.score,
        prediction.value,
        label_text(outcome.get("label")),
        number(outcome.get("value")),
        dict(prediction.attributes),
    )


def _pair(
    event: Mapping[str, Any],
    prediction: Any,
    time: float,
    model: JoinModel,
    true_label: str | None,
    true_value: float | None,
    outcome_time: float,
) -> LabelledRow:
    """A prediction joined at once with an outcome of this label (as text) and value (no waiting
    prediction built)."""
    model_id, version, at, label, score, value, attributes = _fields(event, prediction, time, model)
    return LabelledRow(model_id, version, at, outcome_time, label, score, value, true_label, true_value, attributes)


class OutcomeJoiner:
    """Join state of one input partition over a :class:`JoinStore`; works a batch at a time."""

    def __init__(self, models: Mapping[str, JoinModel], store: JoinStore, max_waiting: int | None = None) -> None:
        if max_waiting is not None and max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0, got {max_waiting}")
        self.models = models
        self.store = store
        self.max_waiting = max_waiting
        self._chunks: dict[int, int] = {}  # due bucket -> number of index chunks written for it
        self._heap: list[int] = []  # the buckets of _chunks, smallest first
        self._waiting = 0
        self._indexed = False  # rebuild_index() runs before the first use if nobody called it

    @property
    def waiting(self) -> int:
        """Predictions + outcomes waiting in the store (what ``max_waiting`` caps)."""
        if not self._indexed:
            self.rebuild_index()
        return self._waiting

    # -- expiry index ---------------------------------------------------------------
    def rebuild_index(self) -> None:
        """Re-create the due-bucket index and the waiting count from the store (after a restore).

        Call it after filling the store by other means than this joiner (a changelog
        replay); a new joiner also runs it by itself before its first use.
        """
        chunks: dict[int, int] = {}
        waiting = 0
        for key, raw in self.store.items():
            if is_chunk_key(key):
                check_version(raw)
                bucket, sequence = CHUNK_ID.unpack_from(key, 1)
                chunks[bucket] = max(chunks.get(bucket, 0), sequence + 1)
            elif kind_of(raw) != KIND_J:
                waiting += 1
        self._chunks = chunks
        self._heap = list(chunks)
        heapq.heapify(self._heap)
        self._waiting = waiting
        self._indexed = True

    # -- events ---------------------------------------------------------------------
    def join(
        self,
        predictions: Sequence[tuple[Mapping[str, Any], float]],
        outcomes: Sequence[tuple[Mapping[str, Any], float]],
    ) -> JoinResult:
        """Apply one batch of one partition: its predictions first, then its outcomes.

        ``predictions`` are (parsed prediction event, event time), ``outcomes`` (parsed
        outcome event, event time), each in input order. One ``store.get_many`` for all the
        keys of the batch, one ``store.write`` for all its changes (none when nothing
        changes).
        """
        result = JoinResult()
        status = result.status
        models = self.models
        preds: list[tuple[int, str, JoinModel, Mapping[str, Any], float]] = []
        for index, (event, time) in enumerate(predictions):
            model = models.get(event["model_id"])
            if model is not None:
                preds.append((index, str(event.get("prediction_id") or event["event_id"]), model, event, float(time)))
        outs: list[tuple[int, str, JoinModel, Mapping[str, Any], float]] = []
        for index, (event, time) in enumerate(outcomes):
            model = models.get(event["model_id"])
            if model is None:
                status["ignored"] += 1
            else:
                outs.append((index, str(event["prediction_id"]), model, event, float(time)))
        if not preds and not outs:
            return result
        if not self._indexed:
            self.rebuild_index()

        # the store key of every prediction_id of the batch, read at once
        pids = dict.fromkeys([p[1] for p in preds] + [o[1] for o in outs])
        keys = dict(zip(pids, store_keys(list(pids)), strict=True))
        # the state of each prediction_id as the batch goes: its kind and encoded value; set_due
        # holds the due time of those the batch changed, decoded the waiting predictions it added
        encoded = {pid: raw for pid, raw in zip(pids, self.store.get_many(list(keys.values())), strict=True) if raw}
        kind = dict(zip(encoded, kinds_of(list(encoded.values())), strict=True))
        set_due: dict[str, float] = {}
        decoded: dict[str, WaitingPrediction] = {}

        cap = math.inf if self.max_waiting is None else self.max_waiting
        waiting = self._waiting
        rows = result.rows
        for index, pid, model, event, time in preds:
            current = kind.get(pid)
            if current == KIND_O:  # the outcome was waiting for this prediction (in the store: not decoded)
                true_label, true_value, outcome_time = outcome_truth(encoded[pid])
                rows.append(_pair(event, event.get("prediction"), time, model, true_label, true_value, outcome_time))
                due = time + model.horizon
                kind[pid], encoded[pid], set_due[pid] = KIND_J, encode_joined(due), due
                waiting -= 1
            elif current is None:
                if waiting >= cap:
                    result.overflow.append(("prediction", index))
                    continue
                prediction = _compact(event, event.get("prediction"), time, model)
                due = time + model.horizon
                kind[pid], encoded[pid], set_due[pid] = KIND_P, encode_prediction(prediction, due), due
                decoded[pid] = prediction
                waiting += 1
            # else a redelivered prediction: already waiting or already labelled

        for index, pid, model, event, time in outs:
            current = kind.get(pid)
            if current == KIND_J:
                status["duplicate"] += 1
            elif event.get("prediction") is not None:
                if current == KIND_O:  # a plain outcome came first: it wins
                    status["duplicate"] += 1
                    continue
                raw_time = event.get("prediction_timestamp")
                prediction_time = float(raw_time) if isinstance(raw_time, int | float) else time
                truth = label_text(event.get("label")), number(event.get("value"))
                rows.append(_pair(event, event["prediction"], prediction_time, model, *truth, time))
                if current == KIND_P:
                    waiting -= 1
                due = prediction_time + model.horizon
                kind[pid], encoded[pid], set_due[pid] = KIND_J, encode_joined(due), due
                status["embedded"] += 1
            elif current == KIND_P:
                prediction = decoded.get(pid) or decode_prediction(encoded[pid])
                rows.append(_row(prediction, event, time))
                due = prediction.time + models.get(prediction.model_id, model).horizon
                kind[pid], encoded[pid], set_due[pid] = KIND_J, encode_joined(due), due
                waiting -= 1
                status["joined"] += 1
            elif current == KIND_O:
                status["duplicate"] += 1
            elif waiting >= cap:
                result.overflow.append(("outcome", index))
                status["overflow"] += 1
            else:
                due = time + model.horizon
                kind[pid], encoded[pid], set_due[pid] = KIND_O, encode_outcome(event, time, due), due
                waiting += 1
                status["waiting"] += 1

        if not set_due:
            return result
        puts: dict[bytes, bytes] = {}
        scheduled: dict[int, list[bytes]] = {}
        for pid, due_time in set_due.items():
            key = keys[pid]
            puts[key] = encoded[pid]
            bucket = math.floor(due_time / _BUCKET)
            listed = scheduled.get(bucket)
            if listed is None:
                scheduled[bucket] = [key]
            else:
                listed.append(key)
        sequences = {bucket: self._chunks.get(bucket, 0) for bucket in scheduled}
        for bucket, listed in scheduled.items():
            puts[chunk_key(bucket, sequences[bucket])] = encode_chunk(listed)
        self.store.write(puts, ())
        for bucket, sequence in sequences.items():
            if sequence == 0:
                heapq.heappush(self._heap, bucket)
            self._chunks[bucket] = sequence + 1
        self._waiting = waiting
        return result

    def expire(self, now: float) -> Expired:
        """Drop everything whose horizon passed before ``now`` (event time), in one write.

        Works by whole 60-s due buckets: an entry goes once the bucket of its due time has
        ended (``now`` past the bucket's end). The lists are ordered by due time, then key.
        """
        if not self._indexed:
            self.rebuild_index()
        heap = self._heap
        buckets: list[int] = []
        while heap and (heap[0] + 1) * _BUCKET <= now:
            buckets.append(heapq.heappop(heap))
        if not buckets:
            return Expired([], [])
        try:
            chunk_keys = [chunk_key(bucket, n) for bucket in buckets for n in range(self._chunks[bucket])]
            listed: dict[bytes, None] = {}
            for raw in self.store.get_many(chunk_keys):
                if raw is not None:
                    listed.update(dict.fromkeys(decode_chunk(raw)))
            keys = list(listed)
            due: list[tuple[float, bytes, bytes]] = []
            for key, raw in zip(keys, self.store.get_many(keys) if keys else [], strict=True):
                if raw is not None:
                    when = due_of(raw)
                    if when <= now:  # else rewritten since, and listed under its new bucket
                        due.append((when, key, raw))
            due.sort()
            predictions: list[tuple[str, str, float]] = []
            outcomes: list[bytes] = []
            for _, _key, raw in due:
                kind = kind_of(raw)
                if kind == KIND_P:
                    prediction = decode_prediction(raw)
                    predictions.append((prediction.model_id, prediction.model_version, prediction.time))
                elif kind == KIND_O:
                    outcomes.append(outcome_event(raw))
            self.store.write({}, [key for _, key, _ in due] + chunk_keys)
        except BaseException:
            for bucket in buckets:
                heapq.heappush(heap, bucket)
            raise
        for bucket in buckets:
            del self._chunks[bucket]
        self._waiting -= len(predictions) + len(outcomes)
        return Expired(predictions, outcomes)
