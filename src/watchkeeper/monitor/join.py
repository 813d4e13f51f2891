"""Stage 1 join of outcome events to their predictions, by ``prediction_id``.

Predictions and outcomes are co-partitioned (same key, same partition count, murmur2),
so both sides of a key meet in one worker. Whichever side comes first waits in a store
until the other arrives or the model's label horizon passes (event time):

* a prediction waits in ``predictions``; when its outcome arrives the pair becomes a
  :class:`LabelledRow` and a tombstone in ``joined`` remembers the key until the horizon,
  so a duplicate outcome is counted once;
* an outcome that arrives first waits in ``outcomes``; the prediction completes it;
* an outcome that embeds its prediction needs no join (it is still deduplicated);
* at the horizon, a waiting prediction is counted as unlabeled and a waiting outcome is
  returned so the caller can dead-letter it with the reason.

The stores are plain mutable mappings of bytes to bytes (dicts here; Faust tables in the
worker, RocksDB-backed where the buffer is large), so memory is bounded by what arrives
within the horizon, never by the stream length. Expiry uses an in-memory index by due
time, rebuilt from the stores after a restart (:meth:`OutcomeJoiner.rebuild_index`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = ["Expired", "JoinModel", "LabelledRow", "OutcomeJoiner", "JoinStatus"]

JoinStatus = Literal["joined", "waiting", "duplicate", "embedded"]
_BUCKET = 60.0  # expiry index granularity (seconds of event time)


@dataclass(frozen=True)
class JoinModel:
    """What the join needs of a model: its horizon and the attributes to carry along."""

    horizon: float
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelledRow:
    """A prediction with its ground truth, attributed to the prediction's event time."""

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


@dataclass(frozen=True)
class Expired:
    """What the horizon removed: unlabeled predictions and unmatched outcomes."""

    predictions: list[tuple[str, str, float]]  # (model_id, model_version, prediction_time)
    outcomes: list[bytes]  # the stored outcome events, for the dead-letter topic


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def _compact_prediction(event: Mapping[str, Any], time: float, model: JoinModel) -> dict[str, Any]:
    prediction = event.get("prediction") or {}
    attributes = event.get("attributes") or {}
    return {
        "m": event["model_id"],
        "v": str(event.get("model_version") or "unversioned"),
        "t": time,
        "l": _label(prediction.get("label")),
        "s": prediction.get("score"),
        "pv": prediction.get("value"),
        "a": {name: attributes.get(name) for name in model.attributes},
    }


class OutcomeJoiner:
    """Join state over three stores; every method handles one event in O(1)."""

    def __init__(
        self,
        models: Mapping[str, JoinModel],
        predictions: MutableMapping[bytes, bytes],
        outcomes: MutableMapping[bytes, bytes],
        joined: MutableMapping[bytes, bytes],
    ) -> None:
        self.models = models
        self.predictions = predictions
        self.outcomes = outcomes
        self.joined = joined
        self._due: dict[int, set[tuple[str, bytes]]] = {}

    # -- expiry index ---------------------------------------------------------------
    def _schedule(self, kind: str, key: bytes, due: float) -> None:
        self._due.setdefault(math.floor(due / _BUCKET), set()).add((kind, key))

    def rebuild_index(self) -> None:
        """Re-create the due-time index from the stores (after a restore or rebalance)."""
        self._due.clear()
        for kind, store in (("p", self.predictions), ("o", self.outcomes), ("j", self.joined)):
            for key, raw in list(store.items()):
                record = orjson.loads(raw)
                self._schedule(kind, key, float(record["due"]))

    # -- events ---------------------------------------------------------------------
    def _row(self, prediction: Mapping[str, Any], outcome: Mapping[str, Any], outcome_time: float) -> LabelledRow:
        true_value = outcome.get("value")
        return LabelledRow(
            model_id=prediction["m"],
            model_version=prediction["v"],
            prediction_time=float(prediction["t"]),
            outcome_time=outcome_time,
            label=prediction["l"],
            score=prediction["s"],
            value=prediction["pv"],
            true_label=_label(outcome.get("label")),
            true_value=float(true_value) if true_value is not None else None,
            attributes=prediction["a"],
        )

    def _mark_joined(self, key: bytes, prediction_time: float, model: JoinModel) -> None:
        due = prediction_time + model.horizon
        self.joined[key] = orjson.dumps({"due": due})
        self._schedule("j", key, due)

    def add_prediction(self, event: Mapping[str, Any], time: float) -> LabelledRow | None:
        """Store a prediction, or complete the outcome that was waiting for it."""
        model = self.models.get(event["model_id"])
        if model is None:
            return None
        key = str(event.get("prediction_id") or event["event_id"]).encode()
        compact = _compact_prediction(event, time, model)
        waiting = self.outcomes.get(key)
        if waiting is not None:
            outcome = orjson.loads(waiting)
            del self.outcomes[key]
            self._mark_joined(key, time, model)
            return self._row(compact, outcome["event"], float(outcome["t"]))
        if key in self.joined or key in self.predictions:
            return None  # a redelivered prediction: already waiting or already labelled
        due = time + model.horizon
        self.predictions[key] = orjson.dumps({**compact, "due": due})
        self._schedule("p", key, due)
        return None

    def add_outcome(self, event: Mapping[str, Any], time: float) -> tuple[LabelledRow | None, JoinStatus]:
        """Join an outcome to its prediction, or let it wait for the prediction."""
        model = self.models[event["model_id"]]
        key = str(event["prediction_id"]).encode()
        if key in self.joined:
            return None, "duplicate"
        embedded = event.get("prediction")
        if embedded is not None:
            raw_time = event.get("prediction_timestamp")
            prediction_time = float(raw_time) if isinstance(raw_time, int | float) else time
            compact = _compact_prediction(
                {
                    "model_id": event["model_id"],
                    "model_version": event.get("model_version"),
                    "prediction": embedded,
                    "attributes": event.get("attributes"),
                },
                prediction_time,
                model,
            )
            self.predictions.pop(key, None)
            self._mark_joined(key, prediction_time, model)
            return self._row(compact, event, time), "embedded"
        stored = self.predictions.get(key)
        if stored is not None:
            prediction = orjson.loads(stored)
            del self.predictions[key]
            self._mark_joined(key, float(prediction["t"]), model)
            return self._row(prediction, event, time), "joined"
        if key in self.outcomes:
            return None, "duplicate"
        due = time + model.horizon
        self.outcomes[key] = orjson.dumps({"event": event, "t": time, "due": due})
        self._schedule("o", key, due)
        return None, "waiting"

    def expire(self, now: float) -> Expired:
        """Drop everything whose horizon passed before ``now`` (event time)."""
        predictions: list[tuple[str, str, float]] = []
        outcomes: list[bytes] = []
        for bucket in sorted(b for b in self._due if (b + 1) * _BUCKET <= now):
            for kind, key in self._due.pop(bucket):
                store = {"p": self.predictions, "o": self.outcomes, "j": self.joined}[kind]
                raw = store.get(key)
                if raw is None:
                    continue
                record = orjson.loads(raw)
                if float(record["due"]) > now:
                    self._schedule(kind, key, float(record["due"]))
                    continue
                del store[key]
                if kind == "p":
                    predictions.append((record["m"], record["v"], float(record["t"])))
                elif kind == "o":
                    outcomes.append(orjson.dumps(record["event"]))
        return Expired(predictions, outcomes)
