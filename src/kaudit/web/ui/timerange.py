"""The time range a page is about.

``since``/``until`` take what the CLI's ``--since``/``--until`` take (``24h``, ``7d``,
an RFC 3339 time, a date). The presets (``1h``, ``24h``, ``7d``) and relative values
count back from the **end** of the range, which is ``until`` when given, else the
newest stored event (rounded up to the minute) when it is older than now: a store of
last month's log shows last month, a live store shows the last hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from kaudit.errors import QueryError
from kaudit.query.output import iso
from kaudit.query.timeparse import parse_duration, parse_when

PRESETS: Final = ("1h", "24h", "7d")
DEFAULT_PRESET: Final = "24h"


@dataclass(frozen=True, slots=True)
class TimeRange:
    since: datetime
    until: datetime
    label: str  # the preset, or "custom"

    @property
    def since_us(self) -> int:
        return int(self.since.timestamp() * 1_000_000)

    @property
    def until_us(self) -> int:
        return int(self.until.timestamp() * 1_000_000)

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {"since": iso(self.since), "until": iso(self.until), "preset": self.label}


def newest_event(con: Any) -> datetime | None:
    rows = con.sql("SELECT max(ts) AS t FROM events").to_arrow_table().to_pylist()
    value = rows[0]["t"] if rows else None
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _ceil_minute(t: datetime) -> datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + timedelta(minutes=1)


def resolve(
    since: str | None,
    until: str | None,
    newest: datetime | None,
    *,
    now: datetime | None = None,
    default: str = DEFAULT_PRESET,
) -> TimeRange:
    """The range for the query parameters; :class:`QueryError` names a bad value."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    since = (since or "").strip() or None
    until = (until or "").strip() or None
    if until is not None:
        end = parse_when(until, flag="until", now=now)
    elif newest is not None and newest < now:
        end = _ceil_minute(newest)
    else:
        end = _ceil_minute(now)
    label = "custom"
    text = since if since is not None else default
    delta = parse_duration(text)
    if delta is not None:
        start = end - delta
        if until is None and text in PRESETS:
            label = text
    else:
        start = parse_when(text, flag="since", now=now)
    if start >= end:
        raise QueryError(
            f"since/until: the range is empty: {iso(start)} is not before {iso(end)}: "
            "expected since earlier than until"
        )
    return TimeRange(start, end, label)


def bucket_seconds(span_secs: float, target: int = 48) -> int:
    """A round bucket width giving at most about ``target`` buckets over ``span_secs``."""
    for width in (
        1,
        5,
        10,
        30,
        60,
        300,
        600,
        900,
        1800,
        3600,
        7200,
        10800,
        21600,
        43200,
        86400,
        604800,
    ):
        if span_secs / width <= target:
            return width
    return int(span_secs // target) + 1


__all__ = ["DEFAULT_PRESET", "PRESETS", "TimeRange", "bucket_seconds", "newest_event", "resolve"]
