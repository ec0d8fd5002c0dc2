"""Who is calling: bearer tokens and TLS client certificates.

* A bearer token (``Authorization: Bearer <secret>``) is compared in constant time
  against every configured token; the token's *name* is the identity.
* A client certificate verified against ``client_ca_file`` during the TLS handshake
  gives its subject's CN as the identity. The server puts the verified certificate
  into the ASGI scope's ``tls`` extension (``client_cert_name``, RFC 4514).
* Without any authentication configured (loopback, or ``insecure``), everyone is the
  anonymous identity, whose name is ``default_cluster``.

The identity's name becomes the ``cluster`` column of every event it sends.
Permissions: ``write`` (POST audit events) and ``read`` (the query API), each
optionally restricted to a list of identity names (403 for the others).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from kaudit.config import Secret
from kaudit.web.errors import HTTPError

Permission = Literal["write", "read"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kaudit"'}


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: ``name`` is the token name or certificate CN."""

    name: str
    method: Literal["token", "certificate", "anonymous"]


def common_name(rfc4514: str) -> str | None:
    """The CN of an RFC 4514 distinguished name, or ``None``."""
    try:
        name = x509.Name.from_rfc4514_string(rfc4514)
    except ValueError:
        return None
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


class Authenticator:
    """Authenticates ASGI requests and checks their permissions."""

    def __init__(
        self,
        tokens: Mapping[str, Secret] | None = None,
        *,
        client_certificates: bool = False,
        anonymous: str | None = None,
        writers: Iterable[str] = (),
        readers: Iterable[str] = (),
    ) -> None:
        # Digests of equal length make compare_digest's time independent of the secret.
        self._tokens = [
            (name, hashlib.sha256(secret.reveal().encode()).digest())
            for name, secret in (tokens or {}).items()
        ]
        self.client_certificates = client_certificates
        self.anonymous = anonymous
        self.writers = frozenset(writers)
        self.readers = frozenset(readers)

    @property
    def required(self) -> bool:
        return self.anonymous is None

    def _token(self, presented: str) -> str | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: str | None = None
        for name, expected in self._tokens:  # no early exit: every token is compared
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def authenticate(self, scope: Mapping[str, Any]) -> Identity:
        """The caller's identity, or :class:`HTTPError` 401."""
        auth = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                auth = value.decode("latin-1")
                break
        if auth is not None:
            scheme, _, credentials = auth.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise HTTPError(
                    401,
                    "the Authorization header must be 'Bearer <token>'",
                    headers=_CHALLENGE,
                )
            name = self._token(credentials.strip())
            if name is None:
                raise HTTPError(401, "the bearer token is not valid", headers=_CHALLENGE)
            return Identity(name, "token")
        if self.client_certificates:
            tls = (scope.get("extensions") or {}).get("tls") or {}
            subject = tls.get("client_cert_name")
            if subject:
                cn = common_name(subject)
                if not cn:
                    raise HTTPError(
                        401, f"the client certificate ({subject}) has no common name (CN)"
                    )
                return Identity(cn, "certificate")
        if self.anonymous is not None:
            return Identity(self.anonymous, "anonymous")
        expected = "a bearer token" + (
            " or a client certificate" if self.client_certificates else ""
        )
        raise HTTPError(401, f"authentication required: send {expected}", headers=_CHALLENGE)

    def authorize(self, identity: Identity, permission: Permission) -> None:
        """Raise :class:`HTTPError` 403 unless ``identity`` has ``permission``."""
        allowed = self.writers if permission == "write" else self.readers
        if allowed and identity.name not in allowed:
            what = "send audit events" if permission == "write" else "use the query API"
            raise HTTPError(403, f'identity "{identity.name}" is not allowed to {what}')

    def check(self, scope: Mapping[str, Any], permission: Permission) -> Identity:
        identity = self.authenticate(scope)
        self.authorize(identity, permission)
        return identity
