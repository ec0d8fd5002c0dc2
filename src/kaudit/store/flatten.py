"""Events to Arrow columns of the flat schema (:mod:`kaudit.query.schema`).

The work is done column by column: one list comprehension of attribute reads
per column, one Arrow conversion per column. Timestamps are parsed vectorised by
Arrow's ISO 8601 cast (a per-value fallback handles anything unusual), and the
raw bytes (``event``, the bodies) become Arrow strings with one UTF-8 check per
column, never a Python ``str`` per event.

``ts`` is ``requestReceivedTimestamp``; when absent (or unparsable) the
``stageTimestamp``; when that is missing too, the time the event was ingested.
``request_object`` / ``response_object`` are the raw JSON bytes as text: nothing
is parsed. ``event`` is :attr:`Record.raw`, the original line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
from msgspec import UNSET

from kaudit.model.codec import gc_paused, to_micros
from kaudit.model.documents import Record
from kaudit.model.types import Event, ObjectReference, Status
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
_ANNOTATIONS: Final = SCHEMA.field("annotations").type
# Stand-ins for an absent objectRef / responseStatus: every field UNSET.
_NO_REF: Final = ObjectReference()
_NO_STATUS: Final = Status()
_EMPTY: Final[list[str]] = []
_EMPTY_MAP: Final[dict[str, str]] = {}


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def flatten(records: Iterable[Record], cluster: str = "") -> pa.Table:
    """A table of the flat schema, one row per record, in order."""
    recs = records if isinstance(records, list) else list(records)
    with gc_paused():
        return flatten_events([r.event for r in recs], [r.raw for r in recs], cluster)


def flatten_events(events: Sequence[Event], raws: Sequence[bytes], cluster: str = "") -> pa.Table:
    """A table of the flat schema from ``events`` and their original lines ``raws``.

    One list comprehension per column (attribute reads only, no per-event branches
    beyond absent values), then one Arrow conversion per column.
    """
    # The comprehensions allocate only short-lived containers: the cyclic GC would
    # spend more time scanning the caller's live events than the work itself takes.
    with gc_paused():
        return _flatten(events, raws, cluster)


def _flatten(events: Sequence[Event], raws: Sequence[bytes], cluster: str) -> pa.Table:
    n = len(events)
    if len(raws) != n:
        raise ValueError(f"flatten: {n} events but {len(raws)} raw lines")
    s = pa.string()
    strs = pa.list_(s)
    unset = UNSET

    users = [e.user for e in events]
    imps = [e.impersonated_user for e in events]
    ips = [e.source_ips for e in events]
    refs = [_NO_REF if (r := e.object_ref) is unset else r for e in events]
    sts = [_NO_STATUS if (st := e.response_status) is unset else st for e in events]
    anns = [e.annotations for e in events]

    ts, stage_ts = event_times(
        pa.array([e.request_received_timestamp for e in events], pa.string()),
        pa.array([e.stage_timestamp for e in events], pa.string()),
    )

    columns = [
        ts,
        stage_ts,
        pa.array([e.audit_id for e in events], s),
        pa.array([e.stage for e in events], s),
        pa.array([e.level for e in events], s),
        pa.array([e.verb for e in events], s),
        pa.array([e.request_uri for e in events], s),
        pa.array(["" if (un := u.username) is unset else un for u in users], s),
        pa.array([_EMPTY if (g := u.groups) is unset else g for u in users], strs),
        pa.array(
            [None if i is unset or (iu := i.username) is unset else iu for i in imps],
            s,
        ),
        pa.array([x[0] if x else None for x in ips], s),
        pa.array([x if x else _EMPTY for x in ips], strs),
        pa.array([None if (ua := e.user_agent) is unset else ua for e in events], s),
        pa.array(
            [
                ag if (ag := r.api_group) is not unset else ("" if r.resource else None)
                for r in refs
            ],
            s,
        ),
        pa.array([None if (av := r.api_version) is unset else av for r in refs], s),
        pa.array([None if (rs := r.resource) is unset else rs for r in refs], s),
        pa.array([None if (sr := r.subresource) is unset else sr for r in refs], s),
        pa.array([ns if (ns := r.namespace) else None for r in refs], s),
        pa.array([nm if (nm := r.name) else None for r in refs], s),
        pa.array([None if (cd := st.code) is unset else cd for st in sts], pa.int32()),
        pa.array([None if (sn := st.reason) is unset else sn for st in sts], s),
        pa.array([None if (sm := st.message) is unset else sm for st in sts], s),
        pa.array([a.get(_DECISION) if a else None for a in anns], s),
        pa.array([a.get(_REASON) if a else None for a in anns], s),
        pa.array([a if a else _EMPTY_MAP for a in anns], _ANNOTATIONS),
        # bytes, not a memoryview of the Raw: pyarrow keeps a reference to every buffer
        # object it converts for a binary array and never drops it, and a Raw's buffer
        # is the whole line it was decoded from (a leak of every body's line).
        _text([None if (ro := e.request_object) is unset else bytes(ro) for e in events]),
        _text([None if (so := e.response_object) is unset else bytes(so) for e in events]),
        pa.repeat(pa.scalar(cluster, s), n) if n else pa.array([], s),
        _text(raws),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _text(values: Sequence[bytes | None]) -> pa.Array:
    """UTF-8 bytes as an Arrow string array, validated in one pass (no Python str)."""
    arr = pa.array(values, pa.binary())
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        # Not UTF-8: fail the way decoding each value would, naming the bytes.
        return pa.array([None if v is None else v.decode() for v in values], pa.string())


def event_times(received: pa.Array, stage: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``(ts, stage_ts)`` from the two timestamp strings of each event (Arrow strings).

    ``ts`` is ``requestReceivedTimestamp``; when absent or unparsable the stage
    timestamp; when that is missing too, now.
    """
    stage_ts = _timestamps(stage)
    ts = _timestamps(received)
    if ts.null_count:
        ts = pc.coalesce(ts, stage_ts, pa.scalar(time.time_ns() // 1000, _TS_TYPE))
    return ts, stage_ts


def _timestamps(arr: pa.Array) -> pa.Array:
    """Parse RFC 3339 strings to UTC microseconds; null for missing or unparsable.

    Arrow's ISO 8601 cast does a batch at once. When it fails on any value, each value
    is parsed as a batch of one would be (Arrow's parser, else kaudit's own), so a
    value never depends on the others in its batch.
    """
    try:
        return arr.cast(_TS_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out: list[int | None] = []
    for v in arr.to_pylist():
        if v is None:
            out.append(None)
            continue
        try:
            out.append(pa.scalar(v, pa.string()).cast(_TS_TYPE).value)
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        try:
            out.append(to_micros(v))
        except ValueError:
            out.append(None)
    return pa.array(out, pa.int64()).cast(_TS_TYPE)


__all__ = ["SCHEMA", "empty_table", "event_times", "flatten", "flatten_events"]
