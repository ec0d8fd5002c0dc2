"""The quarantine: where input that is not an audit event goes, with the reason why.

One JSON object per line::

    {"source": "audit.log", "line": 12, "reason": "...", "raw": "<original text>"}

``raw`` is the original line or record as text. When its bytes are not valid UTF-8,
``raw`` holds them with U+FFFD in place of the bad bytes and ``raw_base64`` holds the
exact bytes, so nothing is lost.

The file is created on the first quarantined record (no empty files), mode 0600,
in a directory created 0700; an existing file is appended to.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import msgspec

from kaudit.errors import DecodeError, KauditError, Location


class QuarantineError(KauditError):
    """The quarantine file cannot be written (so bad input would be lost)."""


class _Entry(msgspec.Struct):
    source: str
    line: int | None
    reason: str
    raw: str
    raw_base64: str | msgspec.UnsetType = msgspec.UNSET


_ENCODER = msgspec.json.Encoder()


def default_path(store_path: Path, now: datetime | None = None) -> Path:
    """``<store>/quarantine/<UTC time>.jsonl``, the time as ``2006-01-02T15-04-05.000Z``."""
    t = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = f"{t.strftime('%Y-%m-%dT%H-%M-%S')}.{t.microsecond // 1000:03d}Z"
    return store_path / "quarantine" / f"{stamp}.jsonl"


class Quarantine:
    """Collects bad input into a JSON Lines file at ``path`` (``None``: count only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0
        self._file: IO[bytes] | None = None

    def add(self, source: str, line: int | None, reason: str, raw: bytes) -> None:
        """Record one bad line or record."""
        self.count += 1
        if self.path is None:
            return
        try:
            text = raw.decode("utf-8")
            entry = _Entry(source, line, reason, text)
        except UnicodeDecodeError:
            entry = _Entry(
                source,
                line,
                reason,
                raw.decode("utf-8", "replace"),
                base64.b64encode(raw).decode("ascii"),
            )
        data = _ENCODER.encode(entry) + b"\n"
        try:
            self._open().write(data)
        except OSError as exc:
            raise QuarantineError(
                f"{self.path}: cannot write the quarantine: {exc.strerror or exc}"
            ) from None

    def add_error(self, err: DecodeError, raw: bytes) -> None:
        """An ``on_error`` handler for :func:`kaudit.model.documents.iter_records`."""
        loc = err.location or Location("")
        self.add(loc.source, loc.line, err.detail, raw)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            assert self.path is not None
            parent = self.path.parent
            if not parent.exists():
                parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "ab")
        return self._file

    def flush(self) -> None:
        """Make what was written so far durable (called before each store append)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Quarantine", "QuarantineError", "default_path"]
