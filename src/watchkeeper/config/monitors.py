"""Per-model settings of the windows, the reference, drift, data quality, alerts and retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from watchkeeper.config.base import DAY, Duration, DurationOrZero, Strict
from watchkeeper.events import Monitor, Severity

__all__ = [
    "DataQualityConfig",
    "DriftConfig",
    "FeatureSpec",
    "MonitorConfig",
    "ReferenceConfig",
    "RetrainingPolicy",
    "WindowConfig",
]


class FeatureSpec(Strict):
    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    max_categories: int = Field(default=50, ge=1, le=1000)
    sequential: bool = Field(
        default=True, description="run the CUSUM on this column (off for time-ordered columns, e.g. day of week)"
    )


class WindowConfig(Strict):
    size: Duration = 60.0
    allowed_lateness: Duration = 10.0
    idle_close: Duration = Field(
        default=30.0,
        description="a partition read to its end without this model's events for this long (worker wall "
        "time) no longer holds the watermark back; when all are idle, every window closes",
    )
    max_future: Duration = Field(
        default=3600.0,
        description="reject events stamped further ahead of the worker's clock (one bad clock "
        "would otherwise push the watermark and close every window)",
    )
    max_past: Duration = Field(
        default="30d",
        validate_default=True,
        description="reject events stamped further behind the latest event time of the model in their "
        "input partition (a stray old timestamp would otherwise open a window years ago, or be dropped "
        "as late without a trace)",
    )
    dead_letter_late: bool = Field(
        default=False,
        description="also copy each late prediction (its window already closed in its input partition) "
        "to the dead-letter topic with reason `late`; late predictions are counted either way",
    )


class ReferenceConfig(Strict):
    profile: Path | None = Field(default=None, description="profile JSON from `watchkeeper profile build`")
    learn_from_first: int = Field(default=2000, ge=50, description="events to learn a reference from")


class DriftConfig(Strict):
    """The double gate: adjusted p-value below alpha AND effect size at least the minimum."""

    enabled: bool = True
    bins: int = Field(default=10, ge=2, le=100)
    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    correction: Literal["bh", "holm", "none"] = "bh"
    min_psi: float = Field(default=0.1, ge=0.0)
    min_js: float = Field(default=0.0, ge=0.0, le=1.0)
    clear_psi: float | None = Field(
        default=None, ge=0.0, description="a drift alert clears below this PSI (hysteresis); 0.75 × min_psi if unset"
    )
    min_count: int = Field(default=100, ge=1, description="no verdict on a window with fewer events")
    for_windows: int = Field(default=1, ge=1)
    resolve_windows: int = Field(default=2, ge=1)
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    monitor_prediction: bool = True
    sequential: bool = Field(default=True, description="calibrated CUSUM per column (fast detection)")
    sequential_arl_events: float = Field(
        default=2e6, gt=0, description="expected events between model-level false alarms of the CUSUMs"
    )
    bucket_size: int = Field(default=50, ge=1, le=10_000, description="least events per CUSUM bucket")
    slices_per_window: int = Field(
        default=20,
        ge=1,
        le=3600,
        description="CUSUM buckets are built from event-time slices of window.size / slices_per_window",
    )
    multivariate: bool = Field(
        default=False, description="also watch the PCA reconstruction error of the numeric features (joint drift)"
    )


class DataQualityConfig(Strict):
    """Alerts on rates the drift tests do not see: missing, unseen category, out of range.

    A rate breaches when it is at least ``min_increase`` above the reference rate AND the
    one-sided binomial z against the reference rate is at least ``z``; it clears below
    half the increase (hysteresis).
    """

    enabled: bool = True
    min_increase: float = Field(default=0.02, gt=0.0, lt=1.0)
    z: float = Field(default=3.7, gt=0.0, description="one-sided; 3.7 ≈ p 1e-4 per column and window")
    severity: Literal["critical", "error", "warning", "info"] = "warning"
    for_windows: int = Field(default=1, ge=1)
    resolve_windows: int = Field(default=2, ge=1)


class MonitorConfig(Strict):
    """Alert settings shared by all monitors of a model."""

    links: dict[str, str] = Field(default_factory=dict, description="templates: {model_id}, {subject}")
    repeat_interval: Duration | None = Field(
        default=None, description="re-announce a still-firing alert this often (event time); off when unset"
    )
    label_false_alarm_rate: float = Field(
        default=0.001,
        gt=0.0,
        lt=1.0,
        description="accuracy and fairness: chance of a false alert per label window, all metrics, groups and "
        "checkpoints together (split among them, Bonferroni)",
    )


# -- retraining policies (models[].retraining) --------------------------------------------

_ALL_MONITORS: tuple[Monitor, ...] = ("drift", "accuracy", "fairness", "data_quality")
_DEFAULT_SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning")


class RetrainingPolicy(Strict):
    """When to request retraining of a model (one entry of ``models[].retraining``)."""

    name: str = Field(min_length=1, description="rule name; part of the trigger's idempotency key")
    monitors: list[Monitor] = Field(
        default_factory=lambda: list(_ALL_MONITORS),
        min_length=1,
        description="alerts of these monitors count",
    )
    severities: list[Severity] = Field(
        default_factory=lambda: list(_DEFAULT_SEVERITIES),
        min_length=1,
        description="alerts of these severities count (default: all but info)",
    )
    firing_for: DurationOrZero = Field(
        default=0.0, description="event time an alert must have been firing; 0 = on the firing transition"
    )
    min_alerts: int = Field(default=1, ge=1, description="distinct matching alerts firing at once")
    cooldown: Duration = Field(default=DAY, description="no new trigger of this policy sooner after the last")
    max_per_day: int = Field(default=3, ge=1, description="at most this many triggers in any 24 h of event time")
    training_window: Duration = Field(
        default=30 * DAY, description="length of the suggested training window, ending at the window end"
    )
