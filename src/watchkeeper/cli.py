"""The ``watchkeeper`` command: worker, replay, profiles, schemas, local Kafka and the demo."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from watchkeeper import __version__
from watchkeeper.cli_options import BootstrapOption, KafkaTimeoutOption
from watchkeeper.command_errors import fail, load_models
from watchkeeper.config import Settings
from watchkeeper.notify.cli import notify_app
from watchkeeper.profile_command import profile_app
from watchkeeper.report.command import report
from watchkeeper.tail import alerts_app, deadletter_app

app = typer.Typer(help="Streaming drift, accuracy and fairness monitoring for ML models on Kafka.")
dev_app = typer.Typer(help="Development helpers.")
kafka_app = typer.Typer(help="A local Apache Kafka broker (KRaft) fetched from Maven Central.")
schemas_app = typer.Typer(help="JSON Schemas of the event contracts.")
topics_app = typer.Typer(help="Kafka topics.")
app.add_typer(dev_app, name="dev")
dev_app.add_typer(kafka_app, name="kafka")
app.add_typer(profile_app, name="profile")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")
app.add_typer(notify_app, name="notify")
app.add_typer(alerts_app, name="alerts")
app.add_typer(deadletter_app, name="deadletter")
app.command("report")(report)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="models YAML", envvar="WATCHKEEPER_CONFIG")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"watchkeeper {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Streaming drift, accuracy and fairness monitoring for ML models on Kafka."""


def _check_broker(settings: Settings, flag: str | None, timeout: float) -> None:
    """Exit with a one-line error naming address, its origin and the wait when no broker answers."""
    from watchkeeper.broker import BrokerUnreachable, bootstrap_origin, check_broker

    try:
        check_broker(settings, bootstrap_origin(flag), timeout)
    except BrokerUnreachable as exc:
        fail(str(exc))


# -- local Kafka ---------------------------------------------------------------------
def _local_kafka(port: int | None, data_dir: Path | None) -> Any:
    from watchkeeper.dev.kafka import LocalKafka

    kafka = LocalKafka()
    if port:
        kafka.port, kafka.controller_port = port, port + 1
    if data_dir:
        kafka.data_dir = data_dir
    return kafka


@kafka_app.command("up")
def kafka_up(
    port: Annotated[int | None, typer.Option(help="broker port (controller: port+1)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="storage, logs and pid file")] = None,
) -> None:
    """Fetch (once), format (once) and start the broker; reuse one that is already up."""
    from watchkeeper.dev.kafka import KafkaError

    kafka = _local_kafka(port, data_dir)
    try:
        outcome = kafka.up()
    except KafkaError as exc:
        fail(str(exc))
    typer.echo(f"kafka {outcome} on {kafka.bootstrap}")


@kafka_app.command("down")
def kafka_down(
    port: Annotated[int | None, typer.Option()] = None,
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Stop the broker that this data directory started."""
    stopped = _local_kafka(port, data_dir).down()
    typer.echo("kafka stopped" if stopped else "no broker started from this data dir is running")


@kafka_app.command("status")
def kafka_status(
    port: Annotated[int | None, typer.Option()] = None,
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    typer.echo(_local_kafka(port, data_dir).status())


# -- topics and worker ---------------------------------------------------------------
@topics_app.command("create")
def topics_create(bootstrap_servers: BootstrapOption = None, kafka_timeout: KafkaTimeoutOption = 15.0) -> None:
    """Create watchkeeper's topics (idempotent); names and partitions from WATCHKEEPER_*."""
    from confluent_kafka import KafkaException

    from watchkeeper.broker import settings_for
    from watchkeeper.stream.topics import ensure_topics

    settings = settings_for(bootstrap_servers)
    _check_broker(settings, bootstrap_servers, kafka_timeout)
    try:
        created = ensure_topics(settings, timeout=kafka_timeout)
    except KafkaException as exc:
        fail(f"creating topics on {settings.bootstrap_servers}: {exc}")
    typer.echo(f"created: {', '.join(created)}" if created else "all topics exist")


@app.command()
def worker(
    config: ConfigOption = Path("watchkeeper.yaml"),
    bootstrap_servers: BootstrapOption = None,
    metrics_port: Annotated[int | None, typer.Option(envvar="WATCHKEEPER_METRICS_PORT")] = None,
    metrics_address: Annotated[
        str | None,
        typer.Option(envvar="WATCHKEEPER_METRICS_ADDRESS", help="address /metrics listens on (default 0.0.0.0)"),
    ] = None,
    instance_id: Annotated[
        str | None, typer.Option(envvar="WATCHKEEPER_INSTANCE_ID", help="stable per process (static membership)")
    ] = None,
    loglevel: Annotated[
        str, typer.Option("--loglevel", "--log-level", help="critical, error, warning, info or debug")
    ] = "warning",
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(envvar="WATCHKEEPER_LOG_FORMAT", help="text (key=value fields) or json (one object a line)"),
    ] = "text",
) -> None:
    """Run a stream worker (stage 1 and stage 2, exactly once) with Prometheus metrics on /metrics.

    While no broker answers, it logs one warning (then one a minute) and keeps trying.
    """
    from watchkeeper.logs import configure_logging, log_context

    logging.getLogger().setLevel(loglevel.upper() if loglevel != "warn" else "WARNING")
    configure_logging(log_format)
    logging.captureWarnings(True)  # Python warnings as log lines too (in the format, redacted)
    with log_context(stage="main"):
        _run_worker(config, bootstrap_servers, metrics_port, metrics_address, instance_id)


def _run_worker(
    config: Path,
    bootstrap_servers: str | None,
    metrics_port: int | None,
    metrics_address: str | None,
    instance_id: str | None,
) -> None:
    from watchkeeper.broker import bootstrap_origin, wait_for_broker
    from watchkeeper.metrics import WorkerMetrics
    from watchkeeper.metrics_server import start_metrics_server
    from watchkeeper.stream.app import Worker
    from watchkeeper.stream.topics import ensure_topics

    log = logging.getLogger("watchkeeper.worker")
    overrides: dict[str, Any] = {"config": config}
    if bootstrap_servers:
        overrides["bootstrap_servers"] = bootstrap_servers
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    if metrics_address:
        overrides["metrics_address"] = metrics_address
    if instance_id:
        overrides["instance_id"] = instance_id
    settings = Settings(**overrides)
    models = load_models(settings.config, profiles=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    wait_for_broker(settings, bootstrap_origin(bootstrap_servers), log)
    ensure_topics(settings)
    metrics = WorkerMetrics(group_labels=settings.metrics_group_labels)
    if settings.metrics_port:
        try:
            start_metrics_server(settings, metrics.registry)
        except ValueError as exc:
            fail(str(exc))
    try:
        Worker(settings, models, metrics).run()
    except Exception:  # its traceback as one log record: in the log format, redacted
        log.critical("worker stopped by an error", exc_info=True)
        raise typer.Exit(1) from None


# -- replay, schemas ---------------------------------------------------------------
@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="recorded events, one JSON object per line")],
    config: ConfigOption = Path("watchkeeper.yaml"),
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("replay.jsonl"),
    batch_size: Annotated[int, typer.Option()] = 1000,
) -> None:
    """Run the monitor core over recorded events (event-time order) with no Kafka."""
    from tqdm import tqdm

    from watchkeeper.events import trigger_cloudevent
    from watchkeeper.monitor.engine import AlertRaised, TriggerRaised
    from watchkeeper.monitor.output_records import dumps, evaluation_record
    from watchkeeper.monitor.runtime import MonitorRuntime, replay_lines

    try:
        runtime = MonitorRuntime(load_models(config, profiles=True))
    except ValueError as exc:  # a profile file that cannot be read or parsed
        fail(f"{config}: {exc}")
    windows = alerts = triggers = labelled = rejected = 0
    reasons: Counter[str] = Counter()
    if not events.is_file():
        fail(f"{events}: no such file (the recorded events to replay, one JSON object a line)")
    size = events.stat().st_size
    with (
        events.open("rb") as source,
        output.open("wb") as sink,
        tqdm(total=size, unit="B", unit_scale=True, desc="replay", file=sys.stderr) as progress,
    ):

        def lines() -> Iterator[bytes]:
            for line in source:
                progress.update(len(line))
                yield line

        for outputs, bad, _ in replay_lines(runtime, lines(), batch_size=batch_size):
            rejected += len(bad)
            reasons.update(r.reason for r in bad)
            for out in outputs:
                record = evaluation_record(out)
                if record is not None:
                    windows += record["kind"] == "window"
                    labelled += record["kind"] == "labels"
                    sink.write(dumps(record) + b"\n")
                elif isinstance(out, AlertRaised):
                    alerts += 1
                    sink.write(dumps({"kind": "alert", **out.alert.model_dump(mode="json")}) + b"\n")
                elif isinstance(out, TriggerRaised):
                    triggers += 1
                    event = trigger_cloudevent(out.trigger, "watchkeeper-replay", out.trigger.data_window.end)
                    sink.write(dumps({"kind": "retraining", **event.model_dump(mode="json")}) + b"\n")
    summary = (
        f"{windows} windows, {labelled} label evaluations, {alerts} alerts, {triggers} retraining triggers, "
        f"{rejected} rejected events"
    )
    late = {m: monitor.late_events for m, monitor in sorted(runtime.monitors.items()) if monitor.late_events}
    summary += f", {sum(late.values())} late events" + (
        f" ({', '.join(f'{m}: {n}' for m, n in late.items())})" if late else ""
    )
    typer.echo(f"{summary} -> {output}", err=True)
    _print_top_reasons(reasons)


def _print_top_reasons(reasons: Counter[str], top: int = 5) -> None:
    """The most frequent rejection reasons, those that differ only in the value shown counted as one
    (``timestamp: …: expected …``, with the most frequent of them as an example)."""
    from watchkeeper.monitor.reasons import reason_shape

    if not reasons:
        return
    shapes: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for reason, count in reasons.most_common():
        shape = reason_shape(reason)
        shapes[shape] += count
        examples.setdefault(shape, []).append(reason)
    typer.echo("top rejection reasons:", err=True)
    shown = shapes.most_common(top)
    for shape, count in shown:
        seen = examples[shape]
        line = seen[0] if len(seen) == 1 else f"{shape}  ({len(seen)} values, e.g. {seen[0]})"
        typer.echo(f"{count:>9}  {line}", err=True)
    if len(shapes) > len(shown):
        others = len(shapes) - len(shown)
        rest = sum(shapes.values()) - sum(c for _, c in shown)
        typer.echo(f"{rest:>9}  ({others} other reason{'s' * (others > 1)})", err=True)


@schemas_app.command("write")
def schemas_write(directory: Annotated[Path, typer.Argument()] = Path("schemas")) -> None:
    """(Re)generate the JSON Schema files from the pydantic models."""
    from watchkeeper.schemas import write_schemas

    for path in write_schemas(directory):
        typer.echo(str(path))


@app.command()
def demo(
    duration: Annotated[float, typer.Option(help="seconds; Ctrl-C stops earlier", envvar="DURATION")] = 180.0,
    rate: Annotated[float, typer.Option(help="prediction events per second")] = 300.0,
    drift_after: Annotated[float, typer.Option(help="seconds before drift is injected")] = 45.0,
    drift_for: Annotated[float, typer.Option(help="seconds of drifted traffic (then it recovers)")] = 75.0,
    metrics_port: Annotated[int, typer.Option()] = 9464,
    bootstrap_servers: Annotated[
        str | None, typer.Option("--bootstrap-servers", help="use this Kafka instead of starting the local broker")
    ] = None,
    kafka_timeout: KafkaTimeoutOption = 15.0,
) -> None:
    """Broker, topics, worker, a demo model's traffic with drift part-way, alerts as they come."""
    from watchkeeper.demo import run_demo

    if bootstrap_servers:
        _check_broker(Settings(bootstrap_servers=bootstrap_servers), bootstrap_servers, kafka_timeout)
    raise typer.Exit(
        run_demo(
            duration=duration,
            rate=rate,
            drift_after=drift_after,
            drift_for=drift_for,
            metrics_port=metrics_port,
            bootstrap_servers=bootstrap_servers,
        )
    )


def main() -> None:
    from watchkeeper.logs import configure_logging

    logging.basicConfig(level=logging.WARNING)
    configure_logging()  # context fields and redaction on every record of every command, librdkafka's included
    app()


if __name__ == "__main__":
    main()
