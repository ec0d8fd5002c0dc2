"""The overview: the cluster's audit record for one time range, at a glance.

Every panel is an aggregate computed by DuckDB over only the columns it needs, from
only the segments whose time bounds meet the range (:mod:`kaudit.web.ui.span`); no
event becomes a Python object. The counting panels share one pass (``GROUPING SETS``
with ``FILTER`` clauses); the few panels that need something else (distinct secrets,
latency quantiles, the newest sessions and RBAC changes, levels of every stage) are
small queries of their own.

**One row per request.** A request is counted at its stage row
``stage IN ('ResponseComplete', 'Panic') OR (stage = 'ResponseStarted' AND code = 401)``:
its completion, or the single ``ResponseStarted`` event the apiserver writes for a
failed authentication. The predicate looks at one row at a time, so it costs nothing
beyond the scan (``kaudit query``'s ``--stage final`` pairs each earlier stage with the
rest of its request, a join over every auditID of the range). The two differ only for
requests with no completion stored: long-running requests still running when the range
ends (an open watch) and policies that omit ``ResponseComplete``; the overview leaves
those out of its counts. The exec/attach/port-forward panel, a small set where an
open session matters, uses ``--stage final`` exactly and shows open sessions too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from kaudit.query.output import iso
from kaudit.web.ui.predicates import (
    ANONYMOUS,
    DENIED_TARGET,
    LAT_RES,
    LAT_US,
    LAT_WHERE,
    PATH,
    RBAC_COLS,
    RBAC_WRITE,
    REQUEST,
    SECRET_READ,
    SESSION_COLS,
    STREAM,
)
from kaudit.web.ui.rollups import LAT_ERROR, OverviewRollups, aligned
from kaudit.web.ui.span import PRIOR_VIEW, SPAN_VIEW, Span
from kaudit.web.ui.timerange import TimeRange, bucket_seconds

TOP: Final = 10
CODE_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
CODES: Final = ("401", "403", "404", "409", "422", "429", "5xx")
LEVELS: Final = ("None", "Metadata", "Request", "RequestResponse")
MAX_VERBS: Final = 7

_TERMINAL: Final = "('ResponseComplete', 'Panic')"
_SA: Final = "system:serviceaccount:"


def _scope(rng: TimeRange, cluster: str | None) -> tuple[str, list[object]]:
    where = "ts >= ? AND ts < ?"
    params: list[object] = [rng.since, rng.until]
    if cluster:
        where += " AND cluster = ?"
        params.append(cluster)
    return where, params


def _rows(con: Any, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        con.sql(sql, params=list(params) or None).to_arrow_table().to_pylist()
    )
    return rows


def _scalar(con: Any, sql: str, params: Sequence[object] = ()) -> Any:
    rows = _rows(con, sql, params)
    return next(iter(rows[0].values())) if rows else None


def _iso(v: object) -> str | None:
    return iso(v) if isinstance(v, datetime) else None


def _buckets(rng: TimeRange) -> tuple[int, int]:
    width = bucket_seconds(rng.seconds)
    return width, int(-(-rng.seconds // width))


def _start(rng: TimeRange, width: int, i: int) -> str:
    return iso(datetime.fromtimestamp(rng.since_us / 1e6 + i * width, UTC))


# --- the one pass over the range's requests -------------------------------------------

# The grouping sets of the one pass; every set counts its rows (n), denials (forbid)
# and errors (code >= 400). Only dictionary-encoded and numeric columns are read: the
# request URI and the groups list (costly to decode for every row) are read by the
# small queries of the panels that need them, for the few rows they concern.
_SETS: Final[dict[str, tuple[str, ...]]] = {
    "time_verb": ("b", "verb"),
    "code": ("code",),
    "decision": ("decision",),
    "username": ("username",),
    "source_ip": ("source_ip",),
    "user_agent": ("user_agent",),
    "client": ("username", "user_agent"),
}
_KEYS: Final = ("b", "verb", "code", "decision", "username", "source_ip", "user_agent")


def _set_id(keys: tuple[str, ...]) -> int:
    # GROUPING(k1, ..., kn): bit set for each key NOT in the set, k1 the most significant.
    n = len(_KEYS)
    return sum(1 << (n - 1 - i) for i, k in enumerate(_KEYS) if k not in keys)


def one_pass(con: Any, rng: TimeRange, cluster: str | None) -> dict[str, list[dict[str, Any]]]:
    """Every counting panel's groups, from one scan of the range's requests."""
    where, params = _scope(rng, cluster)
    width, _ = _buckets(rng)
    sets = ", ".join("(" + ", ".join(keys) + ")" for keys in _SETS.values())
    sql = (
        "WITH q AS (SELECT CAST((epoch_us(ts) - ?) // ? AS BIGINT) AS b, "
        f"{', '.join(_KEYS[1:])} FROM {SPAN_VIEW} WHERE {where} AND {REQUEST}) "
        f"SELECT GROUPING({', '.join(_KEYS)}) AS gid, {', '.join(_KEYS)}, count(*) AS n, "
        "count(*) FILTER (decision = 'forbid') AS forbid, "
        "count(*) FILTER (code >= 400) AS errors "
        f"FROM q GROUP BY GROUPING SETS ({sets})"
    )
    by_id = {_set_id(keys): name for name, keys in _SETS.items()}
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in _SETS}
    for r in _rows(con, sql, [rng.since_us, width * 1_000_000, *params]):
        out[by_id[int(r["gid"])]].append(r)
    return out


FEW: Final = "few"  # the temporary table of the few rows the list panels show


def load_few(con: Any, rng: TimeRange, cluster: str | None) -> None:
    """``CREATE TEMP TABLE few``: in one scan, the requests the list panels look at
    (anonymous, denied, secret reads), with the request URI they show. The auditID (a
    wide column, dear to decode for every row) is left to the queries of the panels
    that link to requests, over filters DuckDB applies while reading."""
    where, params = _scope(rng, cluster)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {FEW} AS SELECT ts, username, verb, resource, "
        "subresource, namespace, name, code, decision, source_ip, request_uri, "
        f"TRUE AS req, {ANONYMOUS} AS anon, {SECRET_READ} AS secret_read "
        f"FROM {SPAN_VIEW} WHERE {where} AND {REQUEST} "
        f"AND ({ANONYMOUS} OR decision = 'forbid' OR ({SECRET_READ}))",
        params,
    )


def _few(con: Any, cond: str, expr: str, n: int) -> list[dict[str, Any]]:
    """The top values of ``expr`` among the few requests where ``cond``."""
    return [
        {"value": r["v"], "count": int(r["n"])}
        for r in _rows(
            con,
            f"SELECT {expr} AS v, count(*) AS n FROM {FEW} "
            f"WHERE req AND {cond} AND {expr} IS NOT NULL "
            "GROUP BY v ORDER BY n DESC, v LIMIT ?",
            [n],
        )
    ]


def _top_of(
    groups: list[dict[str, Any]], key: str, *, measure: str = "n", n: int = TOP, keep: Any = None
) -> list[dict[str, Any]]:
    items = [
        (str(g[key]), int(g[measure]))
        for g in groups
        if g[key] is not None and int(g[measure]) > 0 and (keep is None or keep(g[key]))
    ]
    items.sort(key=lambda kv: (-kv[1], kv[0]))
    return [{"value": v, "count": c} for v, c in items[:n]]


# --- panels --------------------------------------------------------------------------


def requests_over_time(groups: dict[str, list[dict[str, Any]]], rng: TimeRange) -> dict[str, Any]:
    width, n = _buckets(rng)
    totals: dict[str, int] = {}
    for g in groups["time_verb"]:
        totals[g["verb"]] = totals.get(g["verb"], 0) + int(g["n"])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], str(kv[0])))
    top = [v for v, _ in ranked[: MAX_VERBS - 1]]
    series = list(top) + (["other"] if len(totals) > len(top) else [])
    buckets: list[dict[str, Any]] = [
        {"start": _start(rng, width, i), "counts": dict.fromkeys(series, 0)} for i in range(n)
    ]
    for g in groups["time_verb"]:
        b = int(g["b"])
        if 0 <= b < n:
            v = g["verb"] if g["verb"] in top else "other"
            buckets[b]["counts"][v] += int(g["n"])
    return {"bucket_secs": width, "series": series, "buckets": buckets}


def response_codes(groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    by_code: dict[int | None, int] = {}
    for g in groups["code"]:
        by_code[g["code"]] = by_code.get(g["code"], 0) + int(g["n"])
    total = sum(by_code.values())

    def between(lo: int, hi: int) -> int:
        return sum(n for c, n in by_code.items() if c is not None and lo <= c <= hi)

    classes = {
        "1xx": between(-(2**31), 199),
        "2xx": between(200, 299),
        "3xx": between(300, 399),
        "4xx": between(400, 499),
        "5xx": between(500, 2**31),
    }
    errors = classes["4xx"] + classes["5xx"]
    return {
        "total": total,
        "classes": classes,
        "no_response": by_code.get(None, 0),
        "codes": {
            **{c: by_code.get(int(c), 0) for c in CODES if c != "5xx"},
            "5xx": classes["5xx"],
        },
        "errors": errors,
        "error_rate": (errors / total) if total else 0.0,
    }


def authorization(
    con: Any,
    groups: dict[str, list[dict[str, Any]]],
    rng: TimeRange,
    cluster: str | None,
    denied: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    width, n = _buckets(rng)
    counts = [0] * n
    for g in groups["time_verb"]:
        b = int(g["b"])
        if 0 <= b < n:
            counts[b] += int(g["forbid"])
    return {
        "decisions": _top_of(groups["decision"], "decision", n=5),
        "forbid_total": sum(counts),
        "forbid_over_time": {
            "bucket_secs": width,
            "buckets": [
                {"start": _start(rng, width, i), "count": c, "counts": {"forbid": c}}
                for i, c in enumerate(counts)
            ],
        },
        "top_denied_users": _top_of(groups["username"], "username", measure="forbid"),
        "top_denied_resources": denied
        if denied is not None
        else _few(con, "decision = 'forbid'", DENIED_TARGET, TOP),
    }


_IDENTITIES: Final[dict[str, tuple[str, Any]]] = {
    # name: (column, which values)
    "users": ("username", lambda v: not v.startswith(_SA)),
    "service_accounts": ("username", lambda v: v.startswith(_SA)),
    "source_ips": ("source_ip", None),
    "user_agents": ("user_agent", None),
}


def top_identities(
    con: Any,
    groups: dict[str, list[dict[str, Any]]],
    rng: TimeRange,
    cluster: str | None,
    *,
    before: bool,
    rollups: OverviewRollups | None = None,
) -> dict[str, Any]:
    """Top users, service accounts, source IPs, user agents; ``new`` when never seen
    before the range (from the rollups, or one query over the older events; none when
    there are none)."""
    out: dict[str, Any] = {}
    for key, (col, keep) in _IDENTITIES.items():
        out[key] = _top_of(groups[col], col, keep=keep)
    seen: dict[str, set[str]] = {"username": set(), "source_ip": set(), "user_agent": set()}
    wanted = {
        col: sorted({i["value"] for k, (c, _) in _IDENTITIES.items() for i in out[k] if c == col})
        for col in seen
    }
    if before and any(wanted.values()):
        if rollups is not None:
            seen = rollups.seen_before(wanted, rng.since_us, cluster)
        else:
            seen = _seen_before(con, wanted, rng, cluster)
    for key, (col, _) in _IDENTITIES.items():
        for i in out[key]:
            i["new"] = i["value"] not in seen[col]
    return out


def _seen_before(
    con: Any, wanted: dict[str, list[str]], rng: TimeRange, cluster: str | None
) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {col: set() for col in wanted}
    extra, params = "", list[object]([rng.since])
    if cluster:
        extra = " AND cluster = ?"
        params.append(cluster)
    parts, qp = [], []
    for col, values in wanted.items():
        if values:
            parts.append(f"SELECT '{col}' AS c, {col} AS v FROM e WHERE list_contains(?, {col})")
            qp.append(values)
    sql = (
        f"WITH e AS (SELECT username, source_ip, user_agent FROM {PRIOR_VIEW} "
        f"WHERE ts < ?{extra}) SELECT DISTINCT c, v FROM ({' UNION ALL '.join(parts)})"
    )
    for r in _rows(con, sql, [*params, *qp]):
        seen[r["c"]].add(r["v"])
    return seen


def anonymous(con: Any) -> dict[str, Any]:
    total = _scalar(con, f"SELECT count(*) FROM {FEW} WHERE req AND anon")
    return {
        "total": int(total or 0),
        "top_source_ips": _few(con, "anon", "source_ip", 5),
        "top_paths": _few(con, "anon", PATH, 5),
    }


def decode_command(request_uri: str | None) -> dict[str, Any]:
    """The ``command=`` and ``container=`` query parameters of an exec/attach URI."""
    if not request_uri:
        return {"command": [], "container": None}
    q = parse_qs(urlsplit(request_uri).query, keep_blank_values=True)
    containers = q.get("container") or []
    return {
        "command": q.get("command", []),
        "container": containers[0] if containers else None,
        "ports": q.get("ports"),
    }


def sessions(
    con: Any, rng: TimeRange, cluster: str | None, limit: int = 50, *, rows_of: str = SPAN_VIEW
) -> dict[str, Any]:
    """exec/attach/port-forward requests, each at its final stage as ``kaudit query
    --stage final`` counts it (a small set, so the pairing is cheap): open sessions too.
    ``rows_of``: the range's rows, or the cached selection of them (same columns)."""
    where, params = _scope(rng, cluster)
    rows = _rows(
        con,
        f"WITH f AS (SELECT {SESSION_COLS} FROM {rows_of} WHERE {where} AND {STREAM} "
        "QUALIFY audit_id = '' OR "
        "row_number() OVER (PARTITION BY audit_id, ts ORDER BY CASE stage "
        "WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 ELSE 2 END DESC) = 1) "
        "SELECT *, count(*) OVER () AS total, stage NOT IN ('ResponseComplete', 'Panic') AS open "
        "FROM f ORDER BY ts DESC, audit_id LIMIT ?",
        [*params, limit],
    )
    items = []
    for r in rows:
        d = decode_command(r["request_uri"])
        items.append(
            {
                "ts": _iso(r["ts"]),
                "audit_id": r["audit_id"],
                "username": r["username"],
                "namespace": r["namespace"],
                "pod": r["name"],
                "subresource": r["subresource"],
                "code": r["code"],
                "open": bool(r["open"]),
                "container": d["container"],
                "command": d["command"],
                "ports": d.get("ports"),
            }
        )
    return {"total": int(rows[0]["total"]) if rows else 0, "items": items}


def secret_reads(con: Any) -> list[dict[str, Any]]:
    return [
        {
            "username": r["username"],
            "count": int(r["n"]),
            "secrets": int(r["names"]),
            "namespaces": int(r["nss"]),
            "denied": int(r["denied"]),
        }
        for r in _rows(
            con,
            "SELECT username, count(*) AS n, count(DISTINCT namespace || '/' || name) AS names, "
            "count(DISTINCT namespace) AS nss, count(*) FILTER (code = 403) AS denied "
            f"FROM {FEW} WHERE req AND secret_read "
            "GROUP BY username ORDER BY n DESC, username LIMIT ?",
            [TOP * 2],
        )
    ]


def rbac_changes(
    con: Any, rng: TimeRange, cluster: str | None, limit: int = 50, *, rows_of: str = SPAN_VIEW
) -> list[dict[str, Any]]:
    where, params = _scope(rng, cluster)
    return [
        {**r, "ts": _iso(r["ts"])}
        for r in _rows(
            con,
            f"SELECT {RBAC_COLS} FROM {rows_of} WHERE {where} AND {REQUEST} AND {RBAC_WRITE} "
            "ORDER BY ts DESC, audit_id LIMIT ?",
            [*params, limit],
        )
    ]


_QS: Final = (0.5, 0.9, 0.99)
#: How far an estimated quantile may be from the exact one (see ``latency``).
LATENCY_PRECISION: Final = f"within {LAT_ERROR:.1%}"


def latency(
    con: Any, rng: TimeRange, cluster: str | None, rollups: OverviewRollups | None = None
) -> dict[str, Any]:
    """Quantiles of ``stage_ts - ts`` by verb and by resource.

    Exact (one pass, ``quantile_cont``) for a range scanned; estimated from the
    per-minute log-scale histograms of the rollups when ``rollups`` is given (a range on
    whole minutes): each quantile within :data:`~kaudit.web.ui.rollups.LAT_ERROR` of the
    exact one, relatively (before rounding to 0.1 ms); counts and maxima stay exact."""
    if rollups is not None:
        found = rollups.latency(rng.since_us, rng.until_us, cluster, _QS)
        rows = [
            {
                "gid": r["gid"],
                "verb": r["value"],
                "res": r["value"],
                "n": r["n"],
                "q": [x / 1000.0 for x in r["q"]],
                "mx": r["max"] / 1000.0,
            }
            for r in found
        ]
    else:
        where, params = _scope(rng, cluster)
        rows = _rows(
            con,
            f"WITH l AS (SELECT verb, {LAT_RES} AS res, {LAT_US} / 1000.0 AS ms "
            f"FROM {SPAN_VIEW} WHERE {where} AND {LAT_WHERE}) "
            "SELECT GROUPING(verb, res) AS gid, verb, res, count(*) AS n, "
            f"quantile_cont(ms, {list(_QS)}) AS q, max(ms) AS mx "
            "FROM l GROUP BY GROUPING SETS ((verb), (res))",
            params,
        )

    def items(gid: int, key: str, order: Any) -> list[dict[str, Any]]:
        out = [
            {
                "value": r[key],
                "count": int(r["n"]),
                "p50_ms": round(float(r["q"][0]), 1),
                "p90_ms": round(float(r["q"][1]), 1),
                "p99_ms": round(float(r["q"][2]), 1),
                "max_ms": round(float(r["mx"]), 1),
            }
            for r in rows
            if int(r["gid"]) == gid
        ]
        out.sort(key=order)
        return out[:15]

    estimated = rollups is not None
    note = (
        "stage_ts - ts of ResponseComplete; watches and streaming subresources "
        "(exec, attach, portforward, proxy, log) left out"
    )
    if estimated:
        note += (
            f"; quantiles estimated from log-scale histograms ({LATENCY_PRECISION} of the "
            "exact value), counts and maxima exact"
        )
    return {
        "by_verb": items(1, "verb", lambda i: (-i["count"], str(i["value"]))),
        "by_resource": items(2, "res", lambda i: (-i["p99_ms"], str(i["value"]))),
        "estimated": estimated,
        "precision": LATENCY_PRECISION if estimated else "exact",
        "note": note,
    }


def noisy_clients(groups: dict[str, list[dict[str, Any]]], rng: TimeRange) -> list[dict[str, Any]]:
    minutes = max(rng.seconds / 60.0, 1 / 60)
    total = max(sum(int(g["n"]) for g in groups["code"]), 1)
    rows = sorted(
        groups["client"],
        key=lambda g: (-int(g["n"]), str(g["username"]), str(g["user_agent"])),
    )[:TOP]
    return [
        {
            "username": r["username"],
            "user_agent": r["user_agent"],
            "count": int(r["n"]),
            "per_minute": round(int(r["n"]) / minutes, 2),
            "errors": int(r["errors"]),
            "share": int(r["n"]) / total,
        }
        for r in rows
    ]


def policy_coverage(
    con: Any, rng: TimeRange, cluster: str | None, counts: dict[Any, int] | None = None
) -> dict[str, Any]:
    if counts is None:
        where, params = _scope(rng, cluster)
        counts = {
            r["level"]: int(r["n"])
            for r in _rows(
                con,
                f"SELECT level, count(*) AS n FROM {SPAN_VIEW} WHERE {where} GROUP BY level",
                params,
            )
        }
    total = sum(counts.values())
    return {
        "events": total,
        "levels": [
            {
                "level": lv,
                "count": counts.get(lv, 0),
                "share": counts.get(lv, 0) / total if total else 0.0,
            }
            for lv in (*LEVELS, *sorted(set(counts) - set(LEVELS), key=str))
        ],
    }


_SAMPLE: Final = re.compile(r'^(\w+)(?:\{reason="([^"]*)"\})? (\S+)$')


def _rejected(metrics: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in metrics.rejected.samples():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(2) or ""] = int(float(m.group(3)))
    return out


def pipeline_store(span: Span, rollups: OverviewRollups | None = None) -> dict[str, Any]:
    """The store's own figures (cached with the panels)."""
    if rollups is not None:
        newest = rollups.newest_stage_ts()
    else:
        newest = _scalar(span.con, "SELECT max(stage_ts) FROM events")
    return {
        "source": "store",
        "stored_events": sum(s.rows for s in span.segments) + span.tail_rows,
        "segments": len(span.segments),
        "wal_events": span.tail_rows,
        "bytes": sum(s.size for s in span.segments) + span.wal_bytes,
        "newest_stage_ts": _iso(newest),
    }


def pipeline(
    stored: dict[str, Any], metrics: Any | None, started: float | None, now: datetime
) -> dict[str, Any]:
    """Ingest health: the store's figures, the ingest lag as of ``now``, and the serve
    metrics when running inside ``kaudit serve``."""
    out = dict(stored)
    newest = stored.get("newest_stage_ts")
    lag = (now - datetime.fromisoformat(newest)).total_seconds() if newest else None
    out["ingest_lag_secs"] = round(lag, 3) if lag is not None else None
    if metrics is not None:
        uptime = max(time.monotonic() - (started or time.monotonic()), 1e-9)
        received = metrics.events_received.value()
        rejected = _rejected(metrics)
        out.update(
            {
                "source": "serve",
                "uptime_secs": round(uptime, 1),
                "received": int(received),
                "received_per_sec": round(received / uptime, 2),
                "stored": int(metrics.events_stored.value()),
                "deduplicated": int(metrics.events_duplicate.value()),
                "quarantined": int(metrics.events_quarantined.value()),
                "dropped": sum(rejected.values()),
                "oversized": rejected.get("PayloadTooLarge", 0),
                "rejected_by_reason": rejected,
                "pending_batches": int(metrics.pending_batches.value()),
            }
        )
    return out


def panels(span: Span, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    """Every panel of the overview that depends only on the stored data (cacheable).

    When the range is on whole minutes (and so are its buckets), every panel comes from
    the per-segment rollups (:mod:`kaudit.web.ui.rollups`) of the segments meeting the
    range plus the write-ahead log tail: the counts, the anonymous, denied and
    secret-read panels, first-seen markers, the cluster list, policy coverage and the
    newest event exactly as a scan gives them, latency quantiles estimated (the panel
    says so, and to what precision). Otherwise the range's rows are scanned, except for
    the exec/attach/port-forward sessions and RBAC changes, which always come from
    their cached per-segment row selections cut to the range (the same rows)."""
    span.narrow(rng.since_us, rng.until_us)
    width, _ = _buckets(rng)
    rollups = OverviewRollups(span, REQUEST)
    try:
        return _panels(
            span, rng, cluster, rollups, minutes=aligned(rng.since_us, rng.until_us, width)
        )
    finally:
        rollups.close()


_SESSION_ROWS: Final = "overview_session_rows"
_RBAC_ROWS: Final = "overview_rbac_rows"


def _panels(
    span: Span,
    rng: TimeRange,
    cluster: str | None,
    rollups: OverviewRollups | None,
    *,
    minutes: bool = True,
) -> dict[str, Any]:
    """The panels; ``rollups`` None scans every panel's rows (the reference), ``minutes``
    says whether the per-minute rollups answer the range."""
    con = span.con
    levels: dict[Any, int] | None = None
    per_minute = rollups if minutes else None
    if per_minute is not None:
        groups, levels = per_minute.groups(rng.since_us, rng.until_us, _buckets(rng)[0], cluster)
        clusters = per_minute.clusters()
        lists = per_minute.lists(rng.since_us, rng.until_us, cluster, TOP)
        anon = lists["anonymous"]
        denied: list[dict[str, Any]] | None = lists["top_denied_resources"]
        secrets = lists["secret_reads"]
    else:
        groups = one_pass(con, rng, cluster)
        clusters = [
            r["cluster"]
            for r in _rows(con, "SELECT DISTINCT cluster FROM events ORDER BY cluster LIMIT 100")
        ]
        load_few(con, rng, cluster)
        anon, denied, secrets = anonymous(con), None, secret_reads(con)
    if rollups is not None:
        con.register(_SESSION_ROWS, rollups.selection("sessions", rng.since_us, rng.until_us))
        con.register(_RBAC_ROWS, rollups.selection("rbac", rng.since_us, rng.until_us))
        session_rows, rbac_rows = _SESSION_ROWS, _RBAC_ROWS
    else:
        session_rows = rbac_rows = SPAN_VIEW
    codes = response_codes(groups)
    before = span.oldest_us is not None and span.oldest_us < rng.since_us
    try:
        return {
            "range": rng.to_dict(),
            "cluster": cluster,
            "clusters": clusters,
            "requests": codes["total"],
            "requests_over_time": requests_over_time(groups, rng),
            "response_codes": codes,
            "authorization": authorization(con, groups, rng, cluster, denied),
            "top": top_identities(con, groups, rng, cluster, before=before, rollups=per_minute),
            "anonymous": anon,
            "sessions": sessions(con, rng, cluster, rows_of=session_rows),
            "secret_reads": secrets,
            "rbac_changes": rbac_changes(con, rng, cluster, rows_of=rbac_rows),
            "latency": latency(con, rng, cluster, per_minute),
            "noisy_clients": noisy_clients(groups, rng),
            "pipeline": pipeline_store(span, per_minute),
            "policy_coverage": policy_coverage(con, rng, cluster, levels),
        }
    finally:
        if rollups is not None:
            con.unregister(_SESSION_ROWS)
            con.unregister(_RBAC_ROWS)


def overview(
    span: Span,
    rng: TimeRange,
    cluster: str | None,
    *,
    metrics: Any | None = None,
    started: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every panel of the overview, as plain data (the JSON twin)."""
    data = panels(span, rng, cluster)
    return finish(data, metrics=metrics, started=started, now=now)


def finish(
    data: dict[str, Any],
    *,
    metrics: Any | None = None,
    started: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The cached panels with the live figures (ingest lag, serve metrics) added."""
    out = dict(data)
    out["pipeline"] = pipeline(data["pipeline"], metrics, started, now or datetime.now(UTC))
    return out


__all__ = ["REQUEST", "decode_command", "finish", "overview", "panels"]
