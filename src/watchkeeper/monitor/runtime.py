"""The monitor core wired together, with no Kafka: stage 1 and stage 2 over batches.

:class:`MonitorRuntime` is what both shells drive. The Faust worker calls
:meth:`stage1` on each input batch and :meth:`stage2` on each partial it receives;
``watchkeeper replay`` and the benchmarks call :meth:`run_batch`, which does both in one
process. Reference profiles come from files or are learned (and then shared via
:meth:`adopt_profile`, which the worker feeds from the references topic).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig, WatchkeeperConfig
from watchkeeper.monitor.engine import ModelMonitor, Output, ProfileLearned
from watchkeeper.monitor.parse import Rejected, parse_predictions
from watchkeeper.monitor.partials import ColumnBinner, build_partials, monitored_columns
from watchkeeper.monitor.profile import ReferenceProfile

__all__ = ["MonitorRuntime", "load_profile", "replay_lines"]


def load_profile(path: Path) -> ReferenceProfile:
    try:
        return ReferenceProfile.from_dict(json.loads(path.read_text()))
    except OSError as exc:
        raise ValueError(f"reference.profile: {str(path)!r}: cannot read ({exc.strerror})") from exc


class MonitorRuntime:
    """Stage-1 binners and stage-2 monitors for every configured model."""

    def __init__(self, config: WatchkeeperConfig, profiles: Mapping[str, ReferenceProfile] | None = None) -> None:
        self.config = config
        self.models: dict[str, ModelConfig] = {m.model_id: m for m in config.models}
        self.profiles: dict[str, ReferenceProfile] = dict(profiles or {})
        for model in config.models:
            if model.model_id not in self.profiles and model.reference.profile is not None:
                self.profiles[model.model_id] = load_profile(model.reference.profile)
        self._binners: dict[str, ColumnBinner] = {}
        self.monitors: dict[str, ModelMonitor] = {}

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
            binner = ColumnBinner.from_profile(profile, monitored_columns(self.models[model_id]))
            self._binners[model_id] = binner
        return binner

    # -- stage 1 --------------------------------------------------------------------
    def stage1(
        self, raw: Sequence[bytes | None], sources: Sequence[str], offsets: Sequence[int], now: float
    ) -> tuple[list[dict[str, Any]], list[Rejected]]:
        """Validate a batch and build one partial per model; returns (partials, rejected)."""
        batch = parse_predictions(raw, self.models)
        index = np.asarray(batch.indices, dtype=np.int64)
        models = {m: (self.models[m], self.binner(m)) for m in {e["model_id"] for e in batch.events}}
        partials = build_partials(
            batch.events,
            batch.times,
            [sources[i] for i in batch.indices],
            np.asarray(offsets, dtype=np.int64)[index] if len(index) else index,
            models,
            sent_at=now,
        )
        return partials, batch.rejected

    # -- stage 2 --------------------------------------------------------------------
    def monitor(self, model_id: str, state: Mapping[str, Any] | None = None) -> ModelMonitor:
        monitor = self.monitors.get(model_id)
        if monitor is None or state is not None:
            monitor = ModelMonitor(self.models[model_id], self.profiles.get(model_id), state)
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
        partials, rejected = self.stage1(raw, [source] * len(raw), offsets, now=0.0)
        outputs: list[Output] = []
        for partial in partials:
            outputs += self.stage2(partial, now=0.0)
        return outputs, rejected


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
