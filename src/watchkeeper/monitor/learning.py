"""Learning a model's reference from its first windows, deterministically.

A model configured with ``reference: {learn_from_first: N}`` has no profile at first:
stage 1 ships raw rows (with their event times, versions and ids) per window, and
:class:`ReferenceLearner` keeps them per window. As the watermark closes windows, in
event-time order, their rows join the reference pool; once the pool holds at least ``N``
rows, the profile is built from the pooled windows' rows in a canonical order (event
time, then id). So the reference is a function of the events, not of which partition was
read first. Rows are kept in chunks of bounded size (one state record each), so no
stored record grows with ``N`` or with the number of columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from watchkeeper.config import ModelConfig
from watchkeeper.monitor.columns import monitored_columns
from watchkeeper.monitor.profile import ReferenceProfile
from watchkeeper.monitor.records import RecordWriter
from watchkeeper.monitor.wire import SampleEntry, SampleRows

__all__ = ["ReferenceLearner"]

_CHUNK_BYTES = 120_000  # target size of one sample chunk record


class ReferenceLearner:
    """Raw rows per window until the first whole windows hold ``learn_from_first`` rows."""

    def __init__(self, config: ModelConfig, writer: RecordWriter, records: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.writer = writer
        self.columns = list(monitored_columns(config))
        self.chunk_rows = max(1, _CHUNK_BYTES // (20 * (len(self.columns) + 3)))
        records = records or {}
        meta = records.get("learning") or {}
        self.pooled: list[float] = [float(s) for s in meta.get("pooled", [])]
        self.n_pooled = int(meta.get("n_pooled", 0))
        numbered: dict[float, list[tuple[int, SampleRows]]] = {}
        for name, chunk in records.items():
            if name.startswith("sample/"):
                _, start, index = name.split("/")
                numbered.setdefault(float(start), []).append((int(index), chunk))
        self.chunks: dict[float, list[SampleRows]] = {
            start: [chunk for _, chunk in sorted(chunks, key=lambda c: c[0])] for start, chunks in numbered.items()
        }

    @property
    def ready(self) -> bool:
        return self.n_pooled >= self.config.reference.learn_from_first

    def save_meta(self) -> None:
        self.writer.put("learning", {"pooled": self.pooled, "n_pooled": self.n_pooled})

    def add(self, entry: SampleEntry) -> None:
        """Keep a sample window entry's rows as new chunks (each written once)."""
        start = float(entry["start"])
        chunks = self.chunks.setdefault(start, [])
        total = int(entry["n"])
        for offset in range(0, total, self.chunk_rows):
            end = min(total, offset + self.chunk_rows)
            rows = entry["rows"]
            chunk: SampleRows = {
                "n": end - offset,
                "rows": {c: rows[c][offset:end] if c in rows else [None] * (end - offset) for c in self.columns},
                "times": entry["times"][offset:end],
                "model_versions": entry["model_versions"][offset:end],
                "ids": entry["ids"][offset:end],
            }
            chunks.append(chunk)
            self.writer.put(f"sample/{start!r}/{len(chunks) - 1}", chunk)

    def pool(self, start: float) -> None:
        """A closed window's rows become part of the reference."""
        self.pooled.append(start)
        self.n_pooled += sum(c["n"] for c in self.chunks.get(start, ()))
        self.save_meta()

    def open_windows(self) -> dict[float, list[SampleRows]]:
        """Chunks of the windows not pooled (to be binned once the profile exists)."""
        return {s: c for s, c in sorted(self.chunks.items()) if s not in self.pooled}

    def build(self) -> ReferenceProfile:
        """The profile of the pooled rows, in canonical order (event time, then id)."""
        chunks = [c for s in self.pooled for c in self.chunks.get(s, ())]
        times = np.asarray([t for c in chunks for t in c["times"]], dtype=np.float64)
        ids = np.asarray([str(i) for c in chunks for i in c["ids"]], dtype=object)
        order = np.lexsort((ids, times)) if times.size else np.zeros(0, dtype=np.int64)
        kinds = monitored_columns(self.config)
        data: dict[str, tuple[str, Any]] = {}
        for column in self.columns:
            pooled = [v for c in chunks for v in c["rows"][column]]
            if kinds[column] == "numeric":  # text (a value that was not a number) is missing in a reference,
                pooled = [None if isinstance(v, str) else v for v in pooled]  # as `profile build` reads a CSV
            values = np.asarray(pooled, dtype=object)[order]
            if any(v is not None and v == v for v in values):  # not all missing (None or NaN)
                data[column] = (kinds[column], values.tolist())
        drift = self.config.drift
        return ReferenceProfile.build(
            self.config.model_id,
            data,
            bins=drift.bins,
            max_categories={f.name: f.max_categories for f in self.config.features},
            source="learned",
            sequential_arl_events=drift.sequential_arl_events if drift.sequential else None,
            bucket_size=drift.bucket_size,
            multivariate=drift.multivariate,
        )

    def clear(self) -> None:
        """Forget every row and its records (after the profile is built)."""
        self.chunks.clear()
        self.pooled.clear()
        self.writer.delete_all(self.writer.names("sample/"))
        self.writer.delete("learning")
