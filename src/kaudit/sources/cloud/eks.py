"""Amazon EKS control-plane audit logs, as CloudWatch Logs hands them out.

EKS writes the apiserver's JSON audit lines unchanged into the log group
``/aws/eks/<cluster>/cluster``, log streams ``kube-apiserver-audit-<id>``. What
leaves CloudWatch wraps each line as a string:

* an export or Logs Insights row, one per line: ``{"@timestamp": ..., "@message":
  "<event>", "@logStream": ...}`` or ``{"timestamp": ..., "message": "<event>"}``;
* ``aws logs filter-log-events`` / ``get-log-events`` output: ``{"events": [{"message":
  "<event>", "logStreamName": ..., ...}], ...}``;
* a subscription-filter payload (after base64 and gunzip): ``{"messageType":
  "DATA_MESSAGE", "logGroup": ..., "logStream": ..., "logEvents": [{"message": ...}]}``;
  ``CONTROL_MESSAGE`` payloads hold no events.

The message is the event exactly as the apiserver wrote it, so nothing is lost.
Messages from the group's other streams (``kube-apiserver-``, ``authenticator-``,
``kube-controller-manager-``, ``kube-scheduler-``) are not audit events and are
reported as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kaudit.errors import DecodeError, Location
from kaudit.model.types import Event
from kaudit.sources.cloud._common import (
    ItemErrorHandler,
    NotAudit,
    event_from_json,
    report,
    type_name,
)

NAME = "eks"
_AUDIT_STREAM_PREFIX = "kube-apiserver-audit"
_STREAM_KEYS = ("logStreamName", "@logStream", "logStream")


def matches(obj: dict[str, Any]) -> bool:
    return (
        "@message" in obj
        or ("message" in obj and isinstance(obj.get("message"), str))
        or isinstance(obj.get("events"), list)
        or isinstance(obj.get("logEvents"), list)
        or obj.get("messageType") == "CONTROL_MESSAGE"
    )


def events(
    obj: dict[str, Any], loc: Location, on_error: ItemErrorHandler | None
) -> Iterator[Event]:
    if obj.get("messageType") == "CONTROL_MESSAGE":
        return
    for key in ("logEvents", "events"):
        items = obj.get(key)
        if isinstance(items, list):
            stream = obj.get("logStream")
            for i, item in enumerate(items):
                where = f"{key}[{i}]"
                try:
                    ev = _one(item, loc, where, stream)
                except DecodeError as err:
                    report(on_error, err, item)
                    continue
                yield ev
            return
    yield _one(obj, loc, "", None)


def _one(item: object, loc: Location, where: str, stream: object) -> Event:
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise NotAudit(
            f"{where or '$'}: expected a CloudWatch log event object, got {type_name(item)}",
            loc,
        )
    for key in _STREAM_KEYS:
        if isinstance(item.get(key), str):
            stream = item[key]
            break
    if isinstance(stream, str) and stream and not stream.startswith(_AUDIT_STREAM_PREFIX):
        raise NotAudit(
            f'{prefix}logStreamName: log stream "{stream}" is not an EKS audit stream '
            f'(expected "{_AUDIT_STREAM_PREFIX}-..."); not a Kubernetes audit event',
            loc,
        )
    key = "@message" if "@message" in item else "message"
    msg = item.get(key)
    if not isinstance(msg, str):
        raise NotAudit(
            f"{prefix}{key}: expected the audit event as a JSON string, got {type_name(msg)}",
            loc,
        )
    return event_from_json(msg.encode("utf-8", "surrogatepass"), loc, prefix + key)
