"""The JSON records of window evaluations: the replay output and the windows topic share them.

``{"kind": "window", "monitor": "drift", ...DriftReport}`` for each closed drift window and
``{"kind": "labels", ...LabelReport}`` for each evaluation of a label window (accuracy,
fairness, coverage). NaN statistics are written as ``null``.
"""

from __future__ import annotations

from typing import Any

import orjson

from watchkeeper.monitor.engine import LabelsEvaluated, Output, WindowClosed

__all__ = ["evaluation_record", "dumps"]


def evaluation_record(output: Output) -> dict[str, Any] | None:
    """The record of a window or label evaluation; None for other outputs."""
    if isinstance(output, WindowClosed):
        return {"kind": "window", "monitor": "drift", **output.report.to_dict()}
    if isinstance(output, LabelsEvaluated):
        return {"kind": "labels", **output.report.to_dict()}
    return None


def dumps(record: dict[str, Any]) -> bytes:
    """Compact JSON, numpy values as numbers and NaN as null."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
