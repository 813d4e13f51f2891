"""A batch's features read natively into columns, for one configured model.

Most of stage 1's time used to go into decoding each prediction's ``features`` object into
Python objects, reading them back out by name and freeing them. For a model's batch,
:meth:`ModelFeatures.read` instead has the native reader (``watchkeeper_native``, Rust)
parse every record's ``features`` straight into a float64 matrix of the numeric features
and one list per categorical feature, in threads of its own that run without the GIL
while msgspec decodes the rest of each event as before. Each decoded event's
``features`` is then a :class:`FeatureRef`: its row of the batch's :class:`FeatureBlock`.
It reads like the dict it replaces (``ref[name]``, ``ref.get(name)``, iteration over the
configured names), and :func:`block_rows` lets the column readers take whole columns from
the block.

The reader takes a strict subset of the contract (numbers or null in numeric features,
strings or null in categorical ones, configured names only, written without escapes and
each at most once; see ``native/src/lib.rs``); for a batch with any record outside it,
``read`` answers None and the batch is decoded the generic way, so what is accepted, every
rejection reason and every counter stay the same. Numeric values come out as floats (an
integer 3 as 3.0): stage 1 bins them as float64 either way.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from watchkeeper_native import start_features

from watchkeeper.events import PredictionEvent
from watchkeeper.monitor.contracts import typed_dict

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
    refused: bool = field(default=False, init=False, repr=False)  # whether the native reader refused the last batch

    def __post_init__(self) -> None:
        self.columns = {name: (True, j) for j, name in enumerate(self.numeric)}
        self.columns.update({name: (False, j) for j, name in enumerate(self.categorical)})

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.columns)

    def read(self, raw: Sequence[bytes]) -> list[dict[str, Any]] | None:
        """Each record decoded, its ``features`` a :class:`FeatureRef`; None if the native reader
        refuses any record (then the generic decoder decides the batch).

        msgspec decodes the rest of each event while the native reader's threads parse the
        features (unless the last batch was refused: then the features are read first, so
        a producer whose events the reader keeps refusing costs no decode in vain).
        Raises what msgspec raises for a record whose other fields break the contract.
        """
        pending = start_features(raw, list(self.numeric), list(self.categorical))
        events = None if self.refused else list(map(_without_features, raw))
        read = pending.result()
        self.refused = read is None
        if read is None:
            return None
        if events is None:
            events = list(map(_without_features, raw))
        block = FeatureBlock(self, *read)
        refs = map(FeatureRef, itertools.repeat(block), range(len(events)))
        collections.deque(map(operator.setitem, events, itertools.repeat("features"), refs), maxlen=0)
        return events


# the prediction contract without ``features`` (the native reader has read them)
_without_features: Callable[[bytes], dict[str, Any]] = msgspec.json.Decoder(
    typed_dict(PredictionEvent, without="features")
).decode
