"""The ingest pipeline of ``kaudit serve``: redaction by default, policy, truncation, tail."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from serve_harness import AUTH, ServerProcess, run_app

from kaudit.errors import StoreError
from kaudit.model import decode_event, encode_event, encode_event_list
from kaudit.store import open_store
from kaudit.traffic import generate_lines


def secret_create(audit_id: str, level: str = "RequestResponse") -> bytes:
    body = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}
    ev = {
        "level": level,
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/prod/secrets",
        "verb": "create",
        "user": {"username": "alice"},
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": body,
        "responseObject": body,
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.130001Z",
    }
    return json.dumps(ev).encode()


def post(*events: bytes) -> Callable[[httpx.AsyncClient, Any], Any]:
    body = encode_event_list([decode_event(e) for e in events])

    async def scenario(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/audit/webhook", content=body, headers=AUTH)
        assert r.status_code == 200, r.text

    return scenario


def stored(store: Any) -> list[dict[str, Any]]:
    t = store.query("select event from events order by audit_id")
    return [json.loads(e) for e in t.column("event").to_pylist()]


def test_secrets_are_redacted_by_default(tmp_path: Path) -> None:
    store = run_app(tmp_path, post(secret_create("s-1")))
    (ev,) = stored(store)
    assert ev["requestObject"]["data"] == {"password": "[REDACTED]"}
    assert ev["responseObject"]["data"] == {"password": "[REDACTED]"}
    assert "kaudit.io/redacted" in ev["annotations"]
    assert "aHVudGVyMg" not in json.dumps(ev)


def test_redaction_can_be_turned_off(tmp_path: Path) -> None:
    store = run_app(tmp_path, post(secret_create("s-1")), redact=False)
    (ev,) = stored(store)
    assert ev["requestObject"]["data"] == {"password": "aHVudGVyMg=="}


def test_policy_file_shapes_what_is_stored(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
        "- level: None\n  users: [bob]\n"
        "- level: Metadata\n"
    )
    bob = secret_create("b-1").replace(b'"alice"', b'"bob"')
    store = run_app(tmp_path, post(secret_create("a-1"), bob), policy_file=str(policy))
    (ev,) = stored(store)
    assert ev["auditID"] == "a-1"
    assert ev["level"] == "Metadata"
    assert "requestObject" not in ev and "responseObject" not in ev


def test_truncation_as_the_apiserver_does(tmp_path: Path) -> None:
    big = secret_create("t-1").replace(b"aHVudGVyMg==", b"x" * 5000)
    store = run_app(tmp_path, post(big), redact=False, truncate_max_event_bytes=2000)
    (ev,) = stored(store)
    assert ev["annotations"]["audit.k8s.io/truncated"] == "true"
    assert "requestObject" not in ev
    # What is stored is exactly what the apiserver's truncate backend would have sent on.
    assert (json.dumps(ev, separators=(",", ":")) + "\n").encode() == encode_event(
        decode_event(json.dumps(ev))
    )


def count(store_dir: Path) -> int:
    t = open_store(store_dir, create=False).query("select count(*) as n from events")
    return int(t.column("n")[0].as_py())


def wait_for(store_dir: Path, n: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        try:
            got = count(store_dir)
        except StoreError:
            got = 0  # not created yet
        if got >= n:
            return got
        time.sleep(0.2)
    return got


def test_tail_follows_a_log_across_a_sigkill(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    lines = list(generate_lines(3000, seed=5))
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "audit.log"
    log.write_bytes(b"".join(lines[:1000]))
    store = tmp_path / "store"
    args = ["--store", str(store), "--tail", str(log), "--tail-cluster", "node-1"]
    server = server_factory(args).start()
    assert wait_for(store, 1000) == 1000
    with open(log, "ab") as f:
        f.write(b"".join(lines[1000:2000]))
    time.sleep(0.5)
    server.kill()  # wherever it is: acknowledged or not, nothing may be lost
    with open(log, "ab") as f:
        f.write(b"".join(lines[2000:]))
    server_factory(args).start()
    assert wait_for(store, 3000) == 3000
    time.sleep(1.0)
    assert count(store) == 3000  # and nothing twice
    t = open_store(store, create=False).query("select distinct cluster from events")
    assert t.column("cluster").to_pylist() == ["node-1"]


def test_what_the_transforms_did_is_on_metrics(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n"
        "- level: None\n  users: [bob]\n"
        "- level: RequestResponse\n"
    )
    bob = secret_create("b-1").replace(b'"alice"', b'"bob"')
    body = encode_event_list([decode_event(e) for e in (secret_create("a-1"), bob)])
    seen: dict[str, str] = {}

    async def scenario(client: httpx.AsyncClient, app: Any) -> None:
        r = await client.post("/audit/webhook", content=body, headers=AUTH)
        assert r.status_code == 200, r.text
        seen["metrics"] = (await client.get("/metrics", headers=AUTH)).text

    run_app(tmp_path, scenario, policy_file=str(policy))
    text = seen["metrics"]
    assert 'kaudit_transform_events_total{transform="policy",outcome="dropped"} 1' in text
    assert 'kaudit_transform_events_total{transform="redact",outcome="redacted"} 1' in text
