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
from operator import itemgetter
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np

from watchkeeper.config import ModelConfig, WatchkeeperConfig
from watchkeeper.monitor.binning import ColumnBinner
from watchkeeper.monitor.columns import monitored_columns
from watchkeeper.monitor.engine import ModelMonitor, Output, ProfileLearned
from watchkeeper.monitor.event_times import Groups, late, not_ahead, plausible
from watchkeeper.monitor.feature_block import ModelFeatures
from watchkeeper.monitor.grouping import groups_of, pair_groups, pick
from watchkeeper.monitor.join import JoinStore, LabelledRow
from watchkeeper.monitor.labels import label_entries, prediction_entries, uses_labels
from watchkeeper.monitor.parse import Rejected, parse_outcomes, parse_predictions
from watchkeeper.monitor.partials import build_partials
from watchkeeper.monitor.partition_joins import PartitionJoins, partition_of
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.stage1_result import Late, Stage1Result, ignored, unmonitored
from watchkeeper.monitor.wire import PARTIAL_VERSION, Partial, WindowlessPartial

__all__ = ["MonitorRuntime", "load_profile", "replay_lines"]


def load_profile(path: Path) -> ReferenceProfile:
    try:
        return ReferenceProfile.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"reference.profile: {str(path)!r}: cannot read ({exc.strerror})") from exc


def model_features(config: ModelConfig) -> ModelFeatures:
    """The :class:`ModelFeatures` of a model's configured features (the reader of its predictions)."""
    numeric = tuple(f.name for f in config.features if f.type == "numeric")
    return ModelFeatures(numeric, tuple(f.name for f in config.features if f.type != "numeric"))


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
        self.features = {m.model_id: model_features(m) for m in config.models}  # (the per-model readers)
        self._features = {model_id: features.names for model_id, features in self.features.items()}
        self.monitors: dict[str, ModelMonitor] = {}
        self.joins = PartitionJoins(self.models, max_waiting)
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
        self.joins.open(partition, store)
        self.sources[source] = wall_clock

    def close_partition(self, partition: int, source: str) -> None:
        """Stop reading it (revoked): forget its join and watermarks; the next owner restores them."""
        self.joins.close(partition)
        self.sources.pop(source, None)
        for table in (self.watermarks, self.last_event_at, self.reported_idle):
            for key in [k for k in table if k[1] == source]:
                del table[key]
        for outcomes in (self.outcome_times, self.outcome_at, self.outcomes_idle):
            for number in [k for k in outcomes if k[1] == partition]:
                del outcomes[number]

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
        predictions = parse_predictions([raw[i] for i in where_p] if where_o else list(raw), self.models, self.features)
        outcomes = parse_outcomes([raw[i] for i in where_o], self.models)
        if wall_clock is not None:  # only a batch with an event past the nearest limit can have one too far ahead
            nearest = wall_clock + min((m.window.max_future for m in self.models.values()), default=float("inf"))
            if predictions.events and predictions.times.max() > nearest:
                predictions = not_ahead(predictions, wall_clock, self.models)
            if outcomes.events and outcomes.times.max() > nearest:
                outcomes = not_ahead(outcomes, wall_clock, self.models)
        # (where_p is every position when there are no outcomes: then a kept index is its position)
        everything = not where_o and len(predictions.indices) == len(raw)
        predictions = plausible(
            predictions,
            list(sources) if everything else [sources[where_p[i]] for i in predictions.indices],
            self.models,
            self.watermarks,
        )
        outcomes = plausible(outcomes, None, self.models, self.watermarks)
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
        late_ones = late(predictions.times, by_source, self.models, self.watermarks)
        on_time = np.setdiff1d(np.arange(len(model_ids)), list(late_ones)) if late_ones else None  # positions windowed
        partials = build_partials(
            pick(predictions.events, on_time),
            predictions.times if on_time is None else predictions.times[on_time],
            pick(p_sources, on_time),
            p_offsets if on_time is None else p_offsets[on_time],
            models,
            groups if on_time is None else groups_of(pick(model_ids, on_time)),
        )
        by_model = {p["model_id"]: p for p in partials}
        unknown = unmonitored(predictions.events, groups, models, partials, self._features)
        result = Stage1Result(partials, rejected, ignored=unknown)
        if len(raw) > len(where_o):
            result.decoded["native" if predictions.native else "generic"] = len(raw) - len(where_o)
        for k, reason in sorted(late_ones.items()):  # not windowed; still joined (label windows stay open)
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
        rows = self.joins.join(predictions, p_index, outcomes, o_index, sources, result)
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
            key = (model_id, partition_of(source))
            if time > self.outcome_times.get(key, float("-inf")):
                self.outcome_times[key] = time
            if wall_clock is not None:
                self.outcome_at[key] = wall_clock
            self.outcomes_idle[key] = False

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
                result.ignored.append(ignored(model_id, "unknown_label", unknown))
            if unusable:
                result.ignored.append(ignored(model_id, "unusable_prediction", unusable))

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
                str(p): self.outcomes_idle.get((model_id, p), False) for p in sorted(map(partition_of, self.sources))
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
                partition = partition_of(source)
                since = self.outcome_at.get((model_id, partition), opened)
                quiet = partition in outcomes_caught_up and wall_clock - since >= config.window.idle_close
                if quiet != self.outcomes_idle.get((model_id, partition), False):
                    self.outcomes_idle[model_id, partition] = quiet
                    partials.setdefault(model_id, self._partial(model_id, "watermark", {}))
        for partial in partials.values():
            self._stamp(partial)
        return list(partials.values())

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


class _TopLevelKeys(msgspec.Struct):
    """Whether a recorded event has ``features`` / ``prediction_id`` (their values are not decoded)."""

    features: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    prediction_id: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_top_level_keys = msgspec.json.Decoder(_TopLevelKeys).decode


def _is_outcome(line: bytes | None) -> bool:
    """Recorded streams mix both kinds: an object without a top-level ``features`` key and with a
    ``prediction_id`` is an outcome. Only the top-level keys are read (the values are skipped, not
    decoded); anything that is not a JSON object is taken for a prediction, rejected with its reason."""
    if not line:
        return False
    try:
        keys = _top_level_keys(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return keys.features is msgspec.UNSET and keys.prediction_id is not msgspec.UNSET


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
