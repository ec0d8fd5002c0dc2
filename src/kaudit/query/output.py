"""Renderers shared by every command: ``table``, ``json``, ``jsonl`` and ``csv``.

* ``table``: a rich table sized to the terminal, key columns only, for people.
* ``json``: one JSON array of objects (flat-schema columns; timestamps as RFC 3339
  microsecond UTC strings, lists as arrays, maps as objects).
* ``jsonl``: the original events byte for byte (the ``event`` column), one per line.
* ``csv``: a header row then one row per event; lists and maps as JSON text.

Input is a :class:`pyarrow.Table` or any iterable of record batches, so a command can
stream millions of rows without holding them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any, Final

import msgspec

from kaudit.errors import QueryError

FORMATS: Final = ("table", "json", "jsonl", "csv")

#: What ``--format table`` shows for events, in order, when those columns exist.
TABLE_COLUMNS: Final = (
    "ts",
    "username",
    "verb",
    "resource",
    "namespace",
    "name",
    "code",
    "source_ip",
)

_JSON = msgspec.json.Encoder()


def iso(value: datetime) -> str:
    """``2024-05-01T12:00:00.123456Z``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _short_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def plain(value: object) -> object:
    """A JSON-ready form of one Arrow value (``to_pylist`` output)."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _batches(data: Any) -> Iterator[Any]:
    if hasattr(data, "to_batches"):
        yield from data.to_batches()
    else:
        yield from data


def _pylist(array: Any) -> list[Any]:
    """Python values of one Arrow column; maps become dicts (even when empty)."""
    import pyarrow as pa

    values: list[Any] = array.to_pylist()
    if pa.types.is_map(array.type):
        return [dict(v) if v is not None else None for v in values]
    return values


def _rows(data: Any, columns: Sequence[str] | None = None) -> Iterator[dict[str, object]]:
    for batch in _batches(data):
        names = batch.schema.names
        cols = [c for c in (columns or names) if c in names]
        pylists = [_pylist(batch.column(names.index(c))) for c in cols]
        for i in range(batch.num_rows):
            yield {c: pylists[j][i] for j, c in enumerate(cols)}


def write_jsonl(data: Any, out: IO[bytes]) -> int:
    """The ``event`` column, each value + ``\\n``, byte for byte. Returns the row count."""
    n = 0
    for batch in _batches(data):
        names = batch.schema.names
        if "event" not in names:
            raise QueryError("--format jsonl: the result has no 'event' column to write")
        for value in batch.column(names.index("event")).to_pylist():
            if value is None:
                continue
            out.write(value.encode() if isinstance(value, str) else bytes(value))
            out.write(b"\n")
            n += 1
    return n


def write_json(data: Any, out: IO[bytes], columns: Sequence[str] | None = None) -> int:
    """A JSON array of objects, streamed one object per line."""
    n = 0
    out.write(b"[")
    for row in _rows(data, columns):
        out.write(b"\n" if n == 0 else b",\n")
        out.write(_JSON.encode({k: plain(v) for k, v in row.items()}))
        n += 1
    out.write(b"\n]\n" if n else b"]\n")
    return n


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, list | dict):
        return _JSON.encode(plain(value)).decode()
    return value


def write_csv(data: Any, out: IO[bytes], columns: Sequence[str] | None = None) -> int:
    n = 0
    header_done = False
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for batch in _batches(data):
        names = batch.schema.names
        cols = [c for c in (columns or names) if c in names]
        if not header_done:
            w.writerow(cols)
            header_done = True
        for row in _rows([batch], cols):
            w.writerow([_csv_cell(row[c]) for c in cols])
            n += 1
        out.write(buf.getvalue().encode())
        buf.seek(0)
        buf.truncate()
    if not header_done and columns:
        w.writerow(list(columns))
    out.write(buf.getvalue().encode())
    return n


def console_width(out: IO[str]) -> int | None:
    """The terminal's width for a terminal (None: let rich ask); very wide for a pipe
    or file, so that lines are never folded there."""
    isatty = getattr(out, "isatty", None)
    try:
        if isatty is not None and isatty():
            return None
    except ValueError:  # a closed stream
        return None
    return 10_000


def cell_text(column: str, value: object, row: dict[str, object] | None = None) -> str:
    """How ``--format table`` shows one value."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _short_time(value)
    if row is not None:
        if column == "username" and row.get("impersonated_user"):
            return f"{value} (as {row['impersonated_user']})"
        if column == "resource" and row.get("subresource"):
            return f"{value}/{row['subresource']}"
    if isinstance(value, list | dict):
        return _JSON.encode(plain(value)).decode()
    return str(value)


def write_table(
    data: Any,
    out: IO[str],
    columns: Sequence[str] | None = None,
    *,
    title: str | None = None,
    width: int | None = None,
    empty: str = "no matching events",
    all_columns: bool = False,
) -> int:
    """A rich table of ``columns`` (default: the key event columns present, or every
    column with ``all_columns``)."""
    from rich.console import Console
    from rich.table import Table

    rows = list(_rows(data))
    if columns is None:
        present = set(rows[0]) if rows else set()
        if not rows and hasattr(data, "schema"):
            present = set(data.schema.names)
        if all_columns:
            first = next(iter(_batches(data)), None) if not rows else None
            columns = list(rows[0]) if rows else (first.schema.names if first else [])
        else:
            columns = [c for c in TABLE_COLUMNS if c in present] or sorted(present)
    console = Console(file=out, width=width or console_width(out), soft_wrap=False, highlight=False)
    if not rows:
        console.print(empty)
        return 0
    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c, overflow="fold", no_wrap=c in ("ts", "code", "verb", "count"))
    for row in rows:
        table.add_row(*(cell_text(c, row.get(c), row) for c in columns))
    console.print(table)
    return len(rows)


def render(
    data: Any,
    fmt: str,
    *,
    binary_out: IO[bytes],
    text_out: IO[str],
    columns: Sequence[str] | None = None,
    title: str | None = None,
    all_columns: bool = False,
) -> int:
    """Write ``data`` in ``fmt``; returns the number of rows written."""
    if fmt == "jsonl":
        return write_jsonl(data, binary_out)
    if fmt == "json":
        return write_json(data, binary_out, columns)
    if fmt == "csv":
        return write_csv(data, binary_out, columns)
    if fmt == "table":
        return write_table(data, text_out, columns, title=title, all_columns=all_columns)
    raise QueryError(f"--format: unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def write_json_value(value: object, out: IO[bytes]) -> None:
    """One JSON document (for ``stats --format json`` and similar), indented."""
    out.write(msgspec.json.format(_JSON.encode(plain(value)), indent=2))
    out.write(b"\n")


def rows_of(data: Any, columns: Sequence[str] | None = None) -> list[dict[str, object]]:
    return list(_rows(data, columns))


def iter_rows(data: Iterable[Any]) -> Iterator[dict[str, object]]:
    return _rows(data)


__all__ = [
    "FORMATS",
    "TABLE_COLUMNS",
    "cell_text",
    "console_width",
    "iso",
    "iter_rows",
    "plain",
    "render",
    "rows_of",
    "write_csv",
    "write_json",
    "write_json_value",
    "write_jsonl",
    "write_table",
]
