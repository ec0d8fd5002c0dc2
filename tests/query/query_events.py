"""Hand-built audit events and a small cluster day used by the query tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from kaudit.model import Event, ObjectReference, Status, UserInfo, encode_event
from kaudit.store import Store

T0 = "2025-03-03T09:00:00.000000Z"


def ts(minute: int, second: int = 0) -> str:
    return f"2025-03-03T09:{minute:02d}:{second:02d}.000000Z"


def ev(
    audit_id: str,
    *,
    stage: str = "ResponseComplete",
    verb: str = "get",
    user: str = "alice",
    groups: list[str] | None = None,
    imp: str | None = None,
    resource: str | None = "configmaps",
    namespace: str | None = "default",
    name: str | None = None,
    sub: str | None = None,
    group: str = "",
    code: int | None = 200,
    at: str = T0,
    ip: str | None = "10.0.0.1",
    ua: str | None = "kubectl/v1.30.0 (linux/amd64) kubernetes/abcdef",
    level: str = "Metadata",
    req: object = None,
    resp: object = None,
    annotations: dict[str, str] | None = None,
) -> Event:
    ref: Any = UNSET
    if resource is not None:
        ref = ObjectReference(
            resource=resource,
            namespace=namespace if namespace else UNSET,
            name=name if name else UNSET,
            api_group=group if group else UNSET,
            api_version="v1",
            subresource=sub if sub else UNSET,
        )
    path = "/api/v1"
    if resource is not None:
        if namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{resource}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
    else:
        path = "/healthz"
    return Event(
        level=level,
        audit_id=audit_id,
        stage=stage,
        request_uri=path,
        verb=verb,
        user=UserInfo(
            username=user if user else UNSET,
            groups=groups if groups is not None else ["system:authenticated"],
        ),
        impersonated_user=UserInfo(username=imp) if imp else UNSET,
        source_ips=[ip] if ip else UNSET,
        user_agent=ua if ua is not None else UNSET,
        object_ref=ref,
        response_status=Status(code=code) if code is not None else UNSET,
        request_object=Raw(msgspec.json.encode(req)) if req is not None else UNSET,
        response_object=Raw(msgspec.json.encode(resp)) if resp is not None else UNSET,
        request_received_timestamp=at,
        stage_timestamp=at,
        annotations=annotations if annotations else UNSET,
    )


def lines(events: Iterable[Event]) -> list[bytes]:
    return [encode_event(e) for e in events]


CM_V1 = {
    "kind": "ConfigMap",
    "apiVersion": "v1",
    "metadata": {"name": "app-config", "namespace": "prod"},
    "data": {"mode": "blue"},
}


def _resp(obj: dict[str, object], rv: str) -> dict[str, object]:
    meta = dict(obj["metadata"])  # type: ignore[call-overload]
    meta.update({"resourceVersion": rv, "uid": "u-1", "creationTimestamp": "2025-03-03T09:01:00Z"})
    meta["managedFields"] = [{"manager": "kubectl", "operation": "Update"}]
    return {**obj, "metadata": meta}


CM_V2 = {**CM_V1, "data": {"mode": "green", "replicas": "3"}}


def day() -> list[Event]:
    out: list[Event] = []
    # 1. alice creates the ConfigMap (RequestResponse), RequestReceived stored too.
    out.append(
        ev(
            "a1",
            stage="RequestReceived",
            verb="create",
            name=None,
            namespace="prod",
            at=ts(1),
            code=None,
            level="RequestResponse",
        )
    )
    out.append(
        ev(
            "a1",
            verb="create",
            name="app-config",
            namespace="prod",
            at=ts(1),
            code=201,
            level="RequestResponse",
            req=CM_V1,
            resp=_resp(CM_V1, "100"),
        )
    )
    # 2. bob reads it.
    out.append(
        ev(
            "a2",
            verb="get",
            user="bob",
            name="app-config",
            namespace="prod",
            at=ts(2),
            level="RequestResponse",
            resp=_resp(CM_V1, "100"),
            ip="192.168.1.20",
            ua="Mozilla/5.0 curl-ish",
        )
    )
    # 3. ci-bot updates it while impersonating deployer.
    out.append(
        ev(
            "a3",
            verb="update",
            user="ci-bot",
            imp="deployer",
            name="app-config",
            namespace="prod",
            at=ts(3),
            level="RequestResponse",
            req=CM_V2,
            resp=_resp(CM_V2, "101"),
            ip="10.1.2.3",
            groups=["ci", "system:authenticated"],
        )
    )
    # 4. mallory tries to delete it and is forbidden.
    out.append(
        ev(
            "a4",
            verb="delete",
            user="mallory",
            name="app-config",
            namespace="prod",
            at=ts(4),
            code=403,
            ip="203.0.113.9",
            ua="evil-tool/1.0",
            resp={"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403},
            level="RequestResponse",
        )
    )
    # 5. carol deletes it.
    out.append(
        ev(
            "a5",
            stage="RequestReceived",
            verb="delete",
            user="carol",
            name="app-config",
            namespace="prod",
            at=ts(5),
            code=None,
            ip="fd00::17",
        )
    )
    out.append(
        ev(
            "a5",
            verb="delete",
            user="carol",
            name="app-config",
            namespace="prod",
            at=ts(5),
            code=200,
            ip="fd00::17",
            resp={"kind": "Status", "apiVersion": "v1", "status": "Success"},
            level="RequestResponse",
        )
    )
    # Noise: list pods, exec into a pod, a deployment scale, a healthz, a watch in progress.
    for i in range(5):
        out.append(
            ev(
                f"n{i}",
                verb="list",
                user="system:serviceaccount:kube-system:ctrl",
                resource="pods",
                namespace=None,
                at=ts(10, i),
                ip="10.0.0.2",
                groups=["system:serviceaccounts"],
                ua="kube-controller-manager/v1.30",
            )
        )
    out.append(
        ev(
            "x1",
            verb="create",
            user="alice",
            resource="pods",
            sub="exec",
            name="web-0",
            namespace="prod",
            at=ts(11),
            code=101,
        )
    )
    out.append(
        ev(
            "s1",
            verb="patch",
            user="alice",
            resource="deployments",
            group="apps",
            sub="scale",
            name="web",
            namespace="prod",
            at=ts(12),
        )
    )
    out.append(
        ev("h1", verb="get", user="alice", resource=None, at=ts(13), code=500, ip="10.0.0.1")
    )
    out.append(
        ev(
            "w1",
            stage="RequestReceived",
            verb="watch",
            user="bob",
            resource="secrets",
            namespace="prod",
            at=ts(14),
            code=None,
        )
    )
    out.append(
        ev(
            "w1",
            stage="ResponseStarted",
            verb="watch",
            user="bob",
            resource="secrets",
            namespace="prod",
            at=ts(14),
            code=200,
        )
    )
    return out


#: A fixture making a store from a list of events (see conftest.make_store).
MakeStore = Callable[..., Store]
