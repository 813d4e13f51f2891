"""How every ``watchkeeper`` command stops on a mistake it can name: one line, exit code 2.

The line says what is wrong and how to fix it (no traceback); it is red on a terminal, or,
when the command logs JSON (``--log-format json``), one critical JSON log record, so that
log shippers parse every line a worker writes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NoReturn

import typer

from watchkeeper.config import ConfigError, WatchkeeperConfig, load_config, missing_profile
from watchkeeper.logs import json_logging

__all__ = ["fail", "load_models"]


def fail(message: str) -> NoReturn:
    """Say what is wrong and exit with code 2."""
    if json_logging():
        logging.getLogger("watchkeeper").critical(message)
    else:
        typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def load_models(config: Path, profiles: bool = False) -> WatchkeeperConfig:
    """The models file, or :func:`fail` naming what is wrong in it; with ``profiles``, also
    every reference profile file it names must exist (else the command that builds it is said)."""
    try:
        models = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    missing = missing_profile(models, config) if profiles else None
    if missing is not None:
        fail(missing)
    return models
