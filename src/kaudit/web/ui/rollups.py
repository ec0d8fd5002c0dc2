"""The overview's rollups: per-minute counts per segment, merged for a range.

Two rollups (:mod:`kaudit.query.rollup`), each computed once per immutable segment and
kept under ``<store>/cache/``:

* ``overview-counts`` — per minute and cluster, one grouping set per counting panel
  (verb, code, decision, user, source IP, user agent, user × user agent) with the
  requests (the overview's request test, :data:`~kaudit.web.ui.pages.overview.REQUEST`),
  the denials among them and the errors; and every event by level (policy coverage);
* ``overview-seen`` — per cluster, the first ``ts`` of each user, source IP and user
  agent, and per cluster the newest ``stage_ts`` (first-seen markers, the cluster list,
  the ingest lag).

A range whose bounds fall on whole minutes and whose buckets are whole minutes is
answered from the per-minute rows of the segments meeting it plus the write-ahead log
tail aggregated live: the same numbers as a scan of the rows, since every count is a
sum over rows and a row's minute says which range and bucket it belongs to. Other
ranges (a bound inside a minute, buckets under a minute) are scanned as before.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any, Final

import duckdb
import pyarrow as pa

from kaudit.query.rollup import Rollup, RollupReader
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
from kaudit.web.ui.span import Span

MINUTE_US: Final = 60_000_000
_KEYS: Final = ("verb", "code", "decision", "username", "source_ip", "user_agent", "level")
#: The overview's counting sets (the names of ``overview._SETS`` without the time) and
#: the level set, each with its keys besides the minute and the cluster.
_SETS: Final[dict[str, tuple[str, ...]]] = {
    "time_verb": ("verb",),
    "code": ("code",),
    "decision": ("decision",),
    "username": ("username",),
    "source_ip": ("source_ip",),
    "user_agent": ("user_agent",),
    "client": ("username", "user_agent"),
    "level": ("level",),
}


def _gid(keys: tuple[str, ...], all_keys: tuple[str, ...] = _KEYS) -> int:
    n = len(all_keys)
    return sum(1 << (n - 1 - i) for i, k in enumerate(all_keys) if k not in keys)


_GIDS: Final = {name: _gid(keys) for name, keys in _SETS.items()}


def counts_rollup(request: str) -> Rollup:
    sets = ", ".join("(m, cluster, " + ", ".join(k) + ")" for k in _SETS.values())
    keys = ", ".join(_KEYS)
    sql = (
        f"WITH q AS (SELECT epoch_us(ts) // {MINUTE_US} AS m, cluster, {keys}, "
        f"{request} AS req FROM {{rows}}) "
        f"SELECT CAST(GROUPING({keys}) AS INTEGER) AS gid, m, cluster, {keys}, "
        "count(*) FILTER (req) AS n, count(*) FILTER (req AND decision = 'forbid') AS forbid, "
        "count(*) FILTER (req AND code >= 400) AS errors, count(*) AS events "
        f"FROM q GROUP BY GROUPING SETS ({sets}) "
        f"HAVING GROUPING({keys}) = {_GIDS['level']} OR count(*) FILTER (req) > 0"
    )
    return Rollup("overview-counts", "1", sql)


_SEEN_KEYS: Final = ("username", "source_ip", "user_agent")
SEEN: Final = Rollup(
    "overview-seen",
    "1",
    "SELECT CAST(GROUPING(username, source_ip, user_agent) AS INTEGER) AS gid, cluster, "
    "username, source_ip, user_agent, min(ts) AS first_ts, max(stage_ts) AS newest "
    "FROM {rows} GROUP BY GROUPING SETS ((cluster, username), (cluster, source_ip), "
    "(cluster, user_agent), (cluster))",
)
_SEEN_GID: Final = {k: _gid((k,), _SEEN_KEYS) for k in _SEEN_KEYS}
_CLUSTER_GID: Final = _gid((), _SEEN_KEYS)


#: The anonymous, denied and secret-read panels: per minute and cluster, the requests by
#: ``kind`` and value (``anon_ip``: source IP, ``anon_path``: URI path, ``denied``: the
#: denied target) and the secret reads by user and secret (namespace, name), so distinct
#: secrets and namespaces per user still count right across segments and minutes.
LISTS: Final = Rollup(
    "overview-lists",
    "1",
    f"WITH q AS (SELECT epoch_us(ts) // {MINUTE_US} AS m, cluster, username, namespace, "
    f"name, source_ip, code, {PATH} AS path, {DENIED_TARGET} AS target, "
    f"{ANONYMOUS} AS anon, decision = 'forbid' AS forbid, {SECRET_READ} AS secret "
    f"FROM {{rows}} WHERE {REQUEST} AND ({ANONYMOUS} OR decision = 'forbid' "
    f"OR ({SECRET_READ}))) "
    "SELECT m, cluster, 'anon_ip' AS kind, source_ip AS v, NULL::VARCHAR AS username, "
    "NULL::VARCHAR AS namespace, NULL::VARCHAR AS name, count(*) AS n, 0::BIGINT AS denied "
    "FROM q WHERE anon GROUP BY ALL "
    "UNION ALL SELECT m, cluster, 'anon_path', path, NULL, NULL, NULL, count(*), 0 "
    "FROM q WHERE anon GROUP BY ALL "
    "UNION ALL SELECT m, cluster, 'denied', target, NULL, NULL, NULL, count(*), 0 "
    "FROM q WHERE forbid GROUP BY ALL "
    "UNION ALL SELECT m, cluster, 'secret', NULL, username, namespace, name, count(*), "
    "count(*) FILTER (code = 403) FROM q WHERE secret GROUP BY ALL",
)
#: exec/attach/port-forward rows (every stage) and RBAC writes: small row selections.
SESSIONS: Final = Rollup(
    "overview-sessions", "1", f"SELECT {SESSION_COLS}, cluster FROM {{rows}} WHERE {STREAM}"
)
RBAC: Final = Rollup(
    "overview-rbac",
    "1",
    f"SELECT {RBAC_COLS}, stage, api_group, cluster FROM {{rows}} WHERE {REQUEST} AND {RBAC_WRITE}",
)
#: Latency buckets per 2**(1/8): a value in bucket k lies in [2**(k/8), 2**((k+1)/8)) µs.
LAT_STEPS: Final = 8
#: The bucket of latencies under one microsecond (zero, or negative from clock skew).
LAT_LOW: Final = -1_000_000
#: The most an estimated quantile differs from the exact one, relatively: half a bucket
#: on the log scale, 2**(1/16) - 1.
LAT_ERROR: Final = 2 ** (1 / (2 * LAT_STEPS)) - 1
LATENCY: Final = Rollup(
    "overview-latency",
    "1",
    f"WITH l AS (SELECT epoch_us(ts) // {MINUTE_US} AS m, cluster, verb, {LAT_RES} AS res, "
    f"{LAT_US} AS us FROM {{rows}} WHERE {LAT_WHERE}), "
    f"b AS (SELECT *, CASE WHEN us < 1 THEN {LAT_LOW} "
    f"ELSE CAST(floor({LAT_STEPS} * log2(us)) AS INTEGER) END AS k FROM l) "
    "SELECT CAST(GROUPING(verb, res) AS INTEGER) AS gid, m, cluster, verb, res, k, "
    "count(*) AS n, min(us) AS lo, max(us) AS hi "
    "FROM b GROUP BY GROUPING SETS ((m, cluster, verb, k), (m, cluster, res, k))",
)


def estimate(buckets: Sequence[tuple[int, int, int, int]], qs: Sequence[float]) -> list[float]:
    """``quantile_cont`` of the values a histogram counts, estimated (in µs).

    ``buckets`` are ``(k, n, lo, hi)`` sorted by ``k``: ``n`` values between ``lo`` and
    ``hi`` (exact) in bucket ``k``. The value at a rank is its bucket's ``lo`` or ``hi``
    when it is the bucket's first or last, else the bucket's geometric middle (kept
    within ``[lo, hi]``): within :data:`LAT_ERROR` of the exact value, relatively, and
    so is the interpolation between two ranks."""
    total = sum(b[1] for b in buckets)
    if not total:
        return [0.0 for _ in qs]
    starts = []
    acc = 0
    for b in buckets:
        starts.append(acc)
        acc += b[1]

    def at(rank: int) -> float:
        i = bisect.bisect_right(starts, rank) - 1
        k, n, lo, hi = buckets[i]
        if rank == starts[i]:
            return float(lo)
        if rank == starts[i] + n - 1:
            return float(hi)
        if k == LAT_LOW:
            return float(hi)
        mid = 2 ** ((k + 0.5) / LAT_STEPS)
        return float(min(max(mid, lo), hi))

    out = []
    for q in qs:
        h = (total - 1) * q
        r = int(math.floor(h))
        x = at(r)
        if h > r:
            x += (h - r) * (at(r + 1) - x)
        out.append(x)
    return out


def aligned(since_us: int, until_us: int, width_secs: int) -> bool:
    """Whether per-minute rows answer this range and bucket width exactly."""
    return since_us % MINUTE_US == 0 and until_us % MINUTE_US == 0 and width_secs % 60 == 0


class OverviewRollups:
    """The rollups of one span's snapshot: the range's segments, or all of them."""

    def __init__(self, span: Span, request: str) -> None:
        self.span = span
        self.counts = counts_rollup(request)
        self.reader = RollupReader(span.root)
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        self._seen: pa.Table | None = None

    def close(self) -> None:
        self.reader.close()
        self._con.close()

    def _rows(self, table: pa.Table, sql: str, params: Sequence[object]) -> list[dict[str, Any]]:
        self._con.register("r", table)
        try:
            rows: list[dict[str, Any]] = (
                self._con.sql(sql, params=list(params) or None).to_arrow_table().to_pylist()
            )
            return rows
        finally:
            self._con.unregister("r")

    def groups(
        self, since_us: int, until_us: int, width_secs: int, cluster: str | None
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str | None, int]]:
        """The overview's counting groups (as ``overview.one_pass`` returns them) and
        the events by level, for ``[since_us, until_us)``."""
        segs = [s for s in self.span.segments if s.max_ts >= since_us and s.min_ts < until_us]
        table = self.reader.gather(self.counts, segs, self.span.tail)
        self.reader.prune(self.counts, self.span.segments)
        where = "m >= ? AND m < ?"
        params: list[object] = [since_us // MINUTE_US, until_us // MINUTE_US]
        if cluster:
            where += " AND cluster = ?"
            params.append(cluster)
        keys = ", ".join(_KEYS)
        sql = (
            f"SELECT gid, CASE WHEN gid = {_GIDS['time_verb']} THEN "
            f"CAST((m * {MINUTE_US} - ?) // ? AS BIGINT) END AS b, {keys}, "
            "CAST(sum(n) AS BIGINT) AS n, CAST(sum(forbid) AS BIGINT) AS forbid, "
            "CAST(sum(errors) AS BIGINT) AS errors, CAST(sum(events) AS BIGINT) AS events "
            f"FROM r WHERE {where} GROUP BY ALL"
        )
        by_gid = {gid: name for name, gid in _GIDS.items()}
        out: dict[str, list[dict[str, Any]]] = {name: [] for name in _SETS if name != "level"}
        levels: dict[str | None, int] = {}
        for r in self._rows(table, sql, [since_us, width_secs * 1_000_000, *params]):
            name = by_gid[int(r["gid"])]
            if name == "level":
                levels[r["level"]] = levels.get(r["level"], 0) + int(r["events"])
            else:
                out[name].append(r)
        return out, levels

    def _meeting(self, since_us: int, until_us: int) -> list[Any]:
        return [s for s in self.span.segments if s.max_ts >= since_us and s.min_ts < until_us]

    def _gather(self, rollup: Rollup, since_us: int, until_us: int) -> pa.Table:
        table = self.reader.gather(rollup, self._meeting(since_us, until_us), self.span.tail)
        self.reader.prune(rollup, self.span.segments)
        return table

    def selection(self, which: str, since_us: int, until_us: int) -> pa.Table:
        """The ``sessions`` or ``rbac`` rows of the segments meeting the range and of the
        tail (not yet cut to the range: the caller's query does that)."""
        return self._gather({"sessions": SESSIONS, "rbac": RBAC}[which], since_us, until_us)

    def _minutes(
        self, rollup: Rollup, since_us: int, until_us: int, cluster: str | None, sql: str
    ) -> list[dict[str, Any]]:
        # ``sql`` reads ``r`` WHERE {where}: the rows of the range's minutes (and cluster).
        table = self._gather(rollup, since_us, until_us)
        where = "m >= ? AND m < ?"
        params: list[object] = [since_us // MINUTE_US, until_us // MINUTE_US]
        if cluster:
            where += " AND cluster = ?"
            params.append(cluster)
        return self._rows(table, sql.replace("{where}", where), params)

    def lists(self, since_us: int, until_us: int, cluster: str | None, top: int) -> dict[str, Any]:
        """The anonymous panel, the top denied targets and the secret reads by user."""
        rows = self._minutes(
            LISTS,
            since_us,
            until_us,
            cluster,
            "SELECT kind, v, username, CAST(sum(n) AS BIGINT) AS n, "
            "CAST(sum(denied) AS BIGINT) AS denied, "
            "count(DISTINCT namespace || '/' || name) AS names, "
            "count(DISTINCT namespace) AS nss FROM r WHERE {where} GROUP BY ALL",
        )
        by_kind: dict[str, list[dict[str, Any]]] = {
            "anon_ip": [],
            "anon_path": [],
            "denied": [],
            "secret": [],
        }
        for r in rows:
            by_kind[r["kind"]].append(r)

        def ranked(kind: str, n: int) -> list[dict[str, Any]]:
            items = [(r["v"], int(r["n"])) for r in by_kind[kind] if r["v"] is not None]
            items.sort(key=lambda kv: (-kv[1], kv[0]))
            return [{"value": v, "count": c} for v, c in items[:n]]

        secrets = sorted(
            by_kind["secret"], key=lambda r: (-int(r["n"]), r["username"] is None, r["username"])
        )
        return {
            "anonymous": {
                "total": sum(int(r["n"]) for r in by_kind["anon_ip"]),
                "top_source_ips": ranked("anon_ip", 5),
                "top_paths": ranked("anon_path", 5),
            },
            "top_denied_resources": ranked("denied", top),
            "secret_reads": [
                {
                    "username": r["username"],
                    "count": int(r["n"]),
                    "secrets": int(r["names"]),
                    "namespaces": int(r["nss"]),
                    "denied": int(r["denied"]),
                }
                for r in secrets[: top * 2]
            ],
        }

    def latency(
        self, since_us: int, until_us: int, cluster: str | None, qs: Sequence[float]
    ) -> list[dict[str, Any]]:
        """Per verb (``gid`` 1) and per resource (``gid`` 2): the count, the estimated
        quantiles ``qs`` and the exact maximum, in µs."""
        rows = self._minutes(
            LATENCY,
            since_us,
            until_us,
            cluster,
            "SELECT gid, verb, res, k, CAST(sum(n) AS BIGINT) AS n, min(lo) AS lo, "
            "max(hi) AS hi FROM r WHERE {where} GROUP BY ALL ORDER BY gid, verb, res, k",
        )
        groups: dict[tuple[int, Any], list[tuple[int, int, int, int]]] = {}
        for r in rows:
            gid = int(r["gid"])
            key = (gid, r["verb"] if gid == 1 else r["res"])
            groups.setdefault(key, []).append((int(r["k"]), int(r["n"]), r["lo"], r["hi"]))
        return [
            {
                "gid": gid,
                "value": value,
                "n": sum(b[1] for b in buckets),
                "q": estimate(buckets, qs),
                "max": max(b[3] for b in buckets),
            }
            for (gid, value), buckets in groups.items()
        ]

    def _seen_table(self) -> pa.Table:
        if self._seen is None:
            self._seen = self.reader.gather(SEEN, self.span.segments, self.span.tail)
            self.reader.prune(SEEN, self.span.segments)
        return self._seen

    def seen_before(
        self, wanted: dict[str, list[str]], since_us: int, cluster: str | None
    ) -> dict[str, set[str]]:
        """Which of the ``wanted`` values (by column) occur in an event before the range."""
        seen: dict[str, set[str]] = {c: set() for c in wanted}
        table = self._seen_table()  # a value first seen in a later segment is not < since
        extra, params = "", []
        if cluster:
            extra = " AND cluster = ?"
            params.append(cluster)
        for col, values in wanted.items():
            if not values:
                continue
            sql = (
                f"SELECT DISTINCT {col} AS v FROM r WHERE gid = {_SEEN_GID[col]} "
                f"AND epoch_us(first_ts) < ? AND list_contains(?, {col}){extra}"
            )
            for r in self._rows(table, sql, [since_us, values, *params]):
                seen[col].add(r["v"])
        return seen

    def clusters(self, limit: int = 100) -> list[Any]:
        sql = f"SELECT DISTINCT cluster FROM r WHERE gid = {_CLUSTER_GID} ORDER BY cluster LIMIT ?"
        return [r["cluster"] for r in self._rows(self._seen_table(), sql, [limit])]

    def newest_stage_ts(self) -> Any:
        rows = self._rows(
            self._seen_table(), f"SELECT max(newest) AS t FROM r WHERE gid = {_CLUSTER_GID}", []
        )
        return rows[0]["t"] if rows else None


__all__ = [
    "LAT_ERROR",
    "LATENCY",
    "LISTS",
    "RBAC",
    "SEEN",
    "SESSIONS",
    "OverviewRollups",
    "aligned",
    "counts_rollup",
    "estimate",
]
