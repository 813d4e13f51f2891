"""The join store's records: how :mod:`watchkeeper.monitor.join` keeps waiting events.

Store layout (format version 1)
-------------------------------
One key space; the first byte of a key is its kind, the rest is the ``prediction_id``:
its UTF-8 bytes under the lower-case kinds ``p``/``o``/``j`` or, when the id is a UUID
in canonical lower-case form (``8-4-4-4-12`` hex digits), its 16 binary bytes under the
upper-case kinds ``P``/``O``/``J`` (17-byte keys instead of 37, and no clash with a text
id that happens to be 16 bytes long). An id of more than 256 UTF-8 bytes is stored as
``0xFF`` + its SHA-256 digest under the lower-case kinds (no UTF-8 text starts with
``0xFF``): a batch's index chunk lists its keys, and ids of hundreds of kilobytes would
make a chunk larger than a Kafka record may be. Every value starts with the format
version byte (:data:`FORMAT_VERSION`); a value of another version raises ``ValueError``
naming it.
Numbers are little-endian ``struct`` fields; a length-prefixed *str* is one length byte
``n < 255`` (or ``0xFF`` and a ``uint32`` length) then ``n`` bytes::

    p|P + id     waiting prediction   <B version><d due><B flags><d prediction time>
                                      [<d score> if flags & 1][<d value> if flags & 2]
                                      then UTF-8 strings separated by NUL (length-prefixed
                                      str if flags & 8, when a string contains a NUL):
                                      model_id, model_version, [label if flags & 4], then
                                      per carried attribute its name and its value: the
                                      string, or if flags & 16 (a value is not a string)
                                      "s" + the string / "j" + JSON for the other scalars
    o|O + id     waiting outcome      <B version><d due><d outcome time> + the outcome
                                      event as orjson wrote it
    j|J + id     joined marker        <B version><d due>
    x + >q bucket + >I sequence       expiry index chunk: <B version><B width><I count>,
                                      count key lengths of width bytes each, then the keys
                                      one write scheduled in that 60-s due bucket

``due`` (event time, epoch seconds) is at byte offset 1 of every p/o/j value. Values are
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

import msgspec
import orjson

__all__ = [
    "CHUNK_ID",
    "FORMAT_VERSION",
    "HEAD_O",
    "KINDS",
    "KIND_J",
    "KIND_O",
    "KIND_P",
    "KIND_X",
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
    "outcome_truth",
    "store_keys",
]

FORMAT_VERSION = 1
KIND_J, KIND_P, KIND_O, KIND_X = 0, 1, 2, 3  # kinds: joined marker, waiting prediction, waiting outcome, index chunk
KINDS = {
    b"j": KIND_J,
    b"J": KIND_J,
    b"p": KIND_P,
    b"P": KIND_P,
    b"o": KIND_O,
    b"O": KIND_O,
    b"x": KIND_X,
}  # first key byte -> kind
_LONGEST_ID = 256  # UTF-8 bytes of the longest prediction_id kept as it is in a key (longer: hashed)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEAD_P = {n: struct.Struct("<BdB" + "d" * n) for n in (1, 2, 3)}  # version, due, flags, time, score?, value?
HEAD_O = struct.Struct("<Bdd")  # version, due, outcome time
_HEAD_J = struct.Struct("<Bd")  # version, due
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


# -- encoding -----------------------------------------------------------------------------
def check_version(raw: bytes) -> None:
    if not raw or raw[0] != FORMAT_VERSION:
        found = raw[0] if raw else "missing"
        raise ValueError(f"join store value has format version {found}; this code reads version {FORMAT_VERSION}")


def _put_str(out: bytearray, data: bytes) -> None:
    size = len(data)
    if size < 255:
        out.append(size)
    else:
        out.append(255)
        out += _U32.pack(size)
    out += data


def _strings(raw: bytes, pos: int) -> list[bytes]:
    parts: list[bytes] = []
    end = len(raw)
    while pos < end:
        size = raw[pos]
        pos += 1
        if size == 255:
            size = _U32.unpack_from(raw, pos)[0]
            pos += 4
        parts.append(raw[pos : pos + size])
        pos += size
    if pos != end:
        raise ValueError("join store value is truncated")
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
        out = bytearray()
        for string in strings:
            _put_str(out, string.encode())
        tail = bytes(out)
    return _HEAD_P[len(numbers)].pack(FORMAT_VERSION, due, flags, *numbers) + tail  # a new, exact-size object


def decode_prediction(raw: bytes) -> WaitingPrediction:
    check_version(raw)
    flags = raw[9]
    score = value = None
    if flags & _HAS_SCORE and flags & _HAS_VALUE:
        head = _HEAD_P[3]
        _, _, _, time, score, value = head.unpack_from(raw)
    elif flags & (_HAS_SCORE | _HAS_VALUE):
        head = _HEAD_P[2]
        _, _, _, time, number = head.unpack_from(raw)
        if flags & _HAS_SCORE:
            score = number
        else:
            value = number
    else:
        head = _HEAD_P[1]
        _, _, _, time = head.unpack_from(raw)
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
    return HEAD_O.pack(FORMAT_VERSION, due, time) + orjson.dumps(event)  # a new, exact-size object


class _Truth(msgspec.Struct):
    """The fields a join row takes from a waiting outcome (the rest of its JSON is skipped)."""

    label: Any = None
    value: Any = None


_read_truth = msgspec.json.Decoder(_Truth).decode


def outcome_truth(raw: bytes) -> tuple[Any, Any, float]:
    """(label, value, outcome time) of a stored waiting outcome, as sent (its JSON is not decoded
    into a dict: only these two fields are read)."""
    check_version(raw)
    time: float = _F64.unpack_from(raw, 9)[0]
    truth = _read_truth(memoryview(raw)[HEAD_O.size :])
    return truth.label, truth.value, time


def encode_joined(due: float) -> bytes:
    return _HEAD_J.pack(FORMAT_VERSION, due)


def due_of(raw: bytes) -> float:
    check_version(raw)
    due: float = _F64.unpack_from(raw, 1)[0]
    return due


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


def chunk_key(bucket: int, sequence: int) -> bytes:
    return b"x" + CHUNK_ID.pack(bucket, sequence)


def store_keys(prediction_id: str) -> tuple[bytes, bytes, bytes]:
    """The store keys of one prediction_id, indexed by kind (KIND_J, KIND_P, KIND_O)."""
    if len(prediction_id) == 36 and _CANONICAL_UUID.match(prediction_id):
        ident = bytes.fromhex(prediction_id.replace("-", ""))
        return b"J" + ident, b"P" + ident, b"O" + ident
    ident = prediction_id.encode()
    if len(ident) > _LONGEST_ID:
        ident = b"\xff" + hashlib.sha256(ident).digest()
    return b"j" + ident, b"p" + ident, b"o" + ident
