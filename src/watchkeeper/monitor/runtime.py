"""The monitor core wired together, with no Kafka: stage 1 and stage 2 over batches.

:class:`MonitorRuntime` is what every shell drives. The worker calls :meth:`stage1` on
each input batch (and :meth:`heartbeat` when partitions fall idle) and hands each
resulting partial to :meth:`stage2` in the process that owns the model; ``watchkeeper
replay`` and the benchmarks call :meth:`run_batch`, which does both in one process.

Stage 1 keeps, per input partition, the outcome join (:class:`OutcomeJoiner`, one per
partition, its store given by the shell with :meth:`open_partition`) and, per model and
partition, the latest prediction event time: every partial carries these watermarks for
all partitions this process reads, the number of partitions, and which are idle, so that
stage 2 can close windows by the data alone (:mod:`watchkeeper.monitor.engine`). For models
with accuracy or fairness it carries the latest *outcome* event time per partition too
(and which partitions have had no outcomes of the model lately), so that stage 2 evaluates
a label checkpoint only once every label it counts has been joined.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from watchkeeper.config import ModelConfig, WatchkeeperConfig
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.columns import monitored_columns, nested, unknown_names
from watchkeeper.monitor.engine import ModelMonitor, Output, ProfileLearned
from watchkeeper.monitor.grouping import groups_of, pair_groups, pick, window_starts
from watchkeeper.monitor.join import JoinModel, JoinStore, LabelledRow, MemoryJoinStore, OutcomeJoiner
from watchkeeper.monitor.labels import label_entries, prediction_entries, uses_labels
from watchkeeper.monitor.parse import ParsedBatch, Rejected, parse_outcomes, parse_predictions
from watchkeeper.monitor.partials import build_partials
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.wire import PARTIAL_VERSION, Partial, WindowlessPartial

__all__ = [
    "Ignored",
    "IgnoredReason",
    "Late",
    "MonitorRuntime",
    "Overflow",
    "Stage1Result",
    "load_profile",
    "replay_lines",
]

Groups = tuple[list[Any], np.ndarray, np.ndarray]  # (distinct keys, positions by key, where each key starts)
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


def load_profile(path: Path) -> ReferenceProfile:
    try:
        return ReferenceProfile.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"reference.profile: {str(path)!r}: cannot read ({exc.strerror})") from exc


def _ignored(model_id: str, reason: IgnoredReason, counts: Counter[str]) -> Ignored:
    """An :class:`Ignored` of per-name counts: their total, and the most frequent names."""
    names = tuple(name for name, _ in counts.most_common(_IGNORED_NAMES))
    return Ignored(model_id, reason, sum(counts.values()), names)


def _partition(source: str) -> int:
    return int(source.rsplit(":", 1)[1])


class MonitorRuntime:
    """Stage-1 binners and joins, and stage-2 monitors, for every configured model."""

    def __init__(
        self,
        config: WatchkeeperConfig,
        profiles: Mapping[str, ReferenceProfile] | None = None,
        max_waiting: int | None = None,
    ) -> None:
        self.config = config
        self.models: dict[str, ModelConfig] = {m.model_id: m for m in config.models}
        self.profiles: dict[str, ReferenceProfile] = dict(profiles or {})
        for model in config.models:
            if model.model_id not in self.profiles and model.reference.profile is not None:
                self.profiles[model.model_id] = load_profile(model.reference.profile)
        self._binners: dict[str, ColumnBinner] = {}
        self._features = {m.model_id: frozenset(f.name for f in m.features) for m in config.models}
        self.monitors: dict[str, ModelMonitor] = {}
        self._join_models = {
            m.model_id: JoinModel(m.accuracy.label_horizon, tuple(m.sensitive_attributes)) for m in config.models
        }
        self.max_waiting = max_waiting
        self.joiners: dict[int, OutcomeJoiner] = {}
        self.event_times: dict[tuple[int, bool], float] = {}  # (partition, outcomes?) → latest event time
        self.watermarks: dict[tuple[str, str], float] = {}  # (model, prediction source) → latest event time
        self.sources: dict[str, float] = {}  # prediction sources read here → wall time they were opened
        self.last_event_at: dict[tuple[str, str], float] = {}  # (model, source) → wall time of its last event
        self.reported_idle: dict[tuple[str, str], bool] = {}
        self.outcome_times: dict[tuple[str, int], float] = {}  # (model, partition) → latest outcome event time
        self.outcome_at: dict[tuple[str, int], float] = {}  # (model, partition) → wall time of its last outcome
        self.outcomes_idle: dict[tuple[str, int], bool] = {}
        self.partitions = 1  # partitions of the predictions topic

    # -- profiles -------------------------------------------------------------------
    def adopt_profile(self, profile: ReferenceProfile) -> None:
        """Use a (learned or published) profile for stage 1 from now on."""
        if profile.model_id in self.models:
            self.profiles[profile.model_id] = profile
            self._binners.pop(profile.model_id, None)

    def binner(self, model_id: str) -> ColumnBinner | None:
        profile = self.profiles.get(model_id)
        if profile is None:
            return None
        binner = self._binners.get(model_id)
        if binner is None or binner.profile is not profile:
            config = self.models[model_id]
            quiet = frozenset(f.name for f in config.features if not f.sequential) if config.drift.sequential else None
            binner = ColumnBinner.from_profile(
                profile, monitored_columns(config), quiet if quiet is not None else frozenset(profile.columns)
            )
            self._binners[model_id] = binner
        return binner

    # -- partitions -----------------------------------------------------------------
    def open_partition(self, partition: int, store: JoinStore, source: str, wall_clock: float) -> None:
        """Start reading an input partition: its join store (restored by the shell) and its prediction source."""
        joiner = OutcomeJoiner(self._join_models, store, self.max_waiting)
        joiner.rebuild_index()
        self.joiners[partition] = joiner
        self.sources[source] = wall_clock

    def close_partition(self, partition: int, source: str) -> None:
        """Stop reading it (revoked): forget its join and watermarks; the next owner restores them."""
        self.joiners.pop(partition, None)
        self.event_times.pop((partition, False), None)
        self.event_times.pop((partition, True), None)
        self.sources.pop(source, None)
        for table in (self.watermarks, self.last_event_at, self.reported_idle):
            for key in [k for k in table if k[1] == source]:
                del table[key]
        for outcomes in (self.outcome_times, self.outcome_at, self.outcomes_idle):
            for number in [k for k in outcomes if k[1] == partition]:
                del outcomes[number]

    def _joiner(self, partition: int) -> OutcomeJoiner:
        if partition not in self.joiners:  # replay and tests: an in-memory join per partition
            self.joiners[partition] = OutcomeJoiner(self._join_models, MemoryJoinStore(), self.max_waiting)
        return self.joiners[partition]

    # -- stage 1 --------------------------------------------------------------------
    def stage1(
        self,
        raw: Sequence[bytes | None],
        sources: Sequence[str],
        offsets: Sequence[int],
        is_outcome: Sequence[bool] | None = None,
        wall_clock: float | None = None,
    ) -> Stage1Result:
        """Validate a batch of predictions (and outcomes), join, and build one partial per model.

        ``sources[i]`` is "topic:partition" of record i. With ``wall_clock`` (the worker's
        clock; not in a replay), events stamped more than the model's ``window.max_future``
        ahead of it are rejected, and idleness is tracked. Late predictions (:meth:`_late`) are
        left out of the windows and counted in their model's partial (``late``).
        """
        flags = list(is_outcome) if is_outcome is not None else []
        if any(flags):
            where_p = [i for i, outcome in enumerate(flags) if not outcome]
            where_o = [i for i, outcome in enumerate(flags) if outcome]
        else:  # predictions only (the usual batch)
            where_p, where_o = list(range(len(raw))), []
        predictions = parse_predictions([raw[i] for i in where_p] if where_o else list(raw), self.models)
        outcomes = parse_outcomes([raw[i] for i in where_o], self.models)
        if wall_clock is not None:  # only a batch with an event past the nearest limit can have one too far ahead
            nearest = wall_clock + min((m.window.max_future for m in self.models.values()), default=float("inf"))
            if predictions.events and predictions.times.max() > nearest:
                predictions = self._not_ahead(predictions, wall_clock)
            if outcomes.events and outcomes.times.max() > nearest:
                outcomes = self._not_ahead(outcomes, wall_clock)
        # (where_p is every position when there are no outcomes: then a kept index is its position)
        everything = not where_o and len(predictions.indices) == len(raw)
        predictions = self._plausible(
            predictions, list(sources) if everything else [sources[where_p[i]] for i in predictions.indices]
        )
        outcomes = self._plausible(outcomes, None)
        rejected = [Rejected(where_p[r.index], r.reason) for r in predictions.rejected]
        rejected += [Rejected(where_o[r.index], r.reason) for r in outcomes.rejected]
        everything = everything and len(predictions.indices) == len(raw)
        p_index = predictions.indices if not where_o else [where_p[i] for i in predictions.indices]
        o_index = [where_o[i] for i in outcomes.indices]
        p_sources = list(sources) if everything else [sources[i] for i in p_index]
        all_offsets = np.asarray(offsets, dtype=np.int64)
        model_ids = list(map(itemgetter("model_id"), predictions.events))
        groups = groups_of(model_ids)
        models = {m: (self.models[m], self.binner(m)) for m in groups}
        p_offsets = all_offsets if everything else all_offsets[p_index] if p_index else all_offsets[:0]
        by_source = pair_groups(model_ids, p_sources)  # (model, partition) groups: lateness, watermarks
        late = self._late(predictions.times, by_source)
        on_time = np.setdiff1d(np.arange(len(model_ids)), list(late)) if late else None  # positions windowed
        partials = build_partials(
            pick(predictions.events, on_time),
            predictions.times if on_time is None else predictions.times[on_time],
            pick(p_sources, on_time),
            p_offsets if on_time is None else p_offsets[on_time],
            models,
            groups if on_time is None else groups_of(pick(model_ids, on_time)),
        )
        by_model = {p["model_id"]: p for p in partials}
        unmonitored = self._unmonitored(predictions.events, groups, models, partials)
        result = Stage1Result(partials, rejected, ignored=unmonitored)
        for k, reason in sorted(late.items()):  # not windowed; still joined (label windows stay open)
            result.late.append(Late(p_index[k], model_ids[k], reason))
            partial = by_model.get(model_ids[k]) or self._partial(model_ids[k], "labels", by_model)
            partial["late"] = partial.get("late", 0) + 1
            first, last = partial["source"].get(p_sources[k], [int(p_offsets[k])] * 2)
            partial["source"][p_sources[k]] = [min(first, int(p_offsets[k])), max(last, int(p_offsets[k]))]
        self._track_times(predictions.times, by_source, wall_clock)
        for model_id, partial in by_model.items():
            config, index = self.models[model_id], groups[model_id]
            selected = pick(predictions.events, index) if uses_labels(config) else []
            times = predictions.times if index is None else predictions.times[index]
            partial["labels"] = list(prediction_entries(config, selected, times).values())
        o_models = list(map(itemgetter("model_id"), outcomes.events))
        labelled = {m: uses_labels(self.models[m]) for m in dict.fromkeys(o_models)}
        ignored = sum(count for m, count in Counter(o_models).items() if not labelled[m])
        if ignored:
            result.outcomes["ignored"] = ignored  # no accuracy/fairness
        kept = [k for k, m in enumerate(o_models) if labelled[m]]
        o_positions = [o_index[k] for k in kept]
        o_keys = pair_groups([o_models[k] for k in kept], [sources[i] for i in o_positions])  # by (model, source)
        self._track_outcome_times(outcomes.times[kept], o_keys, wall_clock)
        distinct, order, starts = o_keys
        if distinct:
            o_offsets = all_offsets[o_positions][order]
            lows, highs = np.minimum.reduceat(o_offsets, starts), np.maximum.reduceat(o_offsets, starts)
            for (model_id, source), low, high in zip(distinct, lows.tolist(), highs.tolist(), strict=True):
                partial = by_model.get(model_id) or self._partial(model_id, "labels", by_model)
                first, last = partial["source"].get(source, [low, low])
                partial["source"][source] = [min(first, low), max(last, high)]
        rows = self._join(predictions, p_index, outcomes, o_index, sources, result)
        self._labels(rows, by_model, result)
        for partial in by_model.values():
            self._stamp(partial)
        result.partials = list(by_model.values())
        return result

    def _track_times(self, times: np.ndarray, by_source: Groups, wall_clock: float | None) -> None:
        """Latest event time per (model, prediction source) of the batch (``by_source``: the events'
        :func:`pair_groups` by model and source), and that the source is not idle."""
        distinct, order, starts = by_source
        if not distinct:
            return
        latest = np.fmax.reduceat(times[order], starts).tolist()
        for key, time in zip(distinct, latest, strict=True):  # (keys in order of appearance)
            if time > self.watermarks.get(key, float("-inf")):
                self.watermarks[key] = time
            if wall_clock is not None:
                self.last_event_at[key] = wall_clock
            self.reported_idle[key] = False  # data from it: it is not idle, whatever was said before

    def _track_outcome_times(self, times: np.ndarray, by_source: Groups, wall_clock: float | None) -> None:
        """Latest outcome event time per (model, input partition) (``by_source``: the outcomes'
        :func:`pair_groups` by model and source), and that its outcomes are not idle."""
        distinct, order, starts = by_source
        latest = np.fmax.reduceat(times[order], starts).tolist() if distinct else []
        for (model_id, source), time in zip(distinct, latest, strict=True):
            key = (model_id, _partition(source))
            if time > self.outcome_times.get(key, float("-inf")):
                self.outcome_times[key] = time
            if wall_clock is not None:
                self.outcome_at[key] = wall_clock
            self.outcomes_idle[key] = False

    def _join(
        self,
        predictions: ParsedBatch,
        p_index: Sequence[int],
        outcomes: ParsedBatch,
        o_index: Sequence[int],
        sources: Sequence[str],
        result: Stage1Result,
    ) -> dict[str, list[LabelledRow]]:
        """Join per input partition; expire what passed its horizon (orphan outcomes: dead letters); count overflow."""
        labelled = {m for m, config in self.models.items() if uses_labels(config)}
        by_partition: dict[int, tuple[list[int], list[int]]] = {}
        for side, (batch, positions) in enumerate(((predictions, p_index), (outcomes, o_index))):
            if not labelled:  # (no model joins outcomes: only the expiry below, of a restored join)
                break
            models = list(map(itemgetter("model_id"), batch.events))
            if labelled.isdisjoint(models):
                continue
            batch_sources = list(map(sources.__getitem__, positions))
            numbers = {source: _partition(source) for source in dict.fromkeys(batch_sources)}
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
            joiner = self._joiner(partition)
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
            result.expired_outcomes += joiner.expire(self._join_clock(partition)).outcomes
        return rows

    def _join_clock(self, partition: int) -> float:
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

    def _labels(
        self,
        rows: Mapping[str, list[LabelledRow]],
        by_model: dict[str, Partial],
        result: Stage1Result,
    ) -> None:
        """Label entries (joined rows), into each model's partial."""
        for model_id in sorted(rows):
            config = self.models[model_id]
            partial = by_model.get(model_id) or self._partial(model_id, "labels", by_model)
            entries, unknown, unusable = label_entries(config, rows.get(model_id, []))
            partial.setdefault("labels", []).extend(entries)
            if unknown:
                result.ignored.append(_ignored(model_id, "unknown_label", unknown))
            if unusable:
                result.ignored.append(_ignored(model_id, "unusable_prediction", unusable))

    def _unmonitored(
        self,
        events: Sequence[dict[str, Any]],
        groups: Mapping[str, np.ndarray | None],
        models: Mapping[str, tuple[ModelConfig, ColumnBinner | None]],
        partials: Sequence[Partial],
    ) -> list[Ignored]:
        """What of the batch's predictions no statistic counts: unknown features, configured columns
        the profile lacks, and invalid values (from the partials' window entries)."""
        ignored: list[Ignored] = []
        for model_id, index in groups.items():
            features = nested(pick(events, index), "features")
            unknown = unknown_names(features, self._features[model_id])
            if unknown:
                ignored.append(_ignored(model_id, "unknown_feature", Counter(unknown)))
            binner = models[model_id][1]
            if binner is not None:
                known = {*binner.numeric, *binner.categorical}
                absent = [c for c in monitored_columns(models[model_id][0]) if c not in known]
                if absent:
                    ignored.append(_ignored(model_id, "not_in_profile", Counter(dict.fromkeys(absent, len(features)))))
        for partial in partials:
            if partial["kind"] != "stats":
                continue
            invalid: Counter[str] = Counter()
            for window in partial["windows"]:
                invalid.update(window["invalid"])
            if invalid:
                ignored.append(_ignored(partial["model_id"], "invalid", invalid))
        return ignored

    def _stamp(self, partial: Partial) -> None:
        """Watermarks of every prediction partition read here, their idleness and the partition count."""
        model_id = partial["model_id"]
        partial["watermarks"] = {s: t for (m, s), t in sorted(self.watermarks.items()) if m == model_id}
        partial["idle"] = {s: self.reported_idle.get((model_id, s), False) for s in sorted(self.sources)}
        partial["partitions"] = self.partitions
        if uses_labels(self.models[model_id]):
            times = {p: t for (m, p), t in self.outcome_times.items() if m == model_id}
            partial["outcome_watermarks"] = {str(p): t for p, t in sorted(times.items())}
            partial["outcomes_idle"] = {
                str(p): self.outcomes_idle.get((model_id, p), False) for p in sorted(map(_partition, self.sources))
            }

    def heartbeat(
        self, wall_clock: float, caught_up: Collection[str], outcomes_caught_up: Collection[int] = ()
    ) -> list[Partial]:
        """Partials for models whose partitions fell idle or woke up (worker only).

        A prediction partition is idle for a model when this process has read it to the
        end (``caught_up``) and saw none of the model's events there for the model's
        ``window.idle_close`` seconds; stage 2 then leaves it out of the watermark. Outcomes
        likewise, per input partition number (``outcomes_caught_up``), for the label
        checkpoints' watermark.
        """
        partials: dict[str, Partial] = {}
        for model_id, config in self.models.items():
            for source, opened in self.sources.items():
                key = (model_id, source)
                since = self.last_event_at.get(key, opened)
                idle = source in caught_up and wall_clock - since >= config.window.idle_close
                if idle != self.reported_idle.get(key, False):
                    self.reported_idle[key] = idle
                    partials.setdefault(model_id, self._partial(model_id, "watermark", {}))
                if not uses_labels(config):
                    continue
                partition = _partition(source)
                since = self.outcome_at.get((model_id, partition), opened)
                quiet = partition in outcomes_caught_up and wall_clock - since >= config.window.idle_close
                if quiet != self.outcomes_idle.get((model_id, partition), False):
                    self.outcomes_idle[model_id, partition] = quiet
                    partials.setdefault(model_id, self._partial(model_id, "watermark", {}))
        for partial in partials.values():
            self._stamp(partial)
        return list(partials.values())

    def _plausible(self, batch: ParsedBatch, sources: Sequence[str] | None) -> ParsedBatch:
        """Reject events stamped at or before the Unix epoch and, for predictions (``sources``
        given), those more than the model's ``window.max_past`` behind the latest event time
        of that model in the same input partition, counting earlier events of this batch (so
        the verdict does not depend on where batches are cut).
        """
        if not batch.events:
            return batch
        times = batch.times
        newest = max([*self.watermarks.values(), float(times.max())])
        shortest = min(m.window.max_past for m in self.models.values())
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
                latest = running.get(key, self.watermarks.get(key, float("-inf")))
                max_past = self.models[event["model_id"]].window.max_past
                if t < latest - max_past:
                    reasons[i] = (
                        f"timestamp: {event.get('timestamp')!r}: more than {max_past:g} s behind the latest "
                        f"event time of model {event['model_id']!r} in its partition ({latest:.3f}); "
                        "expected within window.max_past"
                    )
                else:
                    running[key] = max(latest, t)
        if not reasons:
            return batch
        keep = np.ones(len(batch.events), dtype=bool)
        keep[list(reasons)] = False
        return ParsedBatch(
            [e for e, k in zip(batch.events, keep, strict=True) if k],
            times[keep],
            [i for i, k in zip(batch.indices, keep, strict=True) if k],
            list(batch.rejected) + [Rejected(batch.indices[i], reason) for i, reason in sorted(reasons.items())],
        )

    def _late(self, times: np.ndarray, by_source: Groups) -> dict[int, str]:
        """Why each late prediction is late, by position: its window ended ``window.allowed_lateness``
        or more before the latest event time of its model in its input partition, counting earlier
        events of this batch (so the verdict does not depend on where batches are cut).
        ``by_source``: the events' :func:`pair_groups` by model and input partition.

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
            window = self.models[key[0]].window
            ends = window_starts(t, window.size) + window.size
            before = np.maximum.accumulate(np.concatenate(([self.watermarks.get(key, -np.inf)], t[:-1])))
            for i in np.flatnonzero(ends + window.allowed_lateness <= before).tolist():
                reasons[int(at[i])] = (
                    f"late: timestamp {t[i]:.3f}: its window [{ends[i] - window.size:.3f}, {ends[i]:.3f}) of model "
                    f"{key[0]!r} closed at {ends[i] + window.allowed_lateness:.3f} (end + window.allowed_lateness), "
                    f"behind the latest event time in its partition ({before[i]:.3f})"
                )
        return reasons

    def _not_ahead(self, batch: ParsedBatch, wall_clock: float | None) -> ParsedBatch:
        if wall_clock is None or not batch.events:
            return batch
        limits = np.asarray([wall_clock + self.models[e["model_id"]].window.max_future for e in batch.events])
        ahead = batch.times > limits
        if not ahead.any():
            return batch
        rejected = list(batch.rejected) + [
            Rejected(
                batch.indices[i],
                f"timestamp: {batch.events[i].get('timestamp')!r}: more than "
                f"{self.models[batch.events[i]['model_id']].window.max_future:g} s ahead of the worker's clock",
            )
            for i in np.flatnonzero(ahead)
        ]
        keep = ~ahead
        return ParsedBatch(
            [e for e, k in zip(batch.events, keep, strict=True) if k],
            batch.times[keep],
            [i for i, k in zip(batch.indices, keep, strict=True) if k],
            rejected,
        )

    def _partial(
        self, model_id: str, kind: Literal["labels", "watermark"], by_model: dict[str, Partial]
    ) -> WindowlessPartial:
        """A partial without windows: outcomes only (``labels``) or idleness news (``watermark``)."""
        partial: WindowlessPartial = {
            "v": PARTIAL_VERSION,
            "kind": kind,
            "model_id": model_id,
            "profile_id": None,
            "source": {},
            "watermarks": {},
            "windows": [],
            "labels": [],
        }
        by_model[model_id] = partial
        return partial

    # -- stage 2 --------------------------------------------------------------------
    def monitor(self, model_id: str, records: Mapping[str, bytes] | None = None) -> ModelMonitor:
        """The model's stage-2 monitor; with ``records``, rebuilt from restored state."""
        monitor = self.monitors.get(model_id)
        if monitor is None or records is not None:
            monitor = ModelMonitor(self.models[model_id], self.profiles.get(model_id), records)
            self.monitors[model_id] = monitor
        if monitor.profile is not None and model_id not in self.profiles:
            self.adopt_profile(monitor.profile)  # a learned profile restored with the state
        return monitor

    def stage2(self, partial: Partial) -> list[Output]:
        """Apply a partial to its model's monitor (in one process: a learned profile is adopted at once)."""
        return self._adopting(self.monitor(partial["model_id"]).apply(partial))

    def flush(self) -> list[Output]:
        return self._adopting([out for monitor in self.monitors.values() for out in monitor.flush()])

    def _adopting(self, outputs: list[Output]) -> list[Output]:
        for output in outputs:
            if isinstance(output, ProfileLearned):
                self.adopt_profile(output.profile)
        return outputs

    def run_batch(
        self, raw: Sequence[bytes | None], source: str, first_offset: int
    ) -> tuple[list[Output], list[Rejected]]:
        """Stage 1 then stage 2 on one batch (replay, benchmarks)."""
        offsets = list(range(first_offset, first_offset + len(raw)))
        is_outcome = [_is_outcome(line) for line in raw]
        result = self.stage1(raw, [source] * len(raw), offsets, is_outcome=is_outcome)
        outputs: list[Output] = []
        for partial in result.partials:
            outputs += self.stage2(partial)
        return outputs, result.rejected


def _is_outcome(line: bytes | None) -> bool:
    """Recorded streams mix both kinds: an event without a top-level ``features`` object is an outcome."""
    try:
        event = orjson.loads(line) if line else None
    except orjson.JSONDecodeError:
        return False  # rejected as a prediction, with the reason
    return isinstance(event, dict) and "features" not in event and "prediction_id" in event


def replay_lines(
    runtime: MonitorRuntime, lines: Iterable[bytes], batch_size: int = 1000
) -> Iterator[tuple[list[Output], list[Rejected], int]]:
    """Feed recorded events in batches; yields (outputs, rejected, events read) per batch.

    Windows still open at the end are closed (flushed) in the last item.
    """
    batch: list[bytes] = []
    offset = 0
    for line in lines:
        if not line.strip():
            continue
        batch.append(line)
        if len(batch) >= batch_size:
            outputs, rejected = runtime.run_batch(batch, "replay:0", offset)
            offset += len(batch)
            yield outputs, rejected, len(batch)
            batch = []
    outputs, rejected = runtime.run_batch(batch, "replay:0", offset) if batch else ([], [])
    yield outputs + runtime.flush(), rejected, len(batch)
