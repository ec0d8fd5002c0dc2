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

from collections.abc import Sequence
from typing import Any, Final

import duckdb
import pyarrow as pa

from kaudit.query.rollup import Rollup, RollupReader
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


__all__ = ["SEEN", "OverviewRollups", "aligned", "counts_rollup"]
