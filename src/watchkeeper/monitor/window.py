"""Stage 2 window state: the exact merge of stage-1 partial entries for one event-time window."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["WindowAggregate"]


def _add_counts(target: dict[str, np.ndarray], name: str, counts: list[int]) -> None:
    incoming = np.asarray(counts, dtype=np.int64)
    current = target.get(name)
    if current is None:
        target[name] = incoming
    elif current.shape != incoming.shape:
        raise ValueError(f"{name}: {incoming.size} counts, expected {current.size} (reference changed?)")
    else:
        current += incoming


@dataclass
class WindowAggregate:
    """Counts of one window of one model; ``add`` merges a partial's window entry."""

    start: float
    n: int = 0
    t_max: float = float("-inf")
    versions: dict[str, int] = field(default_factory=dict)
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    invalid: dict[str, int] = field(default_factory=dict)

    def add(self, entry: Mapping[str, Any]) -> None:
        self.n += int(entry["n"])
        self.t_max = max(self.t_max, float(entry["t_max"]))
        for version, count in entry.get("versions", {}).items():
            self.versions[version] = self.versions.get(version, 0) + int(count)
        for name, counts in entry.get("numeric", {}).items():
            _add_counts(self.numeric, name, counts)
        for name, counts in entry.get("categorical", {}).items():
            _add_counts(self.categorical, name, counts)
        for name, count in entry.get("invalid", {}).items():
            self.invalid[name] = self.invalid.get(name, 0) + int(count)

    @property
    def main_version(self) -> str:
        """The model version with most events in the window."""
        return max(self.versions.items(), key=lambda kv: (kv[1], kv[0]))[0] if self.versions else "unversioned"

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "n": self.n,
            "t_max": self.t_max,
            "versions": self.versions,
            "numeric": {k: v.tolist() for k, v in self.numeric.items()},
            "categorical": {k: v.tolist() for k, v in self.categorical.items()},
            "invalid": self.invalid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowAggregate:
        window = cls(start=float(data["start"]))
        window.add(data)
        return window
