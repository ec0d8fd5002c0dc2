"""``kaudit setup certs``: a CA, a server and a client certificate for trying kaudit out.

The server certificate carries the names the apiserver will dial (DNS names and IP
addresses, as subjectAltNames); the client certificate's CN is the identity kaudit
gives the events it sends (the ``cluster`` column). Keys are ECDSA P-256, written
0600 in a 0700 directory. For production use your own PKI.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kaudit.errors import ConfigError

FILES = ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")


@dataclass(frozen=True)
class CertSet:
    directory: Path
    hosts: tuple[str, ...]
    client_name: str

    def path(self, name: str) -> Path:
        return self.directory / name


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kaudit"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _sans(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_certs(
    directory: Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    client_name: str = "cluster",
    *,
    days: int = 365,
    force: bool = False,
    now: datetime | None = None,
) -> CertSet:
    """Write a CA, a server and a client certificate (and keys) into ``directory``."""
    if not hosts:
        raise ConfigError("--host: at least one DNS name or IP address is needed")
    if not client_name.strip():
        raise ConfigError("--client-name: must not be empty")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    existing = [f for f in FILES if (directory / f).exists()]
    if existing and not force:
        raise ConfigError(
            f"{directory}: {', '.join(existing)} already exist; use --force to replace them"
        )
    start = (now or datetime.now(UTC)) - timedelta(minutes=5)
    end = start + timedelta(days=days)

    ca_key = _key()
    ca_name = _name("kaudit CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, usage: x509.ObjectIdentifier, sans: x509.SubjectAlternativeName | None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        b = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans is not None:
            b = b.add_extension(sans, critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    server, server_key = leaf(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, _sans(hosts))
    client, client_key = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    pem = serialization.Encoding.PEM
    _write(directory / "ca.crt", ca.public_bytes(pem), 0o644)
    _write(directory / "ca.key", _pem_key(ca_key), 0o600)
    _write(directory / "server.crt", server.public_bytes(pem), 0o644)
    _write(directory / "server.key", _pem_key(server_key), 0o600)
    _write(directory / "client.crt", client.public_bytes(pem), 0o644)
    _write(directory / "client.key", _pem_key(client_key), 0o600)
    return CertSet(directory, hosts, client_name)


__all__ = ["FILES", "CertSet", "make_certs"]
