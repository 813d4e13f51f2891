"""JSON Schema files of the event contracts, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from watchkeeper.events import Alert, CloudEvent, OutcomeEvent, PredictionEvent, RetrainingTrigger

__all__ = ["SCHEMAS", "render_schemas", "write_schemas"]

SCHEMAS: dict[str, type[BaseModel]] = {
    "prediction-event.v1.json": PredictionEvent,
    "outcome-event.v1.json": OutcomeEvent,
    "alert.v1.json": CloudEvent[Alert],
    "retraining-trigger.v1.json": CloudEvent[RetrainingTrigger],
}


def render_schemas() -> dict[str, str]:
    """File name → schema text (stable formatting, so a diff means a contract change)."""
    out: dict[str, str] = {}
    for name, model in SCHEMAS.items():
        schema: dict[str, Any] = model.model_json_schema(mode="validation")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": name, **schema}
        out[name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        paths.append(path)
    return paths
