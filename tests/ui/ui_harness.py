"""Dashboard test helpers: a store of generated traffic with alerts, an in-process client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kaudit.config import load_config
from kaudit.detect.alert import Alert, AlertStore
from kaudit.model import Event
from kaudit.model.codec import decode_event
from kaudit.store import Store, open_store
from kaudit.traffic import Traffic

TOKEN = "ui-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_EVENTS = 4000


@dataclass
class UIStore:
    store: Store
    path: Path
    alerts: list[Alert]


def make_alerts(store: Store) -> list[Alert]:
    """Two alerts about real stored requests (secret reads and an impersonation)."""
    rows = store.query(
        "SELECT audit_id, ts, username, source_ip, verb, resource, namespace, name, cluster "
        "FROM events WHERE stage = 'ResponseComplete' AND resource = 'secrets' "
        "ORDER BY ts LIMIT 3"
    ).to_pylist()
    imp = store.query(
        "SELECT audit_id, ts, username FROM events WHERE impersonated_user IS NOT NULL "
        "AND stage = 'ResponseComplete' ORDER BY ts LIMIT 1"
    ).to_pylist()
    assert rows and imp, "the generated traffic has secret reads and an impersonation"

    def iso(t: Any) -> str:
        return str(t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

    return [
        Alert(
            id="a" * 32,
            rule_id="secret-read",
            severity="medium",
            title="Secret read",
            first_ts=iso(rows[0]["ts"]),
            last_ts=iso(rows[-1]["ts"]),
            username=rows[0]["username"],
            source_ip=rows[0]["source_ip"],
            verb=rows[0]["verb"],
            resource="secrets",
            namespace=rows[0]["namespace"],
            name=rows[0]["name"],
            cluster=rows[0]["cluster"],
            count=len(rows),
            audit_ids=[r["audit_id"] for r in rows],
        ),
        Alert(
            id="b" * 32,
            rule_id="impersonation-privileged",
            severity="high",
            title="Impersonation of a privileged identity",
            first_ts=iso(imp[0]["ts"]),
            last_ts=iso(imp[0]["ts"]),
            username=imp[0]["username"],
            audit_ids=[imp[0]["audit_id"]],
            mitre=["T1078"],
        ),
    ]


def configmap_changes() -> list[Event]:
    """alice creates configmap shop/app-config, then changes one key (bodies recorded)."""

    def ev(n: int, verb: str, code: int, data: dict[str, str]) -> Event:
        obj = {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"name": "app-config", "namespace": "shop", "resourceVersion": str(n)},
            "data": data,
        }
        uri = "/api/v1/namespaces/shop/configmaps" + ("" if verb == "create" else "/app-config")
        doc = {
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "RequestResponse",
            "auditID": f"00000000-0000-4000-8000-00000000000{n}",
            "stage": "ResponseComplete",
            "requestURI": uri,
            "verb": verb,
            "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": ["203.0.113.7"],
            "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/abcdef",
            "objectRef": {
                "resource": "configmaps",
                "namespace": "shop",
                "name": "app-config",
                "apiVersion": "v1",
            },
            "responseStatus": {"metadata": {}, "code": code},
            "requestObject": obj,
            "responseObject": obj,
            "requestReceivedTimestamp": f"2025-03-03T09:0{n}:00.000000Z",
            "stageTimestamp": f"2025-03-03T09:0{n}:00.012000Z",
            "annotations": {"authorization.k8s.io/decision": "allow"},
        }
        return decode_event(json.dumps(doc).encode(), "configmap_changes")

    return [
        ev(1, "create", 201, {"mode": "blue", "replicas": "2"}),
        ev(2, "update", 200, {"mode": "green", "replicas": "2", "debug": "true"}),
    ]


def build_store(path: Path, n: int = N_EVENTS) -> UIStore:
    store = open_store(path)
    tr = Traffic(seed=9, rate_per_s=3)
    with store.writer() as w:
        events = list(tr.events(n))
        w.append_events(events[: n // 2] + configmap_changes(), cluster="prod")
        w.flush()
        w.append_events(events[n // 2 :], cluster="prod")  # left in the WAL tail
    alerts = make_alerts(store)
    AlertStore(store.path).add(alerts)
    return UIStore(store, store.path, alerts)


@pytest.fixture(scope="session")
def ui_store(tmp_path_factory: pytest.TempPathFactory) -> UIStore:
    return build_store(tmp_path_factory.mktemp("ui") / "store")


@pytest.fixture
def fresh_store(tmp_path: Path) -> UIStore:
    """A store of its own, for tests that change alert states."""
    return build_store(tmp_path / "store", n=1500)


def ui_app(store: Store, **flags: object) -> Any:
    from kaudit.cli.ui import build_ui_app

    flags.setdefault("tokens", [f"admin={TOKEN}"])
    config = load_config(None, env={}, flags={"store_path": str(store.path), **flags})
    return build_ui_app(config, store)


class Client:
    """A synchronous client of an ASGI app in process (httpx's ASGI transport), keeping
    cookies between requests and never following redirects."""

    def __init__(self, app: Any, base_url: str = "http://kaudit.test") -> None:
        self.app = app
        self.base_url = base_url
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(
                transport=transport, base_url=self.base_url, cookies=self.cookies
            ) as c:
                r = await c.request(method, path, **kw)
                self.cookies = httpx.Cookies(c.cookies)
                return r

        return asyncio.run(go())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


@pytest.fixture
def client(ui_store: UIStore) -> Iterator[Client]:
    yield Client(ui_app(ui_store.store))
