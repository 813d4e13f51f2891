"""Fast concept-drift detection on the error stream, with ADWIN.

Window verdicts on accuracy need a window's worth of labels; ADWIN (Bifet & Gavaldà 2007,
"Learning from Time-Changing Data with Adaptive Windowing", SDM) watches the 0/1 error of
every labelled prediction, fed at each label checkpoint in prediction-time order (so that it
does not depend on the order labels were read), and cuts its window when the error rate of
the recent part differs from the older part beyond a Hoeffding-style bound (δ = 10⁻⁵, not
River's default 0.002: at 0.002 a stationary model raised about 3 false alarms per 1,000
hourly windows in load-tests/label_quality.py, above the label false-alarm budget). A cut
where the error rate went *up* is a concept-drift verdict at once; a window of predictions
with no such cut counts as cleared, so the alert resolves after
``accuracy.resolve_windows`` quiet windows. Classification only (errors are 0/1).

The detector is :class:`watchkeeper.stats.adwin.ADWIN` (our implementation, which flags
drift at the same events as River's ``ADWIN``); its state is plain JSON-able data
(:meth:`~watchkeeper.stats.adwin.ADWIN.to_dict`) under ``"adwin"`` in the stage-2 state.
No code-bearing serialisation is decoded: state written by earlier versions, where
``"adwin"`` held River's object serialised to a base64 string, is ignored and the detector
starts afresh (``seen`` and ``alarmed`` are kept). Malformed ADWIN data raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.alerts import Evaluation
from watchkeeper.stats.adwin import ADWIN

__all__ = ["ERROR_STREAM_DELTA", "ErrorStreamDetector"]

ERROR_STREAM_DELTA = 1e-5
"""ADWIN's significance on the error stream (module doc)."""


class ErrorStreamDetector:
    """ADWIN over a model's 0/1 errors, in label-checkpoint order (see ``ModelMonitor._error_stream``)."""

    def __init__(self, config: ModelConfig, state: Mapping[str, Any] | None = None) -> None:
        self.config = config
        state = state or {}
        saved = state.get("adwin")
        # a Mapping is our JSON state; anything else (the legacy base64 string) is never decoded
        self.adwin = ADWIN.from_dict(saved) if isinstance(saved, Mapping) else ADWIN(delta=ERROR_STREAM_DELTA)
        self.alarmed: list[float] = [float(w) for w in state.get("alarmed", [])]
        self.seen = int(state.get("seen", 0))

    def state_dict(self) -> dict[str, Any]:
        return {
            "adwin": self.adwin.to_dict(),
            "alarmed": self.alarmed,
            "seen": self.seen,
        }

    def _evaluation(
        self, window_start: float, version: str, before: float | None, after: float | None, breached: bool
    ) -> Evaluation:
        accuracy = self.config.accuracy
        size = self.config.window.size
        summary = (
            f"{self.config.model_id}: error rate rose from {before:.3f} to {after:.3f} (ADWIN)"
            if breached and before is not None and after is not None
            else f"{self.config.model_id}: no error-rate change detected in the window"
        )
        return Evaluation(
            model_id=self.config.model_id,
            model_version=version,
            monitor="accuracy",
            metric="error_rate_adwin",
            subject="*",
            observed=after,
            threshold=before if before is not None else 0.0,
            comparator=">",
            breached=breached,
            cleared=not breached,
            window_start=window_start,
            window_end=window_start + size,
            n=self.seen,
            severity=accuracy.severity,
            summary=summary,
            description=(
                f"ADWIN (delta {ERROR_STREAM_DELTA:g}) on the 0/1 errors of labelled predictions, in "
                "label-checkpoint order, cut its window with a higher recent error rate."
                if breached
                else "ADWIN saw no rise of the error rate."
            ),
            details={"detector": "adwin", "delta": ERROR_STREAM_DELTA, "errors_seen": self.seen},
        )

    def update(self, errors: Sequence[int], window_start: float, version: str) -> list[Evaluation]:
        """Feed errors; one breached evaluation when the error rate rose."""
        rose: tuple[float, float] | None = None
        for error in errors:
            before = self.adwin.estimation
            detected = self.adwin.update(float(error))
            self.seen += 1
            if detected and self.adwin.estimation > before and rose is None:
                rose = (before, self.adwin.estimation)
        if rose is None:
            return []
        if window_start not in self.alarmed:
            self.alarmed.append(window_start)
        return [self._evaluation(window_start, version, rose[0], rose[1], breached=True)]

    def window_closed(self, window_start: float, version: str) -> list[Evaluation]:
        """Cleared when no rise was detected while this window's outcomes arrived."""
        alarmed = window_start in self.alarmed
        self.alarmed = [w for w in self.alarmed if w > window_start]
        if alarmed or self.seen == 0:
            return []
        return [self._evaluation(window_start, version, None, None, breached=False)]
