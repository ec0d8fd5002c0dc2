"""Running SQL against a store, with DuckDB's errors turned into :class:`QueryError`.

Anything with ``query(sql, params) -> pyarrow.Table`` will do (a
:class:`kaudit.store.Store`); ``connect()`` is used to stream large results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

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


__all__ = ["Queryable", "run", "stream"]
