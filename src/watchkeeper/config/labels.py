"""Settings of the label monitors: accuracy (``models[].accuracy``) and fairness (``models[].fairness``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator, model_validator

from watchkeeper.config.base import Duration, Strict
from watchkeeper.events import Severity
from watchkeeper.stats.dispersion import HISTORY, MIN_WINDOWS

__all__ = [
    "DEFAULT_FAIRNESS_TOLERANCE",
    "DEFAULT_METRICS",
    "DEFAULT_RELATIVE_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "DISPERSION_MIN_WINDOWS",
    "FAIRNESS_METRICS",
    "METRICS",
    "AccuracyConfig",
    "Direction",
    "FairnessConfig",
    "FairnessMetric",
    "MetricSpec",
    "Task",
]

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


class AccuracyConfig(Strict):
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
DISPERSION_MIN_WINDOWS = MIN_WINDOWS  # a design effect is estimated from at least this many final windows


class FairnessConfig(Strict):
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
        default=HISTORY,
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
