"""Friendly filters compiled to DuckDB SQL over the ``events`` view.

Every value a user gives becomes a bound parameter; nothing they type is formatted
into the SQL text except ``where`` (their own SQL boolean, run read-only over their
own data). Several values of one filter are OR'ed, different filters are AND'ed.

By default a request counts once: its *final* stage (``stage="final"``): among the
events matching the filters, ``ResponseComplete`` or ``Panic``, and a
``RequestReceived`` / ``ResponseStarted`` event only when no later stage of the
same request is stored (a watch still running, a failed authentication, a policy
that omits later stages). ``stage="all"`` returns every stored stage.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from kaudit.errors import QueryError
from kaudit.query.resources import parse_resource
from kaudit.query.schema import COLUMN_NAMES
from kaudit.query.timeparse import parse_when

STAGE_FINAL: Final = "final"
STAGE_ALL: Final = "all"
_STAGES: Final = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
_TERMINAL_SQL: Final = "('ResponseComplete', 'Panic')"

#: Verbs that can appear in an audit event: Kubernetes verbs for resource requests,
#: lower-cased HTTP methods for non-resource requests.
VERBS: Final = (
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
    "post",
    "put",
    "head",
    "options",
)

CODE_EXPECTED: Final = (
    "a status code (403), a class (4xx), a comparison (>=400, <300), a range (400-499) "
    "or a negation (!200, !=200, !5xx), comma-separated"
)

Value = str | Sequence[str] | None
IpResolver = Callable[[], Iterable[str]]


@dataclass(slots=True)
class Filters:
    """The friendly filters. Every field accepts one string or several."""

    user: Value = None
    group: Value = None
    verb: Value = None
    resource: Value = None
    namespace: Value = None
    name: Value = None
    code: Value = None
    source_ip: Value = None
    user_agent: Value = None
    cluster: Value = None
    stage: str = STAGE_FINAL
    since: str | datetime | None = None
    until: str | datetime | None = None
    where: str | None = None
    extra: list[tuple[str, list[object]]] = field(default_factory=list)


@dataclass(slots=True)
class Compiled:
    """A SQL boolean and its bound parameters, in order."""

    sql: str
    params: list[object]


def _values(v: Value, *, split: bool) -> list[str]:
    if v is None:
        return []
    items = [v] if isinstance(v, str) else list(v)
    out: list[str] = []
    for item in items:
        parts = item.split(",") if split else [item]
        out.extend(p.strip() for p in parts if p.strip() or not split)
    return out


def glob_to_like(pattern: str) -> str:
    """A ``*`` glob as a LIKE pattern (escape character ``\\``)."""
    esc = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return esc.replace("*", "%")


def _match(column: str, value: str, params: list[object], *, ci: bool = False) -> str:
    if "*" in value:
        params.append(glob_to_like(value))
        op = "ILIKE" if ci else "LIKE"
        return f"{column} {op} ? ESCAPE '\\'"
    params.append(value)
    return f"{column} = ?"


def _any(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def _suggest(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


# --- status codes ------------------------------------------------------------------

_CODE_TERM = re.compile(r"^(!=|!|>=|<=|>|<|=)?\s*(\d{3}|[1-5]xx)(?:\s*-\s*(\d{3}))?$", re.I)


def _code_term(term: str, params: list[object]) -> tuple[str, bool]:
    """SQL for one ``--code`` term and whether it is a negation."""
    m = _CODE_TERM.match(term.strip())
    if not m:
        raise QueryError(f"--code: invalid value {term!r}: expected {CODE_EXPECTED}")
    op, code, upper = m.group(1) or "", m.group(2).lower(), m.group(3)
    negate = op in ("!", "!=")
    if code.endswith("xx"):
        if upper or op in (">=", "<=", ">", "<"):
            raise QueryError(f"--code: invalid value {term!r}: expected {CODE_EXPECTED}")
        lo = int(code[0]) * 100
        params.extend([lo, lo + 99])
        sql = "code BETWEEN ? AND ?"
    elif upper:
        if op:
            raise QueryError(f"--code: invalid value {term!r}: expected {CODE_EXPECTED}")
        lo, hi = int(code), int(upper)
        if lo > hi:
            raise QueryError(f"--code: invalid range {term!r}: {lo} is above {hi}")
        params.extend([lo, hi])
        sql = "code BETWEEN ? AND ?"
    elif op in (">=", "<=", ">", "<"):
        params.append(int(code))
        sql = f"code {op} ?"
    else:
        params.append(int(code))
        sql = "code = ?"
    if negate:
        return f"(code IS NULL OR NOT ({sql}))", True
    return sql, False


def compile_codes(specs: Sequence[str], params: list[object]) -> str | None:
    """Positive terms OR'ed, negations AND'ed: ``4xx,!404`` = any 4xx but 404."""
    pos: list[str] = []
    neg: list[str] = []
    for term in specs:
        sql, is_neg = _code_term(term, params)
        (neg if is_neg else pos).append(sql)
    parts = ([_any(pos)] if pos else []) + neg
    if not parts:
        return None
    return " AND ".join(parts) if len(parts) > 1 else parts[0]


# --- source IPs --------------------------------------------------------------------

_V4_INT = (
    "(TRY_CAST(split_part(source_ip, '.', 1) AS BIGINT) * 16777216"
    " + TRY_CAST(split_part(source_ip, '.', 2) AS BIGINT) * 65536"
    " + TRY_CAST(split_part(source_ip, '.', 3) AS BIGINT) * 256"
    " + TRY_CAST(split_part(source_ip, '.', 4) AS BIGINT))"
)


def _ip_term(value: str, params: list[object], resolve: IpResolver | None) -> str:
    try:
        if "/" in value:
            net = ipaddress.ip_network(value, strict=False)
        else:
            params.append(str(ipaddress.ip_address(value)))
            return "source_ip = ?"
    except ValueError:
        raise QueryError(
            f"--source-ip: invalid value {value!r}: expected an IP address (10.0.0.7, fd00::1) "
            "or a CIDR block (10.0.0.0/8, fd00::/64)"
        ) from None
    if isinstance(net, ipaddress.IPv4Network):
        params.extend([int(net.network_address), int(net.broadcast_address)])
        return f"(source_ip LIKE '%.%.%.%' AND {_V4_INT} BETWEEN ? AND ?)"
    # IPv6 text has many spellings: resolve against the addresses actually stored.
    if resolve is None:
        raise QueryError(f"--source-ip: IPv6 CIDR {value!r} needs a store to resolve against")
    found: list[str] = []
    for text in resolve():
        try:
            if ipaddress.ip_address(text) in net:
                found.append(text)
        except ValueError:
            continue
    params.append(found)
    return "list_contains(?, source_ip)"


# --- the whole filter --------------------------------------------------------------


def parse_stage(value: str) -> str | list[str]:
    """``final``, ``all`` or a list of stage names (case-insensitive)."""
    v = value.strip()
    if v.lower() in (STAGE_FINAL, STAGE_ALL):
        return v.lower()
    by_lower = {s.lower(): s for s in _STAGES}
    out: list[str] = []
    for part in _values(v, split=True):
        s = by_lower.get(part.lower())
        if s is None:
            raise QueryError(
                f"--stage: unknown stage {part!r}: expected final, all or "
                f"{', '.join(_STAGES)}{_suggest(part, _STAGES)}"
            )
        out.append(s)
    if not out:
        raise QueryError(f"--stage: empty value: expected final, all or {', '.join(_STAGES)}")
    return out


def compile_filters(
    f: Filters, *, now: datetime | None = None, resolve_ips: IpResolver | None = None
) -> Compiled:
    """The WHERE condition for ``f`` (without the final-stage selection)."""
    return _compile(f, now=now, resolve_ips=resolve_ips, users=_USERS_ANY)


def compile_branches(
    f: Filters, *, now: datetime | None = None, resolve_ips: IpResolver | None = None
) -> list[Compiled]:
    """:func:`compile_filters` as disjoint conditions whose union is the same rows.

    ``--user`` matches the user name or the impersonated user: one OR over two columns,
    which DuckDB cannot push into the Parquet scan (every column read for every row).
    Split in two (the user name; else the impersonated user), each scan skips what
    cannot match.
    """
    if not _values(f.user, split=False):
        return [_compile(f, now=now, resolve_ips=resolve_ips, users=_USERS_ANY)]
    return [
        _compile(f, now=now, resolve_ips=resolve_ips, users=_USERS_NAME),
        _compile(f, now=now, resolve_ips=resolve_ips, users=_USERS_IMPERSONATED),
    ]


_USERS_ANY: Final = "any"
_USERS_NAME: Final = "username"
_USERS_IMPERSONATED: Final = "impersonated"


def _compile(
    f: Filters, *, now: datetime | None, resolve_ips: IpResolver | None, users: str
) -> Compiled:
    terms: list[str] = []
    params: list[object] = []

    names = _values(f.user, split=False)
    if names:
        if users == _USERS_ANY:
            alts = []
            for u in names:
                alts.append(_match("username", u, params))
                alts.append(_match("impersonated_user", u, params))
            terms.append(_any(alts))
        elif users == _USERS_NAME:
            terms.append(_any([_match("username", u, params) for u in names]))
        else:
            terms.append(_any([_match("impersonated_user", u, params) for u in names]))
            own = _any([_match("username", u, params) for u in names])
            terms.append(f"({own}) IS NOT TRUE")

    groups = _values(f.group, split=False)
    if groups:
        alts = []
        for g in groups:
            if "*" in g:
                params.append(glob_to_like(g))
                alts.append("len(list_filter(groups, lambda x: x LIKE ? ESCAPE '\\')) > 0")
            else:
                params.append(g)
                alts.append("list_contains(groups, ?)")
        terms.append(_any(alts))

    verbs = [v.lower() for v in _values(f.verb, split=True)]
    for v in verbs:
        if v not in VERBS:
            raise QueryError(
                f"--verb: unknown verb {v!r}: expected one of {', '.join(VERBS)}"
                f"{_suggest(v, VERBS)}"
            )
    if verbs:
        params.append(sorted(set(verbs)))
        terms.append("list_contains(?, verb)")

    resources = _values(f.resource, split=True)
    if resources:
        alts = []
        for r in resources:
            try:
                spec = parse_resource(r)
            except ValueError as exc:
                raise QueryError(f"--resource: invalid value {r!r}: {exc}") from None
            parts: list[str] = []
            if spec.resource is not None:
                parts.append(_match("resource", spec.resource, params))
            else:
                parts.append("resource IS NOT NULL")
            if spec.api_group is not None:
                params.append(spec.api_group)
                parts.append("api_group = ?")
            if spec.subresource is not None:
                parts.append(_match("subresource", spec.subresource, params))
            elif not spec.any_subresource:
                parts.append("subresource IS NULL")
            alts.append("(" + " AND ".join(parts) + ")")
        terms.append(_any(alts))

    # "" means what it means in an audit policy: no namespace (cluster-scoped), as "-".
    ns_given = [f.namespace] if isinstance(f.namespace, str) else list(f.namespace or [])
    namespaces = _values(["-" if not v.strip() else v for v in ns_given], split=True)
    if namespaces:
        alts = []
        for ns in namespaces:
            alts.append("namespace IS NULL" if ns == "-" else _match("namespace", ns, params))
        terms.append(_any(alts))

    objects = _values(f.name, split=False)
    if objects:
        terms.append(_any([_match("name", n, params) for n in objects]))

    codes = _values(f.code, split=True)
    if codes:
        sql = compile_codes(codes, params)
        if sql:
            terms.append(sql)

    ips = _values(f.source_ip, split=True)
    if ips:
        terms.append(_any([_ip_term(ip, params, resolve_ips) for ip in ips]))

    agents = _values(f.user_agent, split=False)
    if agents:
        alts = []
        for a in agents:
            if "*" in a:
                alts.append(_match("user_agent", a, params, ci=True))
            else:
                params.append("%" + glob_to_like(a) + "%")
                alts.append("user_agent ILIKE ? ESCAPE '\\'")
        terms.append(_any(alts))

    clusters = _values(f.cluster, split=True)
    if clusters:
        terms.append(_any([_match("cluster", c, params) for c in clusters]))

    stage = parse_stage(f.stage)
    if isinstance(stage, list):
        params.append(stage)
        terms.append("list_contains(?, stage)")

    since = _when(f.since, "--since", now)
    until = _when(f.until, "--until", now)
    if since is not None and until is not None and since >= until:
        raise QueryError(
            f"--since/--until: the range is empty: {since.isoformat()} is not before "
            f"{until.isoformat()}"
        )
    if since is not None:
        params.append(since)
        terms.append("ts >= ?")
    if until is not None:
        params.append(until)
        terms.append("ts < ?")

    for sql, extra_params in f.extra:
        terms.append(f"({sql})")
        params.extend(extra_params)

    if f.where is not None and f.where.strip():
        terms.append(f"({f.where})")

    return Compiled(" AND ".join(terms) if terms else "TRUE", params)


def _when(v: str | datetime | None, flag: str, now: datetime | None) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v
    return parse_when(v, flag=flag, now=now)


# --- whole statements ------------------------------------------------------------

_RANK = "CASE {t}.stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 ELSE 2 END"


@dataclass(frozen=True, slots=True)
class OpenRows:
    """Where a prepared connection keeps the *open* rows (final but not terminal, see
    :mod:`kaudit.query.finalstage`), for :func:`rows_sql`.

    ``view``: a relation of every open row with ``columns``; ``keys(condition)``: the
    name of a relation of ``(audit_id, ts, stage)`` of the open rows that meet the
    condition (``None``: every open row), or ``None`` when no open row meets it.
    """

    view: str
    columns: tuple[str, ...]
    keys: Callable[[Compiled | None], str | None]


def rows_sql(
    f: Filters,
    *,
    now: datetime | None = None,
    resolve_ips: IpResolver | None = None,
    columns: Sequence[str] | None = None,
    open_rows: OpenRows | None = None,
) -> Compiled:
    """A sub-query of the matching rows, one per request unless ``f.stage`` asks
    otherwise. ``columns``: only these (plus what ordering and the final-stage choice
    need) are read; the big ones (``event``, the bodies) cost a lot to read for nothing.

    ``open_rows``: the final stage is taken from the open rows of a prepared
    connection instead of probing every stored event (same rows, see
    :mod:`kaudit.query.finalstage`); without it the SQL stands alone over ``events``.
    """
    if resolve_ips is not None:
        resolve_ips = _once(resolve_ips)
    c = compile_filters(f, now=now, resolve_ips=resolve_ips)
    if columns is None:
        select = "*"
    else:
        wanted = dict.fromkeys([*columns, *_ROW_KEYS])
        select = ", ".join(f'"{col}"' for col in wanted)
    if parse_stage(f.stage) != STAGE_FINAL:
        return Compiled(f"SELECT {select} FROM events WHERE {c.sql}", c.params)
    if open_rows is not None:
        return _rows_from_open(f, c, select, columns, open_rows, now, resolve_ips)
    sql = (
        f"WITH _m AS (SELECT {select} FROM events WHERE {c.sql}) "
        f"SELECT * FROM _m WHERE stage IN {_TERMINAL_SQL} "
        "UNION ALL "
        f"SELECT * FROM _m WHERE stage NOT IN {_TERMINAL_SQL} AND (audit_id = '' OR NOT EXISTS ("
        # Among every stored event, not only the matching ones: with --code '!200' a
        # RequestReceived (no code) matches although its request ended with a 200.
        "SELECT 1 FROM events _e WHERE _e.audit_id = _m.audit_id AND _e.ts = _m.ts AND "
        f"{_RANK.format(t='_e')} > {_RANK.format(t='_m')}))"
    )
    return Compiled(sql, c.params)


def _rows_from_open(
    f: Filters,
    c: Compiled,
    select: str,
    columns: Sequence[str] | None,
    open_rows: OpenRows,
    now: datetime | None,
    resolve_ips: IpResolver | None,
) -> Compiled:
    """Terminal rows from ``events`` plus the open rows that match (see :func:`rows_sql`)."""
    branches = compile_branches(f, now=now, resolve_ips=resolve_ips)
    parts: list[str] = []
    params: list[object] = []
    for b in branches:
        parts.append(f"SELECT {select} FROM events WHERE {b.sql} AND stage IN {_TERMINAL_SQL}")
        params.extend(b.params)
    wanted = list(columns or ()) + list(_ROW_KEYS)
    small = columns is not None and all(col in open_rows.columns for col in wanted)
    if small and not (f.where and f.where.strip()):
        # Every column needed is in the open rows: no look at the stored events at all.
        parts.append(f"SELECT {select} FROM {open_rows.view} WHERE {c.sql}")
        params.extend(c.params)
    else:
        # A big column, or the caller's own SQL (which may read any column): the open
        # rows' keys, then those rows from ``events``.
        keys = open_rows.keys(None if f.where and f.where.strip() else c)
        if keys is not None:
            for b in branches:
                parts.append(
                    f"SELECT {select} FROM events _e WHERE {b.sql} "
                    f"AND stage NOT IN {_TERMINAL_SQL} AND (audit_id IS NULL OR EXISTS ("
                    f"SELECT 1 FROM {keys} _o WHERE _o.audit_id = _e.audit_id "
                    "AND _o.ts = _e.ts AND _o.stage = _e.stage))"
                )
                params.extend(b.params)
    return Compiled(" UNION ALL ".join(parts), params)


def _once(resolve: IpResolver) -> IpResolver:
    """``resolve`` run at most once (the filters are compiled more than once)."""
    got: list[list[str]] = []

    def cached() -> list[str]:
        if not got:
            got.append(list(resolve()))
        return got[0]

    return cached


#: What ordering and the final-stage choice read besides the caller's columns.
_ROW_KEYS: Final = ("ts", "stage_ts", "audit_id", "stage")


def check_columns(columns: Sequence[str], *, flag: str = "--columns") -> list[str]:
    """Validate column names against the flat schema."""
    out: list[str] = []
    for col in columns:
        c = col.strip()
        if not c:
            continue
        if c not in COLUMN_NAMES:
            raise QueryError(
                f"{flag}: unknown column {c!r}: expected names from the flat schema "
                f"({', '.join(COLUMN_NAMES)}){_suggest(c, COLUMN_NAMES)}"
            )
        out.append(c)
    if not out:
        raise QueryError(f"{flag}: no columns given: expected names from the flat schema")
    return out


def select_sql(
    f: Filters,
    *,
    columns: Sequence[str] = COLUMN_NAMES,
    limit: int = 100,
    order: str = "desc",
    now: datetime | None = None,
    resolve_ips: IpResolver | None = None,
    rows: Callable[..., Compiled] | None = None,
) -> Compiled:
    """The full ``SELECT`` for ``kaudit query``: filters, final stage, order, limit.

    ``rows``: :func:`rows_sql` or one bound to a connection's open rows."""
    cols = check_columns(columns)
    if order.lower() not in ("asc", "desc"):
        raise QueryError(f"--order: invalid value {order!r}: expected asc or desc")
    if limit < 0:
        raise QueryError(f"--limit: invalid value {limit}: expected 0 (all) or a positive number")
    direction = order.upper()
    inner = (rows or rows_sql)(f, now=now, resolve_ips=resolve_ips, columns=cols)
    select = ", ".join(f'"{c}"' for c in cols)
    sql = (
        f"SELECT {select} FROM ({inner.sql}) _r "
        f"ORDER BY ts {direction}, stage_ts {direction}, audit_id {direction}, "
        f"{_RANK.format(t='_r')} {direction}"
    )
    if limit:
        sql += f" LIMIT {int(limit)}"
    return Compiled(sql, inner.params)


__all__ = [
    "CODE_EXPECTED",
    "STAGE_ALL",
    "STAGE_FINAL",
    "VERBS",
    "Compiled",
    "Filters",
    "check_columns",
    "OpenRows",
    "compile_branches",
    "compile_codes",
    "compile_filters",
    "glob_to_like",
    "parse_stage",
    "rows_sql",
    "select_sql",
]
