"""Reading audit events out of whatever a file holds.

Real files hold JSON Lines (the log backend), legacy text lines, ``EventList``
documents (saved webhook bodies, one per line or pretty-printed), bare JSON arrays
and single pretty-printed events. :func:`iter_records` takes a byte stream of any
of these and yields one :class:`Record` per event, in order.

A bad line never stops the reading: it is handed to ``on_error`` with its location
and bytes (for the quarantine) and the next line is read.

Formats that wrap audit events in something else (cloud exports) plug in through
``adapters``: each gets the JSON bytes of an object that is not an audit event and
returns the events inside it, or ``None`` when the object is not its format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import msgspec

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import decode_event, encode_event
from kaudit.model.types import Event

#: A pretty-printed document is read whole, up to this size; beyond it the input is
#: read line by line (keeping memory bounded) and reported as malformed.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024

_TYPED_PREFIX = b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",'
# Separators a compact (Go-written) document never has outside strings.
_LOOSE = (b'": ', b'", "', b"\n", b", {")


@dataclass(slots=True)
class Record:
    """One decoded event and where it came from.

    ``raw`` is the event as one JSON text without the newline: the line itself for
    JSON Lines input (byte for byte), otherwise the exact JSON the apiserver's log
    backend would have written for it.
    """

    event: Event
    raw: bytes
    source: str
    line: int


ErrorHandler = Callable[[DecodeError, bytes], None]
Adapter = Callable[[bytes, Location], "Iterable[Event] | None"]


def _raise(err: DecodeError, raw: bytes) -> None:
    raise err


class _Shape(msgspec.Struct):
    kind: object = None
    items: list[msgspec.Raw] | None = None


_SHAPE = msgspec.json.Decoder(_Shape)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])


def iter_records(
    stream: IO[bytes],
    source: str,
    on_error: ErrorHandler | None = None,
    adapters: Sequence[Adapter] = (),
) -> Iterator[Record]:
    """Yield every event in ``stream`` (named ``source`` in errors)."""
    handle = on_error or _raise
    lineno = 0
    first = True
    for line in stream:
        lineno += 1
        if first:
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            first = False
            head = line.strip()
            if head.startswith(b"[") or not head.endswith((b"}", b"]")) and head[:1] in b"{[":
                # A pretty-printed or bare-array document: read it whole.
                rest = stream.read(MAX_DOCUMENT_BYTES)
                doc = line + rest
                if len(rest) < MAX_DOCUMENT_BYTES:
                    try:
                        msgspec.json.decode(doc)
                    except (msgspec.DecodeError, UnicodeDecodeError):
                        pass  # not one valid document: each line is reported on its own
                    else:
                        yield from _document(doc, source, lineno, handle, adapters)
                        return
                # Not a single document: read what we buffered line by line.
                lines = doc.splitlines(keepends=True)
                for i, ln in enumerate(lines):
                    yield from _line(ln, source, lineno + i, handle, adapters)
                lineno += len(lines) - 1
                continue
        yield from _line(line, source, lineno, handle, adapters)


def parse_line(
    line: bytes,
    source: str,
    lineno: int,
    on_error: ErrorHandler | None = None,
    adapters: Sequence[Adapter] = (),
) -> Iterator[Record]:
    """The events of one line of a log (a JSON event, an EventList, a legacy line...).

    For followers of a growing log, where no whole-document reading applies.
    """
    return _line(line, source, lineno, on_error or _raise, adapters)


def _line(
    line: bytes, source: str, lineno: int, handle: ErrorHandler, adapters: Sequence[Adapter]
) -> Iterator[Record]:
    data = line.rstrip(b"\r\n")
    if not data.strip():
        return
    loc = Location(source, lineno)
    if data[:1] == b"{":
        if data.startswith(b'{"kind":"EventList"') or (
            b'"EventList"' in data[:200] and b'"items"' in data
        ):
            yield from _document(data, source, lineno, handle, adapters)
            return
        try:
            ev = decode_event(data, loc)
        except DecodeError as err:
            found = _adapt(data, loc, adapters, handle)
            if found is None:
                handle(err, data)
                return
            yield from (Record(e, encode_event(e)[:-1], source, lineno) for e in found)
            return
        yield Record(ev, data, source, lineno)
        return
    if data[:1].isdigit() and b" AUDIT: " in data:
        from kaudit.model import legacy

        try:
            ev = legacy.parse_legacy(data.decode("utf-8", "replace"))
        except DecodeError as err:
            handle(DecodeError(err.detail, loc), data)
            return
        yield Record(ev, encode_event(ev)[:-1], source, lineno)
        return
    if data.lstrip()[:1] == b"[":
        yield from _document(data, source, lineno, handle, adapters)
        return
    handle(
        DecodeError(
            "expected a JSON audit event, an EventList, a JSON array or a legacy "
            f"audit line; got {_preview(data)}",
            loc,
        ),
        data,
    )


def _document(
    doc: bytes, source: str, lineno: int, handle: ErrorHandler, adapters: Sequence[Adapter]
) -> Iterator[Record]:
    """One JSON document: an EventList, an array of events, or a single event."""
    loc = Location(source, lineno)
    stripped = doc.lstrip()
    items: list[msgspec.Raw]
    try:
        if stripped[:1] == b"[":
            items = _RAW_LIST.decode(doc)
        else:
            shape = _SHAPE.decode(doc)
            if shape.kind == "EventList" or (shape.kind is None and shape.items is not None):
                items = shape.items or []
            else:
                items = [msgspec.Raw(doc)]
    except msgspec.DecodeError as exc:
        handle(DecodeError(str(exc), loc), doc)
        return
    for i, item in enumerate(items):
        data = bytes(item)
        where = Location(source, lineno, None) if len(items) == 1 else loc
        try:
            ev = decode_event(data, where)
        except DecodeError as err:
            found = _adapt(data, where, adapters, handle)
            if found is None:
                detail = err.detail if len(items) == 1 else f"items[{i}]: {err.detail}"
                handle(DecodeError(detail, where), data)
                continue
            for e in found:
                yield Record(e, encode_event(e)[:-1], source, lineno)
            continue
        if data.startswith(b'{"level":"') and not any(s in data for s in _LOOSE):
            # A compact webhook item: the log line is the item with kind/apiVersion.
            raw = _TYPED_PREFIX + data[1:]
        else:
            raw = encode_event(ev)[:-1]
        yield Record(ev, raw, source, lineno)


def _adapt(
    data: bytes, loc: Location, adapters: Sequence[Adapter], handle: ErrorHandler
) -> list[Event] | None:
    for adapter in adapters:
        try:
            found = adapter(data, loc)
        except DecodeError as err:
            handle(err, data)
            return []
        if found is not None:
            return list(found)
    return None


def _preview(data: bytes, n: int = 40) -> str:
    text = data[:n].decode("utf-8", "replace")
    return repr(text + ("..." if len(data) > n else ""))


__all__ = [
    "MAX_DOCUMENT_BYTES",
    "Adapter",
    "ErrorHandler",
    "Record",
    "iter_records",
    "parse_line",
]
