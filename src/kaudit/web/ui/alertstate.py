"""Acknowledge / suppress state of alerts, kept by the dashboard under ``<store>/ui/``.

Alerts themselves are immutable (:class:`kaudit.detect.alert.AlertStore`); what a
person decided about one is appended to ``<store>/ui/alert-state.jsonl`` (dir 0700,
file 0600) as ``{"id", "state", "by", "at", "note"}``, the last entry for an id
winning. ``state`` is ``acknowledged``, ``suppressed`` or ``open`` (reopened).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from kaudit.errors import StoreError

UI_DIR: Final = "ui"
STATE_FILE: Final = "alert-state.jsonl"
STATES: Final = ("open", "acknowledged", "suppressed")
MAX_NOTE: Final = 2000


class Decision(msgspec.Struct, frozen=True):
    id: str
    state: str
    by: str
    at: str
    note: str = ""


@dataclass(slots=True)
class AlertStates:
    """The decisions about alerts in one store (read on every call: several
    processes may share a store)."""

    store_path: Path
    _lock: threading.Lock

    @classmethod
    def for_store(cls, store_path: str | os.PathLike[str]) -> AlertStates:
        return cls(Path(store_path), threading.Lock())

    @property
    def path(self) -> Path:
        return self.store_path / UI_DIR / STATE_FILE

    def read(self) -> dict[str, Decision]:
        out: dict[str, Decision] = {}
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return out
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read alert states: {exc.strerror}") from None
        dec = msgspec.json.Decoder(Decision)
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = dec.decode(line)
            except msgspec.DecodeError as exc:
                raise StoreError(f"{self.path}:{n}: not an alert state: {exc}") from None
            out[d.id] = d
        return out

    def set(self, alert_id: str, state: str, by: str, note: str = "") -> Decision:
        if state not in STATES:
            raise ValueError(f"state: {state!r}: expected one of {', '.join(STATES)}")
        d = Decision(
            alert_id,
            state,
            by,
            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            note[:MAX_NOTE],
        )
        line = msgspec.json.encode(d) + b"\n"
        with self._lock:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StoreError(
                    f"{self.path}: cannot record alert state: {exc.strerror}"
                ) from None
        return d


def state_dict(d: Decision | None) -> dict[str, Any]:
    if d is None:
        return {"state": "open", "by": None, "at": None, "note": ""}
    return {"state": d.state, "by": d.by, "at": d.at, "note": d.note}


__all__ = ["STATES", "AlertStates", "Decision", "state_dict"]
