"""Retraining decisions in event-time order, whatever order the alerts were decided in.

Drift alerts are decided when the prediction watermark closes a window; accuracy and
fairness alerts when the label watermark passes a label checkpoint, which lags behind by
as much as the outcomes do. Which label alerts had been decided when a drift window closed
therefore depends on how the predictions and outcomes topics were interleaved and batched.
So the :class:`~watchkeeper.monitor.retraining.RetrainingPlanner` is not fed as alerts
come: every alert transition is queued at its decision time (a drift window's end, a
label checkpoint's time) and every closed window at its end, and the queue hands them to
the planner in event-time order once the label watermark (less the allowed lateness) has
passed them, when no alert can be decided before them any more. At equal times drift
transitions come first, then label ones, then the window's policy evaluation, so a window
end's decision counts every alert decided at or before it. A trigger is then a function of
the events' contents and timestamps; it comes as late as the outcomes behind the windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from watchkeeper.events import Alert, RetrainingTrigger
from watchkeeper.monitor.retraining import RetrainingPlanner, WindowSpan

__all__ = ["DRIFT", "LABELS", "Rank", "RetrainingQueue"]

Rank = Literal[0, 1]
DRIFT: Final[Rank] = 0  # order at equal event times: drift transitions, label ones, then the window
LABELS: Final[Rank] = 1
_WINDOW: Final = 2


class RetrainingQueue:
    """Alert transitions and closed windows not yet handed to the planner, with their times."""

    def __init__(self, state: Mapping[str, Any] | None = None) -> None:
        state = state or {}
        self.items: list[list[Any]] = [list(item) for item in state.get("items", [])]  # [time, rank, seq, kind, ...]
        self.seq = int(state.get("seq", 0))

    def _push(self, at: float, rank: int, *payload: Any) -> None:
        self.items.append([float(at), rank, self.seq, *payload])
        self.seq += 1

    def alert(self, at: float, rank: Rank, alert: Alert, alert_id: str) -> None:
        """An alert transition decided at event time ``at`` (DRIFT or LABELS)."""
        self._push(at, rank, "alert", alert.model_dump(mode="json"), alert_id)

    def window(self, span: WindowSpan, reference_id: str | None) -> None:
        """A closed window: the policies are evaluated at its end."""
        self._push(span[1], _WINDOW, "window", list(span), reference_id)

    def advance(
        self, limit: float, planner: RetrainingPlanner, monitor_version: str, config_hash: str
    ) -> list[RetrainingTrigger]:
        """Hand every item at or before ``limit`` to ``planner`` in order; the triggers due."""
        due = sorted((item for item in self.items if item[0] <= limit), key=lambda item: (item[0], item[1], item[2]))
        if not due:
            return []
        self.items = [item for item in self.items if item[0] > limit]
        triggers: list[RetrainingTrigger] = []
        for item in due:
            if item[3] == "alert":
                planner.record(Alert.model_validate(item[4]), alert_id=str(item[5]))
            else:
                start, end, n_predictions, n_labeled = item[4]
                span: WindowSpan = (float(start), float(end), int(n_predictions), int(n_labeled))
                triggers += planner.observe_window(
                    span, reference_id=item[5], monitor_version=monitor_version, config_hash=config_hash
                )
        return triggers

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "seq": self.seq}
