"""Stage 2 of the sequential drift monitor: CUSUM recursions over stage-1 bucket statistics.

Stage 1 turns each batch into standardised bucket statistics
(:meth:`~watchkeeper.stats.sequential.CalibratedCusum.bucket_statistics`); this module runs
the calibrated CUSUMs over them as they arrive (:meth:`CalibratedCusum.advance`). An alarm
is a verdict *now*, not at the window's close: that is what makes it faster than the
window tests. A column whose CUSUM stayed quiet for a whole window counts as cleared for
that window, so the alert resolves after ``resolve_windows`` quiet windows.

Buckets from different input partitions interleave; under no drift they are independent
and identically distributed either way, so the calibration still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.monitor.profile import ReferenceProfile, calibrated_detector
from watchkeeper.stats.sequential import CalibratedCusum, Detection

__all__ = ["SequentialDrift"]


class SequentialDrift:
    """The stage-2 CUSUM state of one model and the verdicts it gives."""

    def __init__(self, config: ModelConfig, profile: ReferenceProfile, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.detectors: dict[str, CalibratedCusum] = {}
        state = state or {}
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
        self.alarmed: dict[str, list[str]] = {k: list(v) for k, v in state.get("alarmed", {}).items()}
        self.reset_at: dict[str, int] = {k: int(v) for k, v in state.get("reset_at", {}).items()}  # last alarm

    def state_dict(self) -> dict[str, Any]:
        return {
            "detectors": {
                name: {"sums": d.sums, "n_buckets": d.n_buckets, "n_alarms": d.n_alarms}
                for name, d in self.detectors.items()
            },
            "alarmed": self.alarmed,
            "reset_at": self.reset_at,
        }

    def _evaluation(self, column: str, detection: Detection | None, start: float, version: str) -> Evaluation:
        size = self.config.window.size
        drift = self.config.drift
        if detection is None:
            lowest = min((c.threshold for c in self.detectors[column].components), default=0.0)
            return Evaluation(
                model_id=self.config.model_id,
                model_version=version,
                monitor="drift",
                metric="cusum",
                subject=column,
                observed=None,
                threshold=lowest,
                comparator=">=",
                breached=False,
                cleared=True,
                window_start=start,
                window_end=start + size,
                n=0,
                severity=drift.severity,
                summary=f"{self.config.model_id}: {column} sequential detector quiet for a window",
                description=f"No CUSUM alarm on '{column}' in the window.",
            )
        shift = f" (designed for a {detection.shift:g} shift)" if detection.shift else ""
        return Evaluation(
            model_id=self.config.model_id,
            model_version=version,
            monitor="drift",
            metric="cusum",
            subject=column,
            observed=detection.statistic,
            threshold=detection.threshold,
            comparator=">=",
            breached=True,
            cleared=False,
            window_start=start,
            window_end=start + size,
            n=(detection.bucket_index - self.reset_at.get(column, 0)) * self.detectors[column].bucket_size,
            severity=drift.severity,
            summary=f"{self.config.model_id}: {column} drifting ({detection.component} CUSUM alarm)",
            description=(
                f"Calibrated CUSUM on '{column}', component {detection.component}{shift}: statistic "
                f"{detection.statistic:.2f} >= threshold {detection.threshold:.2f} after bucket "
                f"{detection.bucket_index} ({self.detectors[column].bucket_size} events each)."
            ),
            details={
                "component": detection.component,
                "category": detection.category,
                "bucket_index": detection.bucket_index,
                "arl_events": drift.sequential_arl_events,
            },
        )

    def advance(self, rows: Mapping[str, list[list[float]]], window_start: float, version: str) -> list[Evaluation]:
        """Run the CUSUMs over a partial's bucket statistics; one breach per alarmed column."""
        evaluations = []
        for column, table in rows.items():
            detector = self.detectors.get(column)
            if detector is None:
                continue
            detections = detector.advance(table)
            if detections:
                marked = self.alarmed.setdefault(repr(window_start), [])
                if column not in marked:
                    marked.append(column)
                evaluations.append(self._evaluation(column, detections[0], window_start, version))
                self.reset_at[column] = detections[-1].bucket_index
        return evaluations

    def window_closed(self, window_start: float, version: str) -> list[Evaluation]:
        """A cleared verdict for every column whose CUSUM stayed quiet in the window."""
        marked = set(self.alarmed.pop(repr(window_start), []))
        for key in [k for k in self.alarmed if float(k) < window_start]:
            del self.alarmed[key]
        return [self._evaluation(c, None, window_start, version) for c in self.detectors if c not in marked]
