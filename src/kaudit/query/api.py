"""The Python API: the CLI's questions as functions over a store.

::

    import kaudit
    from kaudit.query import api

    store = kaudit.open_store("kaudit-data", create=False)
    api.find(store, user="alice", verb="delete", since="24h")          # pyarrow.Table
    api.sql(store, "SELECT verb, count(*) FROM events GROUP BY ALL")   # pyarrow.Table
    api.history(store, "configmap/app-config", namespace="prod")       # pyarrow.Table
    api.timeline(store, "alice", since="7d")                           # pyarrow.Table
    api.stats(store, by=["code", "user"], top=5, since="24h")          # dict

Every function takes the store first; filters are keyword arguments named as the
CLI flags (``source_ip`` for ``--source-ip``), each one string or a list of strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from kaudit.query import investigate
from kaudit.query.filters import STAGE_FINAL, Filters, Value, select_sql
from kaudit.query.runner import Queryable, run, run_rows
from kaudit.query.schema import COLUMN_NAMES


def filters(
    *,
    user: Value = None,
    group: Value = None,
    verb: Value = None,
    resource: Value = None,
    namespace: Value = None,
    name: Value = None,
    code: Value = None,
    source_ip: Value = None,
    user_agent: Value = None,
    cluster: Value = None,
    stage: str = STAGE_FINAL,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    where: str | None = None,
) -> Filters:
    """A :class:`~kaudit.query.filters.Filters` from keyword arguments."""
    return Filters(
        user=user,
        group=group,
        verb=verb,
        resource=resource,
        namespace=namespace,
        name=name,
        code=code,
        source_ip=source_ip,
        user_agent=user_agent,
        cluster=cluster,
        stage=stage,
        since=since,
        until=until,
        where=where,
    )


def _distinct_ips(store: Queryable) -> Any:
    def resolve() -> list[str]:
        t = run(
            store,
            "SELECT DISTINCT source_ip FROM events WHERE source_ip LIKE '%:%'",
            what="--source-ip",
        )
        return [v for v in t.column(0).to_pylist() if v]

    return resolve


def find(
    store: Queryable,
    *,
    columns: Sequence[str] = COLUMN_NAMES,
    limit: int = 100,
    order: str = "desc",
    now: datetime | None = None,
    **kw: Any,
) -> Any:
    """Events matching the filters as a :class:`pyarrow.Table` (``limit=0``: all)."""
    f = filters(**kw)
    # Validate everything before touching the store.
    select_sql(f, columns=columns, limit=limit, order=order, now=now, resolve_ips=lambda: [])
    resolve = _distinct_ips(store)
    return run_rows(
        store,
        lambda rows: select_sql(
            f, columns=columns, limit=limit, order=order, now=now, resolve_ips=resolve, rows=rows
        ),
        what="--where" if f.where else "query",
    )


def sql(store: Queryable, text: str, params: Sequence[object] | None = None) -> Any:
    """Any DuckDB SQL over the ``events`` view, as a :class:`pyarrow.Table`."""
    return run(store, text, params, what="sql")


def history(
    store: Queryable,
    obj: str,
    *,
    namespace: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    cluster: str | Sequence[str] | None = None,
) -> Any:
    """Every request that named ``obj`` (``KIND/NAME``), oldest first, with ``change``
    (created, changed, state, unchanged, patch, deleted) and ``diff`` columns."""
    return investigate.history(
        store, obj, namespace=namespace, since=since, until=until, cluster=cluster
    )


def timeline(store: Queryable, user: str, *, limit: int = 0, **kw: Any) -> Any:
    """What ``user`` did, grouped with counts, as a :class:`pyarrow.Table`."""
    return investigate.timeline(store, user, filters=filters(**kw), limit=limit)


def stats(
    store: Queryable,
    *,
    by: Sequence[str] = investigate.DEFAULT_BY,
    top: int = 10,
    **kw: Any,
) -> dict[str, Any]:
    """Counts of requests, total and the ``top`` values per dimension in ``by``."""
    return investigate.stats(store, filters=filters(**kw), by=by, top=top)


__all__ = ["filters", "find", "history", "sql", "stats", "timeline"]
