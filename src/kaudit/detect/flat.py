"""Audit events as rows of the flat schema (:mod:`kaudit.query.schema`), in Arrow.

The streaming engine and ``kaudit rules test`` evaluate rules over exactly the
columns the store's ``events`` view has; this builds that table from decoded
records without going through the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa
from msgspec import UNSET

from kaudit.model.codec import encode_event, to_micros
from kaudit.model.documents import Record
from kaudit.model.types import Event

AUTHZ_DECISION = "authorization.k8s.io/decision"
AUTHZ_REASON = "authorization.k8s.io/reason"

_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()
_LIST = pa.list_(pa.string())

SCHEMA = pa.schema(
    [
        ("ts", _TS),
        ("stage_ts", _TS),
        ("audit_id", _STR),
        ("stage", _STR),
        ("level", _STR),
        ("verb", _STR),
        ("request_uri", _STR),
        ("username", _STR),
        ("groups", _LIST),
        ("impersonated_user", _STR),
        ("source_ip", _STR),
        ("source_ips", _LIST),
        ("user_agent", _STR),
        ("api_group", _STR),
        ("api_version", _STR),
        ("resource", _STR),
        ("subresource", _STR),
        ("namespace", _STR),
        ("name", _STR),
        ("code", pa.int32()),
        ("status_reason", _STR),
        ("status_message", _STR),
        ("decision", _STR),
        ("authz_reason", _STR),
        ("annotations", pa.map_(_STR, _STR)),
        ("request_object", _STR),
        ("response_object", _STR),
        ("cluster", _STR),
        ("event", _STR),
    ]
)


def _opt(v: object) -> object:
    return None if v is UNSET else v


def _micros(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return to_micros(text)
    except ValueError:
        return None


def table_from_records(records: Iterable[Record], *, cluster: str = "") -> pa.Table:
    """The flat-schema table of ``records`` (``event`` is each record's raw line)."""
    return _build(((r.event, r.raw) for r in records), cluster)


def table_from_events(events: Iterable[Event], *, cluster: str = "") -> pa.Table:
    """The flat-schema table of ``events`` (``event`` is the exact apiserver encoding)."""
    return _build(((e, encode_event(e)[:-1]) for e in events), cluster)


def _build(pairs: Iterable[tuple[Event, bytes]], cluster: str) -> pa.Table:
    cols: dict[str, list[object]] = {f.name: [] for f in SCHEMA}
    a = {name: cols[name].append for name in cols}
    for ev, raw in pairs:
        stage_ts = _micros(ev.stage_timestamp)
        ts = _micros(ev.request_received_timestamp)
        a["ts"](ts if ts is not None else (stage_ts if stage_ts is not None else 0))
        a["stage_ts"](stage_ts)
        a["audit_id"](ev.audit_id)
        a["stage"](ev.stage)
        a["level"](ev.level)
        a["verb"](ev.verb)
        a["request_uri"](ev.request_uri)
        user = ev.user
        a["username"](user.username if user.username is not UNSET else "")
        a["groups"](user.groups if user.groups is not UNSET else [])
        imp = ev.impersonated_user
        a["impersonated_user"](None if imp is UNSET or imp.username is UNSET else imp.username)
        ips = ev.source_ips if ev.source_ips is not UNSET else []
        a["source_ip"](ips[0] if ips else None)
        a["source_ips"](ips)
        a["user_agent"](_opt(ev.user_agent))
        ref = ev.object_ref
        if ref is UNSET:
            for k in ("api_group", "api_version", "resource", "subresource", "namespace", "name"):
                a[k](None)
        else:
            a["api_group"]("" if ref.api_group is UNSET else ref.api_group)
            a["api_version"](_opt(ref.api_version))
            a["resource"](_opt(ref.resource))
            a["subresource"](_opt(ref.subresource))
            a["namespace"](_opt(ref.namespace))
            a["name"](_opt(ref.name))
        st = ev.response_status
        if st is UNSET:
            a["code"](None)
            a["status_reason"](None)
            a["status_message"](None)
        else:
            a["code"](_opt(st.code))
            a["status_reason"](_opt(st.reason))
            a["status_message"](_opt(st.message))
        ann = ev.annotations if ev.annotations is not UNSET else {}
        a["decision"](ann.get(AUTHZ_DECISION))
        a["authz_reason"](ann.get(AUTHZ_REASON))
        a["annotations"](list(ann.items()))
        a["request_object"](
            None if ev.request_object is UNSET else bytes(ev.request_object).decode()
        )
        a["response_object"](
            None if ev.response_object is UNSET else bytes(ev.response_object).decode()
        )
        a["cluster"](cluster)
        a["event"](raw.decode())
    return pa.table(cols, schema=SCHEMA)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def check_schema(names: Sequence[str]) -> list[str]:
    """Flat-schema columns missing from ``names``."""
    have = set(names)
    return [f.name for f in SCHEMA if f.name not in have]
