"""Whether the Kafka cluster answers: bounded checks whose one-line errors name the fix.

librdkafka retries a broker it cannot reach without end and logs each failed attempt; the
commands check first, with a time limit, so that a wrong address or a broker that is not up
is one line that says which address, where it came from and for how long it was tried.
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

__all__ = ["BOOTSTRAP_ENV", "BrokerUnreachable", "bootstrap_origin", "check_broker", "wait_for_broker"]

BOOTSTRAP_ENV = "WATCHKEEPER_BOOTSTRAP_SERVERS"
WARNING_INTERVAL = 60.0
"""Seconds between two warnings of :func:`wait_for_broker` while the brokers stay unreachable."""

_CAUSE = re.compile(
    r"^\S+/\S+: (?P<cause>.*?)(?: \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\))?$"
)  # "localhost:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"
_PROBE_LOGGER = logging.getLogger("watchkeeper.broker.probe")
_PROBE_LOGGER.addHandler(logging.NullHandler())  # the probe's librdkafka lines: the cause is in the error
_PROBE_LOGGER.propagate = False


class BrokerUnreachable(Exception):
    """No broker answered in time; the message names the address, its origin, the wait and the cause."""


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


def check_broker(settings: Settings, origin: str, timeout: float) -> None:
    """Return once a broker answers a metadata request; :class:`BrokerUnreachable` after ``timeout`` s."""
    errors: list[KafkaError] = []
    config: dict[str, Any] = {**settings.kafka_client_config(), "logger": _PROBE_LOGGER, "error_cb": errors.append}
    admin = AdminClient(config)
    started = time.monotonic()
    try:
        admin.list_topics(timeout=timeout)
        return
    except KafkaException as exc:
        failure = exc
    admin.poll(0)  # hands the broker errors over to error_cb
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
    seconds while the brokers stay unreachable, and one line when they answer again.
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
