"""Comparing outputs whose floats are sums: their last bits depend on the order of addition."""

from __future__ import annotations

from typing import Any


def rounded(value: Any, digits: int = 10) -> Any:
    """``value`` (JSON-like) with every float rounded to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
