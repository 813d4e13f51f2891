"""Configuration: the monitored models (YAML) and the worker's settings (environment/flags).

Model configuration errors name the field path, the value and what was expected, e.g.
``models[0].window.size: '10 parsecs' is not a duration; expected e.g. 30s, 5m, 1h, 7d``.
"""

from __future__ import annotations

import difflib
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from watchkeeper.events import Monitor, Severity
from watchkeeper.redact import register_secrets

__all__ = [
    "DAY",
    "DEFAULT_FAIRNESS_TOLERANCE",
    "DEFAULT_METRICS",
    "DEFAULT_RELATIVE_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "FAIRNESS_METRICS",
    "METRICS",
    "AccuracyConfig",
    "ConfigError",
    "Direction",
    "DriftConfig",
    "FairnessConfig",
    "FairnessMetric",
    "FeatureSpec",
    "KafkaLogThrottle",
    "MetricSpec",
    "MonitorConfig",
    "ModelConfig",
    "ReferenceConfig",
    "RetrainingPolicy",
    "Settings",
    "Task",
    "WindowConfig",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_ZERO = re.compile(r"^\s*0+(?:\.0+)?\s*(?:ms|s|m|h|d|w)?\s*$")

log = logging.getLogger("watchkeeper.config")

KAFKA_CLIENT_LOGGER = "watchkeeper.kafka"
"""The Python logger librdkafka's output goes to (its warnings and errors throttled, see KafkaLogThrottle)."""
LIBRDKAFKA_DEBUG_CONTEXTS = frozenset(
    {"generic", "broker", "topic", "metadata", "feature", "queue", "msg", "protocol", "cgrp", "security", "fetch"}
    | {"interceptor", "plugin", "consumer", "admin", "eos", "mock", "assignor", "conf", "telemetry", "all"}
)

DAY = 86400.0
"""The span of event time ``max_per_day`` is counted over (a trailing 24 h)."""


class ConfigError(ValueError):
    """An invalid configuration; the message names field, value and expectation."""


class KafkaLogThrottle(logging.Filter):
    """Let a librdkafka warning or error through at most once per ``interval`` per client and kind.

    A client that cannot reach its brokers logs every failed connection attempt (``FAIL``),
    several a second; the first passes, the others of the next ``interval`` seconds are
    counted and the next one that passes says how many were not shown. Debug output
    (``kafka_debug``) passes whole. confluent-kafka logs ``"%s [%s] %s"`` with the kind
    (facility), the client's name and the text; the name is also set as the record's
    ``client`` field.
    """

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._passed: dict[tuple[Any, ...], tuple[float, int]] = {}  # key → (when one last passed, held back since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 2:
            record.client = args[1]  # the rdkafka client's name, a field of the worker's log lines
        if record.levelno < logging.WARNING:
            return True
        key = tuple(args[:2]) if len(args) >= 2 else (record.msg,)
        now = time.monotonic()
        with self._lock:
            passed_at, held = self._passed.get(key, (None, 0))
            if passed_at is not None and now - passed_at < self.interval:
                self._passed[key] = (passed_at, held + 1)
                return False
            self._passed[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (%d similar lines in the last %.0f s not shown)"
            record.args = (*args, held, now - (passed_at or now))
        return True


logging.getLogger(KAFKA_CLIENT_LOGGER).addFilter(KafkaLogThrottle())


def parse_duration(value: Any) -> float:
    """Seconds from 90, 90.0, '90s', '5m', '2h', '7d' or '1w'."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 5m, 1h, 7d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; expected e.g. 30s, 5m, 1h, 7d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"{value!r}: expected a positive duration")
    return seconds


def _duration_or_zero(value: Any) -> float:
    """Like :func:`parse_duration`, but 0 / '0s' mean zero."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str) and _ZERO.match(value):
        return 0.0
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds from 90, '90s', '5m', '2h', '7d', '1w'."""

DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]
"""A :data:`Duration` that may also be 0."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpec(_Strict):
    name: str = Field(min_length=1)
    type: Literal["numeric", "categorical"]
    max_categories: int = Field(default=50, ge=1, le=1000)
    sequential: bool = Field(
        default=True, description="run the CUSUM on this column (off for time-ordered columns, e.g. day of week)"
    )


class WindowConfig(_Strict):
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


class ReferenceConfig(_Strict):
    profile: Path | None = Field(default=None, description="profile JSON from `watchkeeper profile build`")
    learn_from_first: int = Field(default=2000, ge=50, description="events to learn a reference from")


class DriftConfig(_Strict):
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


class DataQualityConfig(_Strict):
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


class MonitorConfig(_Strict):
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


# -- accuracy monitor (models[].accuracy) -------------------------------------------------

Task = Literal["binary", "multiclass", "regression"]
Direction = Literal["higher", "lower", "both"]


@dataclass(frozen=True)
class MetricSpec:
    """How a metric is judged: which side is worse, for which tasks, with what interval."""

    direction: Direction
    tasks: tuple[Task, ...]
    method: str


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("higher", ("binary", "multiclass"), "wilson"),
    "precision": MetricSpec("higher", ("binary",), "wilson"),
    "recall": MetricSpec("higher", ("binary",), "wilson"),
    "fpr": MetricSpec("lower", ("binary",), "wilson"),
    "f1": MetricSpec("higher", ("binary",), "delta"),
    "macro_f1": MetricSpec("higher", ("binary", "multiclass"), "delta"),
    "macro_precision": MetricSpec("higher", ("binary", "multiclass"), "delta"),
    "macro_recall": MetricSpec("higher", ("binary", "multiclass"), "delta"),
    "roc_auc": MetricSpec("higher", ("binary",), "hanley_mcneil"),
    "log_loss": MetricSpec("lower", ("binary", "multiclass"), "normal"),
    "brier": MetricSpec("lower", ("binary", "multiclass"), "normal"),
    "ece": MetricSpec("lower", ("binary",), "point"),
    "mae": MetricSpec("lower", ("regression",), "normal"),
    "rmse": MetricSpec("lower", ("regression",), "point"),
    "mse": MetricSpec("lower", ("regression",), "point"),
    "r2": MetricSpec("higher", ("regression",), "point"),
    "mape": MetricSpec("lower", ("regression",), "point"),
    "bias": MetricSpec("both", ("regression",), "normal"),
}
"""Every metric the monitor computes and can alert on."""

DEFAULT_METRICS: dict[Task, tuple[str, ...]] = {
    "binary": ("accuracy", "roc_auc", "f1", "log_loss", "brier", "ece"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("mae", "rmse", "r2"),
}
"""Metrics that alert when ``AccuracyConfig.metrics`` is not set."""

DEFAULT_TOLERANCE: dict[str, float] = {
    "accuracy": 0.02,
    "precision": 0.02,
    "recall": 0.02,
    "fpr": 0.02,
    "f1": 0.02,
    "macro_f1": 0.02,
    "macro_precision": 0.02,
    "macro_recall": 0.02,
    "roc_auc": 0.02,
    "ece": 0.02,
    "r2": 0.1,
}
"""Smallest degradation worth an alert (rates, AUC, ECE: 2 points; R²: 0.1). Sampling noise is
handled by the degradation test (``alerts.label_false_alarm_rate``), not by the tolerance."""

DEFAULT_RELATIVE_TOLERANCE: dict[str, float] = {
    "log_loss": 0.1,
    "brier": 0.1,
    "mae": 0.2,
    "rmse": 0.2,
    "mse": 0.44,  # = 1.2² − 1: the same 20 % as RMSE
    "mape": 0.2,
}
"""Smallest relative degradation worth an alert, a fraction of |baseline| (log loss, Brier: 10 %;
regression errors: 20 %)."""


class AccuracyConfig(_Strict):
    """Accuracy monitor settings (``models[].accuracy`` in the YAML)."""

    enabled: bool = True
    label_horizon: Duration = Field(
        default="7d", validate_default=True, description="windows take late labels this long after they close"
    )
    metrics: list[str] | None = Field(default=None, description="metrics that alert; None = task defaults")
    tolerance: dict[str, float] = Field(
        default_factory=dict, description="allowed absolute degradation per metric (overrides the defaults)"
    )
    relative_tolerance: dict[str, float] = Field(
        default_factory=dict, description="allowed degradation as a fraction of |baseline| (overrides defaults)"
    )
    min_labeled: int = Field(default=200, ge=1, description="no verdict on a window with fewer labelled rows")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    baseline: Literal["reference", "first_windows"] = "first_windows"
    baseline_windows: int = Field(default=3, ge=1, description="final windows pooled into the learned baseline")
    baseline_metrics: dict[str, float] = Field(
        default_factory=dict, description="validation metrics of the reference profile (baseline: reference)"
    )
    for_windows: int = Field(default=1, ge=1)
    resolve_windows: int = Field(default=2, ge=1)
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _check_names(self) -> AccuracyConfig:
        for field_name in ("tolerance", "relative_tolerance", "baseline_metrics"):
            unknown = sorted(set(getattr(self, field_name)) - set(METRICS))
            if unknown:
                raise ValueError(f"{field_name}: unknown metrics {unknown}; expected some of {sorted(METRICS)}")
        both = sorted(set(self.tolerance) & set(self.relative_tolerance))
        if both:
            raise ValueError(f"metrics {both} have both tolerance and relative_tolerance: expected one")
        negative = sorted(k for k, v in {**self.tolerance, **self.relative_tolerance}.items() if not v >= 0)
        if negative:
            raise ValueError(f"tolerances of {negative}: expected numbers >= 0")
        if self.metrics is not None:
            unknown = sorted(set(self.metrics) - set(METRICS))
            if unknown:
                raise ValueError(f"metrics: unknown metrics {unknown}; expected some of {sorted(METRICS)}")
            untolerated = [m for m in self.metrics if self._tolerance_spec(m) is None]
            if untolerated:
                raise ValueError(f"metrics {untolerated} have no default tolerance: set tolerance.<metric>")
        return self

    def _tolerance_spec(self, metric: str) -> tuple[float, Literal["absolute", "relative"]] | None:
        if metric in self.tolerance:
            return self.tolerance[metric], "absolute"
        if metric in self.relative_tolerance:
            return self.relative_tolerance[metric], "relative"
        if metric in DEFAULT_TOLERANCE:
            return DEFAULT_TOLERANCE[metric], "absolute"
        if metric in DEFAULT_RELATIVE_TOLERANCE:
            return DEFAULT_RELATIVE_TOLERANCE[metric], "relative"
        return None

    def effective_tolerance(self, metric: str, baseline: float) -> tuple[float, str]:
        """(absolute allowed degradation, "absolute" | "relative") for ``metric`` at ``baseline``.

        Lookup order: ``tolerance``, ``relative_tolerance``, then the module defaults.
        """
        spec = self._tolerance_spec(metric)
        if spec is None:
            raise ValueError(f"metric {metric!r}: no tolerance configured")
        value, kind = spec
        return (value * abs(baseline), kind) if kind == "relative" else (value, kind)

    def metrics_for(self, task: Task) -> tuple[str, ...]:
        """The alerting metrics for ``task``; ValueError naming any that do not apply to it."""
        chosen = tuple(self.metrics) if self.metrics is not None else DEFAULT_METRICS[task]
        wrong = [m for m in chosen if task not in METRICS[m].tasks]
        if wrong:
            raise ValueError(f"accuracy.metrics {wrong}: not defined for task {task!r}")
        return chosen


# -- fairness monitor (models[].fairness) -------------------------------------------------

FairnessMetric = Literal[
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "disparate_impact",
]
FAIRNESS_METRICS: tuple[FairnessMetric, ...] = (
    "demographic_parity_difference",
    "equalized_odds_difference",
    "equal_opportunity_difference",
    "disparate_impact",
)
DEFAULT_FAIRNESS_TOLERANCE: dict[str, float] = {
    "demographic_parity_difference": 0.1,
    "equalized_odds_difference": 0.1,
    "equal_opportunity_difference": 0.1,
    "disparate_impact": 0.8,  # a floor, not a difference: the four-fifths rule
}
DISPERSION_MIN_WINDOWS = 10  # a design effect is estimated from at least this many final windows


class FairnessConfig(_Strict):
    """Fairness monitor settings (``models[].fairness`` in the YAML).

    Single attributes come from ``ModelConfig.sensitive_attributes``; ``intersections``
    adds joined ones (``[race, sex]`` → subject ``race|sex``). ``tolerance`` entries
    override the defaults one by one. ``max_groups`` is the aggregate's cardinality cap.
    """

    enabled: bool = True
    intersections: list[list[str]] = Field(default_factory=list)
    metrics: list[FairnessMetric] = Field(default_factory=lambda: list(FAIRNESS_METRICS))
    tolerance: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_FAIRNESS_TOLERANCE))
    min_support: int = Field(default=30, ge=1, description="rows (labelled rows for TPR/FPR) per group")
    max_groups: int = Field(default=20, ge=2, le=1000)
    reference_group: dict[str, str] = Field(default_factory=dict, description="attribute -> reference group")
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    dispersion_windows: int = Field(
        default=48,
        ge=0,
        description="final windows from which each group's rates estimate their design effect, so that "
        "clustered rows (repeat customers) widen the intervals; 0 turns it off",
    )
    for_windows: int = Field(default=1, ge=1)
    resolve_windows: int = Field(default=2, ge=1)
    severity: Severity = "warning"

    @field_validator("dispersion_windows")
    @classmethod
    def _check_dispersion_windows(cls, value: int) -> int:
        if 0 < value < DISPERSION_MIN_WINDOWS:
            raise ValueError(f"{value}: expected 0 (off) or at least {DISPERSION_MIN_WINDOWS} windows")
        return value

    @field_validator("tolerance")
    @classmethod
    def _merge_defaults(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(FAIRNESS_METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; expected some of {list(FAIRNESS_METRICS)}")
        bad = sorted(k for k, v in value.items() if not (v > 0 and (k != "disparate_impact" or v <= 1)))
        if bad:
            raise ValueError(f"tolerance of {bad}: expected > 0 (disparate_impact in (0, 1])")
        return {**DEFAULT_FAIRNESS_TOLERANCE, **value}

    @field_validator("intersections")
    @classmethod
    def _check_intersections(cls, value: list[list[str]]) -> list[list[str]]:
        bad = [i for i in value if len(i) < 2 or len(set(i)) != len(i) or any("|" in a for a in i)]
        if bad:
            raise ValueError(f"intersections {bad}: expected lists of >= 2 distinct attribute names without '|'")
        return value

    def subjects(self, sensitive_attributes: list[str]) -> list[str]:
        """Aggregate keys to build: the attributes, then ``"a|b"`` per intersection."""
        return [*sensitive_attributes, *("|".join(i) for i in self.intersections)]


# -- retraining policies (models[].retraining) --------------------------------------------

_ALL_MONITORS: tuple[Monitor, ...] = ("drift", "accuracy", "fairness", "data_quality")
_DEFAULT_SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning")


class RetrainingPolicy(_Strict):
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


# -- models -------------------------------------------------------------------------------


class ModelConfig(_Strict):
    model_id: str = Field(min_length=1)
    task: Task = "binary"
    classes: list[str] = Field(default_factory=lambda: ["0", "1"])
    features: list[FeatureSpec]
    reference: ReferenceConfig = ReferenceConfig()
    window: WindowConfig = WindowConfig()
    drift: DriftConfig = DriftConfig()
    data_quality: DataQualityConfig = DataQualityConfig()
    alerts: MonitorConfig = MonitorConfig()
    sensitive_attributes: list[str] = Field(default_factory=list)
    accuracy: AccuracyConfig = AccuracyConfig()
    fairness: FairnessConfig = FairnessConfig()
    retraining: list[RetrainingPolicy] = Field(default_factory=list, description="see docs/retraining.md")

    @model_validator(mode="before")
    @classmethod
    def _features_mapping(cls, data: Any) -> Any:
        """Accept the short form ``features: {income: numeric, region: categorical}``.

        Accuracy monitoring is on when the model has an ``accuracy`` section, off otherwise.
        The outcome join (which buffers predictions for the label horizon) runs for models
        with accuracy on or with ``sensitive_attributes`` (fairness needs labels).
        """
        if isinstance(data, dict):
            accuracy = data.get("accuracy")
            if accuracy is None:
                data = {**data, "accuracy": {"enabled": False}}
            elif isinstance(accuracy, dict) and "enabled" not in accuracy:
                data = {**data, "accuracy": {**accuracy, "enabled": True}}
        if isinstance(data, dict) and isinstance(data.get("features"), dict):
            items = []
            for name, spec in data["features"].items():
                items.append({"name": name, **(spec if isinstance(spec, dict) else {"type": spec})})
            data = {**data, "features": items}
        return data

    @model_validator(mode="after")
    def _unique_features(self) -> ModelConfig:
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique; repeated: {duplicated}")
        if not self.features:
            raise ValueError("at least one feature is required")
        if self.task != "regression" and len(self.classes) < 2:
            raise ValueError(f"classes: {self.classes}: expected at least 2 classes for task {self.task!r}")
        if self.task == "binary" and len(self.classes) != 2:
            raise ValueError(f"classes: {self.classes}: expected exactly 2 for task 'binary' (positive last)")
        self.accuracy.metrics_for(self.task)
        known = set(self.sensitive_attributes)
        for intersection in self.fairness.intersections:
            unknown = [a for a in intersection if a not in known]
            if unknown:
                raise ValueError(
                    f"fairness.intersections: {intersection}: {unknown} not in sensitive_attributes {sorted(known)}"
                )
        policies = [p.name for p in self.retraining]
        repeated_policies = sorted({n for n in policies if policies.count(n) > 1})
        if repeated_policies:
            raise ValueError(f"retraining policy names must be unique; repeated: {repeated_policies}")
        return self


class WatchkeeperConfig(_Strict):
    models: list[ModelConfig]
    notify: dict[str, Any] = Field(default_factory=dict, description="receivers; see docs/alerting.md")

    @model_validator(mode="after")
    def _unique_models(self) -> WatchkeeperConfig:
        ids = [m.model_id for m in self.models]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"model_id must be unique; repeated: {repeated}")
        return self

    def model(self, model_id: str) -> ModelConfig | None:
        return next((m for m in self.models if m.model_id == model_id), None)


def _unwrap_optional(annotation: Any) -> Any:
    """``X`` from ``X | None``; other annotations as they are."""
    members = [a for a in get_args(annotation) if a is not type(None)]
    return members[0] if get_origin(annotation) in (Union, UnionType) and len(members) == 1 else annotation


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys of the mapping at ``loc`` under ``model`` (empty when that is not a model)."""
    current: Any = model
    for part in loc:
        current = _unwrap_optional(current)
        if isinstance(part, int):
            members = get_args(current)
            current = members[0] if get_origin(current) is list and members else None
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            current = current.model_fields[part].annotation
        else:
            return []
    current = _unwrap_optional(current)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _unknown_key_hint(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """``did you mean `window`?`` for a key close to a real one, else the keys expected there."""
    keys = _keys_at(model, loc[:-1])
    if not keys:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1, cutoff=0.6)
    if close:
        return f"; did you mean `{close[0]}`?"
    return f"; expected one of {', '.join(f'`{k}`' for k in keys)}"


def format_validation_errors(
    error: ValidationError, source: str, prefix: str = "", model: type[BaseModel] | None = None
) -> str:
    """One line per error: ``source: field.path: value: what was expected``.

    With the validated ``model``, an unknown key also gets the closest real key
    ("did you mean `window`?") or, if none is close, the keys allowed there.
    """
    lines = []
    for item in error.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        value = item.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        hint = _unknown_key_hint(model, item["loc"]) if model is not None and item["type"] == "extra_forbidden" else ""
        lines.append(f"{source}: {prefix}{path or '<root>'}: {shown}: {item['msg']}{hint}")
    return "\n".join(lines)


def read_yaml(path: Path, what: str = "config") -> Any:
    """A YAML file's content; a ConfigError names the file and what went wrong."""
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | Path) -> WatchkeeperConfig:
    """Read and validate a models YAML file; relative profile paths resolve against it."""
    path = Path(path)
    return parse_config(read_yaml(path), source=str(path), base_dir=path.parent)


def parse_config(raw: Any, source: str = "<config>", base_dir: Path | None = None) -> WatchkeeperConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {type(raw).__name__}: expected a mapping with a 'models' list")
    try:
        config = WatchkeeperConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_errors(exc, source, model=WatchkeeperConfig)) from exc
    if base_dir is None:
        return config
    models = []
    for m in config.models:
        profile = m.reference.profile
        if profile is not None and not profile.is_absolute():
            reference = m.reference.model_copy(update={"profile": base_dir / profile})
            m = m.model_copy(update={"reference": reference})
        models.append(m)
    return config.model_copy(update={"models": models})


class Settings(BaseSettings):
    """Worker settings, from WATCHKEEPER_* environment variables or CLI flags."""

    model_config = SettingsConfigDict(env_prefix="WATCHKEEPER_", extra="ignore")

    config: Path = Path("watchkeeper.yaml")
    bootstrap_servers: str = "localhost:9092"
    app_id: str = "watchkeeper"
    topic_predictions: str = "watchkeeper.predictions"
    topic_outcomes: str = "watchkeeper.outcomes"
    topic_partials: str = "watchkeeper.partials"
    topic_alerts: str = "watchkeeper.alerts"
    topic_retraining: str = "watchkeeper.retraining"
    topic_deadletter: str = "watchkeeper.deadletter"
    topic_references: str = "watchkeeper.references"
    topic_windows: str = Field(
        default="watchkeeper.windows", description="every closed window's statistics (the replay output's records)"
    )
    input_partitions: int = Field(default=4, ge=1)
    batch_size: int = Field(default=2000, ge=1)
    flush_interval: float = Field(default=1.0, gt=0)
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_address: str = Field(
        default="0.0.0.0",
        min_length=1,
        description="address /metrics listens on: 0.0.0.0 every IPv4 interface (containers), 127.0.0.1 this host",
    )
    metrics_certfile: Path | None = Field(default=None, description="PEM certificate (chain): /metrics over HTTPS")
    metrics_keyfile: Path | None = Field(
        default=None, validate_default=True, description="PEM private key of metrics_certfile"
    )
    metrics_password: SecretStr | None = Field(default=None, description="password of metrics_username (a secret)")
    metrics_username: str | None = Field(
        default=None, min_length=1, validate_default=True, description="HTTP basic auth on /metrics"
    )
    metrics_group_labels: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="fairness group names (input data) exported as label values per model and attribute; 0 = none",
    )
    metrics_ready_windows: int = Field(
        default=2, ge=1, description="/readyz: stage 1 at most this many windows (shortest window.size) behind"
    )
    data_dir: Path = Path(".watchkeeper/worker")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a new consumer group starts reading the input topics"
    )
    join_store: Literal["memory://", "rocksdb://"] = Field(
        default="memory://", description="store of the outcome join; rocksdb:// for long label horizons"
    )
    commit_interval: float = Field(
        default=0.5,
        gt=0,
        description="seconds a stage's transaction stays open over consecutive batches before it commits",
    )
    join_max_waiting: int | None = Field(
        default=1_000_000,
        ge=1,
        description="waiting predictions + outcomes kept per input partition (overflow: dead letters)",
    )
    instance_id: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="stable id of this worker process (static group membership, transactional ids); unique per process",
    )
    session_timeout: float = Field(
        default=45.0, gt=0, description="seconds before a silent worker loses its partitions"
    )
    transaction_timeout: float = Field(
        default=900.0, gt=0, description="seconds a batch may take (learning a wide reference takes minutes)"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM) for mutual TLS")
    ssl_keyfile: Path | None = Field(
        default=None, validate_default=True, description="private key (PEM) of ssl_certfile, may be encrypted"
    )
    ssl_key_password: SecretStr | None = Field(default=None, description="password of an encrypted ssl_keyfile")
    kafka_debug: str | None = Field(
        default=None,
        description="librdkafka debug contexts, e.g. 'broker,security'; off unless set (output may hold secrets)",
    )
    source: str = Field(default="watchkeeper", description="CloudEvents source attribute")

    @field_validator("metrics_keyfile", "metrics_username", "ssl_keyfile")
    @classmethod
    def _pairs(cls, value: Any, info: ValidationInfo) -> Any:
        """TLS needs a certificate and its key, basic auth a username and a password.

        Checked on the key file and the username (declared after their partners), so that an
        error shows their values, never the password.
        """
        partner = {
            "metrics_keyfile": "metrics_certfile",
            "metrics_username": "metrics_password",
            "ssl_keyfile": "ssl_certfile",
        }[str(info.field_name)]
        if (value is None) != (info.data.get(partner) is None):
            given, missing = (partner, info.field_name) if value is None else (info.field_name, partner)
            raise ValueError(f"{given} is set but {missing} is not: expected both or neither")
        return value

    @field_validator("kafka_debug")
    @classmethod
    def _known_debug_contexts(cls, value: str | None) -> str | None:
        """Check the contexts and warn: debug output of a Kafka client can carry credentials."""
        contexts = [c.strip() for c in (value or "").split(",") if c.strip()]
        if not contexts:
            return None
        unknown = sorted(set(contexts) - LIBRDKAFKA_DEBUG_CONTEXTS)
        if unknown:
            raise ValueError(
                f"{value!r}: unknown librdkafka debug contexts {unknown}; "
                f"expected a comma-separated list of {sorted(LIBRDKAFKA_DEBUG_CONTEXTS)}"
            )
        log.warning(
            "kafka_debug=%s: librdkafka debug output is on; it may contain secrets. It goes to the %s logger "
            "(level debug) through the redaction filter; turn it off when done",
            ",".join(contexts),
            KAFKA_CLIENT_LOGGER,
        )
        return ",".join(contexts)

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) settings for bootstrap, security, logging and (if asked) debug output.

        The SASL and key passwords are registered with the redactor before they are handed out.
        librdkafka's output goes to the ``watchkeeper.kafka`` Python logger (and so through
        the log redaction and :class:`KafkaLogThrottle`) instead of straight to stderr; a
        client hands it over when it is polled.
        """
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            register_secrets(self.sasl_password)
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            config["ssl.ca.location"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            config["ssl.certificate.location"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            config["ssl.key.location"] = str(self.ssl_keyfile)
        if self.ssl_key_password:
            register_secrets(self.ssl_key_password)
            config["ssl.key.password"] = self.ssl_key_password.get_secret_value()
        if self.kafka_debug:
            config["debug"] = self.kafka_debug
        config["logger"] = logging.getLogger(KAFKA_CLIENT_LOGGER)
        return config
