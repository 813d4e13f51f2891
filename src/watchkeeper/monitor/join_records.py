"""The join store's records: how :mod:`watchkeeper.monitor.join` keeps waiting events.

Store layout (format version 2)
-------------------------------
One key per ``prediction_id``, whatever waits under it: ``U`` + its 16 binary bytes when
the id is a UUID in canonical lower-case form (``8-4-4-4-12`` hex digits; 17-byte keys
instead of 37), else ``t`` + its UTF-8 bytes (so a text id that happens to be 16 bytes
long never meets a UUID). An id of more than 256 UTF-8 bytes is stored as ``t`` + ``0xFF``
+ its SHA-256 digest (no UTF-8 text starts with ``0xFF``): a batch's index chunk lists its
keys, and ids of hundreds of kilobytes would make a chunk larger than a Kafka record may
be. One key, not one per kind (format 1): the batch reads a third of the keys, and a
waiting event that becomes a joined marker is one put on the changelog, not a put and a
tombstone. Every value starts with the format version byte (:data:`FORMAT_VERSION`) and
the kind byte (``p``, ``o`` or ``j``); a value of another version raises ``ValueError``
naming it. Numbers are little-endian ``struct`` fields; a length-prefixed *str* is one
length byte ``n < 255`` (or ``0xFF`` and a ``uint32`` length) then ``n`` bytes::

    waiting prediction  <B version><B "p"><d due><B flags><d prediction time>
                        [<d score> if flags & 1][<d value> if flags & 2]
                        then UTF-8 strings separated by NUL (length-prefixed str if
                        flags & 8, when a string contains a NUL): model_id,
                        model_version, [label if flags & 4], then per carried
                        attribute its name and its value: the string, or if flags & 16
                        (a value is not a string) "s" + the string / "j" + JSON for the
                        other scalars
    waiting outcome     <B version><B "o"><d due><d outcome time><B flags>
                        [<d value> if flags & 2][label: str if flags & 4]
                        then the outcome event as orjson wrote it (the label and value
                        as a joined row takes them: the label as text, the value as float)
    joined marker       <B version><B "j"><d due>
    x + >q bucket + >I sequence    expiry index chunk: <B version><B width><I count>,
                        count key lengths of width bytes each, then the keys one write
                        scheduled in that 60-s due bucket

``due`` (event time, epoch seconds) is at byte offset 2 of every p/o/j value. Values are
exact-size ``bytes`` (never an ``orjson.dumps`` result kept as is: orjson over-allocates
its output buffer, which cost ≈ 4 KB per waiting prediction).

The expiry index lives in the store itself, as chunks: each ``write`` adds, per due bucket
it touched, one ``x`` chunk listing the keys it put. In memory the joiner keeps only the
number of chunks per bucket (a few thousand ints for a 7-day horizon), so its memory does
not grow with the number of waiting events, which matters with a RocksDB store.
:meth:`OutcomeJoiner.expire` reads the chunks of the buckets that ended, then the listed
keys, and deletes what is due (entries and chunks) in one write; a key that was deleted
or rewritten since is skipped (every rewrite is listed again under its new due bucket).
:meth:`OutcomeJoiner.rebuild_index` re-creates the chunk counts and the waiting count from
:meth:`JoinStore.items` after a restore.
"""

from __future__ import annotations

import array
import hashlib
import re
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

__all__ = [
    "CHUNK_ID",
    "FORMAT_VERSION",
    "KIND_J",
    "KIND_O",
    "KIND_P",
    "WaitingPrediction",
    "check_version",
    "chunk_key",
    "decode_chunk",
    "decode_prediction",
    "due_of",
    "encode_chunk",
    "encode_joined",
    "encode_outcome",
    "encode_prediction",
    "is_chunk_key",
    "kind_of",
    "kinds_of",
    "label_text",
    "number",
    "outcome_event",
    "outcome_truth",
    "store_key",
    "store_keys",
]

FORMAT_VERSION = 2
KIND_J, KIND_P, KIND_O = b"jpo"  # the kind byte of a value: joined marker, waiting prediction, waiting outcome
_KINDS = frozenset((KIND_J, KIND_P, KIND_O))
_LONGEST_ID = 256  # UTF-8 bytes of the longest prediction_id kept as it is in a key (longer: hashed)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL_UUID = re.compile(_UUID)
_CANONICAL_UUIDS = re.compile(f"(?:{_UUID})*")
_HEAD_P = {n: struct.Struct("<BBdB" + "d" * n) for n in (1, 2, 3)}  # version, kind, due, flags, time, score?, value?
_HEAD_O = struct.Struct("<BBddB")  # version, kind, due, outcome time, flags
_HEAD_J = struct.Struct("<BBd")  # version, kind, due
CHUNK_ID = struct.Struct(">qI")  # due bucket, sequence number within the bucket
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_HEAD_X = struct.Struct("<BBI")  # version, bytes per key length, number of keys
_HAS_SCORE, _HAS_VALUE, _HAS_LABEL, _PREFIXED, _TAGGED = 1, 2, 4, 8, 16


class WaitingPrediction(NamedTuple):
    model_id: str
    model_version: str
    time: float
    label: str | None
    score: float | None
    value: float | None
    attributes: dict[str, Any]


def label_text(value: Any) -> str | None:
    """A label as the metrics compare it: text (``true`` is ``"1"``, as scikit-learn casts it)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def number(value: Any) -> float | None:
    return None if value is None else float(value)


# -- keys -----------------------------------------------------------------------------------
def store_key(prediction_id: str) -> bytes:
    """The store key of one prediction_id (every kind of value it has lives under it)."""
    if len(prediction_id) == 36 and _CANONICAL_UUID.match(prediction_id):
        return b"U" + bytes.fromhex(prediction_id.replace("-", ""))
    ident = prediction_id.encode()
    if len(ident) > _LONGEST_ID:
        ident = b"\xff" + hashlib.sha256(ident).digest()
    return b"t" + ident


def store_keys(prediction_ids: list[str]) -> list[bytes]:
    """:func:`store_key` of each id; a batch of canonical UUIDs (the usual case) in a few C calls."""
    text = "".join(prediction_ids)
    if set(map(len, prediction_ids)) == {36} and _CANONICAL_UUIDS.fullmatch(text):
        # "55" is "U" in hex: every key is 17 bytes of one buffer
        packed = bytes.fromhex("55" + "55".join(prediction_ids).replace("-", ""))
        return [packed[i : i + 17] for i in range(0, len(packed), 17)]
    return list(map(store_key, prediction_ids))


def chunk_key(bucket: int, sequence: int) -> bytes:
    return b"x" + CHUNK_ID.pack(bucket, sequence)


def is_chunk_key(key: bytes) -> bool:
    return key[:1] == b"x"


# -- values ---------------------------------------------------------------------------------
def check_version(raw: bytes) -> None:
    if not raw or raw[0] != FORMAT_VERSION:
        found = raw[0] if raw else "missing"
        raise ValueError(f"join store value has format version {found}; this code reads version {FORMAT_VERSION}")


def kind_of(raw: bytes) -> int:
    """The kind byte of a p/o/j value (:data:`KIND_P`, :data:`KIND_O` or :data:`KIND_J`)."""
    check_version(raw)
    kind = raw[1] if len(raw) > 1 else -1
    if kind not in _KINDS:
        raise ValueError(f"join store value of unknown kind {raw[1:2]!r}")
    return kind


def kinds_of(values: list[bytes]) -> list[int]:
    """:func:`kind_of` of each value, checked once for the whole list."""
    try:
        kinds = [raw[1] for raw in values]
    except IndexError:
        kinds = []
    if len(kinds) != len(values) or not _KINDS.issuperset(kinds) or any(raw[0] != FORMAT_VERSION for raw in values):
        return list(map(kind_of, values))  # raises naming what is wrong
    return kinds


def due_of(raw: bytes) -> float:
    check_version(raw)
    due: float = _F64.unpack_from(raw, 2)[0]
    return due


def _length(data: bytes) -> bytes:
    """The length prefix of a str."""
    size = len(data)
    return bytes((size,)) if size < 255 else b"\xff" + _U32.pack(size)


def _get_str(raw: bytes, pos: int) -> tuple[bytes, int]:
    """A length-prefixed str at ``pos``, and the position after it."""
    size = raw[pos]
    pos += 1
    if size == 255:
        size = _U32.unpack_from(raw, pos)[0]
        pos += 4
    if pos + size > len(raw):
        raise ValueError("join store value is truncated")
    return raw[pos : pos + size], pos + size


def _strings(raw: bytes, pos: int) -> list[bytes]:
    parts: list[bytes] = []
    while pos < len(raw):
        part, pos = _get_str(raw, pos)
        parts.append(part)
    return parts


def encode_prediction(p: WaitingPrediction, due: float) -> bytes:
    strings = [p.model_id, p.model_version]
    flags = 0
    if all(type(value) is str for value in p.attributes.values()):
        for name, value in p.attributes.items():
            strings += (name, value)
    else:
        flags = _TAGGED
        for name, value in p.attributes.items():
            strings += (name, "s" + value if type(value) is str else "j" + orjson.dumps(value).decode())
    if p.label is not None:
        strings.insert(2, p.label)
        flags |= _HAS_LABEL
    numbers = [p.time]
    if p.score is not None:
        numbers.append(p.score)
        flags |= _HAS_SCORE
    if p.value is not None:
        numbers.append(p.value)
        flags |= _HAS_VALUE
    text = "\x00".join(strings)
    if text.count("\x00") == len(strings) - 1:
        tail = text.encode()
    else:  # a string with a NUL in it: length-prefixed instead
        flags |= _PREFIXED
        encoded = [string.encode() for string in strings]
        tail = b"".join([part for data in encoded for part in (_length(data), data)])
    return _HEAD_P[len(numbers)].pack(FORMAT_VERSION, KIND_P, due, flags, *numbers) + tail  # a new, exact-size object


def decode_prediction(raw: bytes) -> WaitingPrediction:
    check_version(raw)
    flags = raw[10]
    score = value = None
    if flags & _HAS_SCORE and flags & _HAS_VALUE:
        head = _HEAD_P[3]
        *_, time, score, value = head.unpack_from(raw)
    elif flags & (_HAS_SCORE | _HAS_VALUE):
        head = _HEAD_P[2]
        *_, time, either = head.unpack_from(raw)
        if flags & _HAS_SCORE:
            score = either
        else:
            value = either
    else:
        head = _HEAD_P[1]
        *_, time = head.unpack_from(raw)
    if flags & _PREFIXED:
        parts = [part.decode() for part in _strings(raw, head.size)]
    else:
        parts = raw[head.size :].decode().split("\x00")
    first = 3 if flags & _HAS_LABEL else 2
    attributes: dict[str, Any] = {}
    if flags & _TAGGED:
        for i in range(first, len(parts) - 1, 2):
            tagged = parts[i + 1]
            attributes[parts[i]] = tagged[1:] if tagged[:1] == "s" else orjson.loads(tagged[1:])
    else:
        for i in range(first, len(parts) - 1, 2):
            attributes[parts[i]] = parts[i + 1]
    return WaitingPrediction(
        parts[0], parts[1], time, parts[2] if flags & _HAS_LABEL else None, score, value, attributes
    )


def encode_outcome(event: Mapping[str, Any], time: float, due: float) -> bytes:
    """A waiting outcome: its label and value as a joined row takes them, then the event's JSON."""
    label, value = label_text(event.get("label")), event.get("value")
    parts = [b""]
    flags = 0
    if value is not None:
        flags = _HAS_VALUE
        parts.append(_F64.pack(float(value)))
    if label is not None:
        flags |= _HAS_LABEL
        text = label.encode()
        parts += (_length(text), text)
    parts[0] = _HEAD_O.pack(FORMAT_VERSION, KIND_O, due, time, flags)
    parts.append(orjson.dumps(event))
    return b"".join(parts)  # a new, exact-size object


def _outcome_fields(raw: bytes) -> tuple[str | None, float | None, float, int]:
    """(label, value, outcome time, where the event's JSON starts) of a waiting outcome."""
    check_version(raw)
    _, _, _, time, flags = _HEAD_O.unpack_from(raw)
    pos = _HEAD_O.size
    value = label = None
    if flags & _HAS_VALUE:
        value = _F64.unpack_from(raw, pos)[0]
        pos += 8
    if flags & _HAS_LABEL:
        text, pos = _get_str(raw, pos)
        label = text.decode()
    return label, value, time, pos


def outcome_truth(raw: bytes) -> tuple[str | None, float | None, float]:
    """(label as text, value, outcome time) of a stored waiting outcome (its JSON is not read)."""
    label, value, time, _ = _outcome_fields(raw)
    return label, value, time


def outcome_event(raw: bytes) -> bytes:
    """The outcome event (JSON) of a stored waiting outcome, for the dead-letter topic."""
    return raw[_outcome_fields(raw)[3] :]  # an exact-size copy


def encode_joined(due: float) -> bytes:
    return _HEAD_J.pack(FORMAT_VERSION, KIND_J, due)


def encode_chunk(keys: list[bytes]) -> bytes:
    longest = max(map(len, keys))
    typecode = "B" if longest < 1 << 8 else "H" if longest < 1 << 16 else "I"
    lengths = array.array(typecode, map(len, keys))
    head = _HEAD_X.pack(FORMAT_VERSION, lengths.itemsize, len(keys))
    return b"".join([head, lengths.tobytes(), *keys])


def decode_chunk(raw: bytes) -> list[bytes]:
    check_version(raw)
    _, width, count = _HEAD_X.unpack_from(raw)
    start = _HEAD_X.size + width * count
    lengths = array.array({1: "B", 2: "H", 4: "I"}[width], raw[_HEAD_X.size : start])
    keys: list[bytes] = []
    for size in lengths:
        keys.append(raw[start : start + size])
        start += size
    if start != len(raw) or len(keys) != count:
        raise ValueError("join store index chunk is truncated")
    return keys
