"""A capture, grouped: the events a policy cannot tell apart, with their sizes.

The capture (a store, or audit log files) is reduced **in DuckDB** to groups: the
same user, groups, verb, namespace, API group, resource, subresource, path
(non-resource requests), name (only when some policy names it in ``resourceNames``),
stage, captured level and day. Each :class:`Group` carries its event count and byte
sums: the whole event (``strlen(event) + 1``: the line as the apiserver writes it),
the request and response bodies, and the ``managedFields`` members inside them. The
last are computed lazily, in a second pass over the bodies only, for the groups a
policy strips them from (:meth:`Capture.ensure_managed_fields`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import unquote

import duckdb

from kaudit.errors import DecodeError, InputError
from kaudit.model.types import level_rank
from kaudit.policy.attributes import Attributes, User
from kaudit.policy.evaluate import Evaluator
from kaudit.policy.types import Policy

#: ``"managedFields":`` plus the one comma that goes with the member.
MF_KEY = len(b'"managedFields":,')


_MF_MACRO = f"""
CREATE OR REPLACE TEMP MACRO kaudit_mf(b) AS
  CASE WHEN b IS NULL OR NOT contains(b, '"managedFields"') THEN 0 ELSE
    coalesce(TRY(strlen(CAST(json_extract(b, '$.metadata.managedFields') AS VARCHAR))
      + {MF_KEY}), 0)
    + CASE WHEN contains(b, '"items":[') THEN coalesce(TRY(list_sum(list_transform(
        json_extract(b, '$.items[*].metadata.managedFields'),
        lambda x: strlen(CAST(x AS VARCHAR)) + {MF_KEY}))), 0) ELSE 0 END
    + CASE WHEN contains(b, '"rows":[') THEN coalesce(TRY(list_sum(list_transform(
        json_extract(b, '$.rows[*].object.metadata.managedFields'),
        lambda x: strlen(CAST(x AS VARCHAR)) + {MF_KEY}))), 0) ELSE 0 END
  END
"""

_GROUP_SQL = """
WITH k AS (
SELECT *,
       CASE WHEN name IS NOT NULL AND list_contains($names, name) THEN name ELSE '' END
         AS name_key,
       CASE WHEN api_group IS NULL AND resource IS NULL
            THEN split_part(request_uri, '?', 1) ELSE NULL END AS path,
       CAST(ts AS DATE) AS day
FROM {source}
WHERE ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)
)
SELECT coalesce(username, '') AS username,
       coalesce(groups, []) AS groups,
       coalesce(verb, '') AS verb,
       coalesce(namespace, '') AS namespace,
       coalesce(api_group, '') AS api_group,
       coalesce(resource, '') AS resource,
       coalesce(subresource, '') AS subresource,
       name_key AS name,
       path,
       coalesce(stage, '') AS stage,
       coalesce(level, '') AS level,
       CAST(day AS VARCHAR) AS day,
       count(*) AS n,
       sum(strlen(event) + 1) AS bytes,
       count(request_object) AS req_n,
       coalesce(sum(strlen(request_object)), 0) AS req_bytes,
       {req_mf} AS req_mf,
       count(response_object) AS resp_n,
       coalesce(sum(strlen(response_object)), 0) AS resp_bytes,
       {resp_mf} AS resp_mf
FROM k
GROUP BY ALL
"""
_REQ_MF = "coalesce(sum(CASE WHEN verb = 'patch' THEN 0 ELSE kaudit_mf(request_object) END), 0)"
_RESP_MF = "coalesce(sum(kaudit_mf(response_object)), 0)"
#: Pass 1 without parsing bodies: -1 marks "not computed" (see _fill_managed_fields).
_MF_LATER = "-1"
#: The second pass: only the groups of some (resource, verb) pairs whose bodies hold
#: managedFields, and only their managedFields sizes (the event column is not read).
_MF_SQL = (
    _GROUP_SQL.replace(
        "WHERE ($since IS NULL",
        "WHERE list_contains($pairs, coalesce(resource, '') || ' ' || coalesce(verb, ''))\n"
        "  AND (contains(request_object, '\"managedFields\"')"
        " OR contains(response_object, '\"managedFields\"'))\n  AND ($since IS NULL",
    )
    .replace("sum(strlen(event) + 1) AS bytes", "0 AS bytes")
    .replace("coalesce(sum(strlen(request_object)), 0) AS req_bytes", "0 AS req_bytes")
    .replace("coalesce(sum(strlen(response_object)), 0) AS resp_bytes", "0 AS resp_bytes")
)

_SUM_COLS = ("n", "bytes", "req_n", "req_bytes", "req_mf", "resp_n", "resp_bytes", "resp_mf")
_KEY_COLS = (
    "username",
    "groups",
    "verb",
    "namespace",
    "api_group",
    "resource",
    "subresource",
    "name",
    "path",
    "stage",
    "level",
    "day",
)


class Group(NamedTuple):
    """Captured events a policy cannot tell apart, with their sizes."""

    attrs: Attributes
    stage: str
    level: str
    day: str
    n: int
    bytes: int
    req_n: int
    req_bytes: int
    req_mf: int
    resp_n: int
    resp_bytes: int
    resp_mf: int  # -1: not computed yet (Capture.ensure_managed_fields)

    @property
    def key(self) -> tuple[Attributes, str, str, str]:
        return (self.attrs, self.stage, self.level, self.day)


@dataclass(slots=True)
class Capture:
    """Captured traffic, grouped; ``description`` says where it came from."""

    groups: list[Group]
    description: str
    bad_lines: int = 0
    #: First and last request time in the capture (epoch seconds), when known.
    first_ts: float | None = None
    last_ts: float | None = None
    #: A second, narrower pass: the groups of these (resource, verb) pairs, with
    #: managedFields sizes computed.
    refill: Callable[[list[str]], list[Group]] | None = None

    @property
    def events(self) -> int:
        return sum(g.n for g in self.groups)

    @property
    def span_seconds(self) -> float:
        """How much time the capture covers (at least one minute)."""
        if self.first_ts is None or self.last_ts is None:
            return 86400.0
        return max(60.0, self.last_ts - self.first_ts)

    def ensure_managed_fields(self, policies: Iterable[Policy]) -> None:
        """Make the managedFields sizes exact wherever one of ``policies`` strips them."""
        if self.refill is None:
            return
        evaluators = [Evaluator(p, cache_size=max(65_536, len(self.groups))) for p in policies]
        todo: set[str] = set()
        needed: set[tuple[Attributes, str, str, str]] = set()
        for g in self.groups:
            if g.req_mf >= 0 or not (g.req_n or g.resp_n) or not g.attrs.resource_request:
                continue
            for ev in evaluators:
                d = ev.evaluate(g.attrs)
                if d.omit_managed_fields and level_rank(d.level) >= 2:
                    todo.add(f"{g.attrs.resource} {g.attrs.verb}")
                    needed.add(g.key)
                    break
        found = {g.key: g for g in self.refill(sorted(todo))} if todo else {}
        new = []
        for g in self.groups:
            if g.key in needed:
                f = found.get(g.key)  # absent: no body of the group has managedFields
                g = g._replace(req_mf=f.req_mf if f else 0, resp_mf=f.resp_mf if f else 0)
            new.append(g)
        self.groups = new


def names_of(policies: Iterable[Policy]) -> list[str]:
    """Every name any rule of these policies lists in ``resourceNames``."""
    return sorted(
        {n for p in policies for r in p.rules for gr in r.resources for n in gr.resource_names}
    )


def _params(
    names: Sequence[str], since: datetime | None, until: datetime | None
) -> dict[str, object]:
    return {"names": list(names), "since": since, "until": until}


def _to_groups(table: Any) -> list[Group]:
    cols = {c: table.column(c).to_pylist() for c in (*_KEY_COLS, *_SUM_COLS)}
    out = []
    for i in range(table.num_rows):
        path = cols["path"][i]
        username = cols["username"][i]
        user = User(username, tuple(cols["groups"][i])) if username else None
        if path is None:
            attrs = Attributes(
                user,
                cols["verb"][i],
                cols["namespace"][i],
                cols["api_group"][i],
                "",
                cols["resource"][i],
                cols["subresource"][i],
                cols["name"][i],
                "",
                True,
            )
        else:
            attrs = Attributes(user, cols["verb"][i], path=unquote(path) if "%" in path else path)
        sums = [int(cols[c][i]) for c in _SUM_COLS]
        out.append(Group._make((attrs, cols["stage"][i], cols["level"][i], cols["day"][i], *sums)))
    return out


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute("SELECT current_setting('TimeZone')").fetchone()
    if row is None or row[0] != "UTC":  # a store's connection is UTC (and locked) already
        con.execute("SET TimeZone = 'UTC'")
    con.execute(_MF_MACRO)


def capture_from_connection(
    con: duckdb.DuckDBPyConnection,
    relation: str = "events",
    *,
    names: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    description: str = "",
    lazy_managed_fields: bool = True,
) -> Capture:
    """Group the flat-schema rows of ``relation`` (a table or view of ``con``).

    With ``lazy_managed_fields`` the bodies are not parsed in the first pass; the
    capture computes managedFields sizes later, only for the groups a policy strips
    them from (``con`` must stay open until then).
    """
    _prepare(con)
    params = _params(names, since, until)
    mf = (_MF_LATER, _MF_LATER) if lazy_managed_fields else (_REQ_MF, _RESP_MF)
    sql = _GROUP_SQL.format(source=relation, req_mf=mf[0], resp_mf=mf[1])
    table = con.sql(sql, params=params).to_arrow_table()
    capture = Capture(_to_groups(table), description or relation)
    first, last = con.sql(
        f"SELECT epoch(min(ts)), epoch(max(ts)) FROM {relation} "
        "WHERE ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)",
        params={"since": since, "until": until},
    ).fetchall()[0]
    capture.first_ts = None if first is None else float(first)
    capture.last_ts = None if last is None else float(last)
    if lazy_managed_fields:
        mf_sql = _MF_SQL.format(source=relation, req_mf=_REQ_MF, resp_mf=_RESP_MF)

        def refill(pairs: list[str]) -> list[Group]:
            return _to_groups(con.sql(mf_sql, params={**params, "pairs": pairs}).to_arrow_table())

        capture.refill = refill
    return capture


#: The capture's per-segment rollup (kaudit.query.rollup): the grouping of one segment
#: (every key and sum of _GROUP_SQL, managedFields left for later) and its time bounds.
#: Bump the version when the grouping changes meaning without its SQL changing.
ROLLUP_NAME = "policy-capture"
ROLLUP_VERSION = "1"
_ROLLUP_SQL = _GROUP_SQL.format(source="{rows}", req_mf=_MF_LATER, resp_mf=_MF_LATER).replace(
    "\nFROM k\nGROUP BY ALL",
    ",\n       epoch(min(ts)) AS t0, epoch(max(ts)) AS t1\nFROM k\nGROUP BY ALL",
)
_MERGE_SQL = (
    "SELECT {keys}, {sums}, min(t0) AS t0, max(t1) AS t1 FROM kaudit_capture_parts GROUP BY ALL"
)


def _rollup(names: Sequence[str], since: datetime | None, until: datetime | None) -> Any:
    from kaudit.query.rollup import Rollup

    return Rollup(ROLLUP_NAME, ROLLUP_VERSION, _ROLLUP_SQL, _params(names, since, until))


def capture_from_store(
    path: str,
    *,
    names: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> Capture:
    """Group every stored event (segments plus the WAL tail).

    Each segment wholly inside the range is grouped once and kept as a rollup
    (:mod:`kaudit.query.rollup`, keyed by the segment's SHA-256 and the names the
    policies list); segments the range cuts and the write-ahead log tail are grouped
    live. The groups of all of them are then added up, so the result is the same as
    one pass over every event.
    """
    from kaudit.query.rollup import RollupReader
    from kaudit.store import open_store, reader

    store = open_store(path, create=False)
    root = store.path
    snap = reader.snapshot(root)
    since_us = None if since is None else _micros(since)
    until_us = None if until is None else _micros(until)
    whole = _rollup(names, None, None)
    cut = _rollup(names, since, until)
    inside, partial = [], []
    for seg in sorted(snap.state.segments.values(), key=lambda s: s.path):
        if (until_us is not None and seg.min_ts >= until_us) or (
            since_us is not None and seg.max_ts < since_us
        ):
            continue
        if (since_us is None or seg.min_ts >= since_us) and (
            until_us is None or seg.max_ts < until_us
        ):
            inside.append(seg)
        else:
            partial.append(seg)
    with RollupReader(root) as rr:
        parts = [rr.gather(whole, inside)]
        parts.extend(rr.compute(cut, str(root / seg.path)) for seg in partial)
        if snap.tail.num_rows:
            parts.append(rr.compute(cut, snap.tail))
        rr.prune(whole, snap.state.segments.values())
        table = _merge(parts)
    capture = Capture(_to_groups(table), f"store {root}")
    t0 = [v for v in table.column("t0").to_pylist() if v is not None]
    t1 = [v for v in table.column("t1").to_pylist() if v is not None]
    capture.first_ts = float(min(t0)) if t0 else None
    capture.last_ts = float(max(t1)) if t1 else None
    params = _params(names, since, until)
    mf_sql = _MF_SQL.format(source="events", req_mf=_REQ_MF, resp_mf=_RESP_MF)

    def refill(pairs: list[str]) -> list[Group]:
        # The second pass (rare: a policy stripping managedFields at Request or more)
        # reads the bodies of the pairs it needs, over the same snapshot.
        con = reader.connect(root, snap)
        try:
            _prepare(con)
            return _to_groups(con.sql(mf_sql, params={**params, "pairs": pairs}).to_arrow_table())
        finally:
            con.close()

    capture.refill = refill
    return capture


def _micros(t: datetime) -> int:
    from datetime import UTC

    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def _merge(parts: list[Any]) -> Any:
    import pyarrow as pa

    con = duckdb.connect(":memory:")
    try:
        con.register("kaudit_capture_parts", pa.concat_tables(parts, promote_options="permissive"))
        keys = ", ".join(_KEY_COLS)
        sums = ", ".join(
            f"{_MF_LATER} AS {c}" if c in ("req_mf", "resp_mf") else f"sum({c}) AS {c}"
            for c in _SUM_COLS
        )
        return con.sql(_MERGE_SQL.format(keys=keys, sums=sums)).to_arrow_table()
    finally:
        con.close()


def capture_from_logs(
    paths: Sequence[str],
    *,
    names: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    on_error: Callable[[InputError], None] | None = None,
    batch_size: int = 50_000,
) -> Capture:
    """Group the events of audit log files (JSON Lines, EventList, arrays, legacy, .gz,
    rotated sets): read in batches, each reduced in DuckDB, memory bounded by groups."""
    from kaudit.model.documents import Record, iter_records
    from kaudit.sources.files import READ_ERRORS, describe_read_error, expand_paths, open_input
    from kaudit.store.flatten import flatten

    bad = 0

    def report(err: InputError) -> None:
        nonlocal bad
        bad += 1
        if on_error is not None:
            on_error(err)

    def on_bad_line(err: DecodeError, raw: bytes) -> None:
        report(err)

    expansion = expand_paths(list(paths))
    for err in expansion.errors:
        report(err)
    con = duckdb.connect(":memory:")
    _prepare(con)
    sql = _GROUP_SQL.format(source="kaudit_batch", req_mf=_REQ_MF, resp_mf=_RESP_MF)
    params = _params(names, since, until)
    partial = None
    first: float | None = None
    last: float | None = None
    span_sql = (
        "SELECT epoch(min(ts)), epoch(max(ts)) FROM kaudit_batch "
        "WHERE ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts < $until)"
    )

    def reduce(batch: list[Record]) -> None:
        nonlocal partial, first, last
        table = flatten(batch)
        con.register("kaudit_batch", table)
        part = con.sql(sql, params=params).to_arrow_table()
        lo, hi = con.sql(span_sql, params={"since": since, "until": until}).fetchall()[0]
        if lo is not None and hi is not None:
            first = float(lo) if first is None else min(first, float(lo))
            last = float(hi) if last is None else max(last, float(hi))
        con.unregister("kaudit_batch")
        if partial is None:
            con.register("kaudit_partial_0", part)
            partial = ["kaudit_partial_0"]
        else:
            name = f"kaudit_partial_{len(partial)}"
            con.register(name, part)
            partial.append(name)

    batch: list[Record] = []
    for inp in expansion.inputs:
        try:
            with open_input(inp) as opened:
                for rec in iter_records(opened.stream, inp.name, on_bad_line):
                    batch.append(rec)
                    if len(batch) >= batch_size:
                        reduce(batch)
                        batch = []
        except InputError as exc:
            report(exc)
        except READ_ERRORS as exc:
            report(InputError(f"{inp.name}: {describe_read_error(exc)}"))
    if batch:
        reduce(batch)
    if partial is None:
        return Capture([], ", ".join(paths) or "-", bad)
    union = " UNION ALL ".join(f"SELECT * FROM {p}" for p in partial)
    keys = ", ".join(_KEY_COLS)
    sums = ", ".join(f"sum({c}) AS {c}" for c in _SUM_COLS)
    table = con.sql(f"SELECT {keys}, {sums} FROM ({union}) GROUP BY ALL").to_arrow_table()
    con.close()
    return Capture(_to_groups(table), ", ".join(paths), bad, first, last)


__all__ = [
    "Capture",
    "Group",
    "capture_from_connection",
    "capture_from_logs",
    "capture_from_store",
    "names_of",
]
