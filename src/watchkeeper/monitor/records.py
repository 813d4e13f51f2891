"""Stage-2 state as small, versioned, named records, written only when they change.

A model's stage-2 state is not one growing blob but many records (``meta``,
``window/<start>``, ``alerts/<monitor>``, ``labels/<start>``, ``sample/<start>/<k>``,
``profile/column/<name>``...; see docs/architecture.md, "State"). A :class:`RecordWriter`
serialises each record as ``{"v": RECORD_VERSION, "d": value}`` with orjson — JSON only,
never a code-executing format — and keeps a hash of what it last wrote, so that
:meth:`RecordWriter.take` returns only the records that changed (``None``: deleted). The
shell writes those to a compacted changelog topic inside the batch's Kafka transaction and
restores the records (:func:`decode_record`) when it is assigned the model's partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["RECORD_VERSION", "MAX_RECORD_BYTES", "RecordWriter", "decode_record", "encode_record"]

RECORD_VERSION = 1
MAX_RECORD_BYTES = 256 * 1024  # chunked records (samples) are sized to stay well below this
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def encode_record(value: Any) -> bytes:
    """The stored form of a record's value."""
    return orjson.dumps({"v": RECORD_VERSION, "d": value}, option=_OPTIONS)


def decode_record(name: str, data: bytes) -> Any:
    """A record's value; ValueError naming the record when its version is unknown."""
    try:
        envelope = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"state record {name!r}: not JSON ({exc})") from exc
    if not isinstance(envelope, dict) or envelope.get("v") != RECORD_VERSION:
        version = envelope.get("v") if isinstance(envelope, dict) else None
        raise ValueError(f"state record {name!r}: version {version!r}, expected {RECORD_VERSION}")
    return envelope.get("d")


class RecordWriter:
    """What a model's state wrote last (as hashes), and the changes not yet taken."""

    def __init__(self, restored: Mapping[str, bytes] | None = None) -> None:
        self._hashes: dict[str, int] = {name: hash(data) for name, data in (restored or {}).items()}
        self._pending: dict[str, bytes | None] = {}

    def put(self, name: str, value: Any) -> None:
        """Record ``value`` under ``name`` unless it equals what was last written."""
        data = encode_record(value)
        digest = hash(data)
        if self._hashes.get(name) != digest:
            self._hashes[name] = digest
            self._pending[name] = data

    def delete(self, name: str) -> None:
        if self._hashes.pop(name, None) is not None or name in self._pending:
            self._pending[name] = None

    def delete_all(self, names: Iterable[str]) -> None:
        for name in list(names):
            self.delete(name)

    def names(self, prefix: str) -> list[str]:
        """Names of the live records that start with ``prefix``."""
        return [name for name in self._hashes if name.startswith(prefix)]

    def take(self) -> dict[str, bytes | None]:
        """The changes since the last call: name → stored bytes, or None for a deletion."""
        pending, self._pending = self._pending, {}
        return pending
