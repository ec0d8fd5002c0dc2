"""Fixtures for ``kaudit serve``: events, certificates, in-process and real servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaudit.config import ServeConfig, load_config
from kaudit.model.codec import encode_event_list
from kaudit.model.types import Event
from kaudit.store import open_store
from kaudit.traffic import generate
from kaudit.web.server import build_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def events(n: int, seed: int = 1) -> list[Event]:
    return list(generate(n, seed=seed))


def event_list(evs: list[Event]) -> bytes:
    return encode_event_list(evs)


def config(**flags: object) -> ServeConfig:
    flags.setdefault("tokens", [f"prod={TOKEN}"])
    return load_config(None, env={}, flags=flags)


def run_app(
    tmp_path: Path,
    scenario: Callable[[httpx.AsyncClient, Any], Awaitable[None]],
    *,
    transforms: list[Any] | None = None,
    **flags: object,
) -> Any:
    """Run ``scenario(client, app)`` against the real app (lifespan included) and store."""
    flags.setdefault("store_path", str(tmp_path / "store"))
    cfg = config(**flags)
    store = open_store(cfg.store_path)
    app = build_app(cfg, store, transforms=transforms or [])

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://kaudit") as c:
                await scenario(c, app)

    asyncio.run(main())
    return store


# --- certificates ------------------------------------------------------------------


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # signed by a different CA
    other_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(issuer_key or key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca_key, other_ca_key = _key(), _key()
    ca = _cert("kaudit-test-ca", ca_key, ca=True)
    other_ca = _cert("other-ca", other_ca_key, ca=True)
    server_key, client_key, other_key = _key(), _key(), _key()
    server = _cert("localhost", server_key, ca.subject, ca_key, server=True)
    client = _cert("cluster-east", client_key, ca.subject, ca_key)
    other = _cert("intruder", other_key, other_ca.subject, other_ca_key)
    c = Certs(
        d / "ca.pem",
        d / "server.pem",
        d / "server.key",
        d / "client.pem",
        d / "client.key",
        d / "other.pem",
        d / "other.key",
    )
    _pem(c.ca, ca)
    _pem(c.server_cert, server)
    _pem(c.client_cert, client)
    _pem(c.other_cert, other)
    _write_key(c.server_key, server_key)
    _write_key(c.client_key, client_key)
    _write_key(c.other_key, other_key)
    return c


# --- a real server process -----------------------------------------------------------


class ServerProcess:
    """``kaudit serve`` in a subprocess on a free port; ``url`` once it listens."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log: list[dict[str, Any]] = []

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kaudit", "serve", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError(f"kaudit serve exited with {self.proc.wait()}")
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.log.append(entry)
            if entry.get("msg") == "kaudit serve listening":
                self.port = int(entry["port"])
                return self
        raise AssertionError("kaudit serve did not start listening")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(args: list[str], env: dict[str, str] | None = None) -> ServerProcess:
        s = ServerProcess(["--port", "0", *args], env)
        started.append(s)
        return s

    yield make
    for s in started:
        if s.proc is not None:
            s.kill()
            if s.proc.stderr is not None:
                s.proc.stderr.close()
