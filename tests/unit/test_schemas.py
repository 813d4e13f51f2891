"""schemas/ and the field tables of docs/events.md are generated from the contracts: fail when they drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import msgspec
import pytest

from watchkeeper.client import encode_event, outcome_event, prediction_event
from watchkeeper.schemas import DOC_TABLES, render_docs, render_field_table, render_schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
DOCS = ROOT / "docs" / "events.md"


def test_schema_files_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    assert set(on_disk) == set(rendered), "run `watchkeeper schemas write schemas`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `watchkeeper schemas write schemas`"


def test_docs_field_tables_match_the_contracts() -> None:
    text = DOCS.read_text()
    assert render_docs(text) == text, "docs/events.md field tables are stale: run `python -m watchkeeper.schemas`"


def test_docs_have_a_generated_table_for_every_input_contract() -> None:
    text = DOCS.read_text()
    for name, contract in DOC_TABLES.items():
        block = f"<!-- BEGIN GENERATED fields: {name} -->\n{render_field_table(contract)}<!-- END GENERATED -->"
        assert block in text, name
    with pytest.raises(KeyError, match="no generated block"):
        render_docs("no tables here")


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / name).read_text()))


def test_input_schemas_accept_sdk_events_and_reject_what_the_contract_rejects() -> None:
    predictions = _validator("prediction-event.v1.json")
    outcomes = _validator("outcome-event.v1.json")
    event = prediction_event(
        model_id="m",
        features={"x": 1.5, "n": 3, "c": "a", "b": True, "missing": None},
        prediction={"score": 0.25, "label": 1},
        attributes={"sex": "f"},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )
    predictions.validate(json.loads(encode_event(event)))
    outcomes.validate(json.loads(encode_event(outcome_event(prediction_id="p", model_id="m", value=2.5))))
    valid = msgspec.json.decode(encode_event(event))
    for bad in (
        {**valid, "features": {"x": [1]}},
        {**valid, "prediction": {"score": 1.7}},
        {**valid, "event_id": ""},
        {k: v for k, v in valid.items() if k != "features"},
        {**valid, "timestamp": True},
    ):
        assert not predictions.is_valid(bad), bad
