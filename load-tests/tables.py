"""The plain-text tables the quality benchmarks print (shared by drift_quality.py and label_quality.py)."""

from __future__ import annotations

from collections.abc import Sequence


def print_rows(rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, `|` between them, a rule under the first (header) row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
        if k == 0:
            print("-+-".join("-" * w for w in widths))
