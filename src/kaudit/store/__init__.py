"""The store: a small lake of audit events on local disk.

Events are made durable in a write-ahead log, flushed to zstd Parquet segments
partitioned by date and hour, deduplicated (same auditID, stage and bytes), recorded in a
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
from typing import Any, Final

import duckdb
import pyarrow as pa

from kaudit.errors import KauditError, QueryError, StoreError
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
        """A fresh DuckDB connection with the view ``events`` over segments + WAL tail.

        Sandboxed: its SQL reaches no file outside the store. Raises
        :class:`StoreError` when a segment cannot be read.
        """
        try:
            return reader.connect(self.path)
        except duckdb.Error as exc:
            raise read_error(self.path, exc) from None

    def query(
        self, sql: str, params: Sequence[object] | dict[str, object] | None = None
    ) -> pa.Table:
        """Run ``sql`` (bound ``params`` only) over ``events``; the result as Arrow.

        A segment replaced by compaction or retention after the snapshot was taken is
        retried once with a fresh snapshot; an unreadable segment is a
        :class:`StoreError` naming ``kaudit verify``; bad SQL a :class:`QueryError`.
        """
        for attempt in (1, 2):
            try:
                con = self.connect()
            except StoreError:
                if attempt == 2:
                    raise
                continue
            try:
                return con.sql(sql, params=params).to_arrow_table()
            except duckdb.Error as exc:
                err = read_error(self.path, exc)
                if isinstance(err, StoreError) and attempt == 1:
                    continue
                raise err from None
            finally:
                con.close()
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the questions of kaudit.query.api, as methods ---------------------------

    def find(self, **filters: Any) -> pa.Table:
        """Events matching the CLI's filters (``user=``, ``verb=``, ``since=``...)."""
        from kaudit.query import api

        result: pa.Table = api.find(self, **filters)
        return result

    def history(self, obj: str, **kwargs: Any) -> pa.Table:
        """Every request that touched ``KIND/NAME``, with diffs (see ``kaudit history``)."""
        from kaudit.query import api

        result: pa.Table = api.history(self, obj, **kwargs)
        return result

    def timeline(self, user: str, **kwargs: Any) -> pa.Table:
        """What one identity did (see ``kaudit timeline``)."""
        from kaudit.query import api

        result: pa.Table = api.timeline(self, user, **kwargs)
        return result

    def counts(self, **kwargs: Any) -> dict[str, Any]:
        """Counts by code, verb, user... (see ``kaudit stats``)."""
        from kaudit.query import api

        result: dict[str, Any] = api.stats(self, **kwargs)
        return result

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


#: What DuckDB says when a Parquet segment cannot be read (altered, truncated, gone).
_UNREADABLE = (
    "Failed to read file",
    "No files found that match",
    "don't know what type",
    "Decompression failure",
    "Corrupt",
    "corrupt",
    "Invalid Parquet",
    "No magic bytes",
)


def read_error(root: Path, exc: BaseException) -> KauditError:
    """A DuckDB error as the kaudit error a person can act on.

    Unreadable segments become :class:`StoreError` (run ``kaudit verify``); anything
    else (bad SQL, types) :class:`QueryError`.
    """
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if isinstance(exc, duckdb.IOException) or any(m in text for m in _UNREADABLE):
        return StoreError(
            f"{root}: a segment of the store cannot be read (altered, corrupt or removed?): "
            f"{first}; run `kaudit verify --store {root}` to find which"
        )
    return QueryError(f"query failed: {first}")


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
    elif not create and not (root / EVENTS_DIR).is_dir():
        raise StoreError(
            f"{root}: not a kaudit store (no {EVENTS_DIR}/ directory); check --store "
            "or $KAUDIT_STORE"
        )
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
