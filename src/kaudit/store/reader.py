"""The read side: DuckDB over the segments plus the not-yet-flushed WAL tail.

A reader takes no lock. It reads a consistent snapshot in this order: the WAL
files, then the manifest. A WAL file the manifest already records as flushed is
skipped (its rows are in the segments the manifest lists), and the segments
queried are exactly those the manifest lists — never a file being written. The
view ``events`` has exactly the flat-schema columns, in order; the Hive
partition columns (``date``, ``hour``) are not part of it (filter on ``ts``:
row groups are skipped by their min/max statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from kaudit.query.schema import COLUMN_NAMES
from kaudit.store import manifest
from kaudit.store.flatten import SCHEMA, empty_table
from kaudit.store.layout import EVENTS_DIR, TMP_PREFIX, WAL_DIR
from kaudit.store.manifest import ManifestState
from kaudit.store.wal import read_wal

TAIL_TABLE = "kaudit_wal_tail"
_COLS = ", ".join(f'"{c}"' for c in COLUMN_NAMES)


@dataclass(frozen=True, slots=True)
class Snapshot:
    state: ManifestState
    tail: pa.Table
    wal_bytes: int

    def segment_files(self, root: Path) -> list[str]:
        return [str(root / p) for p in sorted(self.state.segments)]


def wal_files(root: Path) -> list[Path]:
    d = root / WAL_DIR
    try:
        return sorted(
            p for p in d.iterdir() if p.suffix == ".wal" and not p.name.startswith(TMP_PREFIX)
        )
    except FileNotFoundError:
        return []


def snapshot(root: Path) -> Snapshot:
    tails: list[tuple[str, list[pa.Table], int]] = []
    for path in wal_files(root):
        contents = read_wal(path)
        tails.append((path.name, contents.tables, contents.valid_bytes))
    state = manifest.load(root)
    tables: list[pa.Table] = []
    size = 0
    for name, ts, valid in tails:
        if name in state.flushed_wals:
            continue
        tables.extend(ts)
        size += valid
    tail = pa.concat_tables(tables) if tables else empty_table()
    return Snapshot(state, tail, size)


def connect(
    root: Path,
    snap: Snapshot | None = None,
    *,
    sandbox: bool = True,
    readable: Sequence[Path] = (),
) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the view ``events`` defined.

    ``sandbox``: once the view exists, SQL can read and write no file outside the
    store's segments (no ``read_text('/etc/...')``, nothing from the quarantine, no
    ``COPY ... TO`` elsewhere), and cannot turn that off again. ``readable``: more
    directories of the store the sandbox lets through (a derived cache of its events).
    """
    snap = snap or snapshot(root)
    con = duckdb.connect(":memory:")
    con.register(TAIL_TABLE, snap.tail.cast(SCHEMA))
    files = snap.segment_files(root)
    tail_sql = f"SELECT {_COLS} FROM {TAIL_TABLE}"
    if files:
        listing = "[" + ", ".join(_quote(f) for f in files) + "]"
        con.execute(
            f"CREATE VIEW events AS SELECT {_COLS} FROM read_parquet({listing}, "
            f"hive_partitioning = false) UNION ALL {tail_sql}"
        )
    else:
        con.execute(f"CREATE VIEW events AS {tail_sql}")
    con.execute("SET TimeZone = 'UTC'")  # audit times are UTC; say so in every result
    if sandbox:
        # The segments only: not the quarantine (raw, unredacted bodies), not the WAL.
        allowed = [root / EVENTS_DIR, *readable]
        con.execute(f"SET allowed_directories=[{', '.join(_quote(str(d)) for d in allowed)}]")
        con.execute("SET enable_external_access=false")
        con.execute("SET lock_configuration=true")
    return con


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


__all__ = ["TAIL_TABLE", "Snapshot", "connect", "snapshot", "wal_files"]
