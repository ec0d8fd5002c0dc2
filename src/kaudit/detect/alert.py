"""Alerts: what a rule firing produces, and where they are kept (``<store>/alerts/``)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from kaudit.errors import StoreError
from kaudit.model.codec import format_micro, to_micros

ALERTS_DIR = "alerts"
ALERTS_FILE = "alerts.jsonl"
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


class Alert(msgspec.Struct, kw_only=True, frozen=True):
    """One alert. ``id`` is deterministic: the same events give the same id in a
    retro-hunt and in streaming, so storing twice keeps one."""

    id: str
    rule_id: str
    severity: str
    title: str
    first_ts: str
    last_ts: str
    username: str | None = None
    source_ip: str | None = None
    verb: str | None = None
    resource: str | None = None
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    cluster: str | None = None
    key: list[str | None] = msgspec.field(default_factory=list)
    count: int = 1
    audit_ids: list[str] = msgspec.field(default_factory=list)
    mitre: list[str] = msgspec.field(default_factory=list)

    @property
    def object(self) -> str:
        """``resource[/subresource] namespace/name`` (what the alert is about)."""
        res = self.resource or ""
        if self.subresource:
            res += "/" + self.subresource
        obj = "/".join(p for p in (self.namespace, self.name) if p)
        return " ".join(p for p in (res, obj) if p)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = msgspec.to_builtins(self)
        d["object"] = self.object
        return d


def alert_id(rule_id: str, parts: Sequence[object]) -> str:
    h = hashlib.sha256(rule_id.encode())
    h.update(msgspec.json.encode(list(parts)))
    return h.hexdigest()[:32]


_ENC = msgspec.json.Encoder()
_DEC = msgspec.json.Decoder(Alert)


class AlertStore:
    """Alerts as JSON Lines under ``<store>/alerts/`` (dir 0700, file 0600), no duplicates."""

    def __init__(self, store_path: str | os.PathLike[str]) -> None:
        self.dir = Path(store_path) / ALERTS_DIR
        self.path = self.dir / ALERTS_FILE
        self._ids: set[str] | None = None

    def _known(self) -> set[str]:
        if self._ids is None:
            self._ids = {a.id for a in self.read()}
        return self._ids

    def add(self, alerts: Iterable[Alert]) -> list[Alert]:
        """Append the alerts not already stored; returns those that were new."""
        known = self._known()
        new = []
        for a in alerts:
            if a.id not in known:
                known.add(a.id)
                new.append(a)
        if not new:
            return new
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"".join(_ENC.encode(a) + b"\n" for a in new))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write alerts: {exc.strerror}") from None
        return new

    def read(self) -> list[Alert]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, "rb") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    out.append(_DEC.decode(line))
                except msgspec.DecodeError as exc:
                    raise StoreError(f"{self.path}:{n}: not an alert: {exc}") from None
        return out

    def query(
        self,
        *,
        rules: Sequence[str] = (),
        min_severity: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
    ) -> list[Alert]:
        """Stored alerts filtered by rule id, minimum severity and last time, oldest first."""
        floor = SEVERITY_RANK.get(min_severity or "info", 0)
        out = []
        for a in self.read():
            if rules and a.rule_id not in rules:
                continue
            if SEVERITY_RANK.get(a.severity, 0) < floor:
                continue
            t = to_micros(a.last_ts)
            if since_us is not None and t < since_us:
                continue
            if until_us is not None and t >= until_us:
                continue
            out.append(a)
        out.sort(key=lambda a: (a.last_ts, a.rule_id, a.id))
        return out


def fmt_ts(us: int) -> str:
    s = format_micro(us)
    assert s is not None
    return s
