"""The models YAML: :class:`ModelConfig` per model, reading and validating the file.

Errors name the field path, the value and what was expected, e.g.
``models[0].window.size: '10 parsecs' is not a duration; expected e.g. 30s, 5m, 1h, 7d``.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Container
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from watchkeeper.config.base import ConfigError, Strict
from watchkeeper.config.labels import AccuracyConfig, FairnessConfig, Task
from watchkeeper.config.monitors import (
    DataQualityConfig,
    DriftConfig,
    FeatureSpec,
    MonitorConfig,
    ReferenceConfig,
    RetrainingPolicy,
    WindowConfig,
)

__all__ = [
    "ModelConfig",
    "WatchkeeperConfig",
    "format_validation_errors",
    "load_config",
    "missing_profile",
    "parse_config",
    "read_yaml",
]


class ModelConfig(Strict):
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


class WatchkeeperConfig(Strict):
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
    errors = error.errors()
    hints = [
        _unknown_key_hint(model, item["loc"]) if model is not None and item["type"] == "extra_forbidden" else ""
        for item in errors
    ]
    # a misspelt required key is one mistake: its "did you mean `models`?" line says it all,
    # so the "Field required" line of the key it names is left out
    suggested = {
        (*item["loc"][:-1], hint.removeprefix("; did you mean `").removesuffix("`?"))
        for item, hint in zip(errors, hints, strict=True)
        if hint.startswith("; did you mean `")
    }
    lines = []
    for item, hint in zip(errors, hints, strict=True):
        if item["type"] == "missing" and tuple(item["loc"]) in suggested:
            continue
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in item["loc"]).lstrip(".")
        value = item.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
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


def missing_profile(
    config: WatchkeeperConfig, source: str | Path, model_ids: Container[str] | None = None
) -> str | None:
    """The error for the first reference profile file of ``config`` that does not exist (of the
    models in ``model_ids``, default all), naming its resolved path and the ``profile build``
    command that makes it; None when every one exists."""
    for i, model in enumerate(config.models):
        path = model.reference.profile
        if path is None or path.is_file() or (model_ids is not None and model.model_id not in model_ids):
            continue
        build = (
            f"watchkeeper profile build TRAINING.csv --model {shlex.quote(model.model_id)} "
            f"-c {shlex.quote(str(source))} -o {shlex.quote(str(path))}"
        )
        return f"{source}: models[{i}].reference.profile: {path.resolve()} does not exist; build it with: {build}"
    return None
