"""``kaudit rules``, ``kaudit hunt`` and ``kaudit alerts``: detection from the command line."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from kaudit.detect.rule import Rule, RuleSetError, load_rules, parse_duration
from kaudit.errors import InputError, KauditError

F = TypeVar("F", bound=Callable[..., Any])


def _problems(fn: F) -> F:
    """Print every rule problem on its own ``error:`` line (the group prints others)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuleSetError as exc:
            for p in exc.problems:
                click.echo(f"error: {p}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def _rule_options(fn: F) -> F:
    fn = click.option(
        "--allowlist",
        type=click.Path(dir_okay=False),
        help="YAML file extending rule allowlists: "
        "`allowlist: {RULE_ID or '*': {column: [values]}}`.",
    )(fn)
    fn = click.option("--no-builtin", is_flag=True, help="Leave out the built-in pack.")(fn)
    fn = click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        type=click.Path(),
        help="A rule file or directory (repeatable); its rules join the built-in pack.",
    )(fn)
    return fn


def _load(rule_dirs: Sequence[str], no_builtin: bool, allowlist: str | None) -> list[Rule]:
    return load_rules(list(rule_dirs), builtin=not no_builtin, allowlist=allowlist)


def _select(rules: list[Rule], ids: Sequence[str]) -> list[Rule]:
    if not ids:
        return rules
    known = {r.id: r for r in rules}
    missing = [i for i in ids if i not in known]
    if missing:
        raise InputError(f"--rule: unknown rule id(s): {', '.join(missing)}")
    return [known[i] for i in ids]


def parse_when(text: str | None, flag: str) -> int | None:
    """Microseconds since the epoch of an RFC 3339 time or a duration ago (``24h``)."""
    if text is None:
        return None
    from kaudit.model.codec import to_micros

    try:
        return int(time.time() * 1_000_000) - parse_duration(text) * 1_000_000
    except ValueError:
        pass
    try:
        return to_micros(text)
    except ValueError:
        raise InputError(
            f"{flag}: expected an RFC 3339 time (2024-05-06T07:00:00Z) or a duration "
            f"like 30m, 24h, 7d; got {text!r}"
        ) from None


@click.group()
def rules() -> None:
    """Detection rules: list, show, validate, test, coverage, import-sigma."""


@rules.command("list")
@_rule_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_problems
def list_(rule_dirs: tuple[str, ...], no_builtin: bool, allowlist: str | None, fmt: str) -> None:
    """List the loaded rules."""
    rs = _load(rule_dirs, no_builtin, allowlist)
    if fmt == "json":
        click.echo(json.dumps([_summary(r) for r in rs], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("id", "severity", "kind", "level", "mitre", "title")
    for r in rs:
        t.add_row(r.id, r.severity, r.kind, r.required_level, ",".join(r.mitre), r.title)
    Console(width=200).print(t)


def _summary(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "title": r.title,
        "severity": r.severity,
        "kind": r.kind,
        "required_level": r.required_level,
        "mitre": list(r.mitre),
        "enabled": r.enabled,
        "source": r.source,
    }


@rules.command()
@click.argument("rule_id")
@_rule_options
@click.option("--sql", is_flag=True, help="Also print the retro-hunt SQL.")
@_problems
def show(
    rule_id: str, rule_dirs: tuple[str, ...], no_builtin: bool, allowlist: str | None, sql: bool
) -> None:
    """Show one rule."""
    from kaudit.detect.sql import hunt_sql

    (r,) = _select(_load(rule_dirs, no_builtin, allowlist), [rule_id])
    d = _summary(r)
    d.update(
        description=r.description,
        condition=r.condition,
        stages=list(r.stages),
        references=list(r.references),
        allowlist={k: list(v) for k, v in r.allowlist.items()},
        tests=[t.name for t in r.tests],
    )
    for k, v in (
        ("group_by", list(r.group_by)),
        ("window_secs", r.window_secs),
        ("threshold", r.threshold),
        ("distinct", r.distinct),
        ("new_terms", list(r.new_terms)),
        ("lookback_secs", r.lookback_secs),
        ("sequence_steps", list(r.sequence_steps)),
        ("suppress_secs", r.suppress_secs),
    ):
        if v:
            d[k] = v
    click.echo(json.dumps(d, indent=2))
    if sql:
        click.echo(hunt_sql(r))


@rules.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--allowlist", type=click.Path(dir_okay=False))
@_problems
def validate(paths: tuple[str, ...], allowlist: str | None) -> None:
    """Check rule files (and the built-in pack): every problem, with file:line:col."""
    rs = load_rules(list(paths), allowlist=allowlist)
    click.echo(f"{len(rs)} rules OK")


@rules.command("test")
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeatable).")
@_rule_options
@click.option("-v", "--verbose", is_flag=True, help="Print every test, not only failures.")
@_problems
def test_(
    rule_ids: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_builtin: bool,
    allowlist: str | None,
    verbose: bool,
) -> None:
    """Run the rules' embedded tests (retro-hunt and streaming must agree)."""
    from kaudit.detect.testing import run_tests

    rs = _select(_load(rule_dirs, no_builtin, allowlist), rule_ids)
    results = run_tests(rs)
    failed = [r for r in results if not r.ok]
    for r in results:
        if verbose or not r.ok:
            mark = "ok  " if r.ok else "FAIL"
            detail = f": {r.detail}" if r.detail else ""
            click.echo(f"{mark} {r.rule_id} / {r.name}{detail}")
    click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed ({len(rs)} rules)")
    if failed:
        sys.exit(1)


@rules.command()
@click.option("--policy", "policy_path", required=True, type=click.Path(dir_okay=False))
@_rule_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option(
    "--all", "show_all", is_flag=True, help="List every rule, not only those that cannot fire."
)
@_problems
def coverage(
    policy_path: str,
    rule_dirs: tuple[str, ...],
    no_builtin: bool,
    allowlist: str | None,
    fmt: str,
    show_all: bool,
) -> None:
    """Rules that cannot fire under an audit policy (level or resources not recorded)."""
    from kaudit.detect.coverage import check_coverage

    rs = _load(rule_dirs, no_builtin, allowlist)
    results = check_coverage(rs, policy_path)
    shown = [c for c in results if show_all or not c.ok]
    if fmt == "json":
        click.echo(json.dumps([c.to_dict() for c in shown], indent=2))
    else:
        for c in shown:
            click.echo(f"{'ok  ' if c.ok else 'MISS'} {c.rule_id}: {c.reason}")
        blind = sum(1 for c in results if not c.ok)
        click.echo(f"{len(results) - blind} of {len(results)} rules can fire; {blind} cannot")


@rules.command("import-sigma")
@click.argument("source", type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write rule files here.")
@_problems
def import_sigma(source: str, output: str | None) -> None:
    """Convert Sigma rules (product kubernetes, service audit) to kaudit rules."""
    from kaudit.detect.sigma import convert_path

    converted, refused = convert_path(Path(source))
    for name, reason in refused:
        click.echo(f"skipped: {name}: {reason}", err=True)
    if output:
        out = Path(output)
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for rid, text in converted:
            p = out / f"{rid}.yaml"
            p.write_text(text, encoding="utf-8")
            p.chmod(0o600)
        click.echo(f"{len(converted)} rules written to {out}, {len(refused)} skipped")
    else:
        click.echo("\n---\n".join(text for _, text in converted), nl=False)
    if refused and not converted:
        sys.exit(1)


def _store_path(store: str | None) -> Path:
    from kaudit.store import open_store

    return open_store(store, create=False).path


def _print_alerts(alerts: Sequence[Any], fmt: str) -> None:
    if fmt == "jsonl":
        for a in alerts:
            click.echo(json.dumps(a.to_dict(), separators=(",", ":")))
        return
    if fmt == "json":
        click.echo(json.dumps([a.to_dict() for a in alerts], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("last", "severity", "rule", "user", "source ip", "object", "events")
    for a in alerts:
        t.add_row(
            a.last_ts,
            a.severity,
            a.rule_id,
            a.username or "",
            a.source_ip or "",
            a.object,
            str(len(a.audit_ids)),
        )
    Console(width=200).print(t)
    click.echo(f"{len(alerts)} alerts")


@click.command()
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeatable).")
@click.option("--since", help="Start: RFC 3339 time or a duration ago (24h).")
@click.option("--until", help="End (exclusive): RFC 3339 time or a duration ago.")
@click.option("--store", type=click.Path(file_okay=False), help="Store directory.")
@_rule_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl"]), default="table")
@click.option("--no-save", is_flag=True, help="Print the alerts without storing them.")
@_problems
def hunt(
    rule_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    store: str | None,
    rule_dirs: tuple[str, ...],
    no_builtin: bool,
    allowlist: str | None,
    fmt: str,
    no_save: bool,
) -> None:
    """Run rules over stored history (retro-hunt); new alerts are stored."""
    from kaudit.detect.alert import AlertStore
    from kaudit.detect.engine import hunt as run_hunt
    from kaudit.store import open_store

    rs = _select(_load(rule_dirs, no_builtin, allowlist), rule_ids)
    st = open_store(store, create=False)
    con = st.connect()
    try:
        alerts = run_hunt(
            con, rs, since_us=parse_when(since, "--since"), until_us=parse_when(until, "--until")
        )
    finally:
        con.close()
    if not no_save:
        AlertStore(st.path).add(alerts)
    _print_alerts(alerts, fmt)


@click.command()
@click.option("--rule", "rule_ids", multiple=True, help="Only this rule (repeatable).")
@click.option(
    "--severity",
    type=click.Choice(["info", "low", "medium", "high", "critical"]),
    help="At least this severity.",
)
@click.option("--since", help="RFC 3339 time or a duration ago (24h).")
@click.option("--until", help="RFC 3339 time or a duration ago.")
@click.option("--store", type=click.Path(file_okay=False), help="Store directory.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl"]), default="table")
def alerts(
    rule_ids: tuple[str, ...],
    severity: str | None,
    since: str | None,
    until: str | None,
    store: str | None,
    fmt: str,
) -> None:
    """Stored alerts, oldest first."""
    from kaudit.detect.alert import AlertStore

    try:
        path = _store_path(store)
    except KauditError:
        raise
    found = AlertStore(path).query(
        rules=rule_ids,
        min_severity=severity,
        since_us=parse_when(since, "--since"),
        until_us=parse_when(until, "--until"),
    )
    _print_alerts(found, fmt)
