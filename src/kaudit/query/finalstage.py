"""The final stage of each request without probing every stored event: the *open* rows.

A request counts once, at its final stage (:mod:`kaudit.query.filters`): a terminal
row (``ResponseComplete``, ``Panic``) is final; a ``RequestReceived`` or
``ResponseStarted`` row is final only when no stored event of the same request (same
``audit_id`` and ``ts``) has a later stage. Those non-terminal final rows are the
*open* rows: a watch still running, a request whose later stages a policy omits, a
failed authentication. Deciding it at query time meant probing every stored event;
here the open rows are computed once per partition and kept as a derived cache::

    <store>/cache/final-open/<digest>-<version>.parquet

All stages of one request share ``requestReceivedTimestamp``, hence ``ts`` and the
hour partition (an event without it takes its own stage timestamp as ``ts``, so its
stages share no ``ts`` and each counts on its own, as in the probe). A partition's
open rows therefore depend on that partition's segments only. ``digest`` is the
SHA-256 of the sorted SHA-256s of the partition's segments, so a flush, a compaction
or retention makes a new file, never a wrong answer; files of partitions that are
gone are removed. A store whose segments do not lie within their partition's hour is
taken as one partition (right, only slower). A cache that cannot be written (a
read-only copy) is computed in memory for each read instead.

The write-ahead log tail is handled live at every read, from the same snapshot as the
``events`` view: cached open rows that a tail event supersedes are left out, and the
tail's own open rows are decided against the tail and the segments of their hours.

The cache keeps every column but the big ones (:data:`BIG_COLUMNS`). A query over
the small columns reads the open rows from it directly; one that shows a big column
takes the keys of the open rows matching its filters and fetches those rows from
``events``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import duckdb
import pyarrow as pa

from kaudit.query.rollup import CACHE_DIR
from kaudit.query.schema import COLUMN_NAMES
from kaudit.store.flatten import SCHEMA
from kaudit.store.layout import FILE_MODE, TMP_PREFIX, private_temp
from kaudit.store.manifest import SegmentInfo
from kaudit.store.reader import Snapshot
from kaudit.store.segments import HOUR_US, hour_of_partition

CACHE_NAME: Final = "final-open"
#: Bump when the meaning of a cache file changes.
VERSION: Final = "1"
BIG_COLUMNS: Final = ("event", "request_object", "response_object")
OPEN_COLUMNS: Final = tuple(c for c in COLUMN_NAMES if c not in BIG_COLUMNS)
#: The relation of the open rows in a connection prepared by :func:`install`.
OPEN_VIEW: Final = "kaudit_open"
TERMINAL_SQL: Final = "('ResponseComplete', 'Panic')"
_KNOWN_SQL: Final = "('RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic')"

_TAIL_ROWS: Final = "kaudit_open_tail_rows"
_TAIL_OPEN: Final = "kaudit_open_tail"
_TAIL_MAX: Final = "kaudit_open_tail_max"
_MEM_PREFIX: Final = "kaudit_open_mem_"
_COLS: Final = ", ".join(f'"{c}"' for c in OPEN_COLUMNS)


def rank(t: str = "") -> str:
    """SQL for a stage's order within a request (0, 1, then 2 for the rest)."""
    p = f"{t}." if t else ""
    return f"CASE {p}stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 ELSE 2 END"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _relation(files: Sequence[str]) -> str:
    return f"read_parquet([{', '.join(_quote(f) for f in files)}], hive_partitioning = false)"


def open_rows_sql(relation: str) -> str:
    """The open rows of ``relation`` (rows of the flat schema), every other row known.

    A non-terminal row is open when its request has no later stage among the rows; a
    row without ``audit_id`` is its own request. A stage kaudit does not know ranks
    with the terminal ones and is never superseded (as in the probe).
    """
    return (
        f"WITH _k AS (SELECT audit_id, ts, max({rank()}) AS _r FROM {relation} "
        "WHERE audit_id <> '' GROUP BY audit_id, ts "
        f"HAVING max({rank()}) < 2 OR bool_or(stage NOT IN {_KNOWN_SQL})) "
        f"SELECT {_COLS} FROM {relation} _e SEMI JOIN _k ON _e.audit_id = _k.audit_id "
        f"AND _e.ts = _k.ts AND {rank('_e')} = _k._r WHERE _e.stage NOT IN {TERMINAL_SQL} "
        f"UNION ALL SELECT {_COLS} FROM {relation} "
        f"WHERE (audit_id = '' OR audit_id IS NULL) AND stage NOT IN {TERMINAL_SQL}"
    )


@dataclass(frozen=True, slots=True)
class Group:
    """Segments whose requests cannot share a ``ts`` with any other segment's."""

    hour: int | None  # None: the whole store as one group
    segments: tuple[SegmentInfo, ...]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for sha in sorted(s.sha256 for s in self.segments):
            h.update(sha.encode() + b"\n")
        return h.hexdigest()


def groups(segments: Iterable[SegmentInfo]) -> list[Group]:
    """The segments by hour partition; one group when any lies outside its hour."""
    segs = sorted(segments, key=lambda s: s.path)
    by_hour: dict[int, list[SegmentInfo]] = {}
    for s in segs:
        hour = hour_of_partition(s.path)
        if hour is None or s.min_ts // HOUR_US != hour or s.max_ts // HOUR_US != hour:
            return [Group(None, tuple(segs))] if segs else []
        by_hour.setdefault(hour, []).append(s)
    return [Group(h, tuple(v)) for h, v in sorted(by_hour.items())]


@dataclass(slots=True)
class OpenRows:
    """The open rows of one snapshot: cache files, in-memory parts, and the tail's."""

    files: list[str] = field(default_factory=list)
    memory: list[pa.Table] = field(default_factory=list)
    tail_open: pa.Table | None = None
    tail_max: pa.Table | None = None
    computed: int = 0
    cached: int = 0
    removed: int = 0


class OpenRowsCache:
    """Computes and keeps the open rows of a store's partitions (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.dir = self.root / CACHE_DIR / CACHE_NAME
        self._con: duckdb.DuckDBPyConnection | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """An internal connection (no user SQL ever runs on it)."""
        if self._con is None:
            con = duckdb.connect(":memory:")
            con.execute("SET TimeZone = 'UTC'")
            self._con = con
        return self._con

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> OpenRowsCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, group: Group) -> Path:
        return self.dir / f"{group.digest}-{VERSION}.parquet"

    def _files(self, group: Group) -> list[str]:
        return [str(self.root / s.path) for s in group.segments]

    def prepare(self, snap: Snapshot) -> OpenRows:
        """The open rows of ``snap``: cached (computed first where missing) plus the tail's."""
        out = OpenRows()
        gs = groups(snap.state.segments.values())
        for g in gs:
            path = self.path(g)
            if path.is_file():
                out.files.append(str(path))
                out.cached += 1
                continue
            sql = open_rows_sql(_relation(self._files(g)))
            if self._write(sql, path):
                out.files.append(str(path))
            else:
                out.memory.append(self.con.sql(sql).to_arrow_table())
            out.computed += 1
        if out.computed or len(gs) < self._count():
            out.removed = self.prune({self.path(g).name for g in gs})
        self._tail(snap, gs, out)
        return out

    def _count(self) -> int:
        try:
            return sum(1 for p in self.dir.iterdir() if p.suffix == ".parquet")
        except OSError:
            return 0

    def _write(self, sql: str, path: Path) -> bool:
        """Compute into ``path`` (0600, via a temporary name); False when it cannot be written."""
        try:
            # The file is made 0600 before DuckDB writes a byte of it.
            tmp = private_temp(path)
        except OSError:
            return False  # a read-only store: computed in memory for each read
        try:
            self.con.execute(
                f"COPY ({sql}) TO {_quote(str(tmp))} (FORMAT parquet, COMPRESSION zstd)"
            )
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
            return True
        except (OSError, duckdb.Error) as exc:
            _unlink(tmp)
            if isinstance(exc, duckdb.Error) and str(tmp) not in str(exc):
                raise  # reading a segment failed: the caller names the store's problem
            return False  # writing failed (a full disk): computed in memory instead

    def discard(self, message: str) -> bool:
        """Remove the cache files an error ``message`` names (a damaged file is
        computed again); whether it named any."""
        if str(self.dir) not in message:
            return False
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return True
        named = [p for p in entries if str(p) in message] or entries
        for p in named:
            _unlink(p)
        return True

    def prune(self, live: set[str]) -> int:
        """Remove cache files (and stale temporary files of this process) not in ``live``."""
        removed = 0
        try:
            entries = list(self.dir.iterdir())
        except OSError:
            return 0
        for p in entries:
            if p.suffix != ".parquet" or p.name in live:
                continue
            if p.name.startswith(TMP_PREFIX) and not p.name.startswith(
                f"{TMP_PREFIX}{os.getpid()}-"
            ):
                continue  # another reader's file being written
            try:
                p.unlink()
                removed += 1
            except OSError:
                continue
        return removed

    def _tail(self, snap: Snapshot, gs: list[Group], out: OpenRows) -> None:
        tail = snap.tail
        if not tail.num_rows:
            return
        con = self.con
        con.register(_TAIL_ROWS, tail.cast(SCHEMA).select(list(OPEN_COLUMNS)))
        try:
            # Every request key of the tail with its latest stage: cached open rows of
            # the same request at an earlier stage are superseded.
            out.tail_max = con.sql(
                f"SELECT audit_id, ts, max({rank()}) AS _r FROM {_TAIL_ROWS} "
                "WHERE audit_id <> '' GROUP BY audit_id, ts"
            ).to_arrow_table()
            cand = con.sql(open_rows_sql(_TAIL_ROWS)).to_arrow_table()
            hours = {int(v) // HOUR_US for v in cand.column("ts").cast(pa.int64()).to_pylist()}
            files = [f for g in gs if g.hour is None or g.hour in hours for f in self._files(g)]
            if cand.num_rows and files:
                con.register(_TAIL_OPEN, cand)
                try:
                    # ... and the tail's open rows must not be superseded by a segment.
                    cand = con.sql(
                        f"SELECT * FROM {_TAIL_OPEN} _c WHERE audit_id = '' OR audit_id IS NULL "
                        f"OR NOT EXISTS (SELECT 1 FROM {_relation(files)} _s "
                        "WHERE _s.audit_id = _c.audit_id AND _s.ts = _c.ts "
                        f"AND {rank('_s')} > {rank('_c')})"
                    ).to_arrow_table()
                finally:
                    con.unregister(_TAIL_OPEN)
            out.tail_open = cand
        finally:
            con.unregister(_TAIL_ROWS)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def install(con: duckdb.DuckDBPyConnection, rows: OpenRows) -> None:
    """Define the view :data:`OPEN_VIEW` (the open rows, flat-schema small columns)."""
    parts: list[str] = []
    if rows.files:
        parts.append(f"SELECT {_COLS} FROM {_relation(rows.files)}")
    for i, table in enumerate(rows.memory):
        con.register(f"{_MEM_PREFIX}{i}", table)
        parts.append(f"SELECT {_COLS} FROM {_MEM_PREFIX}{i}")
    stored = " UNION ALL ".join(parts)
    if stored and rows.tail_max is not None and rows.tail_max.num_rows:
        con.register(_TAIL_MAX, rows.tail_max)
        stored = (
            f"SELECT * FROM ({stored}) _o WHERE NOT EXISTS (SELECT 1 FROM {_TAIL_MAX} _t "
            f"WHERE _t.audit_id = _o.audit_id AND _t.ts = _o.ts AND _t._r > {rank('_o')})"
        )
    pieces = [stored] if stored else []
    if rows.tail_open is not None:
        con.register(_TAIL_OPEN, rows.tail_open)
        pieces.append(f"SELECT {_COLS} FROM {_TAIL_OPEN}")
    if not pieces:
        con.register(_TAIL_OPEN, SCHEMA.empty_table().select(list(OPEN_COLUMNS)))
        pieces.append(f"SELECT {_COLS} FROM {_TAIL_OPEN}")
    con.execute(f"CREATE VIEW {OPEN_VIEW} AS {' UNION ALL '.join(pieces)}")


__all__ = [
    "BIG_COLUMNS",
    "CACHE_NAME",
    "OPEN_COLUMNS",
    "OPEN_VIEW",
    "TERMINAL_SQL",
    "VERSION",
    "Group",
    "OpenRows",
    "OpenRowsCache",
    "groups",
    "install",
    "open_rows_sql",
    "rank",
]
