"""``kaudit policy``: validate a policy, evaluate requests against it, apply it to a capture.

* ``validate FILE`` - every decode and validation error at once, in the apiserver's
  words, each with ``file:line:col`` and an optional indented hint; exit 1 if any.
* ``eval --policy FILE [INPUT]`` - one JSON decision per JSON Lines input line
  (request attributes, an HTTP request or an audit event); ``--explain`` for people.
* ``apply --policy FILE [INPUT] [-o OUT]`` - the events the apiserver would have
  logged under the policy, byte-exact (kaudit.model.encode_event).
* ``lint``, ``simulate``, ``diff``, ``recommend`` - policy tooling, implemented in
  :mod:`kaudit.policy.lint`, :mod:`kaudit.policy.simulate` and
  :mod:`kaudit.policy.recommend` (imported when the command runs).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import IO, Any

import click
import msgspec

from kaudit.errors import DecodeError, InputError, Location, PolicyDecodeError
from kaudit.model import LEVELS, Event, decode_event, encode_event
from kaudit.policy.attributes import (
    JSON_KEYS,
    Attributes,
    RequestInfoError,
    User,
    from_event,
    from_http,
)
from kaudit.policy.evaluate import Decision, Evaluator
from kaudit.policy.loader import LENIENT_HINT, decode_policy, decode_problems_are_lenient
from kaudit.policy.shape import apply as apply_policy
from kaudit.policy.types import Policy
from kaudit.policy.validation import check

_EVENT_KEYS = frozenset({"auditID", "stage", "requestURI", "objectRef"})


@click.group()
def policy() -> None:
    """Audit policies (audit.k8s.io/v1): validate, evaluate, apply to captured events."""


# --- loading -------------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read policy file: {exc.strerror}", Location(path)) from None


def _diagnose(path: str) -> tuple[Policy | None, list[str]]:
    """The policy (if it decodes) and every problem as output lines (hints indented)."""
    try:
        pol = decode_policy(_read(path), path)
    except PolicyDecodeError as exc:
        lines = list(exc.problems)
        if decode_problems_are_lenient(exc.problems):
            lines.append(f"  hint: {LENIENT_HINT}")
        return None, lines
    lines = []
    for err in check(pol):
        where = pol.where(err.locator or err.path)
        lines.append(f"{where}: {err.message}" if where else err.message)
        if err.hint:
            lines.append(f"  hint: {err.hint}")
    if not pol.rules:
        lines.append(f"{path}: loaded illegal policy with 0 rules")
        lines.append("  hint: a policy needs at least one rule, e.g. rules: [{level: Metadata}]")
    return pol, lines


def _load(path: str) -> Policy:
    """Load a policy for use; on any problem print every one and exit 1."""
    pol, lines = _diagnose(path)
    if lines or pol is None:
        for line in lines:
            click.echo(line if line.startswith("  ") else f"error: {line}", err=True)
        raise SystemExit(1)
    return pol


# --- validate ------------------------------------------------------------------------


@policy.command()
@click.argument("file", type=click.Path(dir_okay=False))
def validate(file: str) -> None:
    """Check FILE as the apiserver would (strict decoding, then validation).

    Prints a one-line summary and exits 0 when valid; otherwise prints every error,
    one per line (``file:line:col: <the apiserver's message>``), each optionally
    followed by an indented hint, and exits 1.
    """
    pol, lines = _diagnose(file)
    if lines or pol is None:
        for line in lines:
            click.echo(line)
        raise SystemExit(1)
    click.echo(_summary(file, pol))


def _summary(path: str, pol: Policy) -> str:
    counts = Counter(r.level for r in pol.rules)
    levels = ", ".join(f"{lv} {counts[lv]}" for lv in LEVELS if counts[lv])
    n = len(pol.rules)
    text = f"{path}: valid, {n} rule{'s' if n != 1 else ''} (levels: {levels})"
    if pol.omit_stages:
        text += f"; omitStages: {', '.join(pol.omit_stages)}"
    if pol.omit_managed_fields:
        text += "; omitManagedFields"
    return text


# --- eval ----------------------------------------------------------------------------


def _source(stream: IO[bytes]) -> str:
    name = getattr(stream, "name", "-")
    return "<stdin>" if name in ("-", "<stdin>") or not isinstance(name, str) else name


class _LineError(Exception):
    pass


def _parse_user(value: object, where: str) -> User | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _LineError(f'{where}: expected an object {{"name": ..., "groups": [...]}} or null')
    unknown = set(value) - {"name", "groups"}
    if unknown:
        raise _LineError(f'{where}: unknown field "{sorted(unknown)[0]}" (expected name, groups)')
    name = value.get("name", "")
    groups = value.get("groups") or []
    if not isinstance(name, str):
        raise _LineError(f"{where}.name: expected a string")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise _LineError(f"{where}.groups: expected a list of strings")
    return User(name, tuple(groups))


def _parse_attributes(obj: dict[str, Any]) -> Attributes:
    values: dict[str, Any] = {}
    for key, val in obj.items():
        field = JSON_KEYS.get(key)
        if field is None:
            import difflib

            close = difflib.get_close_matches(key, list(JSON_KEYS), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise _LineError(
                f'unknown field "{key}"{hint}: expected request attributes '
                f"({', '.join(JSON_KEYS)}), an HTTP request (method, url, user) or an audit Event"
            )
        if field == "user":
            values["user"] = _parse_user(val, "user")
        elif field == "resource_request":
            if not isinstance(val, bool):
                raise _LineError("resourceRequest: expected true or false")
            values[field] = val
        else:
            if val is None:
                val = ""
            if not isinstance(val, str):
                raise _LineError(f"{key}: expected a string")
            values[field] = val
    if "resource_request" not in values:
        values["resource_request"] = bool(values.get("resource"))
    return Attributes(**values)


def _parse_line(data: bytes, loc: Location) -> Attributes:
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise _LineError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineError(
            "expected a JSON object: request attributes, an HTTP request or an audit Event"
        )
    if ("method" in obj) != ("url" in obj) and not (obj.keys() & _EVENT_KEYS):
        missing = "url" if "method" in obj else "method"
        raise _LineError(f"{missing}: required for an HTTP request (method, url, user)")
    if "method" in obj and "url" in obj:
        extra = set(obj) - {"method", "url", "user"}
        if extra:
            raise _LineError(
                f'unknown field "{sorted(extra)[0]}" in an HTTP request (method, url, user)'
            )
        method, url = obj["method"], obj["url"]
        if not isinstance(method, str) or not method:
            raise _LineError('method: expected an HTTP method such as "GET"')
        if not isinstance(url, str):
            raise _LineError('url: expected a string such as "/api/v1/pods"')
        try:
            return from_http(method, url, _parse_user(obj.get("user"), "user"))
        except RequestInfoError as exc:
            raise _LineError(exc.detail) from None
    if obj.get("kind") == "Event" or not _EVENT_KEYS.isdisjoint(obj):
        try:
            return from_event(decode_event(data, loc))
        except DecodeError as exc:
            raise _LineError(f"not a valid audit Event: {exc.detail}") from None
    return _parse_attributes(obj)


def _decision_json(decision: Decision, attrs: Attributes) -> str:
    return json.dumps(
        {
            "level": decision.level,
            "omitStages": sorted(decision.omit_stages),
            "omitManagedFields": decision.omit_managed_fields,
            "rule": decision.rule_index,
            "attributes": attrs.to_dict(),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


@policy.command("eval")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The audit policy file (audit.k8s.io/v1).",
)
@click.option(
    "--explain", is_flag=True, help="Say which rule matched and why the earlier ones did not."
)
@click.argument("input", default="-", type=click.File("rb"))
def eval_(policy_file: str, explain: bool, input: IO[bytes]) -> None:
    """Evaluate requests in INPUT (JSON Lines; default stdin) against the policy.

    Each line is request attributes ({"user": {"name", "groups"} | null, "verb",
    "namespace", "apiGroup", "apiVersion", "resource", "subresource", "name", "path",
    "resourceRequest"}), an HTTP request ({"method", "url", "user"}) or an audit Event.
    Prints one JSON decision per line: {"level", "omitStages", "omitManagedFields",
    "rule", "attributes"}.
    """
    pol = _load(policy_file)
    evaluator = Evaluator(pol)
    source = _source(input)
    console = _console() if explain else None
    failed = total = 0
    for lineno, raw in enumerate(input, 1):
        data = raw.strip()
        if not data:
            continue
        total += 1
        loc = Location(source, lineno)
        try:
            attrs = _parse_line(data, loc)
        except _LineError as exc:
            failed += 1
            click.echo(f"error: {loc}: {exc}", err=True)
            continue
        decision = evaluator.evaluate(attrs)
        if console is not None:
            _print_explain(console, evaluator, attrs, decision, loc)
        else:
            click.echo(_decision_json(decision, attrs))
    if failed:
        click.echo(f"error: {failed} of {total} lines could not be evaluated", err=True)
        raise SystemExit(1)


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _describe(attrs: Attributes) -> str:
    who = "no user" if attrs.user is None else f"user {attrs.user.name}"
    if attrs.resource_request:
        res = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
        grp = attrs.api_group or "core"
        what = f"{attrs.verb} {res} ({grp}/{attrs.api_version})"
        if attrs.namespace:
            what += f" in namespace {attrs.namespace}"
        if attrs.name:
            what += f" named {attrs.name}"
    else:
        what = f"{attrs.verb} {attrs.path} (non-resource)"
    return f"{what}, {who}"


def _print_explain(
    console: Any, evaluator: Evaluator, attrs: Attributes, decision: Decision, loc: Location
) -> None:
    from rich.markup import escape

    console.print(f"[bold]{escape(str(loc))}[/]: {escape(_describe(attrs))}")
    rules = evaluator.policy.rules
    for trace in evaluator.explain(attrs):
        mark = "[green]✓ match[/]" if trace.matched else "[red]✗ skip [/]"
        level = rules[trace.index].level
        console.print(f"  {mark} rules[{trace.index}] ({escape(level)}): {escape(trace.reason)}")
    stages = ", ".join(sorted(decision.omit_stages)) or "none"
    if decision.rule_index is None:
        head = "no rule matched: level None (the default)"
    else:
        head = f"level {decision.level} from rules[{decision.rule_index}]"
    console.print(
        f"  → {escape(head)}; omitStages: {escape(stages)}; "
        f"omitManagedFields: {str(decision.omit_managed_fields).lower()}"
    )


# --- apply ---------------------------------------------------------------------------


def _read_events(
    stream: IO[bytes], source: str, on_error: Callable[[DecodeError, bytes], None]
) -> Iterator[Event]:
    """Events from JSON Lines, EventList documents or a JSON array.

    The one seam for input reading: it delegates to :mod:`kaudit.model.documents`.
    ``on_error(err: DecodeError, raw: bytes)`` is called for each bad line.
    """
    from kaudit.model.documents import iter_records

    for record in iter_records(stream, source, on_error):
        yield record.event


@policy.command("apply")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The audit policy file (audit.k8s.io/v1).",
)
@click.option(
    "-o",
    "--output",
    type=click.File("wb"),
    default="-",
    help="Where to write the events (default stdout).",
)
@click.argument("input", default="-", type=click.File("rb"))
def apply_(policy_file: str, output: IO[bytes], input: IO[bytes]) -> None:
    """Write what the apiserver would have logged for the events in INPUT under the policy.

    INPUT holds audit events as JSON Lines, EventList documents or a JSON array. Events
    whose level becomes None or whose stage is in omitStages are dropped; the others are
    reduced to the new level (bodies, managedFields) and written as JSON Lines exactly as
    the apiserver writes them. A bad line is reported and skipped (exit 1 at the end).
    """
    pol = _load(policy_file)
    evaluator = Evaluator(pol)
    source = _source(input)
    bad = 0

    def on_error(err: DecodeError, raw: bytes) -> None:
        nonlocal bad
        bad += 1
        click.echo(f"error: {err}", err=True)

    read = written = above = dropped_level = dropped_stage = 0
    write = output.write
    for event in _read_events(input, source, on_error):
        read += 1
        result = apply_policy(evaluator, event)
        if result.event is None:
            if result.decision.level == "None":
                dropped_level += 1
            else:
                dropped_stage += 1
            continue
        if result.above_capture:
            above += 1
        write(encode_event(result.event))
        written += 1
    output.flush()
    if above:
        click.echo(
            f"warning: {above} event{'s' if above != 1 else ''}: the policy asks for a higher "
            "level than the capture holds; written with what was captured (bodies that were "
            "never logged cannot be recovered)",
            err=True,
        )
    click.echo(
        f"{source}: read {read} events, wrote {written}, dropped {dropped_level + dropped_stage} "
        f"(level None: {dropped_level}, omitted stage: {dropped_stage})"
        + (f", {bad} bad line{'s' if bad != 1 else ''}" if bad else ""),
        err=True,
    )
    if bad:
        raise SystemExit(1)


# --- tooling: lint, simulate, diff, recommend -------------------------------------------


@policy.command("lint")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Findings as text lines or one JSON document.",
)
def lint(file: str, fmt: str) -> None:
    """Find what a policy gets wrong for security and volume.

    Each finding has a severity (error, warning, info), the rule and file:line:col, and
    a fix: bodies of secrets, tokens or CSRs (error) and configmaps (warning) logged,
    rules that can never match, a missing or misplaced catch-all, RequestReceived not
    omitted, managedFields logged, resourceNames that cannot match, "pods" where
    "pods/*" was meant, noisy system traffic logged (info). Invalid policies give error
    findings. Exits 1 when there is an error finding, else 0.
    """
    from kaudit.policy.lint import format_text, has_errors, lint_file, summary

    _, findings = lint_file(file)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "file": file,
                    "findings": [f.to_dict() for f in findings],
                    "summary": summary(findings),
                },
                indent=2,
            )
        )
    else:
        for line in format_text(findings):
            click.echo(line)
        click.echo(f"{file}: {summary(findings)}")
    if has_errors(findings):
        raise SystemExit(1)


def _capture_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.argument("logs", nargs=-1, type=click.Path(dir_okay=True))(f)
    f = click.option(
        "--until", default=None, help="Only requests received before WHEN (same forms)."
    )(f)
    f = click.option(
        "--since",
        default=None,
        help="Only requests received from WHEN on: 24h, 7d, 2024-05-01, RFC 3339.",
    )(f)
    f = click.option(
        "--store",
        "store_dir",
        default=None,
        type=click.Path(file_okay=False),
        help="Read the capture from this store (default: $KAUDIT_STORE or ./kaudit-data "
        "when no LOG is named).",
    )(f)
    return f


def _capture(
    store_dir: str | None,
    logs: tuple[str, ...],
    since: str | None,
    until: str | None,
    policies: list[Policy],
) -> Any:
    from kaudit.policy.simulate import capture_from_logs, capture_from_store, names_of
    from kaudit.query.timeparse import parse_when
    from kaudit.store import default_path

    if store_dir and logs:
        raise click.UsageError("give either --store DIR or LOG files, not both")
    t0 = parse_when(since, flag="--since") if since else None
    t1 = parse_when(until, flag="--until") if until else None
    names = names_of(policies)
    if logs:

        def on_error(err: InputError) -> None:
            click.echo(f"error: {err}", err=True)

        cap = capture_from_logs(list(logs), names=names, since=t0, until=t1, on_error=on_error)
        if cap.bad_lines:
            click.echo(
                f"warning: {cap.bad_lines} input problem{'s' if cap.bad_lines != 1 else ''} "
                "(reported above); the rest was used",
                err=True,
            )
        return cap
    return capture_from_store(str(store_dir or default_path()), names=names, since=t0, until=t1)


@policy.command("simulate")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The audit policy file (audit.k8s.io/v1).",
)
@_capture_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Tables for people or one JSON document.",
)
@click.option("--top", default=10, show_default=True, help="Rows in the top-N lists.")
@click.option(
    "--chart",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a self-contained HTML chart (inline SVG) of volume by level and rule.",
)
def simulate_(
    policy_file: str,
    store_dir: str | None,
    since: str | None,
    until: str | None,
    logs: tuple[str, ...],
    fmt: str,
    top: int,
    chart: str | None,
) -> None:
    """Replay captured traffic (a store, or LOG files) under a policy.

    Events and bytes per level, per rule, per day; the top users, resources and
    verbs; what the policy drops or adds against the capture, per request class.
    Bytes are the exact size of each event as the apiserver would write it; where the
    policy asks for more than the capture holds, bodies are estimated from captured
    bodies of the same resource and verb (else per-resource defaults) and the figures
    say "estimated". JSON keys include events_by_level, bytes_by_level, events_by_rule.
    """
    from kaudit.policy.report import chart_html, simulation_text
    from kaudit.policy.simulate import simulate

    if chart and not chart.lower().endswith((".html", ".htm")):
        raise click.BadParameter(
            f"{chart}: expected an .html file (the chart is a self-contained HTML page; "
            "PNG output is not supported)",
            param_hint="--chart",
        )
    pol = _load(policy_file)
    cap = _capture(store_dir, logs, since, until, [pol])
    result = simulate(pol, cap).to_dict(top=top)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(simulation_text(result))
    if chart:
        _write_private(chart, chart_html(result).encode())
        click.echo(f"chart written to {chart}", err=True)


@policy.command("diff")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@_capture_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people or one JSON document.",
)
@click.option("--limit", default=50, show_default=True, help="At most this many changed rows.")
def diff_(
    old: str,
    new: str,
    store_dir: str | None,
    since: str | None,
    until: str | None,
    logs: tuple[str, ...],
    fmt: str,
    limit: int,
) -> None:
    """Compare two policies over captured traffic (a store, or LOG files).

    For each request class (who: a system component, nodes, service accounts or
    users; resource; verb) whose level, matching rule or volume changes: the levels
    and rule indexes under OLD and NEW and the change in events and bytes, largest
    first. Pass the logs after "--" when a LOG name could be read as OLD or NEW.
    """
    from kaudit.policy.report import diff_text
    from kaudit.policy.simulate import diff

    old_pol, new_pol = _load(old), _load(new)
    cap = _capture(store_dir, logs, since, until, [old_pol, new_pol])
    result = diff(old_pol, new_pol, cap).to_dict(limit=limit)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(diff_text(result))


@policy.command("recommend")
@_capture_options
@click.option(
    "--budget",
    default=None,
    help="Most bytes per day to log (e.g. 2GB/day, 500MiB): body rules are lowered, "
    "the largest first, until the estimate fits.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the policy here (mode 0600) instead of standard output.",
)
def recommend_(
    store_dir: str | None,
    since: str | None,
    until: str | None,
    logs: tuple[str, ...],
    budget: str | None,
    output: str | None,
) -> None:
    """Write a commented audit policy derived from captured traffic.

    None for health checks, kube-proxy watches, leases, events and the reads of the
    busiest system identities; Metadata (never bodies) for secrets, configmaps,
    tokens and CSRs; bodies for RBAC, admission, workload and cluster changes and for
    exec/attach/port-forward, within --budget; a Metadata catch-all last;
    omitStages RequestReceived and omitManagedFields. Each rule says why and its
    estimated volume. The result is validated and lints clean.
    """
    from kaudit.policy.recommend import human_bytes, parse_budget, recommend

    limit = parse_budget(budget) if budget else None
    cap = _capture(store_dir, logs, since, until, [])
    if not cap.groups:
        raise InputError("no events in the capture: nothing to recommend from")
    rec = recommend(cap, budget=limit)
    if output:
        _write_private(output, rec.yaml.encode())
        click.echo(f"policy written to {output}", err=True)
    else:
        click.echo(rec.yaml, nl=False)
    msg = f"estimated {human_bytes(rec.bytes_per_day)}/day"
    if rec.lowered:
        msg += "; lowered to fit the budget: " + "; ".join(rec.lowered)
    click.echo(msg, err=True)
    if not rec.within_budget and limit is not None:
        click.echo(
            f"warning: over the budget of {human_bytes(limit)}/day even with every body "
            "rule at Metadata: drop more traffic with None rules",
            err=True,
        )


def _write_private(path: str, data: bytes) -> None:
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", Location(path)) from None


__all__ = ["policy"]
