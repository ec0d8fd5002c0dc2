"""Alerts: the stored alerts with filters, each with its state (acknowledged, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaudit.detect.alert import SEVERITY_RANK, AlertStore
from kaudit.errors import QueryError
from kaudit.web.ui.alertstate import STATES, AlertStates, state_dict
from kaudit.web.ui.timerange import TimeRange

MAX_ALERTS = 1000


def alerts(
    store_path: Any,
    *,
    rules: Sequence[str] = (),
    severity: str | None = None,
    state: str | None = None,
    rng: TimeRange | None = None,
) -> dict[str, Any]:
    if severity and severity not in SEVERITY_RANK:
        raise QueryError(
            f"severity: unknown value {severity!r}: expected one of {', '.join(SEVERITY_RANK)}"
        )
    if state and state not in (*STATES, "all"):
        raise QueryError(f"state: unknown value {state!r}: expected all or {', '.join(STATES)}")
    store = AlertStore(store_path)
    every = store.query()
    found = store.query(
        rules=list(rules),
        min_severity=severity or None,
        since_us=rng.since_us if rng else None,
        until_us=rng.until_us if rng else None,
    )
    decisions = AlertStates.for_store(store_path).read()
    items = []
    for a in reversed(found):  # newest first
        d = a.to_dict()
        d.update(state_dict(decisions.get(a.id)))
        if state is None and d["state"] == "suppressed":
            continue
        if state and state != "all" and d["state"] != state:
            continue
        items.append(d)
    counts: dict[str, int] = {}
    for a in every:
        counts[a.rule_id] = counts.get(a.rule_id, 0) + 1
    return {
        "alerts": items[:MAX_ALERTS],
        "total": len(items),
        "truncated": len(items) > MAX_ALERTS,
        "rules": [{"rule_id": k, "count": v} for k, v in sorted(counts.items())],
        "severities": list(SEVERITY_RANK),
        "states": list(STATES),
        "filters": {"rule": list(rules), "severity": severity, "state": state},
    }


def find(store_path: Any, alert_id: str) -> dict[str, Any] | None:
    for a in AlertStore(store_path).read():
        if a.id == alert_id:
            d = a.to_dict()
            d.update(state_dict(AlertStates.for_store(store_path).read().get(a.id)))
            return d
    return None


__all__ = ["alerts", "find"]
