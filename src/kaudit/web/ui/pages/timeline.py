"""One identity's timeline: what they did (as themselves or impersonated), grouped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kaudit.query.filters import Filters
from kaudit.query.investigate import timeline as investigate_timeline
from kaudit.query.output import iso
from kaudit.web.ui.timerange import TimeRange

MAX_ROWS = 2000


def timeline(store: Any, user: str, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    f = Filters(since=rng.since, until=rng.until, cluster=cluster or None)
    table = investigate_timeline(store, user, filters=f, limit=MAX_ROWS + 1)
    rows = [
        {k: (iso(v) if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in table.to_pylist()
    ]
    return {
        "user": user,
        "range": rng.to_dict(),
        "rows": rows[:MAX_ROWS],
        "truncated": len(rows) > MAX_ROWS,
        "requests": sum(int(r["count"]) for r in rows[:MAX_ROWS]),
    }


__all__ = ["timeline"]
