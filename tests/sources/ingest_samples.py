"""Small audit events and files for the ingest and cloud-adapter tests."""

from __future__ import annotations

import json
from pathlib import Path

from msgspec import Raw

from kaudit.model.codec import encode_event
from kaudit.model.types import Event, ObjectReference, Status, UserInfo
from kaudit.store import Store


def event(
    i: int,
    *,
    stage: str = "ResponseComplete",
    user: str = "alice",
    verb: str = "get",
    namespace: str = "default",
    minute: int = 8,
) -> Event:
    return Event(
        level="Request",
        audit_id=f"00000000-0000-4000-8000-{i:012d}",
        stage=stage,
        request_uri=f"/api/v1/namespaces/{namespace}/pods/p{i}",
        verb=verb,
        user=UserInfo(username=user, groups=["system:authenticated"]),
        source_ips=["10.0.0.1"],
        user_agent="kubectl/v1.30.0 (linux/amd64) kubernetes/abc",
        object_ref=ObjectReference(
            resource="pods", namespace=namespace, name=f"p{i}", api_version="v1"
        ),
        response_status=Status(code=200),
        request_object=Raw(
            b'{"kind":"Pod","note":"<b>&</b>"}' if i % 3 == 0 else b'{"kind":"Pod"}'
        ),
        request_received_timestamp=f"2024-05-06T07:{minute:02d}:09.{i % 1000000:06d}Z",
        stage_timestamp=f"2024-05-06T07:{minute:02d}:10.{i % 1000000:06d}Z",
        annotations={"authorization.k8s.io/decision": "allow"},
    )


def line(i: int, **kw: object) -> bytes:
    """The exact log line (with newline) the apiserver writes for event ``i``."""
    return encode_event(event(i, **kw))  # type: ignore[arg-type]


def lines(a: int, b: int, **kw: object) -> bytes:
    return b"".join(line(i, **kw) for i in range(a, b))


def stored_events(store: Store) -> list[str]:
    """Every stored ``event`` column, in a stable order."""
    table = store.query("select event from events order by audit_id, stage")
    return [str(v) for v in table.column("event").to_pylist()]


def expected(data: bytes) -> list[str]:
    """The lines of ``data`` as they should come back from :func:`stored_events`."""
    out = [ln.decode() for ln in data.splitlines() if ln.strip()]
    return sorted(out, key=lambda s: (json.loads(s)["auditID"], json.loads(s)["stage"]))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
