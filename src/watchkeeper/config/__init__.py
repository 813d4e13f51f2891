"""Configuration: the monitored models (YAML) and the worker's settings (environment/flags).

One place for every setting, split by concern: :mod:`~watchkeeper.config.base` (durations,
the strict model base, :class:`ConfigError`), :mod:`~watchkeeper.config.monitors` (windows,
reference, drift, data quality, alerts, retraining), :mod:`~watchkeeper.config.labels`
(accuracy and fairness), :mod:`~watchkeeper.config.models` (the models YAML and its errors)
and :mod:`~watchkeeper.config.settings` (the worker's ``WATCHKEEPER_*`` settings).
Everything is importable from ``watchkeeper.config``.

Model configuration errors name the field path, the value and what was expected, e.g.
``models[0].window.size: '10 parsecs' is not a duration; expected e.g. 30s, 5m, 1h, 7d``.
"""

from watchkeeper.config.base import DAY, ConfigError, Duration, DurationOrZero, format_duration, parse_duration
from watchkeeper.config.labels import (
    DEFAULT_FAIRNESS_TOLERANCE,
    DEFAULT_METRICS,
    DEFAULT_RELATIVE_TOLERANCE,
    DEFAULT_TOLERANCE,
    DISPERSION_MIN_WINDOWS,
    FAIRNESS_METRICS,
    METRICS,
    AccuracyConfig,
    Direction,
    FairnessConfig,
    FairnessMetric,
    MetricSpec,
    Task,
)
from watchkeeper.config.models import (
    ModelConfig,
    WatchkeeperConfig,
    format_validation_errors,
    load_config,
    missing_profile,
    parse_config,
    read_yaml,
)
from watchkeeper.config.monitors import (
    DataQualityConfig,
    DriftConfig,
    FeatureSpec,
    MonitorConfig,
    ReferenceConfig,
    RetrainingPolicy,
    WindowConfig,
)
from watchkeeper.config.settings import KAFKA_CLIENT_LOGGER, LIBRDKAFKA_DEBUG_CONTEXTS, KafkaLogThrottle, Settings

__all__ = [
    "DAY",
    "DEFAULT_FAIRNESS_TOLERANCE",
    "DEFAULT_METRICS",
    "DEFAULT_RELATIVE_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "DISPERSION_MIN_WINDOWS",
    "FAIRNESS_METRICS",
    "KAFKA_CLIENT_LOGGER",
    "LIBRDKAFKA_DEBUG_CONTEXTS",
    "METRICS",
    "AccuracyConfig",
    "ConfigError",
    "DataQualityConfig",
    "Direction",
    "DriftConfig",
    "Duration",
    "DurationOrZero",
    "FairnessConfig",
    "FairnessMetric",
    "FeatureSpec",
    "KafkaLogThrottle",
    "MetricSpec",
    "ModelConfig",
    "MonitorConfig",
    "ReferenceConfig",
    "RetrainingPolicy",
    "Settings",
    "Task",
    "WatchkeeperConfig",
    "WindowConfig",
    "format_validation_errors",
    "load_config",
    "missing_profile",
    "parse_config",
    "format_duration",
    "parse_duration",
    "read_yaml",
]
