"""One request: every stored stage of an auditID, its bodies pretty-printed."""

from __future__ import annotations

import json
from typing import Any, Final

from kaudit.errors import QueryError
from kaudit.query.output import iso

_RANK: Final = (
    "CASE stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 "
    "WHEN 'ResponseComplete' THEN 2 ELSE 3 END"
)


def pretty(text: object) -> str | None:
    """JSON text indented for reading (unchanged if it is not JSON)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=False)
    except ValueError:
        return text


def object_spec(row: dict[str, Any]) -> str | None:
    """``resource[.group]/name`` for the history page, when the request names an object."""
    if not row.get("resource") or not row.get("name"):
        return None
    group = row.get("api_group")
    return f"{row['resource']}{'.' + group if group else ''}/{row['name']}"


class NotFound(QueryError):
    """No stored event has this auditID."""


def event(con: Any, audit_id: str) -> dict[str, Any]:
    """``stages`` (oldest first, each with the flat columns and the pretty whole event),
    ``final`` (the last stage), and links to the object's history and user's timeline."""
    table = con.sql(
        f"SELECT * FROM events WHERE audit_id = ? ORDER BY {_RANK}, stage_ts",
        params=[audit_id],
    ).to_arrow_table()
    rows = table.to_pylist()
    if not rows or not audit_id:
        raise NotFound(f"auditID {audit_id!r}: no stored event has this auditID")
    stages = []
    for r in rows:
        d = {k: (iso(v) if hasattr(v, "tzinfo") and v is not None else v) for k, v in r.items()}
        d["request_object_pretty"] = pretty(r.get("request_object"))
        d["response_object_pretty"] = pretty(r.get("response_object"))
        d["event_pretty"] = pretty(r.get("event"))
        d["annotations"] = dict(r.get("annotations") or {})
        stages.append(d)
    final = stages[-1]
    return {
        "audit_id": audit_id,
        "stages": stages,
        "final": final,
        "object": object_spec(final),
        "namespace": final.get("namespace"),
        "username": final.get("username"),
    }


__all__ = ["NotFound", "event", "object_spec", "pretty"]
