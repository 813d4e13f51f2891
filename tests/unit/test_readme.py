"""The README's first run holds together: its kcat events fit its models YAML, and --version works."""

from __future__ import annotations

import json
import re
import shlex
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import parse_config
from watchkeeper.monitor.parse import parse_outcomes, parse_predictions

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)


def _kcat_produces() -> list[tuple[dict[str, Any], list[str]]]:
    """(event, kcat arguments) of every ``echo '<json>' | kcat -P ...`` example."""
    found = []
    for block in _blocks("sh"):
        for command in block.replace("\\\n", " ").splitlines():
            match = re.match(r"\s*echo '(?P<json>\{.*\})'\s*\|\s*(?P<kcat>kcat -P [^#]*)", command)
            if match:
                found.append((json.loads(match["json"]), shlex.split(match["kcat"])))
    return found


def test_readme_kcat_examples_match_its_models_yaml() -> None:
    (models_block,) = [b for b in _blocks("yaml") if b.startswith("models:")]
    config = parse_config(yaml.safe_load(models_block), source="README.md")
    (model,) = config.models
    produced = _kcat_produces()
    topics = [args[args.index("-t") + 1] for _, args in produced]
    assert topics == ["watchkeeper.predictions", "watchkeeper.outcomes"]
    (prediction, _), (outcome, _) = produced

    assert prediction["model_id"] == model.model_id == outcome["model_id"]
    assert set(prediction["features"]) == {f.name for f in model.features}
    assert set(model.sensitive_attributes) <= set(prediction["attributes"])
    assert outcome["prediction_id"] == prediction.get("prediction_id", prediction["event_id"])
    for _, args in produced:
        options = list(pairwise(args))
        assert ("-X", "partitioner=murmur2_random") in options, args  # the outcome join needs murmur2
        assert ("-k", outcome["prediction_id"]) in options, args

    # and the worker's own validators accept them
    predictions = parse_predictions([json.dumps(prediction).encode()], {model.model_id})
    outcomes = parse_outcomes([json.dumps(outcome).encode()], {model.model_id})
    assert predictions.rejected == [] and outcomes.rejected == []


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"watchkeeper {version('watchkeeper')}\n"
