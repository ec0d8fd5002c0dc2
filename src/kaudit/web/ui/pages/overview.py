"""The overview: the cluster's audit record for one time range, at a glance.

The requests of the range (one row per request: its final stage, as the CLI counts
them) are gathered once into a temporary table of the metadata columns; every panel
is then one aggregate over that small table. "First seen" looks at the events
before the range for the top values only. Policy coverage counts every stored
event (all stages) by level.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from kaudit.query.output import iso
from kaudit.web.ui.timerange import TimeRange, bucket_seconds

TOP: Final = 10
STREAMING: Final = ("exec", "attach", "portforward")
RBAC_GROUP: Final = "rbac.authorization.k8s.io"
WRITE_VERBS: Final = ("create", "update", "patch", "delete", "deletecollection")
CODE_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
CODES: Final = ("401", "403", "404", "409", "422", "429", "5xx")
LEVELS: Final = ("None", "Metadata", "Request", "RequestResponse")
MAX_VERBS: Final = 7

# The metadata the panels need; the request URI only where a panel shows it, and the
# groups list reduced to the one test a panel makes (the slim table loads fast).
_COLS: Final = (
    "ts, stage_ts, stage, level, verb, username, impersonated_user, source_ip, "
    "user_agent, api_group, resource, subresource, namespace, name, code, decision, "
    "audit_id, cluster, "
    "(username = 'system:anonymous' OR list_contains(groups, 'system:unauthenticated')) "
    "AS anonymous, "
    "CASE WHEN resource IS NULL OR subresource IN ('exec', 'attach', 'portforward') "
    "OR username = 'system:anonymous' OR decision = 'forbid' THEN request_uri END "
    "AS request_uri"
)
_TERMINAL: Final = "('ResponseComplete', 'Panic')"


def _scope(rng: TimeRange, cluster: str | None) -> tuple[str, list[object]]:
    where = "ts >= ? AND ts < ?"
    params: list[object] = [rng.since, rng.until]
    if cluster:
        where += " AND cluster = ?"
        params.append(cluster)
    return where, params


def load_requests(con: Any, rng: TimeRange, cluster: str | None) -> None:
    """``CREATE TEMP TABLE r``: the requests of the range, one row each (final stage)."""
    where, params = _scope(rng, cluster)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE r AS "
        f"WITH e AS MATERIALIZED (SELECT {_COLS} FROM events WHERE {where}) "
        f"SELECT * FROM e WHERE stage IN {_TERMINAL} "
        "UNION ALL "
        f"SELECT * FROM e WHERE stage NOT IN {_TERMINAL} AND (audit_id = '' OR ("
        f"audit_id NOT IN (SELECT audit_id FROM e WHERE stage IN {_TERMINAL}) AND "
        "(stage <> 'RequestReceived' OR audit_id NOT IN "
        "(SELECT audit_id FROM e WHERE stage = 'ResponseStarted'))))",
        params,
    )


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


# --- panels --------------------------------------------------------------------------


def requests_over_time(con: Any, rng: TimeRange) -> dict[str, Any]:
    width = bucket_seconds(rng.seconds)
    n = int(-(-rng.seconds // width))
    top = [
        r["verb"]
        for r in _rows(
            con,
            "SELECT verb, count(*) AS n FROM r GROUP BY verb ORDER BY n DESC, verb LIMIT ?",
            [MAX_VERBS - 1],
        )
    ]
    total_verbs = _scalar(con, "SELECT count(DISTINCT verb) FROM r") or 0
    series = list(top) + (["other"] if total_verbs > len(top) else [])
    rows = _rows(
        con,
        "SELECT CAST((epoch_us(ts) - ?) // ? AS BIGINT) AS b, "
        "CASE WHEN list_contains(?, verb) THEN verb ELSE 'other' END AS v, count(*) AS n "
        "FROM r GROUP BY b, v",
        [rng.since_us, width * 1_000_000, top or [""]],
    )
    buckets: list[dict[str, Any]] = [
        {
            "start": iso(datetime.fromtimestamp(rng.since_us / 1e6 + i * width, UTC)),
            "counts": dict.fromkeys(series, 0),
        }
        for i in range(n)
    ]
    for r in rows:
        b = int(r["b"])
        if 0 <= b < n:
            buckets[b]["counts"][r["v"]] = int(r["n"])
    return {"bucket_secs": width, "series": series, "buckets": buckets}


def response_codes(con: Any) -> dict[str, Any]:
    row = _rows(
        con,
        "SELECT count(*) AS total, "
        "count(*) FILTER (code < 200) AS c1, "
        "count(*) FILTER (code BETWEEN 200 AND 299) AS c2, "
        "count(*) FILTER (code BETWEEN 300 AND 399) AS c3, "
        "count(*) FILTER (code BETWEEN 400 AND 499) AS c4, "
        "count(*) FILTER (code >= 500) AS c5, "
        "count(*) FILTER (code IS NULL) AS none, "
        "count(*) FILTER (code = 401) AS e401, count(*) FILTER (code = 403) AS e403, "
        "count(*) FILTER (code = 404) AS e404, count(*) FILTER (code = 409) AS e409, "
        "count(*) FILTER (code = 422) AS e422, count(*) FILTER (code = 429) AS e429 "
        "FROM r",
    )[0]
    total = int(row["total"])
    errors = int(row["c4"]) + int(row["c5"])
    return {
        "total": total,
        "classes": {k: int(row[f"c{k[0]}"]) for k in CODE_CLASSES},
        "no_response": int(row["none"]),
        "codes": {
            **{c: int(row[f"e{c}"]) for c in CODES if c != "5xx"},
            "5xx": int(row["c5"]),
        },
        "errors": errors,
        "error_rate": (errors / total) if total else 0.0,
    }


def _top(con: Any, expr: str, where: str = "TRUE", n: int = TOP) -> list[dict[str, Any]]:
    return [
        {"value": r["v"], "count": int(r["n"])}
        for r in _rows(
            con,
            f"SELECT {expr} AS v, count(*) AS n FROM r WHERE {where} AND {expr} IS NOT NULL "
            "GROUP BY v ORDER BY n DESC, v LIMIT ?",
            [n],
        )
    ]


def authorization(con: Any, rng: TimeRange) -> dict[str, Any]:
    width = bucket_seconds(rng.seconds)
    n = int(-(-rng.seconds // width))
    counts = [0] * n
    for r in _rows(
        con,
        "SELECT CAST((epoch_us(ts) - ?) // ? AS BIGINT) AS b, count(*) AS n FROM r "
        "WHERE decision = 'forbid' GROUP BY b",
        [rng.since_us, width * 1_000_000],
    ):
        b = int(r["b"])
        if 0 <= b < n:
            counts[b] = int(r["n"])
    decisions = _top(con, "decision", n=5)
    return {
        "decisions": decisions,
        "forbid_total": sum(counts),
        "forbid_over_time": {
            "bucket_secs": width,
            "buckets": [
                {
                    "start": iso(datetime.fromtimestamp(rng.since_us / 1e6 + i * width, UTC)),
                    "count": c,
                    "counts": {"forbid": c},
                }
                for i, c in enumerate(counts)
            ],
        },
        "top_denied_users": _top(con, "username", "decision = 'forbid'"),
        "top_denied_resources": _top(
            con,
            "coalesce(resource || coalesce('/' || subresource, ''), request_uri)",
            "decision = 'forbid'",
        ),
    }


_IDENTITIES: Final[dict[str, tuple[str, str]]] = {
    # name: (expression, condition)
    "users": ("username", "username NOT LIKE 'system:serviceaccount:%'"),
    "service_accounts": ("username", "username LIKE 'system:serviceaccount:%'"),
    "source_ips": ("source_ip", "TRUE"),
    "user_agents": ("user_agent", "TRUE"),
}


def top_identities(con: Any, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    """Top users, service accounts, source IPs, user agents; ``new`` when never seen
    before the range."""
    out: dict[str, Any] = {}
    for key, (expr, cond) in _IDENTITIES.items():
        items = _top(con, expr, cond)
        values = [i["value"] for i in items]
        before: set[str] = set()
        if values:
            params: list[object] = [rng.since, values]
            extra = ""
            if cluster:
                extra = " AND cluster = ?"
                params.append(cluster)
            before = {
                r["v"]
                for r in _rows(
                    con,
                    f"SELECT DISTINCT {expr} AS v FROM events WHERE ts < ? "
                    f"AND list_contains(?, {expr}){extra}",
                    params,
                )
            }
        for i in items:
            i["new"] = i["value"] not in before
        out[key] = items
    return out


def anonymous(con: Any) -> dict[str, Any]:
    cond = "anonymous"
    total = int(_scalar(con, f"SELECT count(*) FROM r WHERE {cond}") or 0)
    return {
        "total": total,
        "top_source_ips": _top(con, "source_ip", cond, 5),
        "top_paths": _top(con, "split_part(request_uri, '?', 1)", cond, 5),
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


def sessions(con: Any, limit: int = 50) -> dict[str, Any]:
    total = int(
        _scalar(
            con, "SELECT count(*) FROM r WHERE list_contains(?, subresource)", [list(STREAMING)]
        )
        or 0
    )
    rows = _rows(
        con,
        "SELECT ts, audit_id, username, namespace, name, subresource, code, request_uri "
        "FROM r WHERE list_contains(?, subresource) ORDER BY ts DESC LIMIT ?",
        [list(STREAMING), limit],
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
                "container": d["container"],
                "command": d["command"],
                "ports": d.get("ports"),
            }
        )
    return {"total": total, "items": items}


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
            "FROM r WHERE resource = 'secrets' AND subresource IS NULL "
            "AND verb IN ('get', 'list', 'watch') "
            "GROUP BY username ORDER BY n DESC, username LIMIT ?",
            [TOP * 2],
        )
    ]


def rbac_changes(con: Any, limit: int = 50) -> list[dict[str, Any]]:
    return [
        {**r, "ts": _iso(r["ts"])}
        for r in _rows(
            con,
            "SELECT ts, audit_id, username, verb, resource, namespace, name, code FROM r "
            "WHERE api_group = ? AND list_contains(?, verb) ORDER BY ts DESC LIMIT ?",
            [RBAC_GROUP, list(WRITE_VERBS), limit],
        )
    ]


_LAT: Final = "(epoch_us(stage_ts) - epoch_us(ts)) / 1000.0"
_LAT_WHERE: Final = (
    "stage = 'ResponseComplete' AND stage_ts IS NOT NULL AND verb <> 'watch' "
    "AND NOT list_contains(['exec', 'attach', 'portforward', 'proxy', 'log'], "
    "coalesce(subresource, ''))"
)


def latency(con: Any) -> dict[str, Any]:
    def q(group: str, order: str, n: int) -> list[dict[str, Any]]:
        return [
            {
                "value": r["v"],
                "count": int(r["n"]),
                "p50_ms": round(float(r["p50"]), 1),
                "p90_ms": round(float(r["p90"]), 1),
                "p99_ms": round(float(r["p99"]), 1),
                "max_ms": round(float(r["mx"]), 1),
            }
            for r in _rows(
                con,
                f"SELECT {group} AS v, count(*) AS n, quantile_cont({_LAT}, 0.5) AS p50, "
                f"quantile_cont({_LAT}, 0.9) AS p90, quantile_cont({_LAT}, 0.99) AS p99, "
                f"max({_LAT}) AS mx FROM r WHERE {_LAT_WHERE} GROUP BY v "
                f"ORDER BY {order} LIMIT ?",
                [n],
            )
        ]

    return {
        "by_verb": q("verb", "n DESC, v", 15),
        "by_resource": q(
            "coalesce(resource || coalesce('/' || subresource, ''), '(non-resource)')",
            "p99 DESC, v",
            15,
        ),
        "note": "stage_ts - ts of ResponseComplete; watches and streaming subresources "
        "(exec, attach, portforward, proxy, log) left out",
    }


def noisy_clients(con: Any, rng: TimeRange) -> list[dict[str, Any]]:
    minutes = max(rng.seconds / 60.0, 1 / 60)
    return [
        {
            "username": r["username"],
            "user_agent": r["user_agent"],
            "count": int(r["n"]),
            "per_minute": round(int(r["n"]) / minutes, 2),
            "errors": int(r["errors"]),
            "share": float(r["share"]),
        }
        for r in _rows(
            con,
            "SELECT username, user_agent, count(*) AS n, count(*) FILTER (code >= 400) AS errors, "
            "count(*) / (SELECT greatest(count(*), 1) FROM r) AS share "
            "FROM r GROUP BY username, user_agent ORDER BY n DESC, username LIMIT ?",
            [TOP],
        )
    ]


def policy_coverage(con: Any, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    where, params = _scope(rng, cluster)
    counts = {
        r["level"]: int(r["n"])
        for r in _rows(
            con, f"SELECT level, count(*) AS n FROM events WHERE {where} GROUP BY level", params
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


def pipeline(
    con: Any, store: Any, metrics: Any | None, started: float | None, now: datetime
) -> dict[str, Any]:
    """Ingest health: the serve metrics when running inside ``kaudit serve``, else the
    store's own figures."""
    st = store.stats()
    newest = _scalar(con, "SELECT max(stage_ts) FROM events WHERE stage_ts IS NOT NULL")
    lag = (now - newest).total_seconds() if isinstance(newest, datetime) else None
    out: dict[str, Any] = {
        "source": "store",
        "stored_events": st.events,
        "segments": st.segments,
        "wal_events": st.wal_events,
        "bytes": st.bytes,
        "newest_stage_ts": _iso(newest),
        "ingest_lag_secs": round(lag, 3) if lag is not None else None,
    }
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


def overview(
    con: Any,
    store: Any,
    rng: TimeRange,
    cluster: str | None,
    *,
    metrics: Any | None = None,
    started: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every panel of the overview, as plain data (the JSON twin)."""
    load_requests(con, rng, cluster)
    codes = response_codes(con)
    clusters = [
        r["cluster"]
        for r in _rows(con, "SELECT DISTINCT cluster FROM events ORDER BY cluster LIMIT 100")
    ]
    return {
        "range": rng.to_dict(),
        "cluster": cluster,
        "clusters": clusters,
        "requests": codes["total"],
        "requests_over_time": requests_over_time(con, rng),
        "response_codes": codes,
        "authorization": authorization(con, rng),
        "top": top_identities(con, rng, cluster),
        "anonymous": anonymous(con),
        "sessions": sessions(con),
        "secret_reads": secret_reads(con),
        "rbac_changes": rbac_changes(con),
        "latency": latency(con),
        "noisy_clients": noisy_clients(con, rng),
        "pipeline": pipeline(con, store, metrics, started, now or datetime.now(UTC)),
        "policy_coverage": policy_coverage(con, rng, cluster),
    }


__all__ = ["decode_command", "load_requests", "overview"]
