"""``watchkeeper profile build``: a reference profile from a CSV of training or reference data.

The features and their types come from the models file (``--config``) or, without one, from
the CSV (a column whose every value is a number is numeric); the model's score and predicted
label from ``--score-column`` / ``--label-column`` or from columns under their usual names.
Mistakes (a missing column, a numeric column holding text) stop it with one line naming the
column and the fix; text among a numeric column's values is a warning.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from watchkeeper.command_errors import fail, load_models

__all__ = ["profile_app", "profile_build"]

profile_app = typer.Typer(help="Reference profiles.")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            return list(reader.fieldnames or []), list(reader)
    except OSError as exc:
        fail(f"{path}: cannot read the CSV ({exc.strerror})")
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{path}: not a CSV file with a header ({exc})")


def _numeric_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric_column(data: Path, name: str, what: str, values: list[str], fix: str) -> list[float | None]:
    """The numbers of a CSV column; a one-line error naming it and a value when none is a finite number,
    a warning naming it, how many and a value when some are text."""
    parsed = [_numeric_or_none(v) for v in values]
    if not any(x is not None and math.isfinite(x) for x in parsed):
        example = next((v for v in values if v.strip()), None)
        found = f"(e.g. {example!r})" if example is not None else "(it is empty)"
        fail(f"{data}: {what} has no numeric value {found}; {fix}")
    text = [v for v, x in zip(values, parsed, strict=True) if x is None and v.strip()]
    if text:
        typer.echo(
            f"warning: {data}: {name}: {len(text)} of {len(values)} values are not numbers (e.g. {text[0]!r}); "
            "the profile leaves them out, as it does empty ones",
            err=True,
        )
    return parsed


_USUAL_SCORE_COLUMNS = ("score", "prediction_score", "proba", "probability", "y_score")
_USUAL_LABEL_COLUMNS = ("prediction", "prediction_label", "predicted_label", "y_pred")


def _prediction_columns(
    data: Path, header: list[str], features: set[str], score: str | None, label: str | None
) -> tuple[str | None, str | None]:
    """The score and label columns: as given, else columns under a usual name (said so), else None.

    ``monitor_prediction`` is on by default, but without these columns in the profile
    ``prediction.score`` / ``prediction.label`` would silently never be monitored.
    """
    given = score is not None or label is not None
    if not given:
        score = next((c for c in _USUAL_SCORE_COLUMNS if c in header and c not in features), None)
        label = next((c for c in _USUAL_LABEL_COLUMNS if c in header and c not in features), None)
        for flag, column in (("--score-column", score), ("--label-column", label)):
            if column is not None:
                typer.echo(f"{data}: using column {column!r} as the prediction's (pass {flag} to choose another)")
    return score, label


@profile_app.command("build")
def profile_build(
    data: Annotated[Path, typer.Argument(help="training / reference data, CSV with a header")],
    model: Annotated[str, typer.Option("--model", "-m", help="model_id")],
    output: Annotated[Path, typer.Option("--output", "-o")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="take features and types from here")] = None,
    score_column: Annotated[str | None, typer.Option(help="column holding the model's score")] = None,
    label_column: Annotated[str | None, typer.Option(help="column holding the predicted label")] = None,
    bins: Annotated[int, typer.Option(help="coarse bins per numeric column")] = 10,
    sequential: Annotated[bool, typer.Option(help="calibrate a CUSUM per column (takes ~1 s a column)")] = True,
    arl_events: Annotated[float, typer.Option(help="events between model-level CUSUM false alarms")] = 2e6,
    multivariate: Annotated[bool, typer.Option(help="add the PCA reconstruction-error column")] = False,
) -> None:
    """Build a reference profile (quantile bins, category frequencies, row count) from CSV."""
    from watchkeeper.monitor.profile import PREDICTION_LABEL, PREDICTION_SCORE, ReferenceProfile

    header, rows = _read_csv(data)
    for flag, column in (("--score-column", score_column), ("--label-column", label_column)):
        if column is not None and column not in header:
            fail(f"{data}: {flag} {column!r} is not a column; the CSV's columns: {header}")
    model_config = load_models(config).model(model) if config is not None else None
    if config is not None and model_config is None:
        fail(f"--model: {model!r}: not in {config}")
    features = {f.name for f in model_config.features} if model_config is not None else set()
    score_column, label_column = _prediction_columns(data, header, features, score_column, label_column)
    kinds: dict[str, str]
    caps: dict[str, int] = {}
    bucket_size = 50
    if config is not None:
        assert model_config is not None  # (checked above)
        kinds = {f.name: f.type for f in model_config.features}
        caps = {f.name: f.max_categories for f in model_config.features}
        bins = model_config.drift.bins
        sequential = sequential and model_config.drift.sequential
        arl_events = model_config.drift.sequential_arl_events
        bucket_size = model_config.drift.bucket_size
        multivariate = multivariate or model_config.drift.multivariate
        missing = [name for name in kinds if name not in header]
        if missing:
            fail(f"{data}: columns {missing} of model {model!r} are not in the CSV header {header}")
    else:
        kinds = {}
        for name in header:
            if name in (score_column, label_column):
                continue
            values = [r[name] for r in rows if r[name] != ""]
            numeric = values and all(_numeric_or_none(v) is not None for v in values)
            kinds[name] = "numeric" if numeric else "categorical"
    columns: dict[str, tuple[str, list[Any]]] = {}
    for name, kind in kinds.items():
        raw = [r[name] for r in rows]
        if kind == "numeric":
            what = f"column {name!r} is numeric in the models config but"
            fix = "fix it or declare the feature categorical"
            columns[name] = (kind, _numeric_column(data, f"column {name!r}", what, raw, fix))
        else:
            columns[name] = (kind, [v or None for v in raw])
    if score_column:
        scores = [r[score_column] for r in rows]
        fix = "the score is a number (use --label-column for a predicted label)"
        flag = f"--score-column {score_column!r}"
        columns[PREDICTION_SCORE] = ("numeric", _numeric_column(data, flag, flag, scores, fix))
    if label_column:
        columns[PREDICTION_LABEL] = ("categorical", [r[label_column] or None for r in rows])
    profile = ReferenceProfile.build(
        model,
        columns,
        bins=bins,
        max_categories=caps,
        metadata={"data": data.name},
        sequential_arl_events=arl_events if sequential else None,
        bucket_size=bucket_size,
        multivariate=multivariate,
    )
    output.write_bytes(orjson.dumps(profile.to_dict(), option=orjson.OPT_INDENT_2))
    typer.echo(f"profile of {model}: {profile.n_rows} rows, {len(profile.columns)} columns -> {output}")
    if score_column is None and label_column is None:
        typer.echo(
            f"warning: {data}: no --score-column or --label-column (and no column named "
            f"{' / '.join(_USUAL_SCORE_COLUMNS[:2])} or {' / '.join(_USUAL_LABEL_COLUMNS[:2])}): "
            "prediction.score and prediction.label will not be monitored",
            err=True,
        )
