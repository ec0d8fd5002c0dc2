"""The JSON format, exactly as the apiserver writes it (spec 1.3).

* :func:`encode_event` gives the bytes of one log line: compact, fields in
  declaration order, omitempty honoured, map keys sorted, Go's HTML escaping of
  ``<``, ``>``, ``&`` and U+2028/U+2029, microsecond UTC timestamps, trailing
  newline. ``typed=False`` leaves out ``kind``/``apiVersion`` as the webhook's
  EventList items do.
* :func:`decode_event` reads one event: a v1 event, a webhook item (no
  kind/apiVersion) or a v1beta1-shaped one (``timestamp``,
  ``metadata.creationTimestamp``), normalised to v1.

Decoding an apiserver-written line and encoding it again gives the same bytes.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, Raw, UnsetType

from kaudit.errors import DecodeError, Location
from kaudit.model.types import API_VERSION, Event, EventList, ObjectReference, Status, UserInfo

_EVENT_DECODER = msgspec.json.Decoder(Event)
_EVENT_LIST_DECODER = msgspec.json.Decoder(EventList)
_ENCODER = msgspec.json.Encoder(order="deterministic")

_TYPED_PREFIX = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
_LIST_PREFIX = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['

# Bytes Go's encoder escapes although JSON does not require it. They can only occur
# inside strings, so a byte-level replacement over a whole encoded event is exact.
_HTML_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_WS = (b" ", b"\n", b"\t", b"\r")
_SURROGATE = re.compile("[\ud800-\udfff]")
_T = TypeVar("_T")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- timestamps ------------------------------------------------------------------


def format_micro(value: datetime | int | None) -> str | None:
    """A MicroTime as Go writes it: ``2006-01-02T15:04:05.000000Z`` (UTC), ``None`` for zero.

    ``value`` is a datetime (naive means UTC) or microseconds since the epoch.
    """
    if value is None:
        return None
    if isinstance(value, int):
        value = _EPOCH + timedelta(microseconds=value)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (any precision, ``Z`` or an offset) to an aware datetime.

    Digits beyond microseconds are truncated, as Go's MicroTime does.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    if "." in s:
        head, _, frac_tz = s.partition(".")
        digits = ""
        i = 0
        while i < len(frac_tz) and frac_tz[i].isdigit():
            digits += frac_tz[i]
            i += 1
        if not digits:
            raise ValueError(f"invalid fractional seconds in {text!r}")
        s = f"{head}.{digits[:6].ljust(6, '0')}{frac_tz[i:]}"
    if s.endswith(("z", "Z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return dt


def to_micros(text: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp."""
    dt = parse_time(text)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical_time(text: str | None) -> str | None:
    """``text`` in MicroTime form; unchanged (and fast) when it already is."""
    if text is None:
        return None
    if len(text) == 27 and text[19] == "." and text[26] == "Z":
        return text
    return format_micro(parse_time(text))


# --- decoding --------------------------------------------------------------------


_gc_lock = threading.Lock()
_gc_depth = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while decoding or flattening a batch.

    Decoding allocates many small containers that stay alive (the batch), which
    makes the collector scan everything alive again and again: with it paused,
    decoding takes about a third of the time. Audit events hold no reference
    cycles. Pauses nest and may overlap across threads; the collector comes back
    (if it was on) when the last one ends.
    """
    global _gc_depth, _gc_was_enabled
    with _gc_lock:
        if _gc_depth == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_depth += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_depth -= 1
            if _gc_depth == 0 and _gc_was_enabled:
                gc.enable()


def decode_event(data: bytes | str, location: Location | None = None) -> Event:
    """Decode one audit event from JSON.

    Accepts v1 events, webhook EventList items and v1beta1-shaped events; raises
    :class:`DecodeError` (naming ``location``) for anything else.
    """
    try:
        ev = _EVENT_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(_describe(exc), location) from None
    except UnicodeDecodeError:
        ev = _decode_invalid_utf8(_EVENT_DECODER, data, location)
    if ev.timestamp is UNSET and ev.metadata is UNSET:
        # The common shapes, decided without the general checks of _normalise.
        kind = ev.kind
        if kind == "Event" and ev.api_version == API_VERSION:  # a log line
            ev.kind = ev.api_version = UNSET
            return ev
        if kind is UNSET and ev.api_version is UNSET and ev.audit_id:  # a webhook item
            return ev
    return _normalise(ev, location, present=lambda: _has_audit_id(_PRESENCE, data))


def decode_event_list(data: bytes | str, location: Location | None = None) -> list[Event]:
    """Decode an ``EventList`` document (what the webhook backend POSTs)."""
    try:
        lst = _EVENT_LIST_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise DecodeError(_describe(exc), location) from None
    except UnicodeDecodeError:
        lst = _decode_invalid_utf8(_EVENT_LIST_DECODER, data, location)
    if lst.kind is not UNSET and lst.kind != "EventList":
        raise DecodeError(f'kind: expected "EventList", got "{lst.kind}"', location)
    _check_version(lst.api_version, location, "$")
    return [
        _normalise(ev, location, f"$.items[{i}]", partial(_item_has_audit_id, data, i))
        for i, ev in enumerate(lst.items)
    ]


class _Presence(msgspec.Struct):
    audit_id: str | UnsetType = msgspec.field(default=UNSET, name="auditID")


class _PresenceList(msgspec.Struct):
    items: list[_Presence] = msgspec.field(default_factory=list)


_PRESENCE = msgspec.json.Decoder(_Presence)
_PRESENCE_LIST = msgspec.json.Decoder(_PresenceList)


def _has_audit_id(decoder: msgspec.json.Decoder[_Presence], data: bytes | str) -> bool:
    """Whether ``data`` has an ``auditID`` key at all (Go always writes it)."""
    try:
        return decoder.decode(data).audit_id is not UNSET
    except (msgspec.DecodeError, UnicodeError):
        return False


def _item_has_audit_id(data: bytes | str, i: int) -> bool:
    try:
        return _PRESENCE_LIST.decode(data).items[i].audit_id is not UNSET
    except (msgspec.DecodeError, UnicodeError, IndexError):
        return False


def _decode_invalid_utf8(
    decoder: msgspec.json.Decoder[_T], data: bytes | str, location: Location | None
) -> _T:
    """Go's decoder reads each byte that is not UTF-8 as U+FFFD; so does kaudit."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        return decoder.decode(text)
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise DecodeError(_describe(exc), location) from None


def _describe(exc: Exception) -> str:
    msg = str(exc)
    if msg.startswith("Expected `object`, got"):
        return f"expected a JSON object (an audit.k8s.io/v1 Event): {msg}"
    return msg


def _check_version(api_version: object, location: Location | None, where: str) -> None:
    if api_version is UNSET:
        return
    if api_version not in (API_VERSION, "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"):
        raise DecodeError(
            f'{where}.apiVersion: expected "audit.k8s.io/v1", got "{api_version}"', location
        )


def _normalise(
    ev: Event,
    location: Location | None,
    where: str = "$",
    present: Callable[[], bool] = lambda: False,
) -> Event:
    typed = ev.kind is not UNSET
    if typed:
        if ev.kind != "Event":
            raise DecodeError(f'{where}.kind: expected "Event", got "{ev.kind}"', location)
        ev.kind = UNSET
    if ev.api_version is not UNSET:
        _check_version(ev.api_version, location, where)
        ev.api_version = UNSET
    if ev.timestamp is not UNSET or ev.metadata is not UNSET:
        _from_v1beta1(ev, location, where)
    if (
        not typed  # `"kind":"Event"` says it is one, however empty (spec 1.3's 173 bytes)
        and not ev.audit_id
        and not ev.stage
        and not ev.verb
        and not ev.request_uri
        and ev.object_ref is UNSET
        and not present()  # an empty webhook item still has its "auditID":""
    ):
        raise DecodeError(
            f"{where}: not an audit event: none of auditID, stage, verb, requestURI, "
            "objectRef is set",
            location,
        )
    return ev


def _from_v1beta1(ev: Event, location: Location | None, where: str) -> None:
    """Fill v1 timestamps from v1beta1's ``timestamp`` and ``metadata.creationTimestamp``."""
    created: str | None = None
    if ev.metadata is not UNSET:
        try:
            meta = msgspec.json.decode(ev.metadata)
        except msgspec.DecodeError:
            meta = None
        if isinstance(meta, dict) and isinstance(meta.get("creationTimestamp"), str):
            created = meta["creationTimestamp"]
    ts = ev.timestamp if ev.timestamp is not UNSET else None
    try:
        if ev.request_received_timestamp is None and (ts or created):
            ev.request_received_timestamp = canonical_time(ts or created)
        if ev.stage_timestamp is None and (created or ts):
            ev.stage_timestamp = canonical_time(created or ts)
    except ValueError as exc:
        raise DecodeError(f"{where}.timestamp: {exc}", location) from None
    ev.timestamp = UNSET
    ev.metadata = UNSET


# --- encoding --------------------------------------------------------------------


def encode_event(ev: Event, *, typed: bool = True) -> bytes:
    """The exact bytes the apiserver writes for ``ev`` (with a trailing newline).

    ``typed`` writes ``kind``/``apiVersion`` as the log backend does; the webhook's
    EventList items leave them out.
    """
    body = _go_escape(_encode_body(ev))
    if typed:
        return _TYPED_PREFIX + body[1:] + b"\n"
    return body + b"\n"


def encode_event_list(events: Iterable[Event]) -> bytes:
    """An ``EventList`` exactly as the webhook backend POSTs it (trailing newline)."""
    items = b",".join(_go_escape(_encode_body(ev)) for ev in events)
    return _LIST_PREFIX + items + b"]}\n"


def _encode_body(ev: Event) -> bytes:
    try:
        return _ENCODER.encode(canonical(ev))
    except UnicodeEncodeError:
        pass
    # A lone surrogate: a byte that is not UTF-8, carried the surrogateescape way (a
    # legacy line's \xff, say). Go writes each such byte as the escape \ufffd. Mark
    # them with a noncharacter the event does not hold, then swap the mark's bytes
    # for the escape.
    ev = canonical(ev)
    for cp in range(0xFDD0, 0xFDF0):
        mark = chr(cp)
        count = [0]
        body = _ENCODER.encode(_scrub(ev, mark, count))
        if body.count(mark.encode()) == count[0]:
            return body.replace(mark.encode(), b"\\ufffd")
    return _ENCODER.encode(_scrub(ev, "\ufffd", [0]))  # pragma: no cover


def _scrub(value: Any, mark: str, count: list[int]) -> Any:
    """``value`` with every lone surrogate in its strings replaced by ``mark``."""
    if isinstance(value, str):
        out, n = _SURROGATE.subn(mark, value)
        count[0] += n
        return out
    if isinstance(value, list):
        return [_scrub(v, mark, count) for v in value]
    if isinstance(value, dict):
        return {_scrub(k, mark, count): _scrub(v, mark, count) for k, v in value.items()}
    if isinstance(value, msgspec.Struct):
        fields = value.__struct_fields__
        return msgspec.structs.replace(
            value, **{f: _scrub(getattr(value, f), mark, count) for f in fields}
        )
    return value


def _go_escape(body: bytes) -> bytes:
    for raw, esc in _HTML_ESCAPES:
        if raw in body:
            body = body.replace(raw, esc)
    return body


def _compact(raw: Raw) -> Raw:
    data = bytes(raw)
    if any(w in data for w in _WS):
        return Raw(msgspec.json.format(data, indent=-1))
    return raw


def _empty_to_unset(value: object) -> object:
    return UNSET if not value else value


def canonical(ev: Event) -> Event:
    """``ev`` as the apiserver would hold it: empty omitempty fields unset, raw JSON
    compact, timestamps in MicroTime form. Returns ``ev`` itself when nothing changes."""
    changes: dict[str, object] = {}
    if ev.kind is not UNSET:
        changes["kind"] = UNSET
    if ev.api_version is not UNSET:
        changes["api_version"] = UNSET
    if ev.timestamp is not UNSET:
        changes["timestamp"] = UNSET
    if ev.metadata is not UNSET:
        changes["metadata"] = UNSET
    for name in ("source_ips", "user_agent", "annotations"):
        v = getattr(ev, name)
        if v is not UNSET and not v:
            changes[name] = UNSET
    user = _canonical_user(ev.user)
    if user is not ev.user:
        changes["user"] = user
    if ev.impersonated_user is not UNSET:
        imp = _canonical_user(ev.impersonated_user)
        if imp is not ev.impersonated_user:
            changes["impersonated_user"] = imp
    if ev.object_ref is not UNSET:
        ref = _canonical_ref(ev.object_ref)
        if ref is not ev.object_ref:
            changes["object_ref"] = ref
    if ev.response_status is not UNSET:
        st = _canonical_status(ev.response_status)
        if st is not ev.response_status:
            changes["response_status"] = st
    for name in ("request_object", "response_object"):
        raw = getattr(ev, name)
        if raw is not UNSET:
            compact = _compact(raw)
            if compact is not raw:
                changes[name] = compact
    for name in ("request_received_timestamp", "stage_timestamp"):
        t = getattr(ev, name)
        if t is not None:
            try:
                c = canonical_time(t)
            except ValueError:
                c = t  # not ours to invent a time; write what we were given
            if c != t:
                changes[name] = c
    if not changes:
        return ev
    return msgspec.structs.replace(ev, **changes)


def _canonical_user(u: UserInfo) -> UserInfo:
    changes = {
        name: UNSET
        for name in ("username", "uid", "groups", "extra")
        if (v := getattr(u, name)) is not UNSET and not v
    }
    return msgspec.structs.replace(u, **changes) if changes else u


def _canonical_ref(ref: ObjectReference) -> ObjectReference:
    changes = {
        f: UNSET for f in ref.__struct_fields__ if (v := getattr(ref, f)) is not UNSET and v == ""
    }
    return msgspec.structs.replace(ref, **changes) if changes else ref


def _canonical_status(st: Status) -> Status:
    changes: dict[str, object] = {
        f: UNSET
        for f in ("kind", "api_version", "status", "message", "reason")
        if (v := getattr(st, f)) is not UNSET and v == ""
    }
    if st.code is not UNSET and st.code == 0:
        changes["code"] = UNSET
    if st.details is not UNSET:
        d = _compact(st.details)
        if bytes(d) in (b"null", b"{}"):
            # Go's *StatusDetails is nil (omitted) unless set; an empty one is "{}".
            changes["details"] = UNSET if bytes(d) == b"null" else d
        elif d is not st.details:
            changes["details"] = d
    md = _compact(st.metadata)
    if bytes(md) == b"null":
        changes["metadata"] = Raw(b"{}")
    elif md is not st.metadata:
        changes["metadata"] = md
    return msgspec.structs.replace(st, **changes) if changes else st


def events_to_jsonl(events: Sequence[Event], *, typed: bool = True) -> bytes:
    return b"".join(encode_event(e, typed=typed) for e in events)


__all__ = [
    "canonical",
    "canonical_time",
    "decode_event",
    "decode_event_list",
    "encode_event",
    "encode_event_list",
    "events_to_jsonl",
    "format_micro",
    "gc_paused",
    "parse_time",
    "to_micros",
]
