"""The store: a small lake of audit events on local disk.

Events are made durable in a write-ahead log, flushed to zstd Parquet segments
partitioned by date and hour, deduplicated on (audit_id, stage), recorded in a
hash-chained manifest, and queried with DuckDB SQL over the view ``events`` (the
flat schema of :mod:`kaudit.query.schema`). See ``docs/store.md``.

::

    store = open_store("kaudit-data")
    with store.writer() as w:
        w.append(records, cluster="prod")
    store.query("SELECT verb, count(*) FROM events GROUP BY ALL")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from kaudit.errors import QueryError, StoreError
from kaudit.store import reader
from kaudit.store.layout import DIR_MODE, EVENTS_DIR, ensure_dir
from kaudit.store.settings import SETTINGS, StoreSettings
from kaudit.store.writer import AppendResult, Writer

DEFAULT_PATH: Final = "kaudit-data"
ENV_VAR: Final = "KAUDIT_STORE"


@dataclass(frozen=True, slots=True)
class StoreStats:
    events: int
    bytes: int
    segments: int
    wal_events: int
    wal_bytes: int
    oldest_ts: int | None  # microseconds since the epoch
    newest_ts: int | None


class Store:
    """A store directory. Cheap to create; readers take no lock."""

    def __init__(self, path: Path, settings: StoreSettings | None = None) -> None:
        self.path = path
        self.settings = settings or StoreSettings()

    def writer(self) -> Writer:
        """The single writer (a context manager); :class:`StoreLockedError` if one is open."""
        return Writer(self)

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh DuckDB connection with the view ``events`` over segments + WAL tail."""
        return reader.connect(self.path)

    def query(
        self, sql: str, params: Sequence[object] | dict[str, object] | None = None
    ) -> pa.Table:
        """Run ``sql`` (bound ``params`` only) over ``events``; the result as Arrow."""
        for attempt in (1, 2):
            con = self.connect()
            try:
                return con.sql(sql, params=params).to_arrow_table()
            except duckdb.IOException as exc:
                # A segment replaced by compaction or retention after our snapshot.
                if attempt == 2:
                    raise StoreError(
                        f"{self.path}: query failed reading the store: {exc}"
                    ) from None
            except duckdb.Error as exc:
                raise QueryError(f"query failed: {exc}") from None
            finally:
                con.close()
        raise AssertionError("unreachable")  # pragma: no cover

    def stats(self) -> StoreStats:
        snap = reader.snapshot(self.path)
        segs = snap.state.segments.values()
        mins = [s.min_ts for s in segs]
        maxs = [s.max_ts for s in segs]
        tail = snap.tail
        if tail.num_rows:
            import pyarrow.compute as pc

            mm = pc.min_max(tail["ts"].cast(pa.int64())).as_py()
            mins.append(int(mm["min"]))
            maxs.append(int(mm["max"]))
        return StoreStats(
            events=sum(s.rows for s in segs) + tail.num_rows,
            bytes=sum(s.size for s in segs) + snap.wal_bytes,
            segments=len(snap.state.segments),
            wal_events=tail.num_rows,
            wal_bytes=snap.wal_bytes,
            oldest_ts=min(mins) if mins else None,
            newest_ts=max(maxs) if maxs else None,
        )

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"


def default_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def open_store(
    path: str | os.PathLike[str] | None = None,
    *,
    create: bool = True,
    settings: StoreSettings | None = None,
) -> Store:
    """The store at ``path`` (None: ``$KAUDIT_STORE`` or ``./kaudit-data``).

    With ``create`` the directory is made (mode 0700); without, a missing store is
    an error.
    """
    root = Path(path) if path is not None else default_path()
    if not root.is_dir():
        if not create:
            raise StoreError(f"{root}: no store here (expected a directory made by kaudit)")
        ensure_dir(root)
        os.chmod(root, DIR_MODE)
        ensure_dir(root / EVENTS_DIR)
    return Store(root, settings)


__all__ = [
    "DEFAULT_PATH",
    "ENV_VAR",
    "SETTINGS",
    "AppendResult",
    "Store",
    "StoreSettings",
    "StoreStats",
    "Writer",
    "open_store",
]
