"""The worker's settings (``WATCHKEEPER_*`` environment variables or CLI flags) and the
Kafka clients' logging."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from watchkeeper.redact import register_secrets

__all__ = ["KAFKA_CLIENT_LOGGER", "LIBRDKAFKA_DEBUG_CONTEXTS", "KafkaLogThrottle", "Settings"]

log = logging.getLogger("watchkeeper.config")

KAFKA_CLIENT_LOGGER = "watchkeeper.kafka"
"""The Python logger librdkafka's output goes to (its warnings and errors throttled, see KafkaLogThrottle)."""
LIBRDKAFKA_DEBUG_CONTEXTS = frozenset(
    {"generic", "broker", "topic", "metadata", "feature", "queue", "msg", "protocol", "cgrp", "security", "fetch"}
    | {"interceptor", "plugin", "consumer", "admin", "eos", "mock", "assignor", "conf", "telemetry", "all"}
)


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
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: float = Field(default=0.25, gt=0)
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
