"""Which alerts go to which receiver: the ``notify:`` section of the models YAML.

Example::

    notify:
      receivers:
        - name: team-slack
          type: slack
          webhook_url_env: SLACK_WEBHOOK_URL
          match: {models: ["*"], monitors: [drift], severities: [warning, error, critical]}
        - name: oncall
          type: pagerduty
          routing_key_env: PAGERDUTY_ROUTING_KEY
          match: {severities: [critical, error]}

Secrets (Slack webhook URLs, PagerDuty routing keys) are never written in the YAML: a
receiver names the environment variable (``*_env``) or the file (``*_file``) holding it,
and :meth:`Receiver.secret` returns it as a :class:`~pydantic.SecretStr`.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from watchkeeper.config import ConfigError, format_validation_errors, read_yaml
from watchkeeper.events import Alert, Monitor, Severity

__all__ = [
    "Match",
    "NotifyConfig",
    "Receiver",
    "ReceiverType",
    "RoutingError",
    "load_routes",
    "parse_routes",
]

ReceiverType = Literal["slack", "pagerduty", "alertmanager"]


class RoutingError(ValueError):
    """Invalid routes or a missing secret; the message names field, value and expectation."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Strict):
    """An alert matches when every listed criterion matches (an empty list matches all)."""

    models: list[str] = Field(default_factory=lambda: ["*"], description="model_id globs")
    monitors: list[Monitor] = Field(default_factory=list)
    severities: list[Severity] = Field(default_factory=list)

    def matches(self, alert: Alert) -> bool:
        if self.models and not any(fnmatch.fnmatchcase(alert.model_id, p) for p in self.models):
            return False
        if self.monitors and alert.monitor not in self.monitors:
            return False
        return not (self.severities and alert.severity not in self.severities)


class Receiver(_Strict):
    """One destination; ``type`` selects which ``watchkeeper notify`` command serves it."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    type: ReceiverType
    match: Match = Match()
    webhook_url_env: str | None = Field(default=None, description="slack: env var with the webhook URL")
    webhook_url_file: Path | None = Field(default=None, description="slack: file with the webhook URL")
    routing_key_env: str | None = Field(default=None, description="pagerduty: env var with the routing key")
    routing_key_file: Path | None = Field(default=None, description="pagerduty: file with the routing key")
    endpoint: str | None = Field(
        default=None, description="pagerduty: API base URL; alertmanager: base URL (not secret)"
    )
    min_interval: float | None = Field(
        default=None, ge=0.0, description="seconds between two requests (default: slack 1, others 0)"
    )

    @model_validator(mode="after")
    def _secret_source(self) -> Receiver:
        if self.type == "slack":
            self._one_of("webhook_url_env", "webhook_url_file")
        elif self.type == "pagerduty":
            self._one_of("routing_key_env", "routing_key_file")
        elif self.endpoint is None:
            raise ValueError(f"receiver {self.name!r} (alertmanager): 'endpoint' is required")
        return self

    def _one_of(self, env: str, file: str) -> None:
        given = [f for f in (env, file) if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(
                f"receiver {self.name!r} ({self.type}): exactly one of {env!r} or {file!r} is required; "
                f"got {given or 'neither'}"
            )

    def secret(self, environ: dict[str, str] | None = None) -> SecretStr:
        """The webhook URL or routing key, from the environment variable or the file."""
        env_name = self.webhook_url_env or self.routing_key_env
        file = self.webhook_url_file or self.routing_key_file
        return read_secret(self.name, env_name, file, environ)

    def matches(self, alert: Alert) -> bool:
        return self.match.matches(alert)

    @property
    def interval(self) -> float:
        """Seconds between two requests to this receiver (Slack: one message per second)."""
        if self.min_interval is not None:
            return self.min_interval
        return 1.0 if self.type == "slack" else 0.0


def read_secret(
    owner: str, env_name: str | None, file: Path | None, environ: dict[str, str] | None = None
) -> SecretStr:
    """Read a secret from ``env_name`` or ``file``; errors name the source, never the value."""
    environ = dict(os.environ) if environ is None else environ
    if env_name is not None:
        value = environ.get(env_name, "").strip()
        if not value:
            raise RoutingError(f"receiver {owner!r}: environment variable {env_name} is unset or empty")
        return SecretStr(value)
    if file is not None:
        try:
            value = file.read_text().strip()
        except OSError as exc:
            raise RoutingError(f"receiver {owner!r}: cannot read secret file {file}: {exc.strerror}") from None
        if not value:
            raise RoutingError(f"receiver {owner!r}: secret file {file} is empty")
        return SecretStr(value)
    raise RoutingError(f"receiver {owner!r}: no secret source configured")


class NotifyConfig(_Strict):
    receivers: list[Receiver] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifyConfig:
        names = [r.name for r in self.receivers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"receiver names must be unique; repeated: {repeated}")
        return self

    def of_type(self, kind: ReceiverType) -> list[Receiver]:
        return [r for r in self.receivers if r.type == kind]


def parse_routes(raw: Any, source: str = "<notify>") -> NotifyConfig:
    """Validate the ``notify:`` mapping (``{receivers: [...]}``); None means no routes."""
    if raw is None:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise RoutingError(f"{source}: notify: {type(raw).__name__}: expected a mapping with 'receivers'")
    try:
        return NotifyConfig.model_validate(raw)
    except ValidationError as exc:
        raise RoutingError(format_validation_errors(exc, source, prefix="notify.", model=NotifyConfig)) from None


def load_routes(path: str | Path) -> NotifyConfig:
    """Routes from a YAML file: either the models file (its ``notify:`` key) or a routes-only file."""
    path = Path(path)
    try:
        raw = read_yaml(path, "routes")
    except ConfigError as exc:
        raise RoutingError(str(exc)) from None
    if isinstance(raw, dict) and ("notify" in raw or "models" in raw):
        raw = raw.get("notify")
    return parse_routes(raw, source=str(path))
