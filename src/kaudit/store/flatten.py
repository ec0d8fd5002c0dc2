"""Events to Arrow columns of the flat schema (:mod:`kaudit.query.schema`).

The work per event is kept to attribute reads appended to Python lists; the
Arrow arrays are built once per batch, and timestamps are parsed vectorised by
Arrow's ISO 8601 cast (a per-value fallback handles anything unusual).

``ts`` is ``requestReceivedTimestamp``; when absent (or unparsable) the
``stageTimestamp``; when that is missing too, the time the event was ingested.
``request_object`` / ``response_object`` are the raw JSON bytes as text: nothing
is parsed. ``event`` is :attr:`Record.raw`, the original line.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET

from kaudit.model.codec import to_micros
from kaudit.model.documents import Record
from kaudit.query.schema import COLUMNS

_ARROW_TYPES: Final[dict[str, pa.DataType]] = {
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"),
    "VARCHAR": pa.string(),
    "VARCHAR[]": pa.list_(pa.string()),
    "INTEGER": pa.int32(),
    "MAP(VARCHAR, VARCHAR)": pa.map_(pa.string(), pa.string()),
}

#: The Arrow schema of the flat schema, column for column.
SCHEMA: Final[pa.Schema] = pa.schema([pa.field(c.name, _ARROW_TYPES[c.sql_type]) for c in COLUMNS])

_DECISION: Final = "authorization.k8s.io/decision"
_REASON: Final = "authorization.k8s.io/reason"
_TS_TYPE: Final = pa.timestamp("us", tz="UTC")


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def flatten(records: Iterable[Record], cluster: str = "") -> pa.Table:
    """A table of the flat schema, one row per record, in order."""
    # The loop allocates only short-lived containers: the cyclic GC would spend
    # more time scanning the caller's live events than the loop itself takes.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _flatten(records, cluster)
    finally:
        if enabled:
            gc.enable()


def _flatten(records: Iterable[Record], cluster: str) -> pa.Table:
    rrt: list[str | None] = []
    sts: list[str | None] = []
    audit_id: list[str] = []
    stage: list[str] = []
    level: list[str] = []
    verb: list[str] = []
    request_uri: list[str] = []
    username: list[str] = []
    groups: list[list[str]] = []
    impersonated: list[str | None] = []
    source_ip: list[str | None] = []
    source_ips: list[list[str]] = []
    user_agent: list[str | None] = []
    api_group: list[str | None] = []
    api_version: list[str | None] = []
    resource: list[str | None] = []
    subresource: list[str | None] = []
    namespace: list[str | None] = []
    name: list[str | None] = []
    code: list[int | None] = []
    status_reason: list[str | None] = []
    status_message: list[str | None] = []
    decision: list[str | None] = []
    authz_reason: list[str | None] = []
    annotations: list[list[tuple[str, str]]] = []
    request_object: list[str | None] = []
    response_object: list[str | None] = []
    event: list[str] = []

    no_ref = (None, None, None, None, None, None)
    for rec in records:
        ev = rec.event
        rrt.append(ev.request_received_timestamp)
        sts.append(ev.stage_timestamp)
        audit_id.append(ev.audit_id)
        stage.append(ev.stage)
        level.append(ev.level)
        verb.append(ev.verb)
        request_uri.append(ev.request_uri)
        u = ev.user
        username.append(u.username if u.username is not UNSET else "")
        groups.append(u.groups if u.groups is not UNSET else [])
        imp = ev.impersonated_user
        impersonated.append(
            imp.username if imp is not UNSET and imp.username is not UNSET else None
        )
        ips = ev.source_ips
        if ips is UNSET or not ips:
            source_ip.append(None)
            source_ips.append([])
        else:
            source_ip.append(ips[0])
            source_ips.append(ips)
        ua = ev.user_agent
        user_agent.append(ua if ua is not UNSET else None)
        ref = ev.object_ref
        if ref is UNSET:
            g, v, r, s, ns, nm = no_ref
        else:
            g = ref.api_group if ref.api_group is not UNSET else ("" if ref.resource else None)
            v = ref.api_version if ref.api_version is not UNSET else None
            r = ref.resource if ref.resource is not UNSET else None
            s = ref.subresource if ref.subresource is not UNSET else None
            ns = ref.namespace if ref.namespace is not UNSET and ref.namespace else None
            nm = ref.name if ref.name is not UNSET and ref.name else None
        api_group.append(g)
        api_version.append(v)
        resource.append(r)
        subresource.append(s)
        namespace.append(ns)
        name.append(nm)
        st = ev.response_status
        if st is UNSET:
            code.append(None)
            status_reason.append(None)
            status_message.append(None)
        else:
            code.append(st.code if st.code is not UNSET else None)
            status_reason.append(st.reason if st.reason is not UNSET else None)
            status_message.append(st.message if st.message is not UNSET else None)
        ann = ev.annotations
        if ann is UNSET or not ann:
            decision.append(None)
            authz_reason.append(None)
            annotations.append([])
        else:
            decision.append(ann.get(_DECISION))
            authz_reason.append(ann.get(_REASON))
            annotations.append(list(ann.items()))
        ro = ev.request_object
        request_object.append(None if ro is UNSET else bytes(ro).decode())
        so = ev.response_object
        response_object.append(None if so is UNSET else bytes(so).decode())
        event.append(rec.raw.decode())

    n = len(event)
    stage_ts = _timestamps(sts)
    ts = _timestamps(rrt)
    if ts.null_count:
        ts = pc.coalesce(ts, stage_ts, pa.scalar(time.time_ns() // 1000, _TS_TYPE))
    s = pa.string()
    strs = pa.list_(s)
    columns = [
        ts,
        stage_ts,
        pa.array(audit_id, s),
        pa.array(stage, s),
        pa.array(level, s),
        pa.array(verb, s),
        pa.array(request_uri, s),
        pa.array(username, s),
        pa.array(groups, strs),
        pa.array(impersonated, s),
        pa.array(source_ip, s),
        pa.array(source_ips, strs),
        pa.array(user_agent, s),
        pa.array(api_group, s),
        pa.array(api_version, s),
        pa.array(resource, s),
        pa.array(subresource, s),
        pa.array(namespace, s),
        pa.array(name, s),
        pa.array(code, pa.int32()),
        pa.array(status_reason, s),
        pa.array(status_message, s),
        pa.array(decision, s),
        pa.array(authz_reason, s),
        pa.array(annotations, SCHEMA.field("annotations").type),
        pa.array(request_object, s),
        pa.array(response_object, s),
        pa.repeat(pa.scalar(cluster, s), n) if n else pa.array([], s),
        pa.array(event, s),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _timestamps(values: Sequence[str | None]) -> pa.Array:
    """Parse RFC 3339 strings to UTC microseconds; null for missing or unparsable."""
    arr = pa.array(values, pa.string())
    try:
        return arr.cast(_TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out: list[int | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(to_micros(v))
        except ValueError:
            out.append(None)
    return pa.array(out, pa.int64()).cast(_TS_TYPE)


__all__ = ["SCHEMA", "empty_table", "flatten"]
