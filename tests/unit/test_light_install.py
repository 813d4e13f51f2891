"""The light install for model services: `pip install watchkeeper` gives the producer SDK only.

The slow test installs this source tree into a fresh virtualenv from PyPI (pip's cache
helps) and checks what came with it and what the SDK imports; the others check the same
import in this environment, quickly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from watchkeeper.client import light_settings
from watchkeeper.config import Settings

ROOT = Path(__file__).resolve().parents[2]
LIGHT = {"watchkeeper", "confluent-kafka", "msgspec"}  # every distribution the light install may bring
HEAVY = ("numpy", "scipy", "pydantic", "pydantic_settings", "faust", "river", "rocksdict", "yaml", "typer", "plotly")

SNIPPET = f"""
import sys
from watchkeeper.client import WatchkeeperClient, encode_event, outcome_event, prediction_event

event = prediction_event(model_id="credit-risk", features={{"income": 51000, "region": "north"}},
                         prediction={{"score": 0.42, "label": 0}}, event_id="p1")
assert encode_event(event).startswith(b'{{"event_id":"p1","prediction_id":"p1"'), encode_event(event)
encode_event(outcome_event(prediction_id="p1", model_id="credit-risk", label=1))
print("events:", sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
client = WatchkeeperClient("127.0.0.1:9", producer_config={{"log_level": 0}})  # (no broker needed to build it)
assert client.topic_predictions == "watchkeeper.predictions", client.topic_predictions
print("client:", sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r})))
"""


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, env=env)


def test_base_dependencies_are_the_light_ones() -> None:
    """What `pip install watchkeeper` brings, as declared (the slow test installs it for real)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dependency.split(">")[0].split("=")[0].split("<")[0].strip() for dependency in project["dependencies"]}
    assert names == LIGHT - {"watchkeeper"}
    assert "watchkeeper[server]" in project["optional-dependencies"]["test"]  # `make install` gets the service


def _without_settings() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("WATCHKEEPER_")}


def test_the_sdk_imports_nothing_heavy_here_either() -> None:
    """Even with the service installed, importing the SDK and building events does not import it
    (the client then reads its settings with the service's :class:`Settings`)."""
    result = _run(sys.executable, "-c", SNIPPET, env=_without_settings())
    assert result.returncode == 0, result.stderr
    assert "events: []" in result.stdout.splitlines(), result.stdout


def test_light_settings_default_as_the_service_settings_do() -> None:
    default = {name: field.default for name, field in Settings.model_fields.items()}
    config, predictions, outcomes = light_settings({})
    assert config == {"bootstrap.servers": default["bootstrap_servers"]}
    assert (predictions, outcomes) == (default["topic_predictions"], default["topic_outcomes"])
    config, predictions, _ = light_settings(
        {"WATCHKEEPER_BOOTSTRAP_SERVERS": "kafka:9093", "watchkeeper_topic_predictions": "p"}
    )
    assert (config, predictions) == ({"bootstrap.servers": "kafka:9093"}, "p")


def test_light_settings_refuse_security_variables_they_cannot_apply() -> None:
    """Ignoring WATCHKEEPER_SECURITY_PROTOCOL=SSL would send in plain text: refused, naming the fix."""
    refused = r"WATCHKEEPER_SECURITY_PROTOCOL, WATCHKEEPER_SASL_PASSWORD: .*producer_config"
    with pytest.raises(ValueError, match=refused):
        light_settings({"WATCHKEEPER_SECURITY_PROTOCOL": "SASL_SSL", "WATCHKEEPER_SASL_PASSWORD": "hunter2"})


@pytest.mark.slow
def test_light_install_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """`pip install <source>` into a new virtualenv: only the SDK's dependencies come, the SDK works
    without the service's modules, and the `watchkeeper` command says how to install the service.
    """
    source = tmp_path / "source"  # a copy, so that building the wheel leaves the work tree alone
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(ROOT / "src", source / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    venv = tmp_path / "venv"
    created = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    # this environment's pip installs into the new one (no pip of its own there: one distribution fewer)
    installed = _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", source)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    names = "import importlib.metadata as m; print(*sorted(d.metadata['Name'] for d in m.distributions()))"
    listing = _run(python, "-c", names)
    assert set(listing.stdout.split()) == LIGHT, listing.stdout + listing.stderr

    environment = _without_settings()
    result = _run(python, "-c", SNIPPET, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["events: []", "client: []"], result.stdout

    shown = _run(venv / "bin" / "watchkeeper", "--version", env=environment)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, f"watchkeeper {version('watchkeeper')}\n", "")
    command = _run(venv / "bin" / "watchkeeper", "worker", env=environment)
    assert command.returncode == 2
    assert "pip install 'watchkeeper[server]'" in command.stderr, command.stderr
    assert "Traceback" not in command.stderr
