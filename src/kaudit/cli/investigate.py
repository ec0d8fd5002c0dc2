"""``kaudit history``, ``kaudit timeline`` and ``kaudit stats``: investigations."""

from __future__ import annotations

from typing import Any

import click

from kaudit.cli.query import (
    build_filters,
    filter_options,
    format_option,
    open_for_reading,
    output_streams,
    store_option,
    time_options,
)


@click.command()
@store_option
@click.argument("obj", metavar="KIND/NAME")
@click.option("-n", "--namespace", help="The object's namespace [default: any].")
@time_options
@click.option("--cluster", multiple=True, help="Cluster name given at ingest.")
@click.option(
    "--writes",
    is_flag=True,
    help="Only requests that can change the object (not get, list or watch).",
)
@format_option(("table", "json", "csv"))
def history(
    store_path: str | None,
    obj: str,
    namespace: str | None,
    since: str | None,
    until: str | None,
    cluster: tuple[str, ...],
    writes: bool,
    fmt: str,
) -> None:
    """Every request that touched one object, oldest first, with diffs.

    KIND is a resource (configmaps, deployments.apps), its singular or its Kind
    (configmap, ConfigMap). Shows who (and as whom), from where, the verb, the
    response code and, where the audit level recorded bodies, a diff between
    successive states of the object.

    \b
    Examples:
      kaudit history configmap/app-config -n prod
      kaudit history configmap/app-config -n prod --writes     # who changed or deleted it
      kaudit history deployments.apps/web -n prod --since 7d --format json
    """
    from kaudit.query.investigate import history_rows, parse_object

    ref = parse_object(obj)
    store = open_for_reading(store_path)
    rows = history_rows(
        store,
        ref,
        namespace=namespace,
        since=since,
        until=until,
        cluster=list(cluster) or None,
        writes_only=writes,
    )
    binary, text = output_streams()
    if fmt == "json":
        from kaudit.query.output import write_json

        write_json([_pa_rows(rows)], binary)
        return
    if fmt == "csv":
        from kaudit.query.output import write_csv

        write_csv([_pa_rows(rows)], binary)
        return
    _print_history(rows, text, f"{ref.resource}/{ref.name}")


def _pa_rows(rows: list[dict[str, object]]) -> Any:
    import pyarrow as pa

    from kaudit.query.investigate import HISTORY_COLUMNS

    names = [*HISTORY_COLUMNS, "change", "diff"]
    if not rows:
        return pa.record_batch({n: pa.array([], pa.string()) for n in names})
    return pa.RecordBatch.from_pylist(rows).select(names)


def _print_history(rows: list[dict[str, object]], out: Any, what: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from kaudit.query.output import cell_text, console_width

    console = Console(file=out, width=console_width(out), soft_wrap=False, highlight=False)
    if not rows:
        console.print(f"no requests recorded for {what}")
        return
    show_ns = len({r.get("namespace") for r in rows}) > 1
    table = Table(box=None, header_style="bold", pad_edge=False)
    cols = ["ts", "verb", "code", "username", "source_ip", "user_agent", "change"]
    if show_ns:
        cols.insert(1, "namespace")
    for c in cols:
        table.add_column(
            {"ts": "time", "username": "who", "source_ip": "from"}.get(c, c),
            no_wrap=c in ("ts", "verb", "code"),
            overflow="fold",
        )
    for r in rows:
        verb = str(r.get("verb"))
        if r.get("subresource"):
            verb += f" ({r['subresource']})"
        cells = [cell_text(c, r.get(c), r) for c in cols]
        cells[cols.index("verb")] = verb
        if r.get("code") and int(str(r["code"])) >= 400 and r.get("status_reason"):
            cells[cols.index("code")] += f" {r['status_reason']}"
        table.add_row(*(escape(c) for c in cells))
    console.print(table)
    for r in rows:
        diff = r.get("diff")
        if not diff:
            continue
        console.print()
        console.print(
            f"[bold]{escape(cell_text('ts', r.get('ts')))} {r.get('change')} "
            f"by {escape(cell_text('username', r.get('username'), r))}[/bold]"
        )
        for line in str(diff).splitlines():
            style = ""
            if line.startswith("+") and not line.startswith("+++"):
                style = "green"
            elif line.startswith("-") and not line.startswith("---"):
                style = "red"
            elif line.startswith("@@"):
                style = "cyan"
            console.print(escape(line), style=style or None)


@click.command()
@store_option
@click.argument("user", metavar="USER")
@filter_options(exclude=("user",))
@click.option(
    "--limit", type=click.IntRange(min=0), default=0, help="At most this many rows; 0 for all."
)
@format_option(("table", "json", "csv"))
def timeline(store_path: str | None, user: str, limit: int, fmt: str, **opts: Any) -> None:
    """What one identity did, as itself or impersonated, grouped with counts.

    One row per distinct (identity, verb, resource, namespace, name, code), ordered
    by the first time it happened. USER may use * globs.

    \b
    Examples:
      kaudit timeline alice --since 24h
      kaudit timeline 'system:serviceaccount:ci:*' --code 4xx
    """
    from kaudit.query.investigate import timeline as run_timeline
    from kaudit.query.output import render

    f = build_filters(opts)
    store = open_for_reading(store_path)
    table = run_timeline(store, user, filters=f, limit=limit)
    binary, text = output_streams()
    if fmt == "table":
        _print_timeline(table, text, user)
        return
    render(table, fmt, binary_out=binary, text_out=text)


def _print_timeline(table: Any, out: Any, user: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from kaudit.query.output import cell_text, console_width, rows_of

    console = Console(file=out, width=console_width(out), soft_wrap=False, highlight=False)
    rows = rows_of(table)
    if not rows:
        console.print(f"no requests by {escape(user)}")
        return
    t = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("first", "last", "count", "who", "verb", "resource", "object", "code"):
        t.add_column(name, no_wrap=name in ("first", "last", "count", "code"), overflow="fold")
    for r in rows:
        obj = "/".join(str(x) for x in (r.get("namespace"), r.get("name")) if x)
        same = r["first"] == r["last"]
        t.add_row(
            cell_text("ts", r["first"]),
            "" if same else cell_text("ts", r["last"]),
            f"{r['count']}" if r["count"] == 1 else f"{r['count']}x",
            escape(cell_text("username", r["username"], r)),
            escape(str(r["verb"])),
            escape(cell_text("resource", r["resource"], r)),
            escape(obj),
            cell_text("code", r["code"]),
        )
    console.print(t)


@click.command()
@store_option
@filter_options()
@click.option(
    "--by",
    default="code,verb,user,resource,namespace,user_agent",
    show_default=True,
    help="Dimensions to count by (comma list): code, verb, user, impersonated_user, "
    "resource, namespace, user_agent, source_ip, cluster, stage, level, decision, api_group.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Values per dimension."
)
@format_option(("table", "json"))
def stats(store_path: str | None, by: str, top: int, fmt: str, **opts: Any) -> None:
    """Counts of requests over a time range, the top values per dimension.

    \b
    Examples:
      kaudit stats --since 24h
      kaudit stats --since 7d --by user,code --top 5 --format json
    """
    from kaudit.query.investigate import check_dimensions
    from kaudit.query.investigate import stats as run_stats

    dims = check_dimensions(by.split(","))
    f = build_filters(opts)
    store = open_for_reading(store_path)
    result = run_stats(store, filters=f, by=dims, top=top)
    binary, text = output_streams()
    if fmt == "json":
        from kaudit.query.output import write_json_value

        write_json_value(result, binary)
        return
    _print_stats(result, text)


def _print_stats(result: dict[str, Any], out: Any) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from kaudit.query.output import console_width

    console = Console(file=out, width=console_width(out), soft_wrap=False, highlight=False)
    total = result["total"]
    span = f" from {result['first']} to {result['last']}" if total else ""
    console.print(f"[bold]{total}[/bold] requests{span}")
    for dim, values in result["by"].items():
        if not values:
            continue
        t = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
        t.add_column(dim, overflow="fold")
        t.add_column("count", justify="right", no_wrap=True)
        t.add_column("%", justify="right", no_wrap=True)
        for v in values:
            shown = "(none)" if v["value"] is None else str(v["value"])
            pct = 100.0 * v["count"] / total if total else 0.0
            t.add_row(escape(shown), str(v["count"]), f"{pct:.1f}")
        console.print()
        console.print(t)


__all__ = ["history", "stats", "timeline"]
