"""The monitor core wired together, with no Kafka: stage 1 and stage 2 over batches.

:class:`MonitorRuntime` is what both shells drive. The Faust worker calls
:meth:`stage1` on each input batch and :meth:`stage2` on each partial it receives;
``watchkeeper replay`` and the benchmarks call :meth:`run_batch`, which does both in one
process. Reference profiles come from files or are learned (and then shared via
:meth:`adopt_profile`, which the worker feeds from the references topic).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from watchkeeper.config import ModelConfig, WatchkeeperConfig
from watchkeeper.monitor.engine import ModelMonitor, Output, ProfileLearned
from watchkeeper.monitor.join import JoinModel, LabelledRow, OutcomeJoiner
from watchkeeper.monitor.labels import expired_entries, label_entries, prediction_entries, uses_labels
from watchkeeper.monitor.parse import ParsedBatch, Rejected, parse_outcomes, parse_predictions
from watchkeeper.monitor.partials import PARTIAL_VERSION, ColumnBinner, build_partials, monitored_columns
from watchkeeper.monitor.profile import ReferenceProfile

__all__ = ["MonitorRuntime", "Stage1Result", "load_profile", "replay_lines"]

JoinStore = MutableMapping[bytes, bytes]


@dataclass
class Stage1Result:
    """What stage 1 made of a batch."""

    partials: list[dict[str, Any]]
    rejected: list[Rejected]
    expired_outcomes: list[bytes] = field(default_factory=list)  # for the dead-letter topic
    outcomes: dict[str, int] = field(default_factory=dict)  # joined / waiting / duplicate / embedded
    unusable_labels: int = 0  # labels not among the model's classes, or regression rows without values


def load_profile(path: Path) -> ReferenceProfile:
    try:
        return ReferenceProfile.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"reference.profile: {str(path)!r}: cannot read ({exc.strerror})") from exc


class MonitorRuntime:
    """Stage-1 binners and stage-2 monitors for every configured model."""

    def __init__(
        self,
        config: WatchkeeperConfig,
        profiles: Mapping[str, ReferenceProfile] | None = None,
        join_stores: tuple[JoinStore, JoinStore, JoinStore] | None = None,
    ) -> None:
        self.config = config
        self.models: dict[str, ModelConfig] = {m.model_id: m for m in config.models}
        self.profiles: dict[str, ReferenceProfile] = dict(profiles or {})
        for model in config.models:
            if model.model_id not in self.profiles and model.reference.profile is not None:
                self.profiles[model.model_id] = load_profile(model.reference.profile)
        self._binners: dict[str, ColumnBinner] = {}
        self.monitors: dict[str, ModelMonitor] = {}
        join_models = {
            m.model_id: JoinModel(m.accuracy.label_horizon, tuple(m.sensitive_attributes)) for m in config.models
        }
        predictions, outcomes, joined = join_stores or ({}, {}, {})
        self.joiner = OutcomeJoiner(join_models, predictions, outcomes, joined)
        self.event_time = float("-inf")  # latest event time stage 1 has seen (drives join expiry)

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

    # -- stage 1 --------------------------------------------------------------------
    def stage1(
        self,
        raw: Sequence[bytes | None],
        sources: Sequence[str],
        offsets: Sequence[int],
        now: float,
        is_outcome: Sequence[bool] | None = None,
        wall_clock: float | None = None,
    ) -> Stage1Result:
        """Validate a batch of predictions (and outcomes), join, and build one partial per model.

        With ``wall_clock`` (the worker's clock; not in a replay), events stamped more than
        the model's ``window.max_future`` ahead of it are rejected.
        """
        flags = list(is_outcome) if is_outcome is not None else [False] * len(raw)
        where_p = [i for i, outcome in enumerate(flags) if not outcome]
        where_o = [i for i, outcome in enumerate(flags) if outcome]
        predictions = self._not_ahead(parse_predictions([raw[i] for i in where_p], self.models), wall_clock)
        outcomes = self._not_ahead(parse_outcomes([raw[i] for i in where_o], self.models), wall_clock)
        rejected = [Rejected(where_p[r.index], r.reason) for r in predictions.rejected]
        rejected += [Rejected(where_o[r.index], r.reason) for r in outcomes.rejected]
        p_index = np.asarray([where_p[i] for i in predictions.indices], dtype=np.int64)
        all_offsets = np.asarray(offsets, dtype=np.int64)
        models = {m: (self.models[m], self.binner(m)) for m in {e["model_id"] for e in predictions.events}}
        partials = build_partials(
            predictions.events,
            predictions.times,
            [sources[i] for i in p_index],
            all_offsets[p_index] if len(p_index) else p_index,
            models,
            sent_at=now,
        )
        by_model = {p["model_id"]: p for p in partials}
        result = Stage1Result(partials, rejected)
        rows: dict[str, list[LabelledRow]] = {}
        for event, time in zip(predictions.events, predictions.times, strict=True):
            config = self.models[event["model_id"]]
            if uses_labels(config):
                row = self.joiner.add_prediction(event, float(time))
                if row is not None:
                    rows.setdefault(row.model_id, []).append(row)
        for model_id, partial in by_model.items():
            config = self.models[model_id]
            mask = np.asarray([e["model_id"] == model_id for e in predictions.events])
            selected = [e for e, keep in zip(predictions.events, mask, strict=True) if keep]
            partial["labels"] = list(prediction_entries(config, selected, predictions.times[mask]).values())
        for position, event, time in zip(outcomes.indices, outcomes.events, outcomes.times, strict=True):
            if not uses_labels(self.models[event["model_id"]]):
                result.outcomes["ignored"] = result.outcomes.get("ignored", 0) + 1  # no accuracy/fairness
                continue
            row, status = self.joiner.add_outcome(event, float(time))
            result.outcomes[status] = result.outcomes.get(status, 0) + 1
            partial = by_model.get(event["model_id"]) or self._labels_partial(event["model_id"], now, by_model)
            source, offset = sources[where_o[position]], int(all_offsets[where_o[position]])
            first, last = partial["source"].get(source, [offset, offset])
            partial["source"][source] = [min(first, offset), max(last, offset)]
            if row is not None:
                rows.setdefault(row.model_id, []).append(row)
        times = np.concatenate([predictions.times, outcomes.times])
        if times.size:
            self.event_time = max(self.event_time, float(times.max()))
        expired = self.joiner.expire(self.event_time)
        result.expired_outcomes = expired.outcomes
        lapsed: dict[str, list[float]] = {}
        for model_id, _, time in expired.predictions:
            lapsed.setdefault(model_id, []).append(time)
        for model_id in set(rows) | set(lapsed):
            config = self.models[model_id]
            partial = by_model.get(model_id) or self._labels_partial(model_id, now, by_model)
            entries, unusable, errors = label_entries(config, rows.get(model_id, []))
            partial.setdefault("labels", []).extend(entries)
            if errors:
                partial["errors"] = errors
            result.unusable_labels += unusable
            if model_id in lapsed:
                partial["expired"] = {repr(k): v for k, v in expired_entries(config, lapsed[model_id]).items()}
        result.partials = list(by_model.values())
        return result

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

    def _labels_partial(self, model_id: str, now: float, by_model: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A partial for a model that had outcomes but no predictions in the batch."""
        partial: dict[str, Any] = {
            "v": PARTIAL_VERSION,
            "kind": "labels",
            "model_id": model_id,
            "profile_id": None,
            "source": {},
            "watermarks": {},
            "sent_at": now,
            "windows": [],
            "labels": [],
        }
        by_model[model_id] = partial
        return partial

    # -- stage 2 --------------------------------------------------------------------
    def monitor(
        self,
        model_id: str,
        state: Mapping[str, Any] | None = None,
        label_store: MutableMapping[str, Any] | None = None,
    ) -> ModelMonitor:
        monitor = self.monitors.get(model_id)
        if monitor is None or state is not None:
            monitor = ModelMonitor(self.models[model_id], self.profiles.get(model_id), state, label_store)
            self.monitors[model_id] = monitor
        if monitor.profile is None and model_id in self.profiles:
            monitor.profile = self.profiles[model_id]
        elif monitor.profile is not None and model_id not in self.profiles:
            self.adopt_profile(monitor.profile)  # a learned profile restored with the state
        return monitor

    def stage2(self, partial: Mapping[str, Any], now: float) -> list[Output]:
        outputs = self.monitor(partial["model_id"]).apply(partial, now)
        for output in outputs:
            if isinstance(output, ProfileLearned):
                self.adopt_profile(output.profile)
        return outputs

    def tick(self, now: float) -> list[Output]:
        return [out for monitor in self.monitors.values() for out in monitor.tick(now)]

    def flush(self) -> list[Output]:
        return [out for monitor in self.monitors.values() for out in monitor.flush()]

    def run_batch(
        self, raw: Sequence[bytes | None], source: str, first_offset: int
    ) -> tuple[list[Output], list[Rejected]]:
        """Stage 1 then stage 2 on one batch (replay, benchmarks); `now` is the event time."""
        offsets = list(range(first_offset, first_offset + len(raw)))
        is_outcome = [_is_outcome(line) for line in raw]
        result = self.stage1(raw, [source] * len(raw), offsets, now=0.0, is_outcome=is_outcome)
        outputs: list[Output] = []
        for partial in result.partials:
            outputs += self.stage2(partial, now=0.0)
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
