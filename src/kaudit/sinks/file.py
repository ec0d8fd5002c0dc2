"""Alerts appended to a JSON Lines file (created 0600, fsynced per batch)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from kaudit.detect.alert import Alert
from kaudit.errors import SinkError
from kaudit.sinks import new_counters


class FileSink:
    def __init__(self, name: str = "file", *, path: str, fsync: bool = True) -> None:
        self.name = name
        self.path = Path(path)
        self.fsync = fsync
        self.counters = new_counters()

    def send(self, alerts: Sequence[Alert]) -> None:
        data = "".join(json.dumps(a.to_dict(), separators=(",", ":")) + "\n" for a in alerts)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data.encode())
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SinkError(f"sink {self.name}: {self.path}: {exc.strerror}") from None

    def close(self) -> None:
        pass
