"""A batch of one configured model's predictions read natively: dicts, times and feature columns.

Most of stage 1's time used to go into decoding each prediction event into Python objects
(under the GIL), reading the features back out by name and freeing them. For a model's
batch, :meth:`ModelFeatures.read` instead has the native reader (``watchkeeper_native``,
Rust) parse every record in threads of its own that run without the GIL: each record's
``features`` go straight into a float64 matrix of the numeric features and one list per
categorical feature, and its other fields into the dict the generic decoder would make
(``timestamp`` in epoch seconds, ``metadata`` left out: nothing reads it). Each event's
``features`` is then a :class:`FeatureRef`: its row of the batch's :class:`FeatureBlock`.
It reads like the dict it replaces (``ref[name]``, ``ref.get(name)``, iteration over the
configured names), and :func:`block_rows` lets the column readers take whole columns from
the block.

The reader takes a strict subset of the contract (see ``native/src/lib.rs``); for a batch
with any record outside it, ``read`` answers None and the batch is decoded the generic
way, so what is accepted, every rejection reason and every counter stay the same. Numeric
features come out as floats (an integer 3 as 3.0): stage 1 bins them as float64 either way.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from watchkeeper_native import start_events

__all__ = ["FeatureBlock", "FeatureRef", "ModelFeatures", "block_rows"]


@dataclass(frozen=True, eq=False)
class FeatureBlock:
    """One model's features of one batch: ``numeric`` (rows × the model's numeric features,
    NaN: not sent or null) and per categorical feature its values (None: not sent or null)."""

    features: ModelFeatures
    numeric: np.ndarray
    categorical: list[list[str | None]]

    @property
    def names(self) -> dict[str, tuple[bool, int]]:
        """Feature name → (numeric?, its column)."""
        return self.features.columns


class FeatureRef(Mapping[str, float | str | None]):
    """One event's features: row ``row`` of ``block``, a mapping of the configured features.

    A feature not sent or sent as null reads as None, as ``get`` reads it from the dict
    this replaces.
    """

    __slots__ = ("block", "row")

    def __init__(self, block: FeatureBlock, row: int) -> None:
        self.block = block
        self.row = row

    def __getitem__(self, name: str) -> float | str | None:
        numeric, column = self.block.names[name]
        if numeric:
            value = float(self.block.numeric[self.row, column])
            return None if value != value else value  # (NaN: not sent, or null)
        return self.block.categorical[column][self.row]

    def __iter__(self) -> Iterator[str]:
        return iter(self.block.names)

    def __len__(self) -> int:
        return len(self.block.names)


def block_rows(mappings: Sequence[Any]) -> tuple[FeatureBlock, np.ndarray] | None:
    """The block and rows of ``mappings`` if all are :class:`FeatureRef` of one block, else None."""
    if not mappings or type(mappings[0]) is not FeatureRef:
        return None
    block = mappings[0].block
    if not all(map(operator.is_, map(operator.attrgetter("block"), mappings), itertools.repeat(block))):
        return None  # (rows of several batches, or mixed with dicts)
    rows = np.fromiter(map(operator.attrgetter("row"), mappings), dtype=np.intp, count=len(mappings))
    return block, rows


@dataclass(eq=False)
class ModelFeatures:
    """A configured model's features, and the reader of its prediction batches."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    columns: dict[str, tuple[bool, int]] = field(init=False, repr=False)  # name → (numeric?, column)

    def __post_init__(self) -> None:
        self.columns = {name: (True, j) for j, name in enumerate(self.numeric)}
        self.columns.update({name: (False, j) for j, name in enumerate(self.categorical)})

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.columns)

    def read(self, raw: Sequence[bytes]) -> tuple[list[dict[str, Any]], np.ndarray] | None:
        """Each record decoded (its ``features`` a :class:`FeatureRef`) and the event times; None
        if the native reader refuses any record (then the generic decoder decides the batch).

        Raises TypeError for a record that is not bytes (None: a tombstone).
        """
        read = start_events(raw, list(self.numeric), list(self.categorical)).result()
        if read is None:
            return None
        events, times, numeric, categorical = read
        block = FeatureBlock(self, numeric, categorical)
        refs = map(FeatureRef, itertools.repeat(block), range(len(events)))
        collections.deque(map(operator.setitem, events, itertools.repeat("features"), refs), maxlen=0)
        return events, times
