"""Running SQL against a store, with DuckDB's errors turned into :class:`QueryError`.

Anything with ``query(sql, params) -> pyarrow.Table`` will do (a
:class:`kaudit.store.Store`); ``connect()`` is used to stream large results.

:func:`run_rows` and :func:`stream_rows` run statements over the final stage of each
request: on a :class:`kaudit.store.Store` from its open rows
(:mod:`kaudit.query.finalstage`, computed once per partition), elsewhere with the
probe that stands alone over ``events``. Same rows either way.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kaudit.query.filters import Compiled

from kaudit.errors import KauditError, QueryError, StoreError


class Queryable(Protocol):
    def query(self, sql: str, params: Sequence[object] | dict[str, object] | None = None) -> Any:
        """Run ``sql`` over the ``events`` view; a :class:`pyarrow.Table`."""
        ...


def _message(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classify(store: Any, exc: Exception, what: str) -> KauditError:
    """An unreadable segment is a :class:`StoreError`; anything else a :class:`QueryError`."""
    path = getattr(store, "path", None)
    if path is not None:
        from kaudit.store import read_error

        err = read_error(path, exc)
        if isinstance(err, StoreError):
            return err
    return QueryError(f"{what}: {_message(exc)}")


def run(store: Queryable, sql: str, params: Sequence[object] | None = None, *, what: str) -> Any:
    """``store.query(sql, params)``; a DuckDB error becomes ``QueryError("<what>: ...")``."""
    import duckdb

    try:
        return store.query(sql, list(params or []))
    except KauditError as exc:
        if isinstance(exc, QueryError):
            raise QueryError(f"{what}: {exc}") from None
        raise
    except duckdb.Error as exc:
        raise QueryError(f"{what}: {_message(exc)}") from None


def stream(
    store: Any,
    sql: str,
    params: Sequence[object] | None = None,
    *,
    what: str,
    batch_rows: int = 8192,
) -> Iterator[Any]:
    """Record batches of the result, read as they come when the store offers ``connect()``.

    The statement runs before this returns, so an error is raised before any output.
    """
    import duckdb

    connect = getattr(store, "connect", None)
    if connect is None:
        return iter(run(store, sql, params, what=what).to_batches())
    for attempt in (1, 2):
        # A segment replaced by compaction or retention between our snapshot and the
        # read: once more with a fresh snapshot.
        try:
            con = connect()
        except StoreError:
            if attempt == 2:
                raise
            continue
        try:
            reader = con.sql(sql, params=list(params or []) or None).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            con.close()
            err = _classify(store, exc, what)
            if isinstance(err, StoreError) and attempt == 1:
                continue
            raise err from None
        except BaseException:
            con.close()
            raise
        return _read(con, reader, store, what)
    raise AssertionError("unreachable")  # pragma: no cover


def _read(con: Any, reader: Any, store: Any, what: str) -> Iterator[Any]:
    import duckdb

    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except duckdb.Error as exc:
                raise _classify(store, exc, what) from None
            yield batch
    finally:
        con.close()


#: Builds a statement from a ``rows_sql`` (:func:`kaudit.query.filters.rows_sql`, maybe
#: bound to a connection's open rows).
Build = Callable[[Callable[..., "Compiled"]], "Compiled"]


def _prepared(store: Any) -> tuple[Any, Callable[..., Compiled]]:
    """A connection over a fresh snapshot with the open rows installed, and ``rows_sql``
    bound to them."""
    from kaudit.query.filters import OpenRows, rows_sql
    from kaudit.query.finalstage import OPEN_COLUMNS, OPEN_VIEW, OpenRowsCache, install
    from kaudit.store import reader

    snap = reader.snapshot(store.path)
    with OpenRowsCache(store.path) as cache:
        prepared = cache.prepare(snap)
    con = reader.connect(store.path, snap, readable=[cache.dir])
    names = itertools.count()

    def keys(c: Compiled | None) -> str | None:
        if c is None:
            return OPEN_VIEW
        table = con.sql(
            f"SELECT audit_id, ts, stage FROM {OPEN_VIEW} WHERE {c.sql}",
            params=list(c.params) or None,
        ).to_arrow_table()
        if not table.num_rows:
            return None
        name = f"kaudit_open_keys_{next(names)}"
        con.register(name, table)
        return name

    try:
        install(con, prepared)
    except BaseException:
        con.close()
        raise
    return con, functools.partial(rows_sql, open_rows=OpenRows(OPEN_VIEW, OPEN_COLUMNS, keys))


def _execute_rows(store: Any, build: Build, what: str, batch_rows: int) -> tuple[Any, Any]:
    """``(connection, record batch reader)`` of the statement ``build`` makes."""
    import duckdb

    for attempt in (1, 2):
        # A segment replaced by compaction or retention between our snapshot and the
        # read: once more with a fresh snapshot.
        con = None
        try:
            con, rows = _prepared(store)
            q = build(rows)
            return con, con.sql(q.sql, params=list(q.params) or None).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            if con is not None:
                con.close()
            if _discard_cache(store, exc) and attempt == 1:
                continue  # a damaged cache file (not the store's data): computed again
            err = _classify(store, exc, what)
            if isinstance(err, StoreError) and attempt == 1:
                continue
            raise err from None
        except StoreError:
            if con is not None:
                con.close()
            if attempt == 2:
                raise
        except BaseException:
            if con is not None:
                con.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _discard_cache(store: Any, exc: Exception) -> bool:
    from kaudit.query.finalstage import OpenRowsCache

    return OpenRowsCache(store.path).discard(str(exc))


def _is_store(store: Any) -> bool:
    from kaudit.store import Store

    return isinstance(store, Store)


def run_rows(store: Queryable, build: Build, *, what: str) -> Any:
    """The :class:`pyarrow.Table` of the statement ``build`` makes (see the module)."""
    import duckdb

    if not _is_store(store):
        from kaudit.query.filters import rows_sql

        q = build(rows_sql)
        return run(store, q.sql, q.params, what=what)
    con, reader = _execute_rows(store, build, what, 1 << 16)
    try:
        return reader.read_all()
    except duckdb.Error as exc:
        raise _classify(store, exc, what) from None
    finally:
        con.close()


def stream_rows(store: Any, build: Build, *, what: str, batch_rows: int = 8192) -> Iterator[Any]:
    """Record batches of the statement ``build`` makes, read as they come (see the module)."""
    if not _is_store(store):
        from kaudit.query.filters import rows_sql

        q = build(rows_sql)
        return stream(store, q.sql, q.params, what=what, batch_rows=batch_rows)
    con, reader = _execute_rows(store, build, what, batch_rows)
    return _read(con, reader, store, what)


__all__ = ["Build", "Queryable", "run", "run_rows", "stream", "stream_rows"]
