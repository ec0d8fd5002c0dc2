"""Search: the CLI's friendly filters (or a SQL query), a page of results, exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from kaudit.errors import QueryError
from kaudit.query.filters import Filters, check_columns, select_sql
from kaudit.query.output import iso
from kaudit.query.schema import COLUMN_NAMES

FILTERS: Final = (
    "user",
    "group",
    "verb",
    "resource",
    "namespace",
    "name",
    "code",
    "source_ip",
    "user_agent",
    "cluster",
)
DEFAULT_COLUMNS: Final = (
    "ts",
    "username",
    "verb",
    "resource",
    "namespace",
    "name",
    "code",
    "source_ip",
    "user_agent",
)
PAGE_SIZES: Final = (25, 50, 100, 500)
MAX_PAGE: Final = 1000
EXPORT_MAX_ROWS: Final = 1_000_000


@dataclass(slots=True)
class SearchForm:
    values: dict[str, str] = field(default_factory=dict)
    since: str = ""
    until: str = ""
    stage: str = "final"
    where: str = ""
    sql: str = ""
    columns: list[str] = field(default_factory=lambda: list(DEFAULT_COLUMNS))
    limit: int = 50
    page: int = 1
    order: str = "desc"

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "filters": {k: v for k, v in self.values.items() if v},
            "since": self.since or None,
            "until": self.until or None,
            "stage": self.stage,
            "where": self.where or None,
            "sql": self.sql or None,
            "columns": self.columns,
            "limit": self.limit,
            "page": self.page,
            "order": self.order,
        }


def _int(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = (q.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name}: invalid value {raw!r}: expected a whole number") from None
    if not lo <= value <= hi:
        raise QueryError(f"{name}: {value} is out of range: expected {lo} to {hi}")
    return value


def parse_form(q: Any) -> SearchForm:
    """The form from query parameters (a Starlette ``QueryParams`` or a dict)."""
    get = q.get
    cols: list[str] = []
    getlist = getattr(q, "getlist", None)
    raw_cols = getlist("columns") if getlist is not None else [q.get("columns") or ""]
    for c in raw_cols:
        cols.extend(p for p in str(c).split(",") if p.strip())
    f = SearchForm(
        values={k: (get(k) or "").strip() for k in FILTERS},
        since=(get("since") or "").strip(),
        until=(get("until") or "").strip(),
        stage=(get("stage") or "final").strip() or "final",
        where=(get("where") or "").strip(),
        sql=(get("sql") or "").strip(),
        columns=check_columns(cols, flag="columns") if cols else list(DEFAULT_COLUMNS),
        limit=_int(q, "limit", 50, 1, MAX_PAGE),
        page=_int(q, "page", 1, 1, 10_000_000),
        order=(get("order") or "desc").strip().lower(),
    )
    if f.order not in ("asc", "desc"):
        raise QueryError(f"order: invalid value {f.order!r}: expected asc or desc")
    return f


def filters_of(form: SearchForm) -> Filters:
    kw: dict[str, Any] = {k: (v or None) for k, v in form.values.items()}
    return Filters(
        **kw,
        stage=form.stage,
        since=form.since or None,
        until=form.until or None,
        where=form.where or None,
    )


def compiled(form: SearchForm, columns: Sequence[str] | None = None) -> tuple[str, list[object]]:
    """The statement of the filters (all rows, ordered): SQL and bound parameters."""
    c = select_sql(filters_of(form), columns=columns or form.columns, limit=0, order=form.order)
    return c.sql, c.params


def _cell(v: object) -> object:
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_cell(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _cell(x) for k, x in v.items()}
    return v


def search(con: Any, form: SearchForm) -> dict[str, Any]:
    """One page of results: ``columns``, ``rows``, ``has_more``, the SQL that ran."""
    if form.sql:
        base, params = form.sql.rstrip().rstrip(";"), list[object]()
        columns: list[str] | None = None
    else:
        cols = list(form.columns)
        for needed in ("audit_id", "ts"):
            if needed not in cols:
                cols.append(needed)
        base, params = compiled(form, cols)
        columns = form.columns
    sql = f"SELECT * FROM ({base}) _page LIMIT {form.limit + 1} OFFSET {form.offset}"
    try:
        table = con.sql(sql, params=params or None).to_arrow_table()
    except Exception as exc:  # duckdb.Error, with the user's own SQL
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QueryError(f"search: {msg}") from None
    rows = table.to_pylist()
    has_more = len(rows) > form.limit
    rows = [{k: _cell(v) for k, v in r.items()} for r in rows[: form.limit]]
    shown = columns if columns is not None else list(table.schema.names)
    return {
        "query": form.to_dict(),
        "sql": base,
        "params": [_cell(p) for p in params],
        "columns": shown,
        "rows": rows,
        "page": form.page,
        "limit": form.limit,
        "has_more": has_more,
        "all_columns": list(COLUMN_NAMES),
    }


def export_jsonl(con: Any, form: SearchForm) -> Iterator[bytes]:
    """The original events (the ``event`` column), one JSON line each."""
    if form.sql:
        sql, params = f"SELECT event FROM ({form.sql.rstrip().rstrip(';')}) _x", list[object]()
    else:
        sql, params = compiled(form, ["event"])
    sql = f"SELECT event FROM ({sql}) _e LIMIT {EXPORT_MAX_ROWS}"
    try:
        reader = con.sql(sql, params=params or None).to_arrow_reader(4096)
    except Exception as exc:
        raise QueryError(f"export: {str(exc).strip().splitlines()[0]}") from None
    for batch in reader:
        col = batch.column(0).to_pylist()
        yield b"".join((e if isinstance(e, bytes) else str(e).encode()) + b"\n" for e in col if e)


def export_csv(con: Any, form: SearchForm) -> Iterator[bytes]:
    """The chosen columns as CSV (lists and maps as JSON)."""
    import msgspec

    if form.sql:
        sql, params = form.sql.rstrip().rstrip(";"), list[object]()
    else:
        sql, params = compiled(form)
    sql = f"SELECT * FROM ({sql}) _c LIMIT {EXPORT_MAX_ROWS}"
    try:
        reader = con.sql(sql, params=params or None).to_arrow_reader(4096)
    except Exception as exc:
        raise QueryError(f"export: {str(exc).strip().splitlines()[0]}") from None
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(reader.schema.names)
    for batch in reader:
        for r in batch.to_pylist():
            w.writerow(
                [
                    msgspec.json.encode(_cell(v)).decode()
                    if isinstance(v, list | dict)
                    else ("" if v is None else _cell(v))
                    for v in r.values()
                ]
            )
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()


__all__ = [
    "DEFAULT_COLUMNS",
    "FILTERS",
    "SearchForm",
    "export_csv",
    "export_jsonl",
    "parse_form",
    "search",
]
