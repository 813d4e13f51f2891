"""docs/events.md's examples run as written and print what the page says they print.

The `schemas write` transcript; the drift replay example (its generator, the config it
writes, the replay's summary and rejection reasons, and the Python snippet that printed the
page's alert CloudEvent); the outcomes example (generator, config, replay summary and the
join counts). Each runs in an empty sandbox directory, as the page says.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from tests import doc_commands as docs

DOC = docs.EVENTS_DOC


def _script(directory: Path, name: str, marker: str) -> str:
    """The ``python`` block after ``marker``, saved as ``name`` (the page's file name for it)."""
    (directory / name).write_text(docs.after(DOC, marker, "python"))
    return name


def _same_config(directory: Path, marker: str) -> None:
    """The config the generator wrote is the ``yaml`` block the page shows after ``marker``."""
    written = yaml.safe_load((directory / "watchkeeper.yaml").read_text())
    assert written == yaml.safe_load(docs.after(DOC, marker, "yaml"))


def _transcript(directory: Path, marker: str, stream: str = "stdout") -> None:
    """Run the ``$ command`` block after ``marker``; its ``stream`` is the output the page shows."""
    command, expected = docs.transcript(docs.after(DOC, marker))
    result = docs.run(command, directory, docs.environment())
    assert result.returncode == 0, result.stderr
    assert getattr(result, stream).splitlines() == expected, command


def test_schemas_write_transcript(tmp_path: Path) -> None:
    here = docs.sandbox(tmp_path / "schemas")
    _transcript(here, "Regenerate them after changing a contract")
    for name in (here / "schemas").iterdir():
        assert name.read_text() == (docs.ROOT / "schemas" / name.name).read_text()


def test_drift_replay_example(tmp_path: Path) -> None:
    here = docs.sandbox(tmp_path / "drift")
    marker = "Example. The events come from the demo model"
    generated = docs.run(f".venv/bin/python {_script(here, 'gen.py', marker)}", here, docs.environment())
    assert generated.returncode == 0, generated.stderr
    assert len((here / "events.jsonl").read_text().splitlines()) == 7_202  # ("events.jsonl (7,202 lines)")
    _same_config(here, "It writes `demo-credit.profile.json`, `events.jsonl` (7,202 lines)")
    _transcript(here, "It writes `demo-credit.profile.json`, `events.jsonl` (7,202 lines)", stream="stderr")

    reasons = docs.after(DOC, "Reasons produced by `monitor/reasons.py` for the two bad lines").splitlines()
    snippet = _script(here, "alert.py", "The same in Python, without the CLI")
    printed = docs.run(f".venv/bin/python {snippet}", here, docs.environment())
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    rejected = [f"REJECTED Rejected(index={i}, reason={r!r})" for i, r in zip((200, 201), reasons, strict=True)]
    assert [line for line in lines if line.startswith("REJECTED")] == rejected
    text = "\n".join(line for line in lines if not line.startswith("REJECTED"))
    events = [json.loads(chunk) for chunk in re.split(r"(?m)^(?=\{)", text) if chunk.strip()]  # (indented JSON)
    shown = json.loads(docs.after(DOC, "A real alert, produced by running the pure core", "json"))
    assert shown in events  # the page's CloudEvent is one the snippet prints


def test_outcomes_replay_example(tmp_path: Path) -> None:
    here = docs.sandbox(tmp_path / "outcomes")
    section = "### Example with outcomes"
    _script(here, "gen.py", section)
    _transcript(here, section)  # `$ .venv/bin/python gen.py`
    _same_config(here, section)
    _transcript(here, "It writes this config:", stream="stderr")  # the replay
    _script(here, "join_counts.py", "Counting the")
    _transcript(here, "Counting the")
