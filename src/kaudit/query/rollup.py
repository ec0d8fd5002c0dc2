"""Rollups: small aggregates computed once per immutable segment, kept as derived caches.

A :class:`Rollup` names an aggregation: SQL over the rows of one segment (the relation
``{rows}`` in its text) producing a small table whose rows can be merged across
segments (counts and sums added, minima and maxima taken). Segments never change
once written, so the aggregate of a segment is computed once and kept under
``<store>/cache/<name>/<segment sha256>-<version>.parquet`` (directory 0700, file 0600,
written to a temporary name and renamed). ``version`` is the rollup's own version
plus a digest of its SQL and parameters: a change of either makes new files, never a
wrong answer.

:meth:`RollupReader.gather` answers with the aggregates of the segments asked for (read
from the cache, or computed and cached) plus the aggregate of the write-ahead log tail,
computed live, as one Arrow table; the caller merges it with SQL of its own. Cache files
of segments the manifest no longer lists (compaction, retention) are removed
opportunistically. A cache that cannot be written (a read-only copy of a store) only
costs the recomputation; a cache file that cannot be read is recomputed. Two readers
racing to build the same file both compute it; the last rename wins, harmlessly.

Aggregates read or computed are also kept in memory, per process, up to
:data:`MEMO_BYTES` (least recently used first out): a cache file's name says what it
holds (the segment's SHA-256 and the rollup's version), so a kept table is never stale.
:func:`clear_memo` empties it.

The rollup's connection is internal: it reads the store's segments only, and user SQL
never reaches it (the cache is not part of the ``events`` view's sandbox).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from kaudit.store.flatten import SCHEMA, empty_table
from kaudit.store.layout import EVENTS_DIR, TMP_PREFIX, private_temp
from kaudit.store.manifest import SegmentInfo

CACHE_DIR: Final = "cache"
_ROWS: Final = "kaudit_rollup_rows"
#: The most bytes of aggregates kept in memory per process.
MEMO_BYTES: Final = 128 * 1024 * 1024


class _Memo:
    """A thread-safe LRU of aggregates by cache file path, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[Path, pa.Table] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path) -> pa.Table | None:
        with self._lock:
            table = self._items.get(path)
            if table is not None:
                self._items.move_to_end(path)
            return table

    def put(self, path: Path, table: pa.Table) -> None:
        size = table.nbytes
        if size > self.limit:
            return
        with self._lock:
            old = self._items.pop(path, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[path] = table
            self._bytes += size
            while self._bytes > self.limit:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


_MEMO: Final = _Memo(MEMO_BYTES)


def clear_memo() -> None:
    """Forget the aggregates kept in memory (the next reads come from the cache files)."""
    _MEMO.clear()


@dataclass(frozen=True, slots=True)
class Rollup:
    """A named, versioned aggregation of one segment's rows (``{rows}`` in ``sql``)."""

    name: str
    version: str
    sql: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The version in file names: ``version`` and a digest of the SQL and parameters."""
        body = json.dumps([self.sql, dict(self.params)], sort_keys=True, default=str)
        return f"{self.version}.{hashlib.sha256(body.encode()).hexdigest()[:12]}"

    def query(self, relation: str) -> str:
        return self.sql.replace("{rows}", relation)


@dataclass(slots=True)
class RollupStats:
    """What one reader did: aggregates read from the cache, computed, written, removed."""

    cached: int = 0
    computed: int = 0
    written: int = 0
    removed: int = 0


class RollupReader:
    """Per-segment aggregates of one store, from its cache or computed (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.stats = RollupStats()
        self._con: duckdb.DuckDBPyConnection | None = None

    # --- the internal connection: the segments only ---------------------------------

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            events = str(self.root / EVENTS_DIR).replace("'", "''")
            con.execute(f"SET allowed_directories=['{events}']")
            con.execute("SET enable_external_access=false")
            con.execute("SET lock_configuration=true")
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> RollupReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one aggregate --------------------------------------------------------------

    def path(self, rollup: Rollup, seg: SegmentInfo) -> Path:
        return self.root / CACHE_DIR / rollup.name / f"{seg.sha256}-{rollup.key}.parquet"

    def compute(self, rollup: Rollup, relation: str | pa.Table) -> pa.Table:
        """The aggregate of ``relation``: a segment's path, or an Arrow table of rows."""
        con = self.con
        if isinstance(relation, pa.Table):
            con.register(_ROWS, relation.cast(SCHEMA))
            try:
                return con.sql(
                    rollup.query(_ROWS), params=dict(rollup.params) or None
                ).to_arrow_table()
            finally:
                con.unregister(_ROWS)
        src = "read_parquet('" + relation.replace("'", "''") + "', hive_partitioning = false)"
        return con.sql(rollup.query(src), params=dict(rollup.params) or None).to_arrow_table()

    def segment(self, rollup: Rollup, seg: SegmentInfo) -> pa.Table:
        """The aggregate of one segment, from the cache or computed (and then cached)."""
        path = self.path(rollup, seg)
        table = _MEMO.get(path)
        if table is not None:
            self.stats.cached += 1
            return table
        try:
            table = pq.ParquetFile(path).read()
            self.stats.cached += 1
            _MEMO.put(path, table)
            return table
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException):
            pass  # unreadable (a torn copy, a bad disk): computed again and replaced
        table = self.compute(rollup, str(self.root / seg.path))
        self.stats.computed += 1
        self._write(path, table)
        _MEMO.put(path, table)
        return table

    def _write(self, path: Path, table: pa.Table) -> None:
        try:
            tmp = private_temp(path)
        except OSError:
            return  # a read-only store: answers are still right, only recomputed next time
        try:
            with open(tmp, "wb") as f:
                pq.write_table(table, f, compression="zstd")
            os.replace(tmp, path)
            self.stats.written += 1
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass

    # --- many ---------------------------------------------------------------------

    def gather(
        self,
        rollup: Rollup,
        segments: Iterable[SegmentInfo],
        tail: pa.Table | None = None,
    ) -> pa.Table:
        """The aggregates of ``segments`` and of the ``tail`` rows, one table (unmerged)."""
        parts = [self.segment(rollup, s) for s in segments]
        if tail is not None and tail.num_rows:
            parts.append(self.compute(rollup, tail))
        if not parts:
            # The aggregate's shape without its rows: the SQL over no rows at all.
            return self.compute(rollup, _empty_rows()).slice(0, 0)
        return pa.concat_tables(parts, promote_options="permissive")

    def prune(self, rollup: Rollup | str, live: Iterable[SegmentInfo]) -> int:
        """Remove the cached aggregates of segments not in ``live`` (every version)."""
        name = rollup.name if isinstance(rollup, Rollup) else rollup
        keep = {s.sha256 for s in live}
        d = self.root / CACHE_DIR / name
        removed = 0
        try:
            entries = list(d.iterdir())
        except OSError:
            return 0
        for p in entries:
            if p.name.startswith(TMP_PREFIX) or p.suffix != ".parquet":
                continue
            if p.name.split("-", 1)[0] not in keep:
                try:
                    p.unlink()
                    removed += 1
                except OSError:
                    continue
        self.stats.removed += removed
        return removed


def _empty_rows() -> pa.Table:
    return empty_table()


__all__ = ["CACHE_DIR", "MEMO_BYTES", "Rollup", "RollupReader", "RollupStats", "clear_memo"]
