"""The command examples of README.md and docs/events.md, for the tests that run them as written.

Every command of the README's ``sh`` blocks is either run by a test (:data:`RUN`, which
names the test) or listed with the reason it is not (:data:`NOT_RUN`), and its one ``python``
block (the SDK example) is run too (:data:`SDK_EXAMPLE_RUN_BY`);
``tests/unit/test_readme.py`` fails on a command that is in neither. Commands run with
``bash`` in a sandbox directory whose ``.venv`` links to this environment, so that
``.venv/bin/watchkeeper ...`` is the README's text, unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
EVENTS_DOC = ROOT / "docs" / "events.md"

RUN = {
    ".venv/bin/watchkeeper topics create": "tests/integration/test_readme_commands.py",
    ".venv/bin/watchkeeper profile build": "tests/unit/test_readme.py::test_readme_offline_commands",
    ".venv/bin/watchkeeper worker": "tests/integration/test_readme_commands.py",
    ".venv/bin/watchkeeper replay": "tests/unit/test_readme.py::test_readme_offline_commands",
    "echo '{": "tests/integration/test_readme_commands.py (kcat: the Makefile's system-deps installs it)",
    "kcat -C": "tests/integration/test_readme_commands.py (kcat: the Makefile's system-deps installs it)",
    ".venv/bin/watchkeeper alerts tail": "tests/integration/test_readme_commands.py",
    ".venv/bin/watchkeeper deadletter tail": "tests/integration/test_readme_commands.py",
    ".venv/bin/watchkeeper report out.jsonl": "tests/unit/test_readme.py::test_readme_offline_commands",
    ".venv/bin/watchkeeper report --from-topics": "tests/integration/test_readme_commands.py",
}
"""README command (by its start) → the test that runs it."""

NOT_RUN = {
    "make demo": "runs a broker, a worker and traffic for DURATION (180) s; its parts (broker, topics, worker, "
    "SDK, alerts) run in tests/integration, the command's argument handling in tests/unit/test_cli_errors.py",
    "make test": "this test suite",
    "make install": "creates the .venv these tests run in; `pip install '.[server]'` is what it does for the "
    "service, and the light install is tested by tests/unit/test_light_install.py",
    ".venv/bin/watchkeeper dev kafka up": "starts a second broker on localhost:9092; the tests' broker is started "
    "by the same LocalKafka.up() (tests/conftest.py)",
    "SLACK_WEBHOOK_URL=": "posts to Slack until stopped; `notify slack` is driven against a fake Slack on the test "
    "broker by tests/integration/notify/test_slack_kafka.py",
}
"""README command (by its start) → why no test runs it."""


SDK_EXAMPLE_RUN_BY = "tests/integration/test_readme_commands.py"
"""The test that runs the README's one ``python`` block, the producer SDK example, as written."""


def sdk_example() -> str:
    """The README's one ``python`` block: the producer SDK example."""
    (block,) = blocks(README, "python")
    return block


def fenced(path: Path) -> list[tuple[str, str, int]]:
    """(language, body, offset) of every fenced code block of a Markdown file, in order."""
    pattern = re.compile(r"^```(\w*)\n(.*?)^```\n", flags=re.DOTALL | re.MULTILINE)
    return [(m.group(1), m.group(2), m.start()) for m in pattern.finditer(path.read_text())]


def blocks(path: Path, language: str) -> list[str]:
    """The fenced code blocks of a language in a Markdown file, in order."""
    return [body for lang, body, _ in fenced(path) if lang == language]


def commands(path: Path = README) -> list[str]:
    """Every command of the ``sh`` blocks: continuation lines joined, trailing comments dropped."""
    found = []
    for block in blocks(path, "sh"):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command:
                found.append(command)
    return found


def command(start: str, path: Path = README) -> str:
    """The one command of the README that begins with ``start``."""
    (found,) = [c for c in commands(path) if c.startswith(start)]
    return found


def after(path: Path, marker: str, language: str = "") -> str:
    """The first ``language`` block (``""``: a plain one) after the first occurrence of ``marker``."""
    where = path.read_text().index(marker)
    return next(body for lang, body, start in fenced(path) if lang == language and start > where)


def transcript(block: str) -> tuple[str, list[str]]:
    """(command, expected output lines) of a ``$ command`` block."""
    first, *output = block.rstrip("\n").splitlines()
    assert first.startswith("$ "), first
    return first[2:], output


def sandbox(directory: Path) -> Path:
    """A directory where ``.venv/bin/...`` is this environment (the one running the tests)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".venv").symlink_to(Path(sys.prefix))
    return directory


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without WATCHKEEPER_* settings, plus ``settings``; the sandbox's
    ``.venv/bin`` first on PATH (the docs also write plain ``watchkeeper``)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHKEEPER_")}
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env | settings


def run(line: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command line as written, by bash in ``cwd``."""
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def kcat_events() -> list[tuple[dict[str, Any], list[str]]]:
    """(event, kcat arguments) of every ``echo '<json>' | kcat -P ...`` example."""
    found = []
    for line in commands():
        match = re.match(r"echo '(?P<json>\{.*\})'\s*\|\s*(?P<kcat>kcat -P .*)", line)
        if match:
            found.append((json.loads(match["json"]), shlex.split(match["kcat"])))
    return found


def readme_files(directory: Path, seed: int = 0) -> None:
    """The files the README's commands read: its models YAML, a training CSV and a recorded stream.

    ``train.csv`` has the configured features and the model's outputs under their usual
    names (``score``, ``prediction``); ``events.jsonl`` is 30 minutes of the README's kcat
    prediction (one a second, its values varied) with an outcome 10 minutes after each.
    """
    (models,) = [b for b in blocks(README, "yaml") if b.startswith("models:")]
    (directory / "watchkeeper.yaml").write_text(models)
    rng = np.random.default_rng(seed)
    n = 2000
    income, age = rng.lognormal(10.8, 0.4, n).round(2), rng.normal(42, 12, n).round(1)
    region = rng.choice(["north", "south", "east", "west"], n)
    score = 1 / (1 + np.exp(-(income - 50_000) / 20_000))
    rows = ["income,age,region,score,prediction"]
    rows += [f"{i},{a},{r},{s:.4f},{int(s >= 0.5)}" for i, a, r, s in zip(income, age, region, score, strict=True)]
    (directory / "train.csv").write_text("\n".join(rows) + "\n")
    (prediction, _), (outcome, _) = kcat_events()
    start = 1_795_449_600.0  # 2026-11-23T16:00:00Z, the README's prediction
    lines = []
    for i in range(1800):
        income_i, score_i = float(rng.lognormal(10.8, 0.4)), float(rng.uniform())
        features = {**prediction["features"], "income": round(income_i, 2), "age": round(float(rng.normal(42, 12)), 1)}
        event = {**prediction, "event_id": f"p{i}", "timestamp": start + i, "features": features}
        event["prediction"] = {"score": round(score_i, 4), "label": int(score_i >= 0.5)}
        lines.append((start + i, event))
        lines.append((start + i + 600, {**outcome, "prediction_id": f"p{i}", "timestamp": start + i + 600}))
    lines.sort(key=lambda item: item[0])
    (directory / "events.jsonl").write_text("".join(json.dumps(event) + "\n" for _, event in lines))
