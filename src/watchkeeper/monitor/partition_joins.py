"""The outcome joins of the input partitions one stage-1 process reads.

One :class:`~watchkeeper.monitor.join.OutcomeJoiner` per input partition (its store given
by the shell when the partition is assigned, or in memory for replay and tests), and the
latest prediction and outcome event times per partition, whose slower one expires the
partition's join (:meth:`PartitionJoins.clock`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.join import JoinModel, JoinStore, LabelledRow, MemoryJoinStore, OutcomeJoiner
from watchkeeper.monitor.labels import uses_labels
from watchkeeper.monitor.parse import ParsedBatch
from watchkeeper.monitor.stage1_result import Overflow, Stage1Result

__all__ = ["PartitionJoins", "partition_of"]


def partition_of(source: str) -> int:
    """The partition number of a ``topic:partition`` source."""
    return int(source.rsplit(":", 1)[1])


class PartitionJoins:
    """Per input partition: its outcome join and its latest prediction / outcome event times."""

    def __init__(self, models: Mapping[str, ModelConfig], max_waiting: int | None) -> None:
        self.join_models = {
            m.model_id: JoinModel(m.accuracy.label_horizon, tuple(m.sensitive_attributes)) for m in models.values()
        }
        self.labelled = {m for m, config in models.items() if uses_labels(config)}  # models that join outcomes
        self.max_waiting = max_waiting
        self.joiners: dict[int, OutcomeJoiner] = {}
        self.event_times: dict[tuple[int, bool], float] = {}  # (partition, outcomes?) → latest event time

    def open(self, partition: int, store: JoinStore) -> None:
        """Start joining a partition over ``store`` (restored by the shell)."""
        joiner = OutcomeJoiner(self.join_models, store, self.max_waiting)
        joiner.rebuild_index()
        self.joiners[partition] = joiner

    def close(self, partition: int) -> None:
        """Forget a revoked partition's join and event times; the next owner restores them."""
        self.joiners.pop(partition, None)
        self.event_times.pop((partition, False), None)
        self.event_times.pop((partition, True), None)

    def joiner(self, partition: int) -> OutcomeJoiner:
        if partition not in self.joiners:  # replay and tests: an in-memory join per partition
            self.joiners[partition] = OutcomeJoiner(self.join_models, MemoryJoinStore(), self.max_waiting)
        return self.joiners[partition]

    def join(
        self,
        predictions: ParsedBatch,
        p_index: Sequence[int],
        outcomes: ParsedBatch,
        o_index: Sequence[int],
        sources: Sequence[str],
        result: Stage1Result,
    ) -> dict[str, list[LabelledRow]]:
        """Join a batch per input partition, into ``result``: statuses, overflow, expired outcomes.

        Returns the labelled rows by model; then expires, in every partition, what passed its
        horizon (orphan outcomes go to the dead letters).
        """
        labelled = self.labelled
        by_partition: dict[int, tuple[list[int], list[int]]] = {}
        for side, (batch, positions) in enumerate(((predictions, p_index), (outcomes, o_index))):
            if not labelled:  # (no model joins outcomes: only the expiry below, of a restored join)
                break
            models = list(map(itemgetter("model_id"), batch.events))
            if labelled.isdisjoint(models):
                continue
            batch_sources = list(map(sources.__getitem__, positions))
            numbers = {source: partition_of(source) for source in dict.fromkeys(batch_sources)}
            number_of = np.fromiter(map(numbers.__getitem__, batch_sources), np.int64, count=len(batch_sources))
            kept = np.flatnonzero(np.fromiter(map(labelled.__contains__, models), bool, count=len(models)))
            for number in sorted(set(numbers.values())):
                ks = kept[number_of[kept] == number].tolist()  # the batch's events of that partition, in order
                if ks:
                    by_partition.setdefault(number, ([], []))[side].extend(ks)
        rows: dict[str, list[LabelledRow]] = {}
        p_times, o_times = predictions.times.tolist(), outcomes.times.tolist()
        for partition in sorted(by_partition):
            p_keys, o_keys = by_partition[partition]
            joiner = self.joiner(partition)
            joined = joiner.join(
                list(zip(map(predictions.events.__getitem__, p_keys), map(p_times.__getitem__, p_keys), strict=True)),
                list(zip(map(outcomes.events.__getitem__, o_keys), map(o_times.__getitem__, o_keys), strict=True)),
            )
            for status, count in joined.status.items():
                result.outcomes[status] = result.outcomes.get(status, 0) + count
            for kind, k in joined.overflow:
                index = p_index[p_keys[k]] if kind == "prediction" else o_index[o_keys[k]]
                reason = (
                    f"outcome join: {kind} not kept, partition {partition} holds join.max_waiting={self.max_waiting}"
                )
                result.overflow.append(Overflow(index, reason))
            for row in joined.rows:
                rows.setdefault(row.model_id, []).append(row)
            for outcome, keys, times in ((False, p_keys, p_times), (True, o_keys, o_times)):
                if keys:
                    latest = max(map(times.__getitem__, keys))
                    self.event_times[(partition, outcome)] = max(
                        latest, self.event_times.get((partition, outcome), latest)
                    )
        for partition, joiner in sorted(self.joiners.items()):
            result.expired_outcomes += joiner.expire(self.clock(partition)).outcomes
        return rows

    def clock(self, partition: int) -> float:
        """Event time that expires the partition's join: the slower of its two streams.

        A waiting outcome may only lapse once the *predictions* have passed its horizon, and
        a waiting prediction once the *outcomes* have, so that whichever topic is read ahead
        (outcomes are small and often are) does not expire what the other has not delivered
        yet. Nothing lapses before both streams have been seen in the partition.
        """
        key_p, key_o = (partition, False), (partition, True)
        if key_p not in self.event_times or key_o not in self.event_times:
            return float("-inf")
        return min(self.event_times[key_p], self.event_times[key_o])
