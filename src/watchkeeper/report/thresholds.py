"""The thresholds drawn on the charts, and where they came from.

The window records carry verdicts (``significant``, ``large_effect``) but not the limits
behind them, so a report takes them from the models config when one is given, else from
the model's own alerts (an alert carries its threshold), else the defaults of
:mod:`watchkeeper.config`; the chart says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchkeeper.config import DriftConfig, FairnessConfig, ModelConfig
from watchkeeper.report.records import ModelRecords

__all__ = ["DriftThresholds", "drift_thresholds", "fairness_tolerances"]


@dataclass(frozen=True)
class DriftThresholds:
    """PSI effect size and significance level of the double gate, with their origin."""

    min_psi: float
    alpha: float
    correction: str
    source: str  # "config", "alerts" or "defaults"


def drift_thresholds(model: ModelRecords, config: ModelConfig | None) -> DriftThresholds:
    """The model's drift limits: from its config, else from its PSI alerts, else the defaults."""
    if config is not None:
        drift = config.drift
        return DriftThresholds(drift.min_psi, drift.alpha, drift.correction, "config")
    defaults = DriftConfig()
    psi_alert = next((a for a in model.alerts if a.monitor == "drift" and a.metric == "psi"), None)
    if psi_alert is not None:
        alpha = psi_alert.details.get("alpha", defaults.alpha)
        correction = psi_alert.details.get("correction", defaults.correction)
        return DriftThresholds(psi_alert.threshold, float(alpha), str(correction), "alerts")
    return DriftThresholds(defaults.min_psi, defaults.alpha, defaults.correction, "defaults")


def fairness_tolerances(model: ModelRecords, config: ModelConfig | None) -> tuple[dict[str, float], str]:
    """Tolerance per fairness metric and their origin (config, else alerts over the defaults)."""
    if config is not None:
        return dict(config.fairness.tolerance), "config"
    tolerances = dict(FairnessConfig().tolerance)
    seen = {a.metric: a.threshold for a in model.alerts if a.monitor == "fairness"}
    tolerances.update(seen)
    return tolerances, "alerts" if seen else "defaults"
