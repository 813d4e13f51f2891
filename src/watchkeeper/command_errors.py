"""How every ``watchkeeper`` command stops on a mistake it can name: one line, exit code 2.

The line says what is wrong and how to fix it (no traceback); it is red on a terminal, or,
when the command logs JSON (``--log-format json``), one critical JSON log record, so that
log shippers parse every line a worker writes.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import typer

from watchkeeper.logs import json_logging

__all__ = ["fail"]


def fail(message: str) -> NoReturn:
    """Say what is wrong and exit with code 2."""
    if json_logging():
        logging.getLogger("watchkeeper").critical(message)
    else:
        typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(2)
