"""Azure Kubernetes Service audit logs from diagnostic settings.

AKS sends the apiserver's audit events as Azure resource-log records of category
``kube-audit`` (every event) or ``kube-audit-admin`` (without get/list/watch)::

    {"category": "kube-audit", "resourceId": "/SUBSCRIPTIONS/.../MANAGEDCLUSTERS/<name>",
     "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
     "time": "...", "properties": {"log": "<event>", "stream": "stdout", "pod": "..."}}

``properties.log`` is the event as a JSON string (most exports) or as an object.
A storage-account or Event Hubs export wraps records in ``{"records": [...]}``; a
line per record is read as well. The event inside is the apiserver's own, so
nothing is lost. Records of other categories (``kube-apiserver``,
``cluster-autoscaler``, ``guard``, Activity Log records...) are not audit events and
are reported as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from kaudit.errors import DecodeError, Location
from kaudit.model.types import Event
from kaudit.sources.cloud._common import (
    ItemErrorHandler,
    NotAudit,
    event_from_value,
    report,
    type_name,
)

NAME = "aks"
AUDIT_CATEGORIES: Final = ("kube-audit", "kube-audit-admin")


def matches(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("records"), list) or (
        "category" in obj and ("properties" in obj or "resourceId" in obj or "time" in obj)
    )


def events(
    obj: dict[str, Any], loc: Location, on_error: ItemErrorHandler | None
) -> Iterator[Event]:
    records = obj.get("records")
    if isinstance(records, list) and "category" not in obj:
        for i, rec in enumerate(records):
            try:
                ev = _record(rec, loc, f"records[{i}]")
            except DecodeError as err:
                report(on_error, err, rec)
                continue
            yield ev
        return
    yield _record(obj, loc, "")


def _record(rec: object, loc: Location, where: str) -> Event:
    prefix = f"{where}." if where else ""
    if not isinstance(rec, dict):
        raise NotAudit(
            f"{where or '$'}: expected an Azure diagnostic record object, got {type_name(rec)}",
            loc,
        )
    category = rec.get("category")
    if category not in AUDIT_CATEGORIES:
        shown = f'"{category}"' if isinstance(category, str) else type_name(category)
        raise NotAudit(
            f"{prefix}category: {shown} is not a Kubernetes audit record "
            f'(expected "kube-audit" or "kube-audit-admin")',
            loc,
        )
    props = rec.get("properties")
    if not isinstance(props, dict) or "log" not in props:
        raise DecodeError(
            f"{prefix}properties.log: expected the audit event (a JSON string or object); "
            "the record has none",
            loc,
        )
    return event_from_value(props["log"], loc, f"{prefix}properties.log")
