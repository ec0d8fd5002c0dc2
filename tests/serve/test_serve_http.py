"""The webhook endpoint and the other routes, in process over ASGI, with the real store."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_harness import AUTH, TOKEN, event_list, events, run_app

from kaudit.model.codec import encode_event
from kaudit.model.documents import Record


def count(store: Any, where: str = "true") -> int:
    return int(store.query(f"SELECT count(*) AS n FROM events WHERE {where}")["n"][0].as_py())


def test_eventlist_is_stored_with_cluster_and_exact_bytes(tmp_path: Path) -> None:
    evs = events(50)

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=event_list(evs), headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 50, "quarantined": 0}

    store = run_app(tmp_path, scenario)
    t = store.query("SELECT cluster, event FROM events ORDER BY ts, audit_id, stage")
    assert set(t["cluster"].to_pylist()) == {"prod"}
    stored = sorted(
        bytes(e) if isinstance(e, bytes) else e.encode() for e in t["event"].to_pylist()
    )
    assert stored == sorted(encode_event(e)[:-1] for e in evs)


@pytest.mark.parametrize(
    "body",
    ["array", "single"],
)
def test_array_and_single_event_bodies(tmp_path: Path, body: str) -> None:
    evs = events(3, seed=7)
    data = (
        b"[" + b",".join(encode_event(e)[:-1] for e in evs) + b"]"
        if body == "array"
        else encode_event(evs[0])
    )

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=data, headers=AUTH)
        assert r.status_code == 200, r.text

    store = run_app(tmp_path, scenario)
    assert count(store) == (3 if body == "array" else 1)


def test_resent_batch_is_stored_once(tmp_path: Path) -> None:
    body = event_list(events(400, seed=3))

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        rs = await asyncio.gather(
            *[c.post("/audit/webhook", content=body, headers=AUTH) for _ in range(4)]
        )
        assert [r.status_code for r in rs] == [200] * 4
        m = app.state.metrics
        assert m.events_received.value() == 1600
        assert m.events_stored.value() == 400
        assert m.events_duplicate.value() == 1200

    store = run_app(tmp_path, scenario)
    assert count(store) == 400


BAD_REQUESTS: dict[str, tuple[dict[str, str], bytes, int, str]] = {
    "malformed json": (AUTH, b'{"kind":"EventList","items":[{"level":', 400, "MalformedBody"),
    "truncated body": (AUTH, b"TRUNCATE", 400, "MalformedBody"),
    "not json": (AUTH, b"hello", 400, "MalformedBody"),
    "empty": (AUTH, b"", 400, "MalformedBody"),
    "items not a list": (AUTH, b'{"kind":"EventList","items":5}', 400, "MalformedBody"),
    "wrong apiVersion": (
        AUTH,
        b'{"kind":"EventList","apiVersion":"v1","items":[]}',
        400,
        "MalformedBody",
    ),
    "wrong content type": (
        {**AUTH, "Content-Type": "text/plain"},
        b"TRUNCATE",
        415,
        "UnsupportedMediaType",
    ),
    "gzip": ({**AUTH, "Content-Encoding": "gzip"}, b"TRUNCATE", 415, "UnsupportedContentEncoding"),
    # 1 GiB of JSON whitespace in about 1 MiB: refused unread, never decompressed.
    "compression bomb": (
        {**AUTH, "Content-Encoding": "gzip"},
        b"BOMB",
        415,
        "UnsupportedContentEncoding",
    ),
    "deflate": (
        {**AUTH, "Content-Encoding": "deflate"},
        b"TRUNCATE",
        415,
        "UnsupportedContentEncoding",
    ),
    "no credentials": ({"Content-Type": "application/json"}, b"TRUNCATE", 401, "Unauthorized"),
    "bad token": (
        {"Authorization": "Bearer nope", "Content-Type": "application/json"},
        b"TRUNCATE",
        401,
        "Unauthorized",
    ),
    "basic auth": (
        {"Authorization": "Basic eDp5", "Content-Type": "application/json"},
        b"TRUNCATE",
        401,
        "Unauthorized",
    ),
}


@functools.cache
def _bomb() -> bytes:
    """gzip of 1 GiB of JSON whitespace (about 1 MiB), made in chunks."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip member
    chunk = b" " * (1 << 20)
    parts = [z.compress(b"[")]
    parts += [z.compress(chunk) for _ in range(1 << 10)]
    parts += [z.compress(b"]"), z.flush()]
    return b"".join(parts)


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_documented_status_and_server_keeps_serving(
    tmp_path: Path, name: str
) -> None:
    headers, body, status, reason = BAD_REQUESTS[name]
    good = event_list(events(10, seed=11))
    if body == b"TRUNCATE":
        body = good[: len(good) // 2]
    elif body == b"BOMB":
        body = _bomb()

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=body, headers=headers)
        assert r.status_code == status, r.text
        assert r.json()["error"]["reason"] == reason
        assert r.json()["error"]["status"] == status
        r = await c.post("/audit/webhook", content=good, headers=AUTH)
        assert r.status_code == 200

    store = run_app(tmp_path, scenario)
    assert count(store) == 10


def test_malformed_body_is_quarantined_once(tmp_path: Path) -> None:
    body = event_list(events(5))[:-30]

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        for _ in range(3):  # the apiserver resends the identical body
            r = await c.post("/audit/webhook", content=body, headers=AUTH)
            assert r.status_code == 400

    run_app(tmp_path, scenario)
    lines = [
        ln
        for f in (tmp_path / "store" / "quarantine").iterdir()
        for ln in f.read_bytes().splitlines()
    ]
    assert len(lines) == 1
    assert json.loads(lines[0])["raw"].encode() == body


def test_bad_items_are_quarantined_and_good_ones_stored(tmp_path: Path) -> None:
    evs = events(3, seed=5)
    items = [encode_event(e, typed=False)[:-1] for e in evs]
    items.insert(1, b'{"hello":"world"}')
    items.insert(3, b"42")
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[' + (
        b",".join(items) + b"]}\n"
    )

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=body, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"received": 3, "quarantined": 2}

    store = run_app(tmp_path, scenario)
    assert count(store) == 3
    (qfile,) = (tmp_path / "store" / "quarantine").iterdir()
    assert oct(qfile.stat().st_mode & 0o777) == "0o600"
    entries = [json.loads(ln) for ln in qfile.read_bytes().splitlines()]
    assert [e["raw"] for e in entries] == ['{"hello":"world"}', "42"]
    assert entries[0]["reason"].startswith("items[1]:")


def test_body_over_the_limit_is_413_even_when_streamed(tmp_path: Path) -> None:
    big = event_list(events(400, seed=2))
    assert len(big) > 4096

    async def chunks() -> Any:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=big, headers=AUTH)
        assert r.status_code == 413
        assert r.json()["error"]["reason"] == "PayloadTooLarge"
        r = await c.post("/audit/webhook", content=chunks(), headers=AUTH)  # no Content-Length
        assert r.status_code == 413
        assert app.state.webhook.inflight_bytes == 0

    store = run_app(tmp_path, scenario, max_body_bytes=4096)
    assert count(store) == 0


def test_overload_answers_503_with_retry_after(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hold(records: list[Record]) -> list[Record]:
        entered.set()
        release.wait(10)
        return records

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        first = asyncio.create_task(
            c.post("/audit/webhook", content=event_list(events(5, seed=1)), headers=AUTH)
        )
        while not entered.is_set():
            await asyncio.sleep(0.01)
        r = await c.post("/audit/webhook", content=event_list(events(5, seed=2)), headers=AUTH)
        assert r.status_code == 503
        assert r.headers["retry-after"] == "7"
        assert r.json()["error"]["reason"] == "Overloaded"
        release.set()
        assert (await first).status_code == 200
        r = await c.post("/audit/webhook", content=event_list(events(5, seed=2)), headers=AUTH)
        assert r.status_code == 200

    store = run_app(
        tmp_path, scenario, transforms=[hold], max_pending_batches=1, retry_after_secs=7
    )
    assert count(store) == 10


def test_transforms_run_before_storing(tmp_path: Path) -> None:
    def only_gets(records: list[Record]) -> list[Record]:
        return [r for r in records if r.event.verb == "get"]

    evs = events(100, seed=4)

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.post("/audit/webhook", content=event_list(evs), headers=AUTH)
        assert r.status_code == 200

    store = run_app(tmp_path, scenario, transforms=[only_gets])
    assert count(store) == sum(1 for e in evs if e.verb == "get") > 0
    assert count(store, "verb <> 'get'") == 0


def test_write_and_read_permissions_give_403(tmp_path: Path) -> None:
    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        reader = {"Authorization": "Bearer r3ader", "Content-Type": "application/json"}
        r = await c.post("/audit/webhook", content=event_list(events(2)), headers=reader)
        assert r.status_code == 403
        assert r.json()["error"]["reason"] == "Forbidden"
        r = await c.post("/api/v1/sql", json={"sql": "select 1 AS x"}, headers=AUTH)
        assert r.status_code == 403
        r = await c.post("/api/v1/sql", json={"sql": "select 1 AS x"}, headers=reader)
        assert r.json() == {"columns": ["x"], "rows": [[1]], "truncated": False}

    run_app(
        tmp_path,
        scenario,
        tokens=[f"prod={TOKEN}", "analyst=r3ader"],
        write_identities=["prod"],
        read_identities=["analyst"],
    )


def test_query_api(tmp_path: Path) -> None:
    evs = events(200, seed=9)

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        assert (await c.post("/audit/webhook", content=event_list(evs), headers=AUTH)).is_success
        r = await c.post(
            "/api/v1/sql",
            json={"sql": "SELECT count(*) AS n FROM events WHERE cluster = ?", "params": ["prod"]},
            headers=AUTH,
        )
        assert r.json()["rows"] == [[200]]
        r = await c.get("/api/v1/events", params={"verb": "get", "limit": 3}, headers=AUTH)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["rows"]) == min(3, sum(1 for e in evs if e.verb == "get"))
        verb = body["columns"].index("verb")
        assert {row[verb] for row in body["rows"]} <= {"get"}
        r = await c.post("/api/v1/sql", json={"sql": "SELECT * FROM nope"}, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"]["reason"] == "QueryError"
        r = await c.post(
            "/api/v1/sql", json={"sql": "SELECT * FROM read_text('/etc/hostname')"}, headers=AUTH
        )
        assert r.status_code == 400
        r = await c.post("/api/v1/sql", content=b"{", headers=AUTH)
        assert r.status_code == 400
        r = await c.get("/api/v1/events", params={"colour": "red"}, headers=AUTH)
        assert r.status_code == 400 and "colour" in r.json()["error"]["message"]

    run_app(tmp_path, scenario, query_max_rows=1000)


def test_health_ready_and_metrics(tmp_path: Path) -> None:
    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        assert (await c.get("/readyz")).json() == {"status": "ready"}
        await c.post("/audit/webhook", content=event_list(events(20)), headers=AUTH)
        await c.post("/audit/webhook", content=b"x", headers=AUTH)
        text = (await c.get("/metrics")).text
        assert "kaudit_events_stored_total 20\n" in text
        assert 'kaudit_webhook_rejected_total{reason="MalformedBody"} 1\n' in text
        assert 'kaudit_webhook_requests_total{code="200"} 1\n' in text
        assert "kaudit_webhook_ack_seconds_count 1\n" in text
        assert 'kaudit_webhook_batch_events_bucket{le="50"} 1\n' in text
        assert "# TYPE kaudit_wal_backlog_bytes gauge" in text

    run_app(tmp_path, scenario)


ERROR_ROUTES = [
    ("GET", "/nope", None),
    ("GET", "/audit/webhook", None),
    ("POST", "/audit/webhook", {"Content-Type": "application/json"}),
    ("POST", "/api/v1/sql", AUTH),
    ("GET", "/api/v1/events?limit=x", AUTH),
]


@pytest.mark.parametrize(("method", "path", "headers"), ERROR_ROUTES)
def test_every_error_has_one_json_shape(
    tmp_path: Path, method: str, path: str, headers: dict[str, str] | None
) -> None:
    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        r = await c.request(method, path, headers=headers, content=b"")
        assert r.status_code >= 400
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        assert list(body) == ["error"]
        assert set(body["error"]) == {"status", "reason", "message"}
        assert body["error"]["status"] == r.status_code
        assert body["error"]["message"]

    run_app(tmp_path, scenario)
