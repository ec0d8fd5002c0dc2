"""Times as people type them: ``24h``, ``7d``, ``30m``, ``2024-05-01``, RFC 3339.

Every result is an aware UTC :class:`~datetime.datetime`. Durations are relative to
``now`` (in the past: ``--since 24h`` means "from 24 hours ago"). A date alone is
midnight UTC of that day. A timestamp without a zone is read as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from kaudit.errors import QueryError

_UNITS: Final = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([smhdw])\s*)+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

EXPECTED: Final = (
    "a duration such as 30m, 24h, 7d or 1h30m, a date (2024-05-01) "
    "or an RFC 3339 timestamp (2024-05-01T12:00:00Z)"
)


def parse_duration(text: str) -> timedelta | None:
    """``text`` as a duration (``90s``, ``30m``, ``24h``, ``7d``, ``2w``, ``1h30m``), or None."""
    if not _DURATION.match(text):
        return None
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    return timedelta(seconds=seconds)


def parse_when(text: str, *, flag: str = "--since", now: datetime | None = None) -> datetime:
    """Parse a ``--since``/``--until`` value to an aware UTC datetime.

    Raises :class:`QueryError` naming ``flag``, the value and what was expected.
    """
    value = text.strip()
    if not value:
        raise QueryError(f"{flag}: empty value: expected {EXPECTED}")
    delta = parse_duration(value)
    if delta is not None:
        base = now if now is not None else datetime.now(UTC)
        return (base - delta).astimezone(UTC)
    if value.lower() == "now":
        return (now if now is not None else datetime.now(UTC)).astimezone(UTC)
    try:
        if _DATE.match(value):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        s = value[:-1] + "+00:00" if value.endswith(("z", "Z")) else value
        dt = datetime.fromisoformat(s.replace(" ", "T", 1))
    except ValueError:
        raise QueryError(f"{flag}: invalid time {text!r}: expected {EXPECTED}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


__all__ = ["EXPECTED", "parse_duration", "parse_when"]
