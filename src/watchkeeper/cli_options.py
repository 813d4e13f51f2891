"""Command-line options that several ``watchkeeper`` commands take, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["BootstrapOption", "KafkaTimeoutOption"]

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers", help="Kafka bootstrap servers [$WATCHKEEPER_BOOTSTRAP_SERVERS or localhost:9092]"
    ),
]
"""``--bootstrap-servers``: over ``WATCHKEEPER_BOOTSTRAP_SERVERS`` (:func:`watchkeeper.broker.settings_for`)."""

KafkaTimeoutOption = Annotated[
    float, typer.Option("--kafka-timeout", min=0.1, help="seconds to wait for a broker to answer before giving up")
]
"""``--kafka-timeout``: how long a command waits for a broker's first answer before its one-line error."""
