"""``watchkeeper notify slack|pagerduty|alertmanager``: run a notifier consumer group.

Kafka settings (bootstrap servers, topics, security) come from ``WATCHKEEPER_*`` variables
(:class:`watchkeeper.config.Settings`); routes from the ``notify:`` section of ``--config``
or from a routes-only file ``--routes``. Run standalone with ``python -m watchkeeper.notify.cli``.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from watchkeeper.broker import bootstrap_origin, settings_for, wait_for_broker
from watchkeeper.cli_options import BootstrapOption
from watchkeeper.command_errors import fail
from watchkeeper.config import Settings
from watchkeeper.logs import LogFormat, setup_logging
from watchkeeper.metrics_server import readiness, start_metrics_server
from watchkeeper.notify.delivery import Delivery, RetryPolicy
from watchkeeper.notify.routing import NotifyConfig, Receiver, ReceiverType, RoutingError, load_routes
from watchkeeper.notify.runner import Notifier, NotifyRunner

__all__ = ["notify_app"]

log = logging.getLogger("watchkeeper.notify")

notify_app = typer.Typer(
    help="Deliver alerts from the alerts topic to Slack, PagerDuty or Alertmanager. A new consumer group "
    "starts at the end of the topic (only alerts published from its first start on; --from-beginning for "
    "the backlog); later runs resume from the group's committed offsets."
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="models YAML with 'notify:' [$WATCHKEEPER_CONFIG]")]
RoutesOpt = Annotated[Path | None, typer.Option("--routes", help="routes-only YAML ({receivers: [...]})")]
GroupOpt = Annotated[str | None, typer.Option("--group-id", help="[watchkeeper-notify-<kind>]")]
MaxMessagesOpt = Annotated[int | None, typer.Option("--max-messages", min=1, help="exit after N messages")]
IdleExitOpt = Annotated[
    float | None, typer.Option("--idle-exit", min=0.0, help="exit after N s without messages (once assigned)")
]
AttemptsOpt = Annotated[int, typer.Option("--max-attempts", min=1, help="HTTP attempts before dead-letter")]
ElapsedOpt = Annotated[float, typer.Option("--max-elapsed", min=0.0, help="retry seconds before dead-letter")]
BaseOpt = Annotated[float, typer.Option("--backoff-base", min=0.0, help="first backoff ceiling, seconds")]
CapOpt = Annotated[float, typer.Option("--backoff-cap", min=0.0, help="largest backoff ceiling, seconds")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="HTTP connect/read/write timeout, seconds")]
SessionOpt = Annotated[
    float, typer.Option("--session-timeout", min=1.0, help="group session timeout (failover), seconds")
]
LogFormatOpt = Annotated[
    LogFormat, typer.Option("--log-format", help="text (key=value fields) or json (one object a line)")
]
LogLevelOpt = Annotated[str, typer.Option("--log-level", "--loglevel", help="critical, error, warning, info or debug")]
FromBeginningOpt = Annotated[
    bool,
    typer.Option(
        "--from-beginning",
        help="a new consumer group starts at the oldest alert still in the topic instead of at its end "
        "(by default a new notifier delivers only alerts published after its first start); "
        "a group that has committed offsets always resumes from them",
    ),
]
MetricsPortOpt = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        envvar="WATCHKEEPER_NOTIFY_METRICS_PORT",
        min=0,
        max=65535,
        help="serve /metrics, /healthz and /readyz on this port (WATCHKEEPER_METRICS_* TLS and auth); 0: none",
    ),
]


@dataclass(frozen=True)
class _Common:
    """The options every notify command shares."""

    config: Path | None
    routes: Path | None
    group_id: str | None
    bootstrap: str | None
    max_messages: int | None
    idle_exit: float | None
    max_attempts: int
    max_elapsed: float
    backoff_base: float
    backoff_cap: float
    timeout: float
    log_format: LogFormat
    log_level: str
    session_timeout: float = 10.0
    rebuild: bool = False
    from_beginning: bool = False
    metrics_port: int = 0

    @classmethod
    def of(cls, values: dict[str, Any]) -> _Common:
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


def _routes(config: Path | None, routes: Path | None, settings: Settings) -> NotifyConfig:
    if routes is not None:
        return load_routes(routes)
    if config is not None:
        return load_routes(config)
    if settings.config.exists():
        return load_routes(settings.config)
    return NotifyConfig()


def _receivers(kind: ReceiverType, routes: NotifyConfig, default: Receiver) -> list[Receiver]:
    if not routes.receivers:
        return [default]
    chosen = routes.of_type(kind)
    if not chosen:
        names = [f"{r.name} ({r.type})" for r in routes.receivers]
        raise RoutingError(f"notify.receivers: {names}: expected at least one receiver of type {kind!r}")
    return chosen


def _run(kind: str, c: _Common, build: Any) -> None:
    """Load routes and secrets, build the notifier with ``build(receivers, delivery)``, run it."""
    setup_logging(c.log_level, c.log_format)
    settings = settings_for(c.bootstrap)
    stop = threading.Event()
    policy = RetryPolicy(base=c.backoff_base, cap=c.backoff_cap, max_attempts=c.max_attempts, max_elapsed=c.max_elapsed)
    delivery = Delivery(policy=policy, stop=stop)
    try:
        notifier: Notifier = build(_routes(c.config, c.routes, settings), delivery, settings)
    except RoutingError as exc:
        fail(str(exc))

    def _stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    registry = CollectorRegistry()
    if c.metrics_port:  # before the broker answers: /healthz is up, /readyz says why it is not ready
        try:
            start_metrics_server(settings.model_copy(update={"metrics_port": c.metrics_port}), registry)
        except ValueError as exc:
            fail(str(exc))
    with notifier:  # closes its HTTP connections
        _consume(kind, c, notifier, settings, stop, registry)


def _consume(
    kind: str, c: _Common, notifier: Notifier, settings: Settings, stop: threading.Event, registry: CollectorRegistry
) -> None:
    """Wait for the broker, then run the consumer group until stopped."""
    if not wait_for_broker(settings, bootstrap_origin(c.bootstrap), log, stop.is_set):
        return
    # poll() is not called while a message is being delivered: allow all retries of all receivers
    longest = (c.max_elapsed + c.timeout) * max(1, len(notifier.receivers)) + 60
    runner = NotifyRunner(
        settings,
        notifier,
        c.group_id or f"watchkeeper-notify-{kind}",
        stop=stop,
        max_messages=c.max_messages,
        idle_exit=c.idle_exit,
        session_timeout=c.session_timeout,
        max_poll_interval=longest,
        registry=registry,
        from_beginning=c.from_beginning,
    )
    readiness(registry).set_check(runner.not_ready)
    if c.rebuild and hasattr(notifier, "restore"):
        from watchkeeper.notify.alertmanager import rebuild_firing

        notifier.restore(rebuild_firing(settings))
    runner.run()


def _secrets(receivers: list[Receiver]) -> dict[str, SecretStr]:
    return {r.name: r.secret() for r in receivers}


@notify_app.command()
def slack(
    webhook_url_file: Annotated[
        Path | None, typer.Option("--webhook-url-file", help="webhook URL file [$SLACK_WEBHOOK_URL]")
    ] = None,
    config: ConfigOpt = None,
    routes: RoutesOpt = None,
    group_id: GroupOpt = None,
    bootstrap: BootstrapOption = None,
    max_messages: MaxMessagesOpt = None,
    idle_exit: IdleExitOpt = None,
    max_attempts: AttemptsOpt = 10,
    max_elapsed: ElapsedOpt = 600.0,
    backoff_base: BaseOpt = 0.5,
    backoff_cap: CapOpt = 30.0,
    timeout: TimeoutOpt = 10.0,
    session_timeout: SessionOpt = 10.0,
    from_beginning: FromBeginningOpt = False,
    metrics_port: MetricsPortOpt = 0,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Post alerts to Slack incoming webhooks (Block Kit; at most 1 message/s per webhook)."""
    from watchkeeper.notify.receivers import SlackNotifier

    source: dict[str, Any] = {"webhook_url_env": "SLACK_WEBHOOK_URL"}
    if webhook_url_file:
        source = {"webhook_url_file": webhook_url_file}
    default = Receiver(name="slack", type="slack", **source)

    def build(routes: NotifyConfig, delivery: Delivery, _s: Settings) -> Notifier:
        receivers = _receivers("slack", routes, default)
        return SlackNotifier(receivers, _secrets(receivers), delivery, timeout=timeout)

    _run("slack", _Common.of(locals()), build)


@notify_app.command()
def pagerduty(
    endpoint: Annotated[
        str, typer.Option("--endpoint", envvar="WATCHKEEPER_PAGERDUTY_URL", help="Events API base URL")
    ] = "https://events.pagerduty.com",
    routing_key_file: Annotated[
        Path | None, typer.Option("--routing-key-file", help="routing key file [$PAGERDUTY_ROUTING_KEY]")
    ] = None,
    config: ConfigOpt = None,
    routes: RoutesOpt = None,
    group_id: GroupOpt = None,
    bootstrap: BootstrapOption = None,
    max_messages: MaxMessagesOpt = None,
    idle_exit: IdleExitOpt = None,
    max_attempts: AttemptsOpt = 10,
    max_elapsed: ElapsedOpt = 600.0,
    backoff_base: BaseOpt = 0.5,
    backoff_cap: CapOpt = 30.0,
    timeout: TimeoutOpt = 10.0,
    session_timeout: SessionOpt = 10.0,
    from_beginning: FromBeginningOpt = False,
    metrics_port: MetricsPortOpt = 0,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Send alerts to PagerDuty Events API v2 (trigger / resolve, dedup_key = fingerprint)."""
    from watchkeeper.notify.receivers import PagerDutyNotifier

    source: dict[str, Any] = {"routing_key_env": "PAGERDUTY_ROUTING_KEY"}
    if routing_key_file:
        source = {"routing_key_file": routing_key_file}
    default = Receiver(name="pagerduty", type="pagerduty", **source)

    def build(routes: NotifyConfig, delivery: Delivery, _s: Settings) -> Notifier:
        receivers = _receivers("pagerduty", routes, default)
        return PagerDutyNotifier(receivers, _secrets(receivers), delivery, endpoint=endpoint, timeout=timeout)

    _run("pagerduty", _Common.of(locals()), build)


@notify_app.command()
def alertmanager(
    url: Annotated[
        str, typer.Option("--url", envvar="WATCHKEEPER_ALERTMANAGER_URL", help="Alertmanager base URL")
    ] = "http://localhost:9093",
    resend_interval: Annotated[float, typer.Option("--resend-interval", min=0.1, help="seconds")] = 60.0,
    rebuild: Annotated[
        bool, typer.Option("--rebuild/--no-rebuild", help="rebuild firing alerts from the topic on start")
    ] = True,
    config: ConfigOpt = None,
    routes: RoutesOpt = None,
    group_id: GroupOpt = None,
    bootstrap: BootstrapOption = None,
    max_messages: MaxMessagesOpt = None,
    idle_exit: IdleExitOpt = None,
    max_attempts: AttemptsOpt = 10,
    max_elapsed: ElapsedOpt = 600.0,
    backoff_base: BaseOpt = 0.5,
    backoff_cap: CapOpt = 30.0,
    timeout: TimeoutOpt = 10.0,
    session_timeout: SessionOpt = 10.0,
    from_beginning: FromBeginningOpt = False,
    metrics_port: MetricsPortOpt = 0,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "INFO",
) -> None:
    """Push alerts to Alertmanager /api/v2/alerts, re-sending firing ones every --resend-interval."""
    from watchkeeper.notify.alertmanager import AlertmanagerNotifier

    default = Receiver(name="alertmanager", type="alertmanager", endpoint=url)

    def build(routes: NotifyConfig, delivery: Delivery, _s: Settings) -> Notifier:
        receivers = _receivers("alertmanager", routes, default)
        return AlertmanagerNotifier(receivers, delivery, resend_interval=resend_interval, timeout=timeout)

    _run("alertmanager", _Common.of(locals()), build)


if __name__ == "__main__":
    notify_app()
