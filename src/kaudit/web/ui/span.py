"""The part of the store a time range needs, and a cache of what was computed from it.

A :class:`Span` is a read snapshot (the manifest and the write-ahead log tail, as every
reader takes it) narrowed to one range: a DuckDB connection whose view ``span`` reads
only the Parquet segments whose ``[min_ts, max_ts]`` (from the manifest) meets the
range, plus the tail. Segments are sorted by object inside (not by time), so the
manifest's bounds are what lets a range skip whole files; the ``ts`` predicate still
runs on every row read.

:class:`ResultCache` keeps a few results keyed by what they were computed from: the
manifest's head hash and the tail's size (:func:`data_version`) change with every flush,
compaction, retention run and append, so a new event invalidates every entry.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from kaudit.query.schema import COLUMN_NAMES
from kaudit.store import manifest, reader

SPAN_VIEW: Final = "span"
PRIOR_VIEW: Final = "prior"  # the segments that may hold events older than the range
_COLS: Final = ", ".join(f'"{c}"' for c in COLUMN_NAMES)


def data_version(root: Path) -> tuple[str, int]:
    """What the store holds right now, cheaply: the manifest's head hash and the size of
    the write-ahead log files not yet flushed (no file is decoded)."""
    state = manifest.load(root)
    size = 0
    for p in reader.wal_files(root):
        if p.name in state.flushed_wals:
            continue
        try:
            size += p.stat().st_size
        except FileNotFoundError:  # flushed and removed since the listing
            continue
    return state.last_hash, size


@dataclass(slots=True)
class Span:
    """A read snapshot of the store: the view ``events`` (everything) and, once
    :meth:`narrow` is called, the view ``span`` over the segments meeting a range."""

    root: Path
    con: duckdb.DuckDBPyConnection
    segments: list[manifest.SegmentInfo]
    tail_rows: int
    wal_bytes: int
    oldest_us: int | None  # the oldest and newest ``ts`` stored
    newest_us: int | None
    read: int = 0  # segments the ``span`` view reads
    tail: pa.Table | None = None  # the write-ahead log tail's rows (for rollups)

    def narrow(self, since_us: int, until_us: int) -> None:
        """(Re)define ``span``: the segments whose ``[min_ts, max_ts]`` meets
        ``[since_us, until_us)``, plus the tail (rows are not cut to the range)."""
        meet = [s for s in self.segments if s.max_ts >= since_us and s.min_ts < until_us]
        self.read = len(meet)
        self._view(SPAN_VIEW, meet)
        self._view(PRIOR_VIEW, [s for s in self.segments if s.min_ts < since_us])

    def _view(self, name: str, segments: list[manifest.SegmentInfo]) -> None:
        tail_sql = f"SELECT {_COLS} FROM {reader.TAIL_TABLE}"
        if segments:
            listing = "[" + ", ".join(_quote(str(self.root / s.path)) for s in segments) + "]"
            body = (
                f"SELECT {_COLS} FROM read_parquet({listing}, hive_partitioning = false) "
                f"UNION ALL {tail_sql}"
            )
        else:
            body = tail_sql
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {body}")

    def close(self) -> None:
        self.con.close()


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def open_span(root: Path) -> Span:
    """A fresh read-only connection over one snapshot of the store."""
    snap = reader.snapshot(root)
    con = reader.connect(root, snap)
    segs = sorted(snap.state.segments.values(), key=lambda s: s.path)
    mins = [s.min_ts for s in segs]
    maxs = [s.max_ts for s in segs]
    if snap.tail.num_rows:
        import pyarrow.compute as pc

        mm = pc.min_max(snap.tail["ts"].cast(pa.int64())).as_py()
        mins.append(int(mm["min"]))
        maxs.append(int(mm["max"]))
    return Span(
        root=root,
        con=con,
        segments=segs,
        tail_rows=snap.tail.num_rows,
        wal_bytes=snap.wal_bytes,
        oldest_us=min(mins) if mins else None,
        newest_us=max(maxs) if maxs else None,
        tail=snap.tail,
    )


class ResultCache:
    """A small thread-safe LRU of computed results."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


__all__ = ["PRIOR_VIEW", "SPAN_VIEW", "ResultCache", "Span", "data_version", "open_span"]
