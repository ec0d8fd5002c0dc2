"""Rules as DuckDB SQL: the helper macros, conditions, and the retro-hunt queries.

Conditions are SQL over the flat schema. Helpers read like functions of the event
(``req('$.spec.hostPID')``, ``exec_command()``, ``is_system_user()``); before a
condition reaches DuckDB, :func:`expand` rewrites each call to a DuckDB macro
that receives the columns it reads, so the same text works over the store's
``events`` view and over a streaming batch.

Every retro-hunt query returns *trigger rows* with the columns of
:data:`TRIGGER_COLUMNS`, in the order of the events (``ts``, ``audit_id``,
``stage``); :mod:`kaudit.detect.engine` turns them into alerts exactly as the
streaming path does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb

from kaudit.detect.prefilter import (
    SYSTEM_GROUP,
    SYSTEM_USER_PREFIXES,
    SYSTEM_USERS,
    prefilter_of,
)
from kaudit.detect.rule import Rule

#: Helper name -> (replacement prefix, number of user arguments, help).
#: A replacement ending in "(" receives the user's arguments after its columns.
HELPERS: Final[dict[str, tuple[str, int, str]]] = {
    "req": (
        "json_extract_string(request_object, ",
        1,
        "`req(path)`: a value of the request body at a JSONPath, as text (a list for `[*]`).",
    ),
    "resp": (
        "json_extract_string(response_object, ",
        1,
        "`resp(path)`: the same for the response body.",
    ),
    "req_json": (
        "json_extract(request_object, ",
        1,
        "`req_json(path)`: the JSON at a path of the request body.",
    ),
    "pod_spec": (
        "_pod_spec",
        0,
        "`pod_spec()`: the pod spec in the request body of a pod, a workload (template) or a "
        "CronJob (job template); null otherwise.",
    ),
    "containers": (
        "_containers",
        0,
        "`containers()`: every container of `pod_spec()` (containers, initContainers, "
        "ephemeralContainers) as a list of JSON.",
    ),
    "container_values": (
        "_k_container_values(_containers, ",
        1,
        "`container_values(path)`: the value at `path` in each container, as a list of text.",
    ),
    "host_paths": (
        "_k_host_paths(_pod_spec)",
        0,
        "`host_paths()`: the hostPath volume paths of `pod_spec()`.",
    ),
    "added_capabilities": (
        "_k_added_caps(_containers)",
        0,
        "`added_capabilities()`: every capability added by any container (upper case).",
    ),
    "exec_command": (
        "_k_exec_command(request_uri)",
        0,
        "`exec_command()`: the `command=` query parameters of an exec request, decoded and "
        "joined with spaces ('' when none).",
    ),
    "query_param": (
        "_k_query_param(request_uri, ",
        1,
        "`query_param(name)`: the first value of a query parameter of `request_uri`, decoded.",
    ),
    "is_system_user": (
        "_k_is_system_user(username, groups)",
        0,
        "`is_system_user()`: the control plane, nodes and kube-system service accounts.",
    ),
    "succeeded": (
        "_k_succeeded(code)",
        0,
        "`succeeded()`: the response code is 1xx-3xx (false when unknown).",
    ),
    "has_group": ("list_contains(groups, ", 1, "`has_group(name)`: the user is in a group."),
    "rbac_values": (
        "_k_rbac_values(request_object, ",
        1,
        "`rbac_values(path)`: values at `path` (e.g. `$.verbs[*]`) across every rule of a "
        "Role/ClusterRole in the request body.",
    ),
}

_POD_SPEC = (
    "CASE WHEN r = 'pods' THEN json_extract(o, '$.spec') "
    "WHEN r = 'cronjobs' THEN json_extract(o, '$.spec.jobTemplate.spec.template.spec') "
    "WHEN r IN ('deployments', 'daemonsets', 'statefulsets', 'replicasets', 'jobs', "
    "'replicationcontrollers', 'podtemplates') THEN json_extract(o, '$.spec.template.spec') "
    "ELSE NULL END"
)

MACROS: Final[tuple[str, ...]] = (
    f"CREATE OR REPLACE TEMP MACRO _k_pod_spec(o, r) AS ({_POD_SPEC})",
    "CREATE OR REPLACE TEMP MACRO _k_containers(s) AS (CASE WHEN s IS NULL THEN [] "
    "ELSE list_concat("
    "coalesce(json_extract(s, '$.containers[*]'), []), "
    "coalesce(json_extract(s, '$.initContainers[*]'), []), "
    "coalesce(json_extract(s, '$.ephemeralContainers[*]'), [])) END)",
    "CREATE OR REPLACE TEMP MACRO _k_container_values(cs, p) AS "
    "(list_transform(cs, lambda c: json_extract_string(c, p)))",
    "CREATE OR REPLACE TEMP MACRO _k_host_paths(s) AS "
    "(coalesce(json_extract_string(s, '$.volumes[*].hostPath.path'), []))",
    "CREATE OR REPLACE TEMP MACRO _k_added_caps(cs) AS (list_transform(flatten("
    "list_transform(cs, lambda c: coalesce(json_extract_string(c, "
    "'$.securityContext.capabilities.add[*]'), []))), lambda x: replace(upper(x), 'CAP_', '')))",
    "CREATE OR REPLACE TEMP MACRO _k_exec_command(u) AS (array_to_string(list_transform("
    "regexp_extract_all(u, '[?&]command=([^&]*)', 1), lambda x: url_decode(replace(x, '+', ' '))"
    "), ' '))",
    "CREATE OR REPLACE TEMP MACRO _k_query_param(u, n) AS (url_decode(replace("
    "regexp_extract(u, '[?&]' || n || '=([^&]*)', 1), '+', ' ')))",
    "CREATE OR REPLACE TEMP MACRO _k_is_system_user(u, g) AS ("
    f"u IN ({', '.join(repr(u) for u in SYSTEM_USERS)}) "
    + "".join(f"OR starts_with(u, {p!r}) " for p in SYSTEM_USER_PREFIXES)
    + f"OR list_contains(g, {SYSTEM_GROUP!r}))",
    "CREATE OR REPLACE TEMP MACRO _k_succeeded(c) AS (coalesce(c >= 100 AND c < 400, false))",
    "CREATE OR REPLACE TEMP MACRO _k_rbac_values(o, p) AS (flatten(list_transform("
    "coalesce(json_extract(o, '$.rules[*]'), []), "
    "lambda x: coalesce(json_extract_string(x, p), []))))",
)

#: The entity an alert is about (the last columns of every trigger row).
ENTITY_COLUMNS: Final = (
    "audit_id",
    "stage",
    "username",
    "source_ip",
    "verb",
    "resource",
    "subresource",
    "namespace",
    "name",
    "cluster",
)

#: Columns of every trigger row (hunt query output, and what streaming computes).
TRIGGER_COLUMNS: Final = (
    "ts_us",
    "first_ts_us",
    "audit_ids",
    "key",
    "sk",
    "count",
    *ENTITY_COLUMNS,
)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define the helper macros on a connection (temporary: read-only connections work)."""
    for m in MACROS:
        con.execute(m)


def expand(sql: str) -> str:
    """Rewrite helper calls in ``sql`` to the macros that take their columns."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1])
            i = j + 1
            continue
        m = _IDENT.match(sql, i)
        if m:
            word = m.group(0)
            prev = sql[i - 1] if i else ""
            j = m.end()
            while j < n and sql[j].isspace():
                j += 1
            if word in HELPERS and j < n and sql[j] == "(" and prev != ".":
                repl, nargs, _ = HELPERS[word]
                k = j + 1
                while k < n and sql[k].isspace():
                    k += 1
                if nargs == 0:
                    if k < n and sql[k] == ")":
                        out.append(repl)
                        i = k + 1
                        continue
                else:
                    out.append(repl)
                    i = j + 1
                    continue
            out.append(word)
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def source_sql(table: str) -> str:
    """``table`` plus the derived columns the helpers read (pod spec, containers), each
    computed once per event and only for workload objects."""
    return (
        "(SELECT *, _k_containers(_pod_spec) AS _containers FROM "
        f"(SELECT *, _k_pod_spec(request_object, resource) AS _pod_spec FROM {table}))"
    )


def rule_sql_texts(rule: Rule) -> list[str]:
    """Every SQL expression of ``rule``, expanded."""
    texts = [
        rule.condition,
        *rule.group_by,
        *rule.new_terms,
        *rule.sequence_by,
        *rule.sequence_steps,
        *rule.suppress_key,
    ]
    if rule.distinct:
        texts.append(rule.distinct)
    return [expand(t) for t in texts]


def reads_pod_spec(rule: Rule) -> bool:
    """Whether the rule uses the derived ``_pod_spec`` / ``_containers`` columns."""
    return any("_pod_spec" in t or "_containers" in t for t in rule_sql_texts(rule))


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def allowlist_sql(allow: dict[str, tuple[str, ...]]) -> str:
    """SQL true for events the allowlist exempts (``false`` when empty)."""
    parts: list[str] = []
    for col, values in sorted(allow.items()):
        exact = [v for v in values if "*" not in v]
        globs = [v for v in values if "*" in v]
        is_list = col in ("groups", "source_ips")
        if exact:
            lit = ", ".join(quote(v) for v in exact)
            parts.append(f"list_has_any({col}, [{lit}])" if is_list else f"{col} IN ({lit})")
        for g in globs:
            pat = quote(
                g.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            )
            if is_list:
                parts.append(f"len(list_filter({col}, lambda x: x LIKE {pat} ESCAPE '\\')) > 0")
            else:
                parts.append(f"{col} LIKE {pat} ESCAPE '\\'")
    return "coalesce(" + " OR ".join(parts) + ", false)" if parts else "false"


def stage_sql(rule: Rule) -> str:
    """The rule's stages; an event without a stage (hand-written or trimmed exports)
    counts as ResponseComplete."""
    stages = list(rule.stages)
    if "ResponseComplete" in stages:
        stages.append("")
    return "coalesce(stage, '') IN (" + ", ".join(quote(s) for s in stages) + ")"


def filter_sql(rule: Rule) -> str:
    """The per-event filter of ``rule``: stages, condition, minus the allowlist."""
    return (
        f"{stage_sql(rule)} AND coalesce(({expand(rule.condition)}), false) "
        f"AND NOT {allowlist_sql(rule.allowlist)}"
    )


def key_exprs(rule: Rule) -> tuple[str, ...]:
    """The SQL expressions that key the rule's state (group, entity, sequence key)."""
    if rule.kind == "sequence":
        return rule.sequence_by
    return rule.group_by


def suppress_of(rule: Rule) -> tuple[int | None, tuple[str, ...]]:
    """(window seconds, key expressions) of the rule's suppression; window None: none."""
    if rule.suppress_secs is not None:
        return rule.suppress_secs, rule.suppress_key or key_exprs(rule) or ("username",)
    if rule.kind in ("threshold", "distinct"):
        return rule.window_secs, key_exprs(rule)
    if rule.kind == "sequence":
        return rule.sequence_within_secs, key_exprs(rule)
    return None, ()


def list_sql(exprs: Sequence[str]) -> str:
    if not exprs:
        return "[]::VARCHAR[]"
    return "[" + ", ".join(f"CAST(({expand(e)}) AS VARCHAR)" for e in exprs) + "]"


def _time_filter(since_us: int | None, until_us: int | None) -> str:
    parts = []
    if since_us is not None:
        parts.append(f"epoch_us(ts) >= {int(since_us)}")
    if until_us is not None:
        parts.append(f"epoch_us(ts) < {int(until_us)}")
    return " AND ".join(parts) or "true"


_ENT = ", ".join(ENTITY_COLUMNS)


@dataclass(frozen=True)
class HuntQuery:
    rule: Rule
    sql: str


def hunt_sql(
    rule: Rule, *, table: str = "events", since_us: int | None = None, until_us: int | None = None
) -> str:
    """The retro-hunt query of ``rule`` over ``table``: its trigger rows, suppressed."""
    tf = _time_filter(since_us, until_us)
    # The cheap column tests first, innermost (they reach the Parquet scan), and the
    # pod spec / containers only computed for rules that read them.
    table = f"(SELECT * FROM {table} WHERE {tf} AND {prefilter_of(rule).sql()})"
    if reads_pod_spec(rule):
        table = source_sql(table)
    kind = rule.kind
    supp_secs, supp_key = suppress_of(rule)
    if kind == "sequence":
        a, b = (f"coalesce(({expand(s)}), false)" for s in rule.sequence_steps)
        base = (
            f"SELECT epoch_us(ts) AS t, {_ENT}, {list_sql(rule.sequence_by)} AS k, "
            f"{list_sql(supp_key)} AS sk, {a} AS is_a, {b} AS is_b FROM {table} "
            f"WHERE {tf} AND {filter_sql(rule)} AND ({a} OR {b})"
        )
        within = int(rule.sequence_within_secs or 0) * 1_000_000
        trig = (
            f"m AS (SELECT *, row_number() OVER (ORDER BY t, audit_id, stage) AS rn FROM ({base})),"
            "x AS (SELECT *, max(CASE WHEN is_a THEN rn END) OVER (PARTITION BY k ORDER BY rn "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS a_rn FROM m),"
            "trig AS (SELECT x.t AS ts_us, a.t AS first_ts_us, "
            "[a.audit_id, x.audit_id] AS audit_ids, "
            "x.k AS key, 2 AS count, x.sk, "
            + ", ".join(f"x.{c}" for c in ENTITY_COLUMNS)
            + f" FROM x JOIN m a ON a.rn = x.a_rn WHERE x.is_b AND a.t > x.t - {within})"
        )
    elif kind == "simple":
        trig = (
            f"trig AS (SELECT epoch_us(ts) AS ts_us, epoch_us(ts) AS first_ts_us, "
            f"[audit_id] AS audit_ids, {list_sql(rule.group_by)} AS key, 1 AS count, "
            f"{list_sql(supp_key)} AS sk, {_ENT} FROM {table} WHERE {tf} AND {filter_sql(rule)})"
        )
    elif kind == "threshold":
        n = int(rule.threshold or 1)
        w = int(rule.window_secs or 0) * 1_000_000
        base = (
            f"SELECT epoch_us(ts) AS t, {_ENT}, {list_sql(rule.group_by)} AS k, "
            f"{list_sql(supp_key)} AS sk FROM {table} WHERE {tf} AND {filter_sql(rule)}"
        )
        trig = (
            f"m AS ({base}),"
            f"x AS (SELECT *, lag(t, {n - 1}) OVER (PARTITION BY k ORDER BY t, audit_id, stage) "
            f"AS ft, list(audit_id) OVER (PARTITION BY k ORDER BY t, audit_id, stage ROWS BETWEEN "
            f"{n - 1} PRECEDING AND CURRENT ROW) AS ids FROM m),"
            f"trig AS (SELECT t AS ts_us, ft AS first_ts_us, ids AS audit_ids, k AS key, "
            f"{n} AS count, sk, {_ENT} FROM x WHERE ft IS NOT NULL AND ft > t - {w})"
        )
    elif kind == "distinct":
        n = int(rule.threshold or 1)
        w = int(rule.window_secs or 0) * 1_000_000
        base = (
            f"SELECT epoch_us(ts) AS t, {_ENT}, {list_sql(rule.group_by)} AS k, "
            f"{list_sql(supp_key)} AS sk, CAST(({expand(rule.distinct or '')}) AS VARCHAR) AS v "
            f"FROM {table} WHERE {tf} AND {filter_sql(rule)}"
        )
        trig = (
            f"m0 AS ({base}),"
            "m AS (SELECT *, row_number() OVER (ORDER BY t, audit_id, stage) AS rn FROM m0 "
            "WHERE v IS NOT NULL),"
            "j AS (SELECT a.rn, b.v, max(b.rn) AS vrn FROM m a JOIN m b ON a.k = b.k "
            f"AND b.rn <= a.rn AND b.t > a.t - {w} GROUP BY a.rn, b.v),"
            "jj AS (SELECT j.rn, j.vrn, b.audit_id AS vid, b.t AS vt "
            "FROM j JOIN m b ON b.rn = j.vrn),"
            "c AS (SELECT rn, count(*) AS nv, list(vid ORDER BY vrn DESC) AS ids, "
            "list(vt ORDER BY vrn DESC) AS ts_list FROM jj GROUP BY rn),"
            f"trig AS (SELECT m.t AS ts_us, c.ts_list[{n}] AS first_ts_us, "
            f"list_reverse(c.ids[1:{n}]) AS audit_ids, m.k AS key, {n} AS count, m.sk, "
            + ", ".join(f"m.{col}" for col in ENTITY_COLUMNS)
            + f" FROM c JOIN m ON m.rn = c.rn WHERE c.nv >= {n})"
        )
    elif kind == "new_terms":
        lb = int(rule.lookback_secs or 0) * 1_000_000
        base = (
            f"SELECT epoch_us(ts) AS t, {_ENT}, {list_sql(rule.group_by)} AS k, "
            f"{list_sql(rule.new_terms)} AS tm, {list_sql(supp_key)} AS sk "
            f"FROM {table} WHERE {tf} AND {filter_sql(rule)}"
        )
        trig = (
            f"m AS ({base}),"
            "x AS (SELECT *, lag(t) OVER (PARTITION BY k ORDER BY t, audit_id, stage) AS pe, "
            "lag(t) OVER (PARTITION BY k, tm ORDER BY t, audit_id, stage) AS pt FROM m),"
            "trig AS (SELECT t AS ts_us, t AS first_ts_us, [audit_id] AS audit_ids, "
            f"list_concat(k, tm) AS key, 1 AS count, sk, {_ENT} FROM x "
            f"WHERE pe IS NOT NULL AND pe > t - {lb} AND (pt IS NULL OR pt <= t - {lb}))"
        )
    else:  # pragma: no cover - kinds are closed
        raise AssertionError(kind)
    cols = ", ".join(TRIGGER_COLUMNS)
    if supp_secs is None:
        return f"WITH {trig} SELECT {cols} FROM trig ORDER BY ts_us, audit_id, stage"
    s = int(supp_secs) * 1_000_000
    return (
        f"WITH {trig}, s AS (SELECT *, row_number() OVER (PARTITION BY sk, ts_us // {s} "
        "ORDER BY ts_us, audit_id, stage) AS srn FROM trig) "
        f"SELECT {cols} FROM s WHERE srn = 1 ORDER BY ts_us, audit_id, stage"
    )


def check_rules_sql(rules: Sequence[Rule]) -> list[str]:
    """Bind every rule's SQL against an empty flat table; one problem per rule that fails."""
    from kaudit.detect.flat import empty_table

    con = duckdb.connect()
    try:
        install_macros(con)
        con.register("events", empty_table())
        problems = []
        for rule in rules:
            try:
                con.execute(f"EXPLAIN {hunt_sql(rule)}")
            except duckdb.Error as exc:
                msg = str(exc).splitlines()[0]
                problems.append(f"{rule.source}: condition: invalid SQL: {msg}")
        return problems
    finally:
        con.close()
