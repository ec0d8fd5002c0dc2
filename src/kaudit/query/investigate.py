"""Investigations: an object's history with diffs, one identity's timeline, stats.

All three read one row per request (the final stage, see :mod:`kaudit.query.filters`).

**History** lists every request that named one object, oldest first, and a unified
diff (YAML) between successive states of the object where the audit level captured
bodies. A state is taken from a successful (2xx) request's ``responseObject`` when it
is the object itself (create, update, patch, get; not a ``Status``, list or
``Table``), else from the ``requestObject`` of a create or update. A patch without a
recorded response shows the patch document instead. Noise is left out of diffs:
``metadata.resourceVersion``, ``managedFields``, ``generation``, ``uid``,
``creationTimestamp``, ``selfLink`` and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from kaudit.errors import QueryError
from kaudit.query.filters import Compiled, Filters, rows_sql
from kaudit.query.output import iso
from kaudit.query.resources import normalise_resource
from kaudit.query.runner import Queryable, run_rows
from kaudit.query.schema import COLUMN_NAMES

_NOISE_META: Final = (
    "resourceVersion",
    "managedFields",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
)
_NOISE_ANNOTATIONS: Final = ("kubectl.kubernetes.io/last-applied-configuration",)
_NOT_STATE_KINDS: Final = ("Status", "Table", "PartialObjectMetadata", "PartialObjectMetadataList")

HISTORY_COLUMNS: Final = (
    "ts",
    "audit_id",
    "username",
    "impersonated_user",
    "source_ip",
    "user_agent",
    "verb",
    "resource",
    "subresource",
    "api_group",
    "namespace",
    "name",
    "code",
    "status_reason",
    "level",
    "cluster",
)


# --- history ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """What ``KIND/NAME`` names."""

    resource: str
    api_group: str | None
    name: str


def parse_object(text: str) -> ObjectRef:
    """``configmap/app``, ``configmaps/app``, ``ConfigMap/app``, ``deployments.apps/web``."""
    kind, sep, name = text.strip().partition("/")
    if not sep or not kind or not name or "/" in name:
        raise QueryError(
            f"KIND/NAME: invalid value {text!r}: expected KIND/NAME such as configmap/app-config, "
            "deployments.apps/web or ConfigMap/app-config"
        )
    resource, group = normalise_resource(kind)
    return ObjectRef(resource, group, name)


def _strip_noise(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in _NOISE_META}
        ann = meta.get("annotations")
        if isinstance(ann, dict):
            ann = {k: v for k, v in ann.items() if k not in _NOISE_ANNOTATIONS}
            if ann:
                meta["annotations"] = ann
            else:
                meta.pop("annotations")
        obj = {**obj, "metadata": meta}
    return obj


def _decode(text: object) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return None


def _is_object(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    kind = obj.get("kind")
    return isinstance(kind, str) and kind not in _NOT_STATE_KINDS and not kind.endswith("List")


def state_of(row: dict[str, object]) -> tuple[str, Any]:
    """``(what, body)``: ``("state", obj)``, ``("deleted", None)``, ``("patch", doc)``
    or ``("", None)`` when the request tells nothing about the object's content."""
    code = row.get("code")
    ok = isinstance(code, int) and 200 <= code < 300
    verb = row.get("verb")
    if not ok or row.get("subresource") not in (None, "status", "scale"):
        return "", None
    if verb == "delete":
        return "deleted", None
    if row.get("subresource") is not None and verb == "get":
        return "", None
    resp = _decode(row.get("response_object"))
    if (
        _is_object(resp)
        and verb in ("create", "update", "patch", "get")
        and not row.get("subresource")
    ):
        return "state", resp
    if verb in ("create", "update") and not row.get("subresource"):
        req = _decode(row.get("request_object"))
        if _is_object(req):
            return "state", req
    if verb == "patch":
        doc = _decode(row.get("request_object"))
        if doc is not None:
            return "patch", doc
    return "", None


def _yaml(obj: Any) -> list[str]:
    import yaml

    text: str = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True)
    return text.splitlines(keepends=True)


def _label(row: dict[str, object]) -> str:
    ts = row.get("ts")
    when = iso(ts) if isinstance(ts, datetime) else str(ts)
    who = str(row.get("username") or "")
    if row.get("impersonated_user"):
        who += f" as {row['impersonated_user']}"
    return f"{when} {row.get('verb')} by {who}"


def add_diffs(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Set ``change`` and ``diff`` on each row (in time order), from successive states."""
    prev: Any = None
    prev_label = "(no earlier state recorded)"
    for row in rows:
        what, body = state_of(row)
        row["change"] = None
        row["diff"] = None
        if what == "state":
            cur = _strip_noise(body)
            if cur != prev:
                before = _yaml(prev) if prev is not None else []
                diff = difflib.unified_diff(before, _yaml(cur), prev_label, _label(row))
                row["diff"] = "".join(diff)
                row["change"] = (
                    "created"
                    if prev is None and row["verb"] == "create"
                    else ("changed" if prev is not None else "state")
                )
            else:
                row["change"] = "unchanged"
            prev = cur
            prev_label = _label(row)
        elif what == "deleted":
            row["change"] = "deleted"
            prev = None
            prev_label = "(deleted)"
        elif what == "patch":
            row["change"] = "patch"
            row["diff"] = "".join(_yaml(body))
        else:
            code = row.get("code")
            if isinstance(code, int) and code >= 400:
                row["change"] = "failed"
    return rows


def history_rows(
    store: Queryable,
    obj: str | ObjectRef,
    *,
    namespace: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    cluster: str | Sequence[str] | None = None,
    now: datetime | None = None,
    writes_only: bool = False,
) -> list[dict[str, object]]:
    """Every request that named the object, oldest first, with ``change`` and ``diff``.

    ``writes_only`` leaves out the reads (get, list, watch)."""
    from kaudit.query.output import rows_of

    ref = parse_object(obj) if isinstance(obj, str) else obj
    res = ref.resource + (f".{ref.api_group}" if ref.api_group else "")
    extra: list[tuple[str, list[object]]] = [("name = ?", [ref.name])]
    if writes_only:
        extra.append(("verb NOT IN ('get', 'list', 'watch')", []))
    f = Filters(
        resource=f"{res}/*",
        namespace=namespace,
        since=since,
        until=until,
        cluster=cluster,
        extra=extra,
    )
    wanted = (*HISTORY_COLUMNS, "request_object", "response_object")
    cols = ", ".join(f'"{c}"' for c in wanted)
    rows_sql(f, now=now, columns=wanted)  # bad values fail before the store is read

    def build(rows: Callable[..., Compiled]) -> Compiled:
        inner = rows(f, now=now, columns=wanted)
        sql = f"SELECT {cols} FROM ({inner.sql}) _r ORDER BY ts, stage_ts, audit_id"
        return Compiled(sql, inner.params)

    table = run_rows(store, build, what="history")
    rows = add_diffs(rows_of(table))
    for r in rows:
        r.pop("request_object", None)
        r.pop("response_object", None)
    return rows


def history(
    store: Queryable,
    obj: str | ObjectRef,
    *,
    namespace: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    cluster: str | Sequence[str] | None = None,
    now: datetime | None = None,
) -> Any:
    """:func:`history_rows` as a :class:`pyarrow.Table` (``change`` and ``diff`` last)."""
    import pyarrow as pa

    rows = history_rows(
        store, obj, namespace=namespace, since=since, until=until, cluster=cluster, now=now
    )
    names = [*HISTORY_COLUMNS, "change", "diff"]
    if not rows:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    return pa.Table.from_pylist(rows).select(names)


# --- timeline --------------------------------------------------------------------

TIMELINE_COLUMNS: Final = (
    "first",
    "last",
    "count",
    "username",
    "impersonated_user",
    "verb",
    "resource",
    "subresource",
    "namespace",
    "name",
    "code",
)


def timeline(
    store: Queryable,
    user: str,
    *,
    filters: Filters | None = None,
    limit: int = 0,
    now: datetime | None = None,
) -> Any:
    """What ``user`` did (as themselves or impersonated), grouped: one row per distinct
    (identity, verb, resource, subresource, namespace, name, code), with the first and
    last time and the count, ordered by first time."""
    f = filters if filters is not None else Filters()
    if f.user is not None:
        raise QueryError("timeline: give the identity as USER, not also as --user")
    f = dataclasses.replace(f, user=user)
    keys = "username, impersonated_user, verb, resource, subresource, namespace, name, code"
    rows_sql(f, now=now, columns=keys.split(", "))  # bad values fail before the store is read

    def build(rows: Callable[..., Compiled]) -> Compiled:
        inner = rows(f, now=now, columns=keys.split(", "))
        sql = (
            f"SELECT min(ts) AS first, max(ts) AS last, count(*) AS count, {keys} "
            f"FROM ({inner.sql}) _r GROUP BY {keys} ORDER BY first, last, {keys}"
        )
        if limit:
            sql += f" LIMIT {int(limit)}"
        return Compiled(sql, inner.params)

    return run_rows(store, build, what="timeline")


# --- stats -----------------------------------------------------------------------

#: ``--by`` dimensions and the SQL expression each counts.
DIMENSIONS: Final[dict[str, str]] = {
    "code": "CAST(code AS VARCHAR)",
    "verb": "verb",
    "user": "username",
    "impersonated_user": "impersonated_user",
    "resource": "resource || coalesce('/' || subresource, '')",
    "namespace": "namespace",
    "user_agent": "user_agent",
    "source_ip": "source_ip",
    "cluster": "cluster",
    "stage": "stage",
    "level": "level",
    "decision": "decision",
    "api_group": "api_group",
}
DEFAULT_BY: Final = ("code", "verb", "user", "resource", "namespace", "user_agent")


def check_dimensions(by: Sequence[str]) -> list[str]:
    out: list[str] = []
    for d in by:
        d = d.strip()
        if not d:
            continue
        if d not in DIMENSIONS:
            close = difflib.get_close_matches(d, list(DIMENSIONS), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise QueryError(
                f"--by: unknown dimension {d!r}: expected any of {', '.join(DIMENSIONS)}{hint}"
            )
        if d not in out:
            out.append(d)
    if not out:
        raise QueryError(f"--by: no dimension given: expected any of {', '.join(DIMENSIONS)}")
    return out


def stats(
    store: Queryable,
    *,
    filters: Filters | None = None,
    by: Sequence[str] = DEFAULT_BY,
    top: int = 10,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Counts over the matching requests: ``{"total", "first", "last", "by": {dim: [{"value",
    "count"}...]}}``, the ``top`` most frequent values per dimension (null = absent)."""
    dims = check_dimensions(by)
    if top < 1:
        raise QueryError(f"--top: invalid value {top}: expected a positive number")
    f = filters if filters is not None else Filters()
    # Every column but the big ones: the dimensions are expressions over the rest.
    small = [c for c in COLUMN_NAMES if c not in ("event", "request_object", "response_object")]
    rows_sql(f, now=now, columns=small)  # bad values fail before the store is read
    exprs = [DIMENSIONS[d] for d in dims]
    sel = ", ".join(f"{e} AS d{i}" for i, e in enumerate(exprs))
    sets = ", ".join(f"(d{i})" for i in range(len(exprs)))
    gid = f"GROUPING_ID({', '.join(f'd{i}' for i in range(len(exprs)))})"
    ties = ", ".join(f"d{i} NULLS FIRST" for i in range(len(exprs)))

    def build(rows: Callable[..., Compiled]) -> Compiled:
        inner = rows(f, now=now, columns=small)
        sql = (
            f"SELECT {gid} AS g, {', '.join(f'd{i}' for i in range(len(exprs)))}, "
            "count(*) AS n, min(ts) AS first, max(ts) AS last "
            f"FROM (SELECT {sel}, ts FROM ({inner.sql}) _r) _d "
            f"GROUP BY GROUPING SETS ({sets}, ()) "
            f"QUALIFY row_number() OVER (PARTITION BY {gid} ORDER BY count(*) DESC, {ties}) "
            f"<= {int(top)} OR {gid} = {2 ** len(exprs) - 1} "
            f"ORDER BY g, n DESC, {ties}"
        )
        return Compiled(sql, inner.params)

    table = run_rows(store, build, what="stats")
    full = 2 ** len(exprs) - 1
    result: dict[str, Any] = {"total": 0, "first": None, "last": None, "by": {d: [] for d in dims}}
    for r in table.to_pylist():
        g = int(r["g"])
        if g == full:
            result["total"] = int(r["n"])
            result["first"] = iso(r["first"]) if r["first"] is not None else None
            result["last"] = iso(r["last"]) if r["last"] is not None else None
            continue
        # GROUPING_ID sets a bit for every *absent* column; the present one is clear.
        for i, d in enumerate(dims):
            if not g & (1 << (len(dims) - 1 - i)):
                value = r[f"d{i}"]
                if d == "code" and value is not None:
                    value = int(value)
                result["by"][d].append({"value": value, "count": int(r["n"])})
                break
    return result


__all__ = [
    "DEFAULT_BY",
    "DIMENSIONS",
    "HISTORY_COLUMNS",
    "TIMELINE_COLUMNS",
    "ObjectRef",
    "add_diffs",
    "check_dimensions",
    "history",
    "history_rows",
    "parse_object",
    "state_of",
    "stats",
    "timeline",
]
