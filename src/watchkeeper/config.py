"""Configuration: the monitored models (YAML) and the worker's settings (environment/flags).

Model configuration errors name the field path, the value and what was expected, e.g.
``models[0].window.size: '10 parsecs' is not a duration; expected e.g. 30s, 5m, 1h, 7d``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from watchkeeper.monitor.accuracy import AccuracyConfig
from watchkeeper.monitor.fairness import FairnessConfig
from watchkeeper.monitor.retraining import RetrainingPolicy

__all__ = [
    "ConfigError",
    "DriftConfig",
    "FeatureSpec",
    "MonitorConfig",
    "ModelConfig",
    "ReferenceConfig",
    "Settings",
    "WindowConfig",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class ConfigError(ValueError):
    """An invalid configuration; the message names field, value and expectation."""


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


Duration = Annotated[float, BeforeValidator(parse_duration)]


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
    idle_close: Duration = Field(default=30.0, description="close windows after this long without input")
    max_future: Duration = Field(
        default=3600.0,
        description="reject events stamped further ahead of the worker's clock (one bad clock "
        "would otherwise push the watermark and close every window)",
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
    bucket_size: int = Field(default=50, ge=1, le=10_000, description="events per CUSUM bucket")
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


class ModelConfig(_Strict):
    model_id: str = Field(min_length=1)
    task: Literal["binary", "multiclass", "regression"] = "binary"
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


def format_validation_errors(error: ValidationError, source: str, prefix: str = "") -> str:
    """One line per error: ``source: field.path: value: what was expected``."""
    lines = []
    for item in error.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        value = item.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        lines.append(f"{source}: {prefix}{path or '<root>'}: {shown}: {item['msg']}")
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
        raise ConfigError(format_validation_errors(exc, source)) from exc
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
    input_partitions: int = Field(default=4, ge=1)
    batch_size: int = Field(default=2000, ge=1)
    flush_interval: float = Field(default=1.0, gt=0)
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    data_dir: Path = Path(".watchkeeper/worker")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="where a new consumer group starts reading the input topics"
    )
    join_store: Literal["memory://", "rocksdb://"] = Field(
        default="memory://", description="store of the outcome join; rocksdb:// for long label horizons"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    source: str = Field(default="watchkeeper", description="CloudEvents source attribute")

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) settings for bootstrap and security."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile:
            config["ssl.ca.location"] = str(self.ssl_cafile)
        return config
