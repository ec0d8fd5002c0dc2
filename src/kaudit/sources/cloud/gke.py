"""Google Kubernetes Engine audit entries from Cloud Logging.

GKE does not keep the apiserver's audit event: it turns each one into a Cloud
Logging ``LogEntry`` whose ``protoPayload`` is a ``google.cloud.audit.AuditLog``
(``serviceName: k8s.io``). An export to a bucket holds one entry per line;
``gcloud logging read --format=json`` prints a JSON array of them. This module turns
an entry back into an ``audit.k8s.io/v1`` event:

================================================  =========================================
LogEntry                                          Event
================================================  =========================================
``operation.id``, else ``insertId``               ``auditID`` (GKE sets both to it)
``protoPayload.methodName``                       ``verb`` (last part) and ``objectRef``
``io.k8s.<group>.<version>.<resource>[.<sub>]``   (``subresource`` from the method)
``protoPayload.resourceName``                     ``objectRef`` group/version/resource/
``<group>/<version>[/namespaces/<ns>]/<res>/..``  namespace/name/subresource; ``requestURI``
``authenticationInfo.principalEmail``             ``user.username`` (else principalSubject)
``requestMetadata.callerIp`` (or ``callerIP``)    ``sourceIPs[0]``
``requestMetadata.callerSuppliedUserAgent``       ``userAgent``
``status.code`` (google.rpc) / a ``v1.Status``    ``responseStatus`` (HTTP code; a Status
response                                          response gives code, reason, message)
``request`` / ``response`` (minus ``@type``)      ``requestObject`` / ``responseObject``
``labels`` (the apiserver's annotations)          ``annotations``
``authorizationInfo[].granted``                   ``authorization.k8s.io/decision`` when
                                                  ``labels`` does not have it
``requestMetadata.requestAttributes.time``,       ``requestReceivedTimestamp``
else ``timestamp``
``timestamp``                                     ``stageTimestamp``
================================================  =========================================

``stage`` is ``ResponseComplete`` (GKE logs one entry per request); ``level`` is
``RequestResponse`` when there is a response body, ``Request`` when only a request
body, else ``Metadata``. ``requestURI`` is rebuilt from ``resourceName`` (query
strings such as ``?watch=true`` or ``dryRun`` are not in the entry).

Lost: ``user.groups``, ``user.uid``, ``user.extra``, ``impersonatedUser``, every
source IP but the caller's, ``objectRef.uid``/``resourceVersion``, the request's
query string, the exact HTTP code of a success (``OK`` becomes 200, also for a
``create`` answered 201), and ``receiveTimestamp``. An entry without any id gets a
name-based UUID of its content, so that ingesting it twice still stores it once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any, Final

from msgspec import UNSET, Raw

from kaudit.errors import Location
from kaudit.model.types import (
    LEVEL_METADATA,
    LEVEL_REQUEST,
    LEVEL_REQUEST_RESPONSE,
    STAGE_RESPONSE_COMPLETE,
    Event,
    ObjectReference,
    Status,
    UserInfo,
)
from kaudit.sources.cloud._common import (
    ItemErrorHandler,
    NotAudit,
    cloud_time,
    encode,
)

NAME = "gke"
AUDIT_LOG_TYPE: Final = "type.googleapis.com/google.cloud.audit.AuditLog"
#: Namespace of the name-based UUIDs given to entries that carry no id.
ID_NAMESPACE: Final = uuid.UUID("6b617564-6974-4b67-8b65-656e74727900")

#: google.rpc.Code -> HTTP status, as Google's own API mapping (google/rpc/code.proto).
RPC_TO_HTTP: Final = {
    0: 200,  # OK
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}

#: API groups named by one word (no ``.k8s.io``): the legacy and built-in ones.
_SHORT_GROUPS: Final = frozenset(
    {"apps", "batch", "autoscaling", "policy", "extensions", "authentication", "authorization"}
)
_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?")


def matches(obj: dict[str, Any]) -> bool:
    op = obj.get("operation")
    return (
        "protoPayload" in obj
        or (isinstance(op, dict) and op.get("producer") == "k8s.io")
        or ("logName" in obj and "insertId" in obj)
    )


def events(
    obj: dict[str, Any], loc: Location, on_error: ItemErrorHandler | None
) -> Iterator[Event]:
    yield entry_to_event(obj, loc)


def entry_to_event(entry: dict[str, Any], loc: Location | None = None) -> Event:
    """One Cloud Logging entry of a GKE audit log as an audit event (see the module)."""
    loc = loc or Location("")
    pp = entry.get("protoPayload")
    if not isinstance(pp, dict):
        raise NotAudit(
            "protoPayload: expected a google.cloud.audit.AuditLog object; this Cloud "
            "Logging entry has none, so it is not a Kubernetes audit entry",
            loc,
        )
    ptype = pp.get("@type", pp.get("at_sign_type", pp.get("type")))
    service = pp.get("serviceName")
    method = pp.get("methodName")
    resource = entry.get("resource")
    rtype = resource.get("type") if isinstance(resource, dict) else None
    is_k8s = (
        service == "k8s.io"
        or (isinstance(method, str) and method.startswith("io.k8s."))
        or (rtype == "k8s_cluster" and service is None)
    )
    if ptype not in (None, AUDIT_LOG_TYPE) or not is_k8s:
        raise NotAudit(
            "protoPayload: not a Kubernetes audit entry (expected serviceName "
            f'"k8s.io" and a methodName "io.k8s...."; got serviceName {_show(service)}, '
            f"methodName {_show(method)}, @type {_show(ptype)})",
            loc,
        )
    if not isinstance(method, str) or not method:
        raise NotAudit(
            "protoPayload.methodName: expected a string like io.k8s.core.v1.pods.get", loc
        )

    verb, m_group, m_version, m_resource, m_sub = _parse_method(method)
    resource_name = pp.get("resourceName")
    ref, uri = _parse_resource_name(resource_name if isinstance(resource_name, str) else "")
    if ref is not None:
        if ref.subresource is UNSET and m_sub:
            ref.subresource = m_sub
    elif m_resource:
        ref = ObjectReference(
            resource=m_resource,
            api_group=m_group or UNSET,
            api_version=m_version or UNSET,
            subresource=m_sub or UNSET,
        )
    if not uri:
        uri = _uri(ref) if ref is not None else ""

    auth = pp.get("authenticationInfo")
    username = None
    if isinstance(auth, dict):
        username = auth.get("principalEmail") or auth.get("principalSubject")
    meta = pp.get("requestMetadata")
    meta = meta if isinstance(meta, dict) else {}
    ip = meta.get("callerIp", meta.get("callerIP"))
    agent = meta.get("callerSuppliedUserAgent")
    attrs = meta.get("requestAttributes")
    received = cloud_time(attrs.get("time")) if isinstance(attrs, dict) else None
    stamp = cloud_time(entry.get("timestamp") or pp.get("timestamp"))

    request = _body(pp.get("request"))
    response = _body(pp.get("response"))
    level = (
        LEVEL_REQUEST_RESPONSE
        if response is not None
        else LEVEL_REQUEST
        if request is not None
        else LEVEL_METADATA
    )

    labels = entry.get("labels")
    annotations = (
        {str(k): v for k, v in labels.items() if isinstance(v, str)}
        if isinstance(labels, dict)
        else {}
    )
    if "authorization.k8s.io/decision" not in annotations:
        decision = _decision(pp.get("authorizationInfo"))
        if decision:
            annotations["authorization.k8s.io/decision"] = decision

    op = entry.get("operation")
    audit_id = (op.get("id") if isinstance(op, dict) else None) or entry.get("insertId")
    if not isinstance(audit_id, str) or not audit_id:
        audit_id = str(uuid.uuid5(ID_NAMESPACE, encode(entry).decode("utf-8", "replace")))

    return Event(
        level=level,
        audit_id=audit_id,
        stage=STAGE_RESPONSE_COMPLETE,
        request_uri=uri,
        verb=verb,
        user=UserInfo(username=username) if isinstance(username, str) and username else UserInfo(),
        source_ips=[ip] if isinstance(ip, str) and ip else UNSET,
        user_agent=agent if isinstance(agent, str) and agent else UNSET,
        object_ref=ref if ref is not None else UNSET,
        response_status=_status(pp.get("status"), pp.get("response")),
        request_object=Raw(request) if request is not None else UNSET,
        response_object=Raw(response) if response is not None else UNSET,
        request_received_timestamp=received or stamp,
        stage_timestamp=stamp,
        annotations=annotations or UNSET,
    )


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else "none"


def _parse_method(method: str) -> tuple[str, str, str, str, str]:
    """``io.k8s.apps.v1.deployments.scale.patch`` -> (verb, group, version, resource, sub)."""
    parts = method.split(".")
    verb = parts[-1]
    if len(parts) < 4 or parts[0] != "io" or parts[1] != "k8s":
        return verb, "", "", "", ""
    body = parts[2:-1]
    for i, p in enumerate(body):
        if _VERSION.fullmatch(p):
            group_parts, version, rest = body[:i], p, body[i + 1 :]
            break
    else:
        return verb, "", "", "", ""
    if group_parts == ["core"] or not group_parts:
        group = ""
    elif len(group_parts) == 1 and group_parts[0] in _SHORT_GROUPS:
        group = group_parts[0]
    else:
        group = ".".join(reversed(group_parts)) + ".k8s.io"
    resource = rest[0] if rest else ""
    sub = "/".join(rest[1:])
    return verb, group, version, resource, sub


def _parse_resource_name(name: str) -> tuple[ObjectReference | None, str]:
    """``apps/v1/namespaces/ns/deployments/web/scale`` -> (objectRef, requestURI)."""
    if not name:
        return None, ""
    if name.startswith("/"):
        return None, name  # a non-resource URL such as /healthz
    parts = name.split("/")
    if len(parts) < 3:
        return None, ""
    group, version, rest = parts[0], parts[1], parts[2:]
    if group == "core":
        group = ""
    namespace = ""
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    obj_name = rest[1] if len(rest) > 1 else ""
    sub = "/".join(rest[2:])
    ref = ObjectReference(
        resource=resource,
        namespace=namespace or UNSET,
        name=obj_name or UNSET,
        api_group=group or UNSET,
        api_version=version or UNSET,
        subresource=sub or UNSET,
    )
    return ref, _uri(ref)


def _uri(ref: ObjectReference) -> str:
    group = ref.api_group if ref.api_group is not UNSET else ""
    version = ref.api_version if ref.api_version is not UNSET else "v1"
    path = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if ref.namespace is not UNSET:
        path += f"/namespaces/{ref.namespace}"
    if ref.resource is not UNSET:
        path += f"/{ref.resource}"
    if ref.name is not UNSET:
        path += f"/{ref.name}"
        if ref.subresource is not UNSET:
            path += f"/{ref.subresource}"
    return path


def _body(value: object) -> bytes | None:
    if not isinstance(value, dict):
        return None
    body = {k: v for k, v in value.items() if k not in ("@type", "at_sign_type")}
    return encode(body)


def _decision(info: object) -> str | None:
    if not isinstance(info, list) or not info:
        return None
    granted = [isinstance(i, dict) and i.get("granted") is True for i in info]
    return "allow" if all(granted) else "forbid"


def _status(status: object, response: object) -> Status | Any:
    if isinstance(response, dict) and (
        response.get("@type") == "core.k8s.io/v1.Status" or response.get("kind") == "Status"
    ):
        code = response.get("code")
        if isinstance(code, int) and not isinstance(code, bool) and code:
            return Status(
                status=_str(response.get("status")),
                message=_str(response.get("message")),
                reason=_str(response.get("reason")),
                code=code,
            )
    rpc = status.get("code", 0) if isinstance(status, dict) else 0
    if not isinstance(rpc, int) or isinstance(rpc, bool):
        rpc = 2
    http = RPC_TO_HTTP.get(rpc, 500)
    message = status.get("message") if isinstance(status, dict) else None
    if http >= 400:
        return Status(
            status="Failure",
            message=message if isinstance(message, str) and message else UNSET,
            code=http,
        )
    return Status(code=http)


def _str(value: object) -> Any:
    return value if isinstance(value, str) and value else UNSET
