"""schemas/ is generated from the pydantic models; this fails when they drift apart."""

from __future__ import annotations

from pathlib import Path

from watchkeeper.schemas import render_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_schema_files_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMAS.glob("*.json")}
    assert set(on_disk) == set(rendered), "run `watchkeeper schemas write schemas`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `watchkeeper schemas write schemas`"
