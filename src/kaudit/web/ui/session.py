"""Dashboard sessions and CSRF tokens.

A session is created by logging in with a bearer token (the same tokens as the API).
The cookie holds ``<session id>.<HMAC-SHA256 of it>`` under a random key drawn when
the process starts: a cookie cannot be forged, and every session ends with the
process. The cookie is ``HttpOnly``, ``SameSite=Strict``, ``Path=/`` and ``Secure``
over TLS. Sessions expire after :data:`SESSION_TTL_SECS`.

CSRF: every state-changing form carries ``csrf``, an HMAC of the session id under
another purpose; the login form (no session yet) uses a double-submit cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Final

from kaudit.web.auth import Identity

COOKIE: Final = "kaudit_session"
LOGIN_CSRF_COOKIE: Final = "kaudit_login_csrf"
SESSION_TTL_SECS: Final = 12 * 3600
MAX_SESSIONS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    identity: Identity
    expires: float


class Sessions:
    """In-memory sessions signed with a per-process key."""

    def __init__(self, key: bytes | None = None, ttl_secs: float = SESSION_TTL_SECS) -> None:
        self._key = key or secrets.token_bytes(32)
        self.ttl_secs = ttl_secs
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def create(self, identity: Identity) -> tuple[Session, str]:
        """A new session and its cookie value."""
        sid = secrets.token_urlsafe(32)
        s = Session(sid, identity, time.monotonic() + self.ttl_secs)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._expire()
            if len(self._sessions) >= MAX_SESSIONS:  # still full: drop the oldest
                oldest = min(self._sessions.values(), key=lambda x: x.expires)
                self._sessions.pop(oldest.id, None)
            self._sessions[sid] = s
        return s, f"{sid}.{self._mac('session', sid)}"

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, v in self._sessions.items() if v.expires <= now]:
            del self._sessions[sid]

    def get(self, cookie: str | None) -> Session | None:
        """The live session of a cookie value, or ``None`` (bad signature, unknown, expired)."""
        if not cookie:
            return None
        sid, sep, mac = cookie.rpartition(".")
        if not sep or not hmac.compare_digest(mac, self._mac("session", sid)):
            return None
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if s.expires <= time.monotonic():
                del self._sessions[sid]
                return None
        return s

    def end(self, cookie: str | None) -> None:
        s = self.get(cookie)
        if s is not None:
            with self._lock:
                self._sessions.pop(s.id, None)

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def check_csrf(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session_id))

    def login_nonce(self) -> str:
        return secrets.token_urlsafe(24)


__all__ = ["COOKIE", "LOGIN_CSRF_COOKIE", "SESSION_TTL_SECS", "Session", "Sessions"]
