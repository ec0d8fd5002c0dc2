"""Real processes and sockets: crashes, a full disk, TLS and client certificates."""

from __future__ import annotations

import errno
import os
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_harness import AUTH, TOKEN, Certs, ServerProcess, event_list, events, run_app

from kaudit.model.types import Event
from kaudit.store import open_store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiserverClient:
    """Sends EventList batches like the apiserver's webhook: the identical body again on
    any failure, with backoff, until it is acknowledged."""

    def __init__(self, url: str, batches: list[bytes], **client_kw: Any) -> None:
        self.url = url
        self.batches = batches
        self.client_kw = client_kw
        self.acked: list[int] = []
        self.attempts = 0

    def run(self, deadline: float) -> None:
        with httpx.Client(timeout=30, **self.client_kw) as c:
            for i, body in enumerate(self.batches):
                delay = 0.05
                while time.monotonic() < deadline:
                    self.attempts += 1
                    try:
                        r = c.post(self.url, content=body, headers=AUTH)
                    except httpx.TransportError:
                        r = None
                    if r is not None and r.status_code == 200:
                        self.acked.append(i)
                        break
                    time.sleep(delay)
                    delay = min(delay * 1.5, 0.5)


def keys(evs: list[Event]) -> set[tuple[str, str]]:
    return {(e.audit_id, e.stage) for e in evs}


@pytest.mark.slow
def test_sigkill_during_a_stream_loses_no_acknowledged_event(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    port = free_port()
    args = ["--store", str(store_dir), "--token", f"prod={TOKEN}", "--port", str(port)]
    # Long enough streams (30 batches a client) that every kill lands with requests in
    # flight: some between the WAL fsync and the 200, which the client then resends.
    streams = [events(12000, seed=s) for s in (21, 22, 23)]
    clients = [
        ApiserverClient(
            f"http://127.0.0.1:{port}/audit/webhook?timeout=30s",
            [event_list(evs[i : i + 400]) for i in range(0, len(evs), 400)]
            + [event_list(evs[1200:1600])],  # a batch sent again later (a late retry)
        )
        for evs in streams
    ]
    rng = random.Random(1234)
    server = ServerProcess(args).start()
    deadline = time.monotonic() + 120
    threads = [threading.Thread(target=c.run, args=(deadline,)) for c in clients]
    for t in threads:
        t.start()
    kills = 0
    try:
        while any(t.is_alive() for t in threads) and kills < 8:
            time.sleep(rng.uniform(0.05, 0.4))
            server.kill()
            kills += 1
            server.stop()
            server = ServerProcess(args).start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert kills >= 4, "the kills must land during the stream"
    for c in clients:
        assert c.acked == list(range(len(c.batches))), "every batch is eventually acknowledged"
    store = open_store(store_dir, create=False)
    t = store.query("SELECT audit_id, stage FROM events")
    stored = list(zip(t["audit_id"].to_pylist(), t["stage"].to_pylist(), strict=True))
    expected = set().union(*(keys(evs) for evs in streams))
    assert len(stored) == len(set(stored)), "stored exactly once"
    assert set(stored) == expected


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return r.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool], Any]]:
    """A store on a real 4 MiB tmpfs when mounting is possible; otherwise ENOSPC is
    injected into the WAL write (a full disk cannot be produced safely otherwise)."""
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "4m")
    filler = disk / "filler"
    full = {"on": False}
    if not mounted:
        disk.mkdir(exist_ok=True)
        from kaudit.store import wal

        real_append = wal.WalFile.append

        def append(self: Any, frame: bytes) -> None:
            if full["on"]:
                from kaudit.store.layout import io_error

                raise io_error(OSError(errno.ENOSPC, "No space left on device"), self.path, "w")
            real_append(self, frame)

        monkeypatch.setattr(wal.WalFile, "append", append)

    def set_full(on: bool) -> None:
        full["on"] = on
        if not mounted:
            return
        if on:
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        else:
            filler.unlink()

    yield set_full
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_disk_answers_503_and_loses_nothing_once_space_returns(
    tmp_path: Path, small_disk: Callable[[bool], None]
) -> None:
    evs = events(400, seed=31)
    body = event_list(evs)

    async def scenario(c: httpx.AsyncClient, app: Any) -> None:
        assert (
            await c.post("/audit/webhook", content=event_list(events(10)), headers=AUTH)
        ).is_success
        small_disk(True)
        r = await c.post("/audit/webhook", content=body, headers=AUTH)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "2"
        assert r.json()["error"]["reason"] == "StoreFull"
        assert (await c.get("/readyz")).status_code == 503
        small_disk(False)
        # Ready again before any write clears the flag: a readiness probe sends none.
        assert (await c.get("/readyz")).status_code == 200
        r = await c.post("/audit/webhook", content=body, headers=AUTH)  # the resend
        assert r.status_code == 200, r.text
        assert (await c.get("/readyz")).status_code == 200
        assert (
            'kaudit_webhook_rejected_total{reason="StoreFull"} 1' in (await c.get("/metrics")).text
        )

    store = run_app(tmp_path, scenario, store_path=str(tmp_path / "disk" / "store"))
    t = store.query("SELECT audit_id, stage FROM events")
    stored = list(zip(t["audit_id"].to_pylist(), t["stage"].to_pylist(), strict=True))
    assert len(stored) == len(set(stored)) == 410
    assert keys(evs) <= set(stored)


def _tls_context(certs: Certs, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def test_tls_with_tokens_and_optional_client_certificates(
    tmp_path: Path, certs: Certs, server_factory: Callable[..., ServerProcess]
) -> None:
    args = [
        "--store", str(tmp_path / "store"), "--tls-cert", str(certs.server_cert),
        "--tls-key", str(certs.server_key), "--client-ca", str(certs.ca),
        "--token", f"prod={TOKEN}",
    ]  # fmt: skip
    with server_factory(args) as srv:
        url = f"https://127.0.0.1:{srv.port}/audit/webhook"
        body = event_list(events(5, seed=41))
        with httpx.Client(verify=_tls_context(certs, None)) as c:
            r = c.post(url, content=body, headers=AUTH)
            assert r.status_code == 200, r.text
            r = c.post(url, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 401
        with httpx.Client(verify=_tls_context(certs, (certs.client_cert, certs.client_key))) as c:
            r = c.post(
                url,
                content=event_list(events(3, seed=42)),
                headers={"Content-Type": "application/json"},
            )
            assert r.status_code == 200, r.text
        with pytest.raises(httpx.TransportError):  # plain http to a TLS port
            httpx.post(f"http://127.0.0.1:{srv.port}/audit/webhook", content=body, headers=AUTH)
    store = open_store(tmp_path / "store", create=False)
    t = store.query("SELECT cluster, count(*) AS n FROM events GROUP BY cluster ORDER BY cluster")
    assert t.to_pylist() == [{"cluster": "cluster-east", "n": 3}, {"cluster": "prod", "n": 5}]


def test_client_certificate_without_tokens(
    tmp_path: Path, certs: Certs, server_factory: Callable[..., ServerProcess]
) -> None:
    args = [
        "--store", str(tmp_path / "store"), "--tls-cert", str(certs.server_cert),
        "--tls-key", str(certs.server_key), "--client-ca", str(certs.ca),
        "--host", "127.0.0.1",
    ]  # fmt: skip
    with server_factory(args) as srv:
        url = f"https://127.0.0.1:{srv.port}/audit/webhook"
        body = event_list(events(4, seed=43))
        headers = {"Content-Type": "application/json"}
        with httpx.Client(verify=_tls_context(certs, (certs.client_cert, certs.client_key))) as c:
            assert c.post(url, content=body, headers=headers).status_code == 200
        # No certificate: the application refuses (401); health probes still work.
        with httpx.Client(verify=_tls_context(certs, None)) as c:
            assert c.post(url, content=body, headers=headers).status_code == 401
            assert c.get(f"https://127.0.0.1:{srv.port}/healthz").status_code == 200
        # A certificate of another CA: refused at the handshake.
        with (
            httpx.Client(verify=_tls_context(certs, (certs.other_cert, certs.other_key))) as c,
            pytest.raises(httpx.TransportError),
        ):
            c.post(url, content=body, headers=headers)
    store = open_store(tmp_path / "store", create=False)
    assert store.query("SELECT DISTINCT cluster FROM events").to_pylist() == [
        {"cluster": "cluster-east"}
    ]


def test_non_loopback_without_auth_is_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "kaudit",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--store",
            str(tmp_path / "store"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        executable=None,
    )
    assert r.returncode == 78
    assert "not a loopback address" in r.stderr and "--insecure" in r.stderr
    assert not (tmp_path / "store").exists()


def test_startup_problems_are_one_clear_line(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    store = tmp_path / "store"
    first = server_factory(["--store", str(store)]).start()
    for args, expect in (
        (["--store", str(store), "--port", "0"], "the store is locked by another writer"),
        (["--store", str(tmp_path / "other"), "--port", str(first.port)], "cannot listen on"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "kaudit", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode in (1, 78), done.stderr
        assert expect in done.stderr
        assert "Traceback" not in done.stderr
