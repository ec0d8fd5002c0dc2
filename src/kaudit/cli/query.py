"""``kaudit query`` (friendly filters) and ``kaudit sql`` (DuckDB SQL over ``events``).

Imports stay light until a command runs: DuckDB and Arrow are loaded only to
execute, so ``kaudit query --help`` is quick. The options shared with the
investigation commands (``--store``, the filters, ``--format``) are defined here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click

from kaudit.errors import QueryError

F = TypeVar("F", bound=Callable[..., Any])

FORMATS = ("table", "json", "jsonl", "csv")

# (option name, help) for the repeatable filters, in --help order.
_FILTERS: tuple[tuple[str, str], ...] = (
    ("user", "User name or impersonated user; * globs (system:serviceaccount:kube-system:*)."),
    ("group", "One of the user's groups; * globs."),
    ("verb", "Verb (get, list, watch, create, update, patch, delete, ...); comma list."),
    (
        "resource",
        "pods, pods/exec, deployments.apps, */scale, pods/* (with subresources); "
        "singular and Kind names work (configmap, ConfigMap); comma list.",
    ),
    ("namespace", "Namespace (- for cluster-scoped); * globs; comma list."),
    ("name", "Object name; * globs."),
    ("code", "Status code: 403, 4xx, >=400, <300, 400-499, !200; comma list."),
    ("source-ip", "Client IP (first of sourceIPs) or CIDR block (10.0.0.0/8, fd00::/64)."),
    ("user-agent", "User-Agent: substring (case-insensitive), or a glob when it has *."),
    ("cluster", "Cluster name given at ingest; comma list."),
)


def store_option(f: F) -> F:
    return click.option(
        "--store",
        "store_path",
        type=click.Path(file_okay=False),
        default=None,
        envvar="KAUDIT_STORE",
        show_envvar=True,
        help="Store directory [default: ./kaudit-data].",
    )(f)


def time_options(f: F) -> F:
    f = click.option(
        "--until",
        metavar="WHEN",
        help="Only requests received before WHEN (same forms as --since).",
    )(f)
    return click.option(
        "--since",
        metavar="WHEN",
        help="Only requests received at or after WHEN: 30m, 24h, 7d ago, a date "
        "(2025-03-01, UTC) or an RFC 3339 time.",
    )(f)


def filter_options(exclude: Sequence[str] = ()) -> Callable[[F], F]:
    """The friendly filters as click options (each repeatable), plus --stage and --where."""

    def deco(f: F) -> F:
        f = click.option(
            "--where",
            metavar="SQL",
            help="An extra SQL boolean over the flat schema, AND'ed with the filters.",
        )(f)
        f = click.option(
            "--stage",
            default="final",
            show_default=True,
            help="final: one row per request (its last stored stage); all: every stored "
            "stage; or stage names (RequestReceived,ResponseComplete,...).",
        )(f)
        f = time_options(f)
        for name, help_text in reversed(_FILTERS):
            if name in exclude:
                continue
            f = click.option(f"--{name}", name.replace("-", "_"), multiple=True, help=help_text)(f)
        return f

    return deco


_FORMAT_HELP = {
    "table": "table (for people)",
    "json": "json (array of objects)",
    "jsonl": "jsonl (the original events, byte for byte)",
    "csv": "csv",
}


def format_option(choices: Sequence[str] = FORMATS, default: str = "table") -> Callable[[F], F]:
    def deco(f: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(list(choices)),
            default=default,
            show_default=True,
            help=", ".join(_FORMAT_HELP.get(c, c) for c in choices) + ".",
        )(f)

    return deco


def build_filters(opts: dict[str, Any]) -> Any:
    """A :class:`kaudit.query.filters.Filters` from the options of :func:`filter_options`."""
    from kaudit.query.filters import Filters

    def many(key: str) -> list[str] | None:
        v = opts.get(key)
        return list(v) if v else None

    return Filters(
        user=many("user"),
        group=many("group"),
        verb=many("verb"),
        resource=many("resource"),
        namespace=many("namespace"),
        name=many("name"),
        code=many("code"),
        source_ip=many("source_ip"),
        user_agent=many("user_agent"),
        cluster=many("cluster"),
        stage=opts.get("stage") or "final",
        since=opts.get("since"),
        until=opts.get("until"),
        where=opts.get("where"),
    )


def open_for_reading(path: str | None) -> Any:
    from kaudit.store import open_store

    return open_store(path, create=False)


def output_streams() -> tuple[Any, Any]:
    """(bytes, text) views of stdout: bytes for jsonl/json/csv, text for tables."""
    sys.stdout.flush()
    return sys.stdout.buffer, sys.stdout


@click.command()
@store_option
@filter_options()
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help="At most this many rows; 0 for all. [default: 100 for table, all for json, jsonl and csv]",
)
@click.option(
    "--order",
    type=click.Choice(["asc", "desc"]),
    default="desc",
    show_default=True,
    help="By time: desc shows the newest first.",
)
@click.option("--columns", metavar="A,B,C", help="Flat-schema columns to show, in order.")
@format_option()
def query(
    store_path: str | None,
    limit: int | None,
    order: str,
    columns: str | None,
    fmt: str,
    **opts: Any,
) -> None:
    """Find audit events with friendly filters.

    Several values of one filter match any of them; different filters must all
    match. By default each request appears once (its final stored stage; --stage all
    for every stage), the newest first; a table shows at most 100 rows, and says so
    when there are more.

    \b
    Examples:
      kaudit query --verb delete --resource configmaps --namespace prod
      kaudit query --user 'system:serviceaccount:*' --code 403 --since 24h
      kaudit query --source-ip 203.0.113.0/24 --format jsonl > events.jsonl
    """
    from kaudit.query.api import _distinct_ips
    from kaudit.query.filters import check_columns, select_sql
    from kaudit.query.output import TABLE_COLUMNS, render
    from kaudit.query.runner import stream_rows
    from kaudit.query.schema import COLUMN_NAMES

    f = build_filters(opts)
    if limit is None:
        limit = 100 if fmt == "table" else 0
    shown: list[str] | None = None
    if fmt == "jsonl":
        if columns:
            raise QueryError("--columns: not used with --format jsonl (it writes whole events)")
        cols = ["event"]
    elif columns:
        cols = check_columns(columns.split(","))
        shown = cols
    elif fmt == "table":
        cols = [*TABLE_COLUMNS, "impersonated_user", "subresource"]
        shown = list(TABLE_COLUMNS)
    else:
        cols = [c for c in COLUMN_NAMES if c != "event"]
    # Validate everything before touching the store.
    select_sql(f, columns=cols, limit=limit, order=order, resolve_ips=lambda: [])
    store = open_for_reading(store_path)
    # One row more than shown tells whether the limit cut the answer.
    probe = limit + 1 if limit else 0
    resolve = _distinct_ips(store)
    what = f"--where {f.where!r}" if f.where else "query"
    batches = stream_rows(
        store,
        lambda rows: select_sql(
            f, columns=cols, limit=probe, order=order, resolve_ips=resolve, rows=rows
        ),
        what=what,
    )
    binary, text = output_streams()
    cut = _Cut(limit)
    render(
        cut.batches(batches),
        fmt,
        binary_out=binary,
        text_out=text,
        columns=shown,
    )
    if cut.truncated:
        click.echo(
            f"note: showing the first {limit} matching events (--order {order}); --limit 0 for all",
            err=True,
        )


class _Cut:
    """Pass at most ``limit`` rows of a stream of record batches (0: all)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.truncated = False

    def batches(self, source: Iterator[Any]) -> Iterator[Any]:
        if not self.limit:
            yield from source
            return
        left = self.limit
        for batch in source:
            if batch.num_rows > left:
                self.truncated = True
                if left:
                    yield batch.slice(0, left)
                left = 0
                continue  # drain: the rest only tells us there was more
            left -= batch.num_rows
            yield batch


@click.command()
@store_option
@format_option()
@click.argument("statement", metavar="SQL")
def sql(store_path: str | None, fmt: str, statement: str) -> None:
    """Run DuckDB SQL over the view `events` (the flat schema).

    \b
    Examples:
      kaudit sql "SELECT verb, count(*) AS n FROM events GROUP BY verb ORDER BY n DESC"
      kaudit sql --format jsonl "SELECT event FROM events WHERE code = 403"
    """
    from kaudit.query.output import render
    from kaudit.query.runner import stream

    store = open_for_reading(store_path)
    binary, text = output_streams()
    render(
        stream(store, statement, None, what="sql"),
        fmt,
        binary_out=binary,
        text_out=text,
        all_columns=True,
    )


__all__ = [
    "build_filters",
    "filter_options",
    "format_option",
    "open_for_reading",
    "query",
    "sql",
    "store_option",
    "time_options",
]
