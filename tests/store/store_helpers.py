"""Small, realistic audit events for the store tests, built here."""

from __future__ import annotations

import random

from msgspec import Raw

from kaudit.model.codec import encode_event, format_micro
from kaudit.model.documents import Record
from kaudit.model.types import Event, ObjectReference, Status, UserInfo

BASE_US = 1_714_979_289_000_000  # 2024-05-06T07:08:09Z

_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]
_RES = ["pods", "secrets", "configmaps", "deployments", "services", "nodes"]
_USERS = ["alice", "bob", "system:serviceaccount:kube-system:ctrl", "system:kube-scheduler"]


def make_event(
    i: int,
    *,
    ts_us: int | None = None,
    stage: str = "ResponseComplete",
    audit_id: str | None = None,
    rng: random.Random | None = None,
) -> Event:
    r = rng or random.Random(i)
    t = BASE_US + i * 1000 if ts_us is None else ts_us
    res = r.choice(_RES)
    verb = r.choice(_VERBS)
    ns = None if res == "nodes" else f"ns-{r.randrange(5)}"
    name = f"{res[:-1]}-{r.randrange(50)}"
    ref = ObjectReference(resource=res, name=name, api_version="v1")
    if ns:
        ref.namespace = ns
    ev = Event(
        level="RequestResponse" if verb in ("create", "patch") else "Metadata",
        audit_id=audit_id if audit_id is not None else f"{i:08x}-1111-2222-3333-444455556666",
        stage=stage,
        request_uri=f"/api/v1/{'namespaces/' + ns + '/' if ns else ''}{res}/{name}",
        verb=verb,
        user=UserInfo(username=r.choice(_USERS), groups=["system:authenticated"]),
        source_ips=["10.0.0." + str(r.randrange(1, 20))],
        user_agent="kubectl/v1.30.0 (linux/amd64) kubernetes/abcdef",
        object_ref=ref,
        response_status=Status(code=r.choice([200, 200, 200, 201, 403, 404])),
        request_received_timestamp=format_micro(t),
        stage_timestamp=format_micro(t + 1500),
        annotations={
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed",
        },
    )
    if verb in ("create", "patch"):
        ev.request_object = Raw(b'{"kind":"Pod","metadata":{"name":"' + name.encode() + b'"}}')
    return ev


def make_records(n: int, start: int = 0, **kw: object) -> list[Record]:
    out = []
    for i in range(start, start + n):
        ev = make_event(i, **kw)  # type: ignore[arg-type]
        out.append(Record(ev, encode_event(ev)[:-1], "test", i + 1))
    return out
