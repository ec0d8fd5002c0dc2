"""What the cloud adapters share: decoding, item errors and time stamps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import decode_event, format_micro, parse_time
from kaudit.model.types import Event

#: Where an adapter reports one bad item of a multi-record envelope (and keeps going).
ItemErrorHandler = Callable[[DecodeError, bytes], None]

_ENCODER = msgspec.json.Encoder()


class NotAudit(DecodeError):
    """A well-formed cloud record that is not a Kubernetes audit event."""


def encode(obj: Any) -> bytes:
    return _ENCODER.encode(obj)


def event_from_json(data: bytes | str, loc: Location, where: str) -> Event:
    """Decode an embedded audit event; errors name ``where`` inside the record."""
    try:
        return decode_event(data, loc)
    except DecodeError as err:
        raise DecodeError(f"{where}: {err.detail}", loc) from None


def event_from_value(value: object, loc: Location, where: str) -> Event:
    """An audit event held as a JSON string (decoded a second time) or as an object."""
    if isinstance(value, str):
        return event_from_json(value.encode("utf-8", "surrogatepass"), loc, where)
    if isinstance(value, dict):
        return event_from_json(encode(value), loc, where)
    raise DecodeError(
        f"{where}: expected an audit event as a JSON object or a JSON string, "
        f"got {type_name(value)}",
        loc,
    )


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def cloud_time(value: object) -> str | None:
    """A cloud time stamp as MicroTime (UTC), or ``None`` when absent or unreadable.

    Accepts RFC 3339 (any precision, ``Z`` or an offset), the same with a space for
    ``T`` and no zone (taken as UTC, as exports without a zone are), and epoch
    milliseconds (CloudWatch).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return format_micro(int(value * 1000))
        except (OverflowError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" ", "T", 1)
    tail = text[10:]
    if not (tail.endswith(("Z", "z")) or "+" in tail or "-" in tail[1:]):
        text += "Z"
    try:
        return format_micro(parse_time(text))
    except (OverflowError, ValueError):
        return None


def report(
    on_error: ItemErrorHandler | None, err: DecodeError, item: object, raw: bytes | None = None
) -> None:
    """Send one bad item to ``on_error``, or raise when there is no handler."""
    if on_error is None:
        raise err
    on_error(err, raw if raw is not None else encode(item))
