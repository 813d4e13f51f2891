"""JSON Schema files and documentation tables, generated from the event contracts.

* ``schemas/*.json``: the input contracts (msgspec Structs) through
  :func:`msgspec.json.schema_components`, the output contracts (pydantic models) through
  ``model_json_schema``; ``watchkeeper schemas write schemas`` writes them.
* The field tables of the input contracts in ``docs/events.md``: between
  ``<!-- BEGIN GENERATED fields: NAME -->`` and ``<!-- END GENERATED -->`` markers, from the
  Structs' fields, types (in the words the worker's rejection reasons use) and
  descriptions. ``python -m watchkeeper.schemas [SCHEMAS_DIR] [DOCS_FILE]`` rewrites both;
  ``tests/unit/test_schemas.py`` fails when either is stale.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
from pydantic import BaseModel

from watchkeeper.events import (
    Alert,
    CloudEvent,
    OutcomeEvent,
    Prediction,
    PredictionEvent,
    RetrainingTrigger,
)
from watchkeeper.monitor.reasons import expected

__all__ = [
    "DOC_TABLES",
    "SCHEMAS",
    "render_docs",
    "render_field_table",
    "render_schemas",
    "write_docs",
    "write_schemas",
]

SCHEMAS: dict[str, Any] = {
    "prediction-event.v1.json": PredictionEvent,
    "outcome-event.v1.json": OutcomeEvent,
    "alert.v1.json": CloudEvent[Alert],
    "retraining-trigger.v1.json": CloudEvent[RetrainingTrigger],
}
DOC_TABLES: dict[str, type[msgspec.Struct]] = {
    "PredictionEvent": PredictionEvent,
    "Prediction": Prediction,
    "OutcomeEvent": OutcomeEvent,
}
_BLOCK = re.compile(r"(<!-- BEGIN GENERATED fields: (\w+) -->\n)(.*?)(<!-- END GENERATED -->)", re.DOTALL)


def _struct_schema(contract: type[msgspec.Struct]) -> dict[str, Any]:
    """The contract's schema at the top level, nested Structs under ``$defs``."""
    _, components = msgspec.json.schema_components([contract], ref_template="#/$defs/{name}")
    schema: dict[str, Any] = components.pop(contract.__name__)
    if components:
        schema["$defs"] = components
    return schema


def render_schemas() -> dict[str, str]:
    """File name → schema text (stable formatting, so a diff means a contract change)."""
    out: dict[str, str] = {}
    for name, contract in SCHEMAS.items():
        if isinstance(contract, type) and issubclass(contract, msgspec.Struct):
            schema = _struct_schema(contract)
        else:
            assert issubclass(contract, BaseModel)
            schema = contract.model_json_schema(mode="validation")
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


# -- docs/events.md field tables ----------------------------------------------------------
def _description(info: mi.Type) -> str:
    while isinstance(info, mi.Metadata):
        text = (info.extra_json_schema or {}).get("description")
        if text:
            return str(text)
        info = info.type
    return ""


def _type_words(annotation: Any, optional: bool) -> str:
    members = info.types if isinstance(info := _unwrap(mi.type_info(annotation)), mi.UnionType) else (info,)
    structs = [_unwrap(m) for m in members if isinstance(_unwrap(m), mi.StructType)]
    if structs:
        return " or ".join(f"`{s.cls.__name__}` object" for s in structs)  # type: ignore[attr-defined]
    return re.sub(r"^an? ", "", expected(annotation, optional=optional))


def _unwrap(info: mi.Type) -> mi.Type:
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def _required(contract: type[msgspec.Struct], field: msgspec.structs.FieldInfo) -> str:
    rule: dict[str, str] = getattr(contract, "exactly_one_of", None) or {}
    if field.encode_name in rule:
        return "one of " + ", ".join(f"`{name}`" for name in rule)
    if field.required:
        return "yes"
    default = field.default
    if default is msgspec.NODEFAULT or default is None or isinstance(default, msgspec.Struct):
        return "no"
    return f"no, default `{msgspec.json.encode(default).decode()}`"


def render_field_table(contract: type[msgspec.Struct]) -> str:
    """The markdown table of a contract's fields: field, type, required, notes."""
    lines = ["| field | type | required | notes |", "|---|---|---|---|"]
    for field in msgspec.structs.fields(contract):
        words = _type_words(field.type, optional=field.default is None)
        notes = _description(mi.type_info(field.type)).replace("|", "\\|")
        lines.append(f"| `{field.encode_name}` | {words} | {_required(contract, field)} | {notes} |")
    return "\n".join(lines) + "\n"


def render_docs(text: str) -> str:
    """``text`` with every generated field table replaced by the current one."""
    seen = set()

    def table(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in DOC_TABLES:
            raise KeyError(f"docs: unknown contract {name!r} in a generated block (one of {sorted(DOC_TABLES)})")
        seen.add(name)
        return match.group(1) + render_field_table(DOC_TABLES[name]) + match.group(4)

    out = _BLOCK.sub(table, text)
    missing = set(DOC_TABLES) - seen
    if missing:
        raise KeyError(f"docs: no generated block for {sorted(missing)}")
    return out


def write_docs(path: Path) -> bool:
    """Rewrite the generated tables of ``path``; True if it changed."""
    text = path.read_text()
    rendered = render_docs(text)
    if rendered != text:
        path.write_text(rendered)
    return rendered != text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m watchkeeper.schemas [SCHEMAS_DIR] [DOCS_FILE]``: regenerate both."""
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0] if args else "schemas")
    docs = Path(args[1] if len(args) > 1 else "docs/events.md")
    for path in write_schemas(directory):
        print(path)
    print(f"{docs} {'updated' if write_docs(docs) else 'up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
