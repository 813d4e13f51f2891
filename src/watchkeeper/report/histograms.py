"""Reference versus window histograms of a column, on the bins the drift tests use.

Window records carry statistics, not histograms. The reference side comes from the
model's reference profile (a profile file, the models config, or the references topic);
the window side is recounted from the recorded events (``report --events``) with the
same code stage 1 uses to read columns, on the profile's coarse bins (numeric) or
vocabulary (categorical), so the bars are the ones PSI compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from watchkeeper.monitor.columns import as_numbers, extract_columns
from watchkeeper.monitor.profile import CategoricalProfile, ColumnProfile, NumericProfile, ReferenceProfile
from watchkeeper.monitor.reasons import parse_timestamp
from watchkeeper.report.records import RecordError
from watchkeeper.stats.categorical import OTHER
from watchkeeper.stats.histogram import bin_counts

__all__ = ["Histogram", "WindowRequest", "histogram", "read_profile", "window_counts"]

_CHUNK = 5000  # events read into columns at a time


@dataclass(frozen=True)
class WindowRequest:
    """The columns of one model's window whose values are to be counted from the events."""

    model_id: str
    start: float
    end: float
    profile: ReferenceProfile
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Histogram:
    """Shares per bin of the reference and (when known) of the window; bins empty on both sides left out."""

    column: str
    bins: list[str]
    reference: list[float]
    window: list[float] | None
    window_n: int


def read_profile(path: Path) -> ReferenceProfile:
    """A profile file (``watchkeeper profile build``), or a :class:`RecordError` naming it."""
    try:
        return ReferenceProfile.from_dict(orjson.loads(path.read_bytes()))
    except OSError as exc:
        raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"{path}: expected a profile JSON ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{path}: expected a watchkeeper.profile/v1 profile ({exc})") from None


def _number(x: float) -> str:
    return f"{x:.3g}"


def _coarse_labels(profile: NumericProfile) -> list[str]:
    """``< b``, ``[a, b)``, ..., ``>= a`` for the coarse bins (underflow and overflow join the ends)."""
    edges, groups = profile.edges, profile.coarse_index
    labels = []
    for group in range(profile.n_coarse):
        fine = np.flatnonzero(groups == group)
        low = edges[fine[0] - 1] if fine[0] >= 1 else -math.inf
        high = edges[fine[-1]] if fine[-1] < edges.size else math.inf
        if math.isinf(low) and math.isinf(high):
            labels.append("all values")
        elif math.isinf(low):
            labels.append(f"< {_number(high)}")
        elif math.isinf(high):
            labels.append(f">= {_number(low)}")
        elif _number(low) == _number(high):  # the one value of a column constant in the reference
            labels.append(f"= {_number(low)}")
        else:
            labels.append(f"[{_number(low)}, {_number(high)})")
    return labels


def _category_labels(profile: CategoricalProfile) -> list[str]:
    vocabulary = ["(other)" if v == OTHER else v for v in profile.encoder.vocabulary]
    return [*vocabulary, "(unseen)", "(missing)"]


def _layout(column: ColumnProfile, counts: np.ndarray) -> np.ndarray:
    """Counts on the bins PSI uses: coarse bins of a numeric column, categories of a categorical one."""
    return column.coarse(counts) if isinstance(column, NumericProfile) else counts


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.zeros(counts.size)


def histogram(column_name: str, column: ColumnProfile, window_counts: np.ndarray | None) -> Histogram:
    """The reference's (and the window's) shares per bin; ``window_counts`` in the profile's counts layout."""
    labels = _coarse_labels(column) if isinstance(column, NumericProfile) else _category_labels(column)
    reference = _layout(column, column.counts)
    window = _layout(column, window_counts) if window_counts is not None else np.zeros(reference.size, np.int64)
    keep = (reference > 0) | (window > 0)
    return Histogram(
        column=column_name,
        bins=[label for label, kept in zip(labels, keep, strict=True) if kept],
        reference=_shares(reference)[keep].tolist(),
        window=_shares(window)[keep].tolist() if window_counts is not None else None,
        window_n=int(window.sum()),
    )


def _count(request: WindowRequest, events: list[dict[str, Any]], totals: dict[str, np.ndarray]) -> None:
    matrix = extract_columns(events, list(request.columns))
    for j, name in enumerate(request.columns):
        column = request.profile.columns[name]
        values = matrix[:, j].tolist()
        if isinstance(column, NumericProfile):
            counts, _missing = bin_counts(as_numbers(values)[0], column.edges)
        else:
            counts = column.encoder.counts(values)
        totals[name] += counts


def _prediction_events(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    """Decoded prediction events (lines with ``"features"``, as replay tells them); undecodable lines skipped."""
    for line in lines:
        if b'"features"' not in line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            yield event


def window_counts(events_path: Path, requests: list[WindowRequest]) -> dict[str, dict[str, np.ndarray]]:
    """Per model, per requested column, the window's counts in the profile's layout, from the recorded events."""
    by_model = {r.model_id: r for r in requests}
    totals = {
        r.model_id: {c: np.zeros(r.profile.columns[c].counts.size, np.int64) for c in r.columns} for r in requests
    }
    pending: dict[str, list[dict[str, Any]]] = {r.model_id: [] for r in requests}
    try:
        handle = events_path.open("rb")
    except OSError as exc:
        raise RecordError(f"--events {events_path}: cannot read ({exc.strerror})") from None
    with handle:
        for event in _prediction_events(handle):
            request = by_model.get(str(event.get("model_id")))
            if request is None:
                continue
            try:
                time = parse_timestamp(event.get("timestamp"))
            except ValueError:
                continue
            if request.start <= time < request.end:
                batch = pending[request.model_id]
                batch.append(event)
                if len(batch) >= _CHUNK:
                    _count(request, batch, totals[request.model_id])
                    batch.clear()
    for model_id, batch in pending.items():
        if batch:
            _count(by_model[model_id], batch, totals[model_id])
    return totals
