"""Whether the Kafka cluster answers: bounded checks whose one-line errors name the fix.

librdkafka retries a broker it cannot reach without end and logs each failed attempt; the
commands check first, with a time limit, so that a wrong address or a broker that is not up
is one line that says which address, where it came from and for how long it was tried. A
broker that refuses the SASL login or the client certificate, a failed TLS handshake and
security settings librdkafka cannot load are recognised at once (not after the time limit)
and named by the ``WATCHKEEPER_*`` setting to fix.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from watchkeeper.config import Settings
from watchkeeper.redact import redact

__all__ = [
    "BOOTSTRAP_ENV",
    "BrokerUnreachable",
    "KafkaSecurityError",
    "bootstrap_origin",
    "check_broker",
    "wait_for_broker",
]

BOOTSTRAP_ENV = "WATCHKEEPER_BOOTSTRAP_SERVERS"
WARNING_INTERVAL = 60.0
"""Seconds between two warnings of :func:`wait_for_broker` while the brokers stay unreachable."""
CHECK_STEP = 0.5
"""Seconds of one metadata request of :func:`check_broker`; refusals are looked for between two."""

_CAUSE = re.compile(
    r"^\S+/\S+: (?P<cause>.*?)(?: \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\))?$"
)  # "localhost:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
_PROBE_LOGGER = logging.getLogger("watchkeeper.broker.probe")
_PROBE_LOGGER.addHandler(logging.NullHandler())  # the probe's librdkafka lines: the cause is in the error
_PROBE_LOGGER.propagate = False


class BrokerUnreachable(Exception):
    """No broker answered in time; the message names the address, its origin, the wait and the cause."""


class KafkaSecurityError(BrokerUnreachable):
    """A broker refused the SASL login or the client certificate, the TLS handshake failed, or librdkafka
    refused the security settings; the message names the settings to fix."""


_SETTING_OF_PROPERTY = {  # librdkafka property named in a client-creation error -> the setting behind it
    "ssl.ca.location": "WATCHKEEPER_SSL_CAFILE",
    "ssl.certificate.location": "WATCHKEEPER_SSL_CERTFILE",
    "ssl.key.location": "WATCHKEEPER_SSL_KEYFILE / WATCHKEEPER_SSL_KEY_PASSWORD",
    "ssl.key.password": "WATCHKEEPER_SSL_KEY_PASSWORD",
    "sasl.": "WATCHKEEPER_SASL_MECHANISM / WATCHKEEPER_SASL_USERNAME / WATCHKEEPER_SASL_PASSWORD",
    "security.protocol": "WATCHKEEPER_SECURITY_PROTOCOL",
}
_CERTIFICATE_REFUSED = re.compile(r"alert (?:bad certificate|certificate required|unknown ca)", re.IGNORECASE)


def settings_for(flag: str | None) -> Settings:
    """The settings from the environment, with a command's ``--bootstrap-servers`` (if given) over them."""
    settings = Settings()
    return settings.model_copy(update={"bootstrap_servers": flag}) if flag else settings


def bootstrap_origin(flag: str | None) -> str:
    """Where the bootstrap servers came from: the command's flag, the environment, or the default."""
    if flag:
        return "--bootstrap-servers"
    if os.environ.get(BOOTSTRAP_ENV):
        return BOOTSTRAP_ENV
    return "the default"


def _cause(errors: list[KafkaError], failure: KafkaException) -> str:
    """The last error librdkafka reported for a broker (e.g. connection refused), else the call's error."""
    for error in reversed(errors):
        match = _CAUSE.match(error.str())
        if match:
            return match.group("cause")
    reported = failure.args[0] if failure.args else None
    return reported.str() if isinstance(reported, KafkaError) else str(failure)


def _security_fix(error: KafkaError, cause: str, settings: Settings) -> str | None:
    """What to check when a broker error is a refused login or certificate or a failed TLS handshake, else None."""
    code = error.code()
    if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
        return (
            f"check WATCHKEEPER_SASL_PASSWORD, WATCHKEEPER_SASL_USERNAME ({settings.sasl_username or 'unset'}) "
            f"and WATCHKEEPER_SASL_MECHANISM ({settings.sasl_mechanism or 'unset'})"
        )
    if code == KafkaError._SSL and "certificate verify failed" in cause:
        cafile = settings.ssl_cafile or "unset: the system CAs"
        return f"check WATCHKEEPER_SSL_CAFILE ({cafile}): it must hold the CA that signed the broker's certificate"
    if _CERTIFICATE_REFUSED.search(cause):
        certfile = settings.ssl_certfile or "unset: none was sent"
        return (
            f"the broker refused the client certificate: check WATCHKEEPER_SSL_CERTFILE ({certfile}) and "
            "WATCHKEEPER_SSL_KEYFILE: a certificate signed by a CA the broker trusts"
        )
    if code == KafkaError._SSL:
        return "check WATCHKEEPER_SECURITY_PROTOCOL and the WATCHKEEPER_SSL_* settings"
    return None


def _refusal(errors: list[KafkaError], settings: Settings, where: str) -> KafkaSecurityError | None:
    """The first broker error that is a refused login or certificate or a failed TLS handshake, as one line."""
    for error in errors:
        match = _CAUSE.match(error.str())
        cause = match.group("cause") if match else error.str()
        fix = _security_fix(error, cause, settings)
        if fix is not None:
            return KafkaSecurityError(redact(f"{where}: {cause}; {fix}"))
    return None


def _admin_client(config: dict[str, Any], where: str) -> AdminClient:
    """An admin client; :class:`KafkaSecurityError` naming the setting when librdkafka refuses its settings."""
    try:
        return AdminClient(config)
    except KafkaException as exc:
        reported = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
        named = [setting for prop, setting in _SETTING_OF_PROPERTY.items() if prop in reported]
        fix = named[0] if named else "WATCHKEEPER_SECURITY_PROTOCOL and the WATCHKEEPER_SASL_* / _SSL_* settings"
        raise KafkaSecurityError(redact(f"{where}: {reported}; check {fix}")) from None


def check_broker(settings: Settings, origin: str, timeout: float) -> None:
    """Return once a broker answers a metadata request; :class:`BrokerUnreachable` after ``timeout`` s.

    :class:`KafkaSecurityError` (a :class:`BrokerUnreachable`) as soon as a broker refuses the
    client's credentials or certificate, or librdkafka its security settings.
    """
    where = f"Kafka at {settings.bootstrap_servers} (from {origin})"
    errors: list[KafkaError] = []
    config: dict[str, Any] = {**settings.kafka_client_config(), "logger": _PROBE_LOGGER, "error_cb": errors.append}
    admin = _admin_client(config, where)
    started = time.monotonic()
    while True:
        step = max(0.0, min(CHECK_STEP, started + timeout - time.monotonic()))
        try:
            admin.list_topics(timeout=step)
            return
        except KafkaException as exc:
            failure = exc
        admin.poll(0)  # hands the broker errors over to error_cb
        refused = _refusal(errors, settings, where)
        if refused is not None:
            raise refused
        if time.monotonic() >= started + timeout:
            break
    raise BrokerUnreachable(
        f"cannot reach Kafka at {settings.bootstrap_servers} (from {origin}) after "
        f"{time.monotonic() - started:.0f} s: {_cause(errors, failure)}; start a broker "
        f"(watchkeeper dev kafka up) or point --bootstrap-servers / {BOOTSTRAP_ENV} at one"
    )


def _never() -> bool:
    return False


def wait_for_broker(
    settings: Settings, origin: str, log: logging.Logger, stop: Callable[[], bool] = _never, attempt: float = 5.0
) -> bool:
    """Check every ``attempt`` seconds until a broker answers (True) or ``stop()`` holds (False).

    Logs one warning when the first check fails, then at most one every :data:`WARNING_INTERVAL`
    seconds while the brokers stay unreachable, and one line when they answer again. A refused
    login or certificate is retried too: credentials can be fixed on the broker's side.
    """
    warned_at: float | None = None
    while not stop():
        began = time.monotonic()
        try:
            check_broker(settings, origin, attempt)
        except BrokerUnreachable as exc:
            now = time.monotonic()
            if warned_at is None or now - warned_at >= WARNING_INTERVAL:
                log.warning("%s; retrying (this warning repeats once a minute)", exc)
                warned_at = now
            time.sleep(max(0.0, began + attempt - now))  # a check that failed at once: not a busy loop
            continue
        if warned_at is not None:
            log.warning("Kafka at %s answers; going on", settings.bootstrap_servers)
        return True
    return False
