"""The outcome join's store on RocksDB (``rocksdict``), for label horizons too long for RAM.

Implements :class:`watchkeeper.monitor.join.JoinStore`: raw byte keys and values, one
multi-get per :meth:`RocksJoinStore.get_many` and one ``WriteBatch`` per
:meth:`RocksJoinStore.write`. Memory is bounded whatever the number of waiting events:

* one LRU block cache (``cache_bytes``, default 8 MiB) that also holds the index and
  bloom-filter blocks (``cache_index_and_filter_blocks``), so table readers do not grow
  with the data;
* memtables of ``write_buffer_bytes`` (default 4 MiB), at most two, under a write buffer
  manager charged to the same cache (``2 × write_buffer_bytes`` cap);
* a bounded number of open files, one background job;
* ``malloc_trim(0)`` (glibc) after every ``trim_every_bytes`` written (default 2 MiB):
  RocksDB's flushes and compactions free buffers in its threads' malloc arenas, which
  glibc otherwise keeps; without it the RSS crept up by ~30 % between 100k and 1M
  waiting predictions although the cache and the memtables stayed at their caps.

The write-ahead log is kept (the default) so a store survives a clean restart; the
stream shell nevertheless restores from the changelog into a cleared store.
"""

from __future__ import annotations

import ctypes
import shutil
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

__all__ = ["RocksJoinStore"]


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def _options(cache_bytes: int, write_buffer_bytes: int) -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    cache = Cache(cache_bytes)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)
    table.set_block_size(16 * 1024)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_size(write_buffer_bytes)
    options.set_max_write_buffer_number(2)
    options.set_write_buffer_manager(
        WriteBufferManager.new_write_buffer_manager_with_cache(2 * write_buffer_bytes, False, cache)
    )
    options.set_max_open_files(256)
    options.set_max_background_jobs(1)
    options.set_compression_type(DBCompressionType.lz4())
    return options


class RocksJoinStore:
    """A :class:`~watchkeeper.monitor.join.JoinStore` in a RocksDB directory (created if missing)."""

    def __init__(
        self,
        path: Path,
        *,
        cache_bytes: int = 8 << 20,
        write_buffer_bytes: int = 4 << 20,
        trim_every_bytes: int | None = 2 << 20,
    ) -> None:
        self.path = Path(path)
        self._cache_bytes = cache_bytes
        self._write_buffer_bytes = write_buffer_bytes
        self._trim_every = trim_every_bytes if _MALLOC_TRIM is not None else None
        self._written = 0
        self._db: Rdict | None = None
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(self.path), _options(self._cache_bytes, self._write_buffer_bytes))

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"join store {self.path} is closed")
        return self._db

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self.db.get(list(keys))  # type: ignore[assignment]  # one multi-get
        return values

    def write(self, puts: Mapping[bytes, bytes], deletes: Collection[bytes]) -> None:
        batch = WriteBatch(raw_mode=True)
        for key in deletes:
            batch.delete(key)
        for key, value in puts.items():
            batch.put(key, value)
        if batch.is_empty():
            return
        size = batch.size_in_bytes()  # the batch is consumed by the write
        self.db.write(batch)
        if self._trim_every is not None:
            self._written += size
            if self._written >= self._trim_every and _MALLOC_TRIM is not None:
                self._written = 0
                _MALLOC_TRIM(0)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.items()

    def __len__(self) -> int:
        """Exact, by a scan of the keys (O(n)); use ``OutcomeJoiner.waiting`` for metrics."""
        return sum(1 for _ in self.db.keys())  # noqa: SIM118 (Rdict has no __iter__)

    def clear(self) -> None:
        """Remove every entry: the database is closed, deleted and created empty."""
        self.close()
        Rdict.destroy(str(self.path), Options(raw_mode=True))
        if self.path.exists():
            shutil.rmtree(self.path)
        self._open()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> RocksJoinStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
