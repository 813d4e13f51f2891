"""The local broker starts whatever its random cluster id looks like (one in 64 begins with '-')."""

from __future__ import annotations

from pathlib import Path

import pytest

import watchkeeper.dev.kafka as local_kafka
from tests.integration.conftest import free_port


def test_a_cluster_id_starting_with_a_dash_is_not_taken_for_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_kafka, "_kafka_uuid", lambda: "-" + "A" * 21)
    broker = local_kafka.LocalKafka(port=free_port(), controller_port=free_port(), data_dir=tmp_path)
    try:
        assert broker.up() == "started"
    finally:
        broker.down()
