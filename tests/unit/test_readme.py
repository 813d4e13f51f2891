"""The README holds together and its commands run as written.

Every command of its ``sh`` blocks is run by a test or listed with the reason it is not
(:mod:`tests.doc_commands`); those that need no broker run here, in a sandbox directory
where ``.venv/bin/watchkeeper`` is this environment's (the broker ones:
``tests/integration/test_readme_commands.py``). Its kcat events fit its models YAML.
"""

from __future__ import annotations

import ast
import json
import re
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

import yaml
from tests import doc_commands as docs
from typer.testing import CliRunner

from watchkeeper.cli import app
from watchkeeper.config import parse_config
from watchkeeper.monitor.parse import parse_outcomes, parse_predictions


def test_every_readme_command_is_run_by_a_test_or_listed_with_a_reason() -> None:
    starts = [*docs.RUN, *docs.NOT_RUN]
    unmatched = [c for c in docs.commands() if sum(c.startswith(start) for start in starts) != 1]
    assert unmatched == [], "add each to tests/doc_commands.py: RUN (with the test that runs it) or NOT_RUN (why)"
    unused = [start for start in starts if not any(c.startswith(start) for c in docs.commands())]
    assert unused == []


def test_readme_kcat_examples_match_its_models_yaml() -> None:
    (models_block,) = [b for b in docs.blocks(docs.README, "yaml") if b.startswith("models:")]
    config = parse_config(yaml.safe_load(models_block), source="README.md")
    (model,) = config.models
    produced = docs.kcat_events()
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


def test_readme_sdk_example_is_the_light_sdk_with_the_yaml_s_model() -> None:
    """The one ``python`` block needs only the light install and sends what the models YAML monitors
    (run against a broker by tests/integration/test_readme_commands.py)."""
    example = docs.sdk_example()
    tree = ast.parse(example)
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"watchkeeper.client"}
    (models_block,) = [b for b in docs.blocks(docs.README, "yaml") if b.startswith("models:")]
    (model,) = parse_config(yaml.safe_load(models_block), source="README.md").models
    literal = (ast.Constant, ast.Dict)
    calls = {
        n.func.attr: {k.arg: ast.literal_eval(k.value) for k in n.keywords if isinstance(k.value, literal)}
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    logged = calls["log_prediction"]
    assert logged["model_id"] == model.model_id == calls["log_outcome"]["model_id"]
    assert set(logged["features"]) == {f.name for f in model.features}
    assert set(model.sensitive_attributes) <= set(logged["attributes"])


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"watchkeeper {version('watchkeeper')}\n"


def test_readme_offline_commands(tmp_path: Path) -> None:
    """`--version`, `profile build`, `replay` and `report` of a replay, as written, one after the other."""
    here = docs.sandbox(tmp_path / "readme")
    docs.readme_files(here)
    env = docs.environment()
    assert "`.venv/bin/watchkeeper --version`" in docs.README.read_text()  # (the Install paragraph's check)
    shown = docs.run(".venv/bin/watchkeeper --version", here, env)
    assert (shown.returncode, shown.stdout) == (0, f"watchkeeper {version('watchkeeper')}\n"), shown.stderr

    built = docs.run(docs.command(".venv/bin/watchkeeper profile build"), here, env)
    assert built.returncode == 0, built.stderr
    assert "profile of credit-risk: 2000 rows, 5 columns -> credit.profile.json" in built.stdout
    assert "using column 'score'" in built.stdout and "using column 'prediction'" in built.stdout  # (no warning)
    assert "warning" not in built.stderr

    replayed = docs.run(docs.command(".venv/bin/watchkeeper replay"), here, env | {"TQDM_DISABLE": "1"})
    assert replayed.returncode == 0, replayed.stderr
    summary = r"6 windows, \d+ label evaluations, \d+ alerts, \d+ retraining triggers, 0 rejected events, 0 late events"
    assert re.fullmatch(summary + r" -> out\.jsonl\n", replayed.stderr), replayed.stderr
    kinds = [json.loads(line)["kind"] for line in (here / "out.jsonl").read_text().splitlines()]
    assert kinds.count("window") == 6 and "labels" in kinds

    report = docs.run(docs.command(".venv/bin/watchkeeper report out.jsonl"), here, env)
    assert report.returncode == 0, report.stderr
    html = (here / "report.html").read_text()
    assert "credit-risk" in html and "Plotly" in html
