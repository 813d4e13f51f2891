"""Stage 2 of the sequential drift monitor: CUSUMs over event-time slices, in event-time order.

Stage 1 summarises each batch per **slice** of event time (``window.size /
drift.slices_per_window``) with exact integer sufficient statistics
(:meth:`~watchkeeper.stats.sequential.CalibratedCusum.slice_sums`). Stage 2 merges the
slices from every input partition and, once the model's watermark has passed a slice's end
(plus the allowed lateness), **finalises** it: slices are taken in event-time order and
accumulated per column until a bucket holds at least ``drift.bucket_size`` present values;
each full bucket advances the calibrated CUSUM (:meth:`CalibratedCusum.advance`) by as many
calibrated steps as it holds buckets' worth of values (:func:`_as_buckets`).

So the buckets, and every alarm, are a function of the events' contents and timestamps
only: not of batch sizes, partition counts, workers or the order in which partitions are
consumed. An alarm is attributed to the window holding the bucket's last slice; a column
whose CUSUM stayed quiet for a whole window counts as cleared for that window (the alert
resolves after ``resolve_windows`` quiet windows). A slice that arrives after it was
finalised is late: it is counted, not applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.profile import ReferenceProfile, calibrated_detector
from watchkeeper.stats.sequential import CalibratedCusum, Detection

__all__ = ["SequentialDrift", "slice_window_start"]

STATE_VERSION = 2


def slice_window_start(index: int, config: ModelConfig) -> float:
    """Start of the window that holds slice ``index`` (slices nest in windows)."""
    return float(index // config.drift.slices_per_window) * config.window.size


def _as_buckets(row: list[float], present: int, detector: CalibratedCusum) -> list[list[float]]:
    """A bucket of ``present`` values as ``k ≈ present / bucket_size`` calibrated steps.

    The thresholds were calibrated for buckets of ``bucket_size`` values, including the
    error of the reference estimates, which shifts every bucket's statistic alike: in a
    bucket k times larger that shift is √k times larger and would make the CUSUM drift.
    Each of ``k`` steps gets the statistic ``z/√k``: the steps add up to the bucket's
    statistic with the variance of k independent buckets, and the reference error and a
    real shift count per step as in a calibrated bucket.
    """
    steps = max(1, round(present / detector.bucket_size))
    if steps == 1:
        return [row]
    scale = 1.0 / math.sqrt(steps)
    return [[value * scale for value in row]] * steps


class SequentialDrift:
    """The stage-2 CUSUM state of one model and the verdicts it gives."""

    def __init__(self, config: ModelConfig, profile: ReferenceProfile, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.detectors: dict[str, CalibratedCusum] = {}
        state = state or {}
        if state and state.get("v") != STATE_VERSION:
            state = {}  # an older layout (arrival-order buckets): start the CUSUMs afresh
        off = {f.name for f in config.features if not f.sequential}
        if config.drift.sequential:
            for name, column in profile.columns.items():
                calibrated = calibrated_detector(column) if name not in off else None
                if calibrated is not None:
                    detector = CalibratedCusum.from_dict(calibrated)
                    saved = state.get("detectors", {}).get(name)
                    if saved:
                        detector.sums = [float(v) for v in saved["sums"]]
                        detector.n_buckets = int(saved["n_buckets"])
                        detector.n_alarms = int(saved["n_alarms"])
                    self.detectors[name] = detector
        self.pending: dict[int, dict[str, list[int]]] = {
            int(k): {c: [int(x) for x in v] for c, v in columns.items()}
            for k, columns in state.get("pending", {}).items()
        }
        self.bucket: dict[str, list[int]] = {k: [int(x) for x in v] for k, v in state.get("bucket", {}).items()}
        self.since_alarm: dict[str, int] = {k: int(v) for k, v in state.get("since_alarm", {}).items()}
        self.alarmed: dict[str, list[str]] = {k: list(v) for k, v in state.get("alarmed", {}).items()}
        final = state.get("finalized_until")
        self.finalized_until: int | None = int(final) if final is not None else None  # first slice not final
        self.late_slices = int(state.get("late_slices", 0))

    def state_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "detectors": {
                name: {"sums": d.sums, "n_buckets": d.n_buckets, "n_alarms": d.n_alarms}
                for name, d in self.detectors.items()
            },
            "pending": {str(k): v for k, v in sorted(self.pending.items())},
            "bucket": self.bucket,
            "since_alarm": self.since_alarm,
            "alarmed": self.alarmed,
            "finalized_until": self.finalized_until,
            "late_slices": self.late_slices,
        }

    # -- input ------------------------------------------------------------------------
    def add_slices(self, slices: Mapping[str, Mapping[str, list[int]]]) -> None:
        """Merge a partial's slice sums (slice index → column → sums)."""
        for key, columns in slices.items():
            index = int(key)
            if self.finalized_until is not None and index < self.finalized_until:
                self.late_slices += 1
                continue
            target = self.pending.setdefault(index, {})
            for column, sums in columns.items():
                if column not in self.detectors:
                    continue
                current = target.get(column)
                target[column] = list(sums) if current is None else [a + b for a, b in zip(current, sums, strict=True)]

    def advance_to(self, limit: float, version: str) -> list[Evaluation]:
        """Finalise, in event-time order, every pending slice that ends at or before ``limit``."""
        size = self.config.window.size
        per_window = self.config.drift.slices_per_window
        evaluations: list[Evaluation] = []
        for index in sorted(i for i in self.pending if (i + 1) * size / per_window <= limit):
            evaluations += self._finalise(index, self.pending.pop(index), version)
            self.finalized_until = index + 1 if self.finalized_until is None else max(self.finalized_until, index + 1)
        return evaluations

    def _finalise(self, index: int, columns: Mapping[str, list[int]], version: str) -> list[Evaluation]:
        evaluations = []
        for column in sorted(columns):
            detector = self.detectors[column]
            sums = columns[column]
            current = self.bucket.get(column)
            merged = list(sums) if current is None else [a + b for a, b in zip(current, sums, strict=True)]
            present = merged[0] if detector.kind == "numeric" else sum(merged)
            if present < detector.bucket_size:
                self.bucket[column] = merged
                continue
            self.bucket.pop(column, None)
            self.since_alarm[column] = self.since_alarm.get(column, 0) + present
            detections = detector.advance(_as_buckets(detector.statistics_from_sums(merged), present, detector))
            if detections:
                start = slice_window_start(index, self.config)
                marked = self.alarmed.setdefault(repr(start), [])
                if column not in marked:
                    marked.append(column)
                evaluations.append(self._evaluation(column, detections[0], start, version))
                self.since_alarm[column] = 0
        return evaluations

    def window_closed(self, window_start: float, version: str) -> list[Evaluation]:
        """A cleared verdict for every column whose CUSUM stayed quiet in the window."""
        marked = set(self.alarmed.pop(repr(window_start), []))
        for key in [k for k in self.alarmed if float(k) < window_start]:
            del self.alarmed[key]
        return [self._evaluation(c, None, window_start, version) for c in self.detectors if c not in marked]

    # -- verdicts -----------------------------------------------------------------------
    def _evaluation(self, column: str, detection: Detection | None, start: float, version: str) -> Evaluation:
        size = self.config.window.size
        drift = self.config.drift
        common = {
            "model_id": self.config.model_id,
            "model_version": version,
            "monitor": "drift",
            "metric": "cusum",
            "subject": column,
            "comparator": ">=",
            "window_start": start,
            "window_end": start + size,
            "severity": drift.severity,
        }
        if detection is None:
            lowest = min((c.threshold for c in self.detectors[column].components), default=0.0)
            return Evaluation(
                **common,  # type: ignore[arg-type]
                observed=None,
                threshold=lowest,
                breached=False,
                cleared=True,
                n=0,
                summary=f"{self.config.model_id}: {column} sequential detector quiet for a window",
                description=f"No CUSUM alarm on '{column}' in the window.",
            )
        shift = f" (designed for a {detection.shift:g} shift)" if detection.shift else ""
        events = self.since_alarm.get(column, 0)
        return Evaluation(
            **common,  # type: ignore[arg-type]
            observed=detection.statistic,
            threshold=detection.threshold,
            breached=True,
            cleared=False,
            n=events,
            summary=f"{self.config.model_id}: {column} drifting ({detection.component} CUSUM alarm)",
            description=(
                f"Calibrated CUSUM on '{column}', component {detection.component}{shift}: statistic "
                f"{detection.statistic:.2f} >= threshold {detection.threshold:.2f} after {events} events "
                f"since its last alarm (buckets of at least {self.detectors[column].bucket_size} events)."
            ),
            details={
                "component": detection.component,
                "category": detection.category,
                "bucket_index": detection.bucket_index,
                "arl_events": drift.sequential_arl_events,
            },
        )
