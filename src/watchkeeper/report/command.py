"""``watchkeeper report``: an HTML report a person reads, from replay output files or the live topics.

Errors (a record that does not fit, a missing file or topic, a bad option) are one line
on stderr naming the file or topic, the field and what was expected, and exit code 2.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from watchkeeper.command_errors import fail, load_models
from watchkeeper.config import ModelConfig, missing_profile

if TYPE_CHECKING:  # the report's modules (numpy, plotly) are imported when the command runs, not with the CLI
    import numpy as np

    from watchkeeper.monitor.profile import ReferenceProfile
    from watchkeeper.report.records import RecordError, ReportInput

__all__ = ["report"]


def _warn(error: RecordError) -> None:
    typer.echo(f"skipped: {error}", err=True)


def _from_files(paths: list[Path], models: list[str]) -> ReportInput:
    from watchkeeper.report.records import ReportInput, group_records, read_replay_output

    records = (pair for path in paths for pair in read_replay_output(path))
    return ReportInput(", ".join(str(p) for p in paths), group_records(records, models))


def _from_topics(bootstrap_servers: str | None, timeout: float, models: list[str]) -> ReportInput:
    from watchkeeper.broker import BrokerUnreachable, bootstrap_origin, check_broker, settings_for
    from watchkeeper.report.records import ReportInput, group_records
    from watchkeeper.report.topics import read_topics

    settings = settings_for(bootstrap_servers)
    try:
        check_broker(settings, bootstrap_origin(bootstrap_servers), timeout)
    except BrokerUnreachable as exc:
        fail(str(exc))
    records, profiles = read_topics(settings, timeout, _warn)
    source = f"topics {settings.topic_windows}, {settings.topic_alerts}, {settings.topic_retraining} on "
    source += settings.bootstrap_servers
    return ReportInput(source, group_records(records, models, skip=_warn), profiles)


def _profiles(
    data: ReportInput, configs: dict[str, ModelConfig], profile_files: list[Path]
) -> dict[str, tuple[ReferenceProfile, str]]:
    """Each model's reference profile and where it came from: --profile, else the config, else the topic."""
    from watchkeeper.report.histograms import read_profile

    chosen = {model_id: (profile, "references topic") for model_id, profile in data.profiles.items()}
    for model_id, config in configs.items():
        path = config.reference.profile
        if path is not None and model_id in data.models:
            chosen[model_id] = (read_profile(path), f"profile {path.name} (from --config)")
    for path in profile_files:
        profile = read_profile(path)
        chosen[profile.model_id] = (profile, f"profile {path.name}")
    return chosen


def _window_time(text: str) -> float:
    """``--window``'s time (ISO 8601; UTC unless it names an offset) in epoch seconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--window {text!r}: expected a time in the window, e.g. 2026-11-23 or 2026-11-23T12:00:00Z")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _window_counts(
    data: ReportInput, profiles: dict[str, tuple[ReferenceProfile, str]], events: Path, at: float | None
) -> dict[str, dict[str, np.ndarray]]:
    """Per model, the counts of its histogram window's drifted columns, recounted from the events file."""
    from watchkeeper.report.histograms import WindowRequest, window_counts
    from watchkeeper.report.sections import chosen_window, histogram_columns

    requests = []
    for model_id, (reference, _) in profiles.items():
        window = chosen_window(data.models[model_id], at) if model_id in data.models else None
        columns = histogram_columns(window, reference, every=at is not None) if window is not None else []
        if window is not None and columns:
            requests.append(WindowRequest(model_id, window.window_start, window.window_end, reference, tuple(columns)))
    return window_counts(events, requests) if requests else {}


def report(
    records: Annotated[
        list[Path] | None, typer.Argument(help="replay output files (watchkeeper replay --output), JSON lines")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
    from_topics: Annotated[
        bool, typer.Option("--from-topics", help="read the windows, alerts, retraining and references topics instead")
    ] = False,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="models YAML: drawn thresholds and reference profiles")
    ] = None,
    profile: Annotated[
        list[Path] | None, typer.Option("--profile", help="a reference profile file (repeatable)")
    ] = None,
    events: Annotated[
        Path | None,
        typer.Option("--events", help="the replayed events: the histograms' window side is counted from them"),
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="only this model_id (repeatable)")] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="draw the histograms of the window holding this time (ISO 8601, UTC), e.g. 2026-11-23T12:00 "
            "[default: the latest window with drift]",
        ),
    ] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option("--bootstrap-servers", help="with --from-topics [$WATCHKEEPER_BOOTSTRAP_SERVERS]")
    ] = None,
    kafka_timeout: Annotated[
        float, typer.Option("--kafka-timeout", min=0.1, help="seconds to wait for the broker, and for records")
    ] = 15.0,
    title: Annotated[str, typer.Option(help="the page's title")] = "watchkeeper report",
) -> None:
    """Write a self-contained HTML report (alerts, drift, histograms, accuracy, fairness, retraining) per model."""
    from watchkeeper.report.html import page
    from watchkeeper.report.records import RecordError
    from watchkeeper.report.sections import ModelContext, model_section

    started = time.monotonic()
    if bool(records) == from_topics:
        fail("report: expected replay output files or --from-topics (one of the two)")
    if events is not None and not events.is_file():
        fail(f"--events {events}: no such file (the events file that was replayed)")
    models = model or []
    window_at = _window_time(window) if window is not None else None
    loaded = load_models(config) if config is not None else None
    configs = {m.model_id: m for m in loaded.models} if loaded is not None else {}
    try:
        data = (
            _from_topics(bootstrap_servers, kafka_timeout, models)
            if from_topics
            else _from_files(records or [], models)
        )
        missing = sorted(set(models) - set(data.models))
        if missing:
            raise RecordError(f"--model {', '.join(missing)}: no records in {data.source}")
        if not data.models:
            raise RecordError(f"{data.source}: no window, labels, alert or retraining records")
        if loaded is not None and (missing_file := missing_profile(loaded, str(config), data.models)) is not None:
            raise RecordError(missing_file)
        profiles = _profiles(data, configs, profile or [])
        counts = _window_counts(data, profiles, events, window_at) if events is not None else {}
    except RecordError as exc:
        fail(str(exc))
    sections = [
        model_section(
            records_of_model,
            ModelContext(
                config=configs.get(model_id),
                profile=profiles[model_id][0] if model_id in profiles else None,
                profile_origin=profiles[model_id][1] if model_id in profiles else "",
                window_counts=counts.get(model_id, {}) if events is not None else None,
                window_at=window_at,
            ),
        )
        for model_id, records_of_model in data.models.items()
    ]
    html = page(title, f"from {data.source}", sections)
    try:
        output.write_text(html, encoding="utf-8")
    except OSError as exc:
        fail(f"--output {output}: cannot write ({exc.strerror})")
    seconds = time.monotonic() - started
    typer.echo(
        f"report of {len(sections)} model(s) -> {output} ({len(html.encode()) / 1e6:.1f} MB, {seconds:.1f} s)", err=True
    )
