"""Where things live in a store directory, and how files get there safely.

::

    <store>/
      events/date=2024-05-06/hour=07/<segment-id>.parquet   Parquet segments (zstd)
      wal/<segment-id>.wal                                   write-ahead log files
      manifest.jsonl                                         hash-chained segment ledger
      writer.lock                                            the single-writer lock

Directories are created 0700 and files 0600: audit events are sensitive. Every
file a reader may see is written under a temporary name (``.tmp-...``), fsynced
and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from pathlib import Path
from typing import Final

from kaudit.errors import StoreError, StoreFullError

EVENTS_DIR: Final = "events"
WAL_DIR: Final = "wal"
MANIFEST: Final = "manifest.jsonl"
LOCK: Final = "writer.lock"
TMP_PREFIX: Final = ".tmp-"
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def new_id() -> str:
    """A segment id unique across processes and hosts: UTC time (sortable) + 64 random bits."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    return f"{stamp}{now % 1_000_000_000:09d}Z-{secrets.token_hex(8)}"


def partition_dir(date: str, hour: int) -> str:
    """The relative directory of a partition: ``events/date=YYYY-MM-DD/hour=HH``."""
    return f"{EVENTS_DIR}/date={date}/hour={hour:02d}"


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700."""
    if path.is_dir():
        return
    try:
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            d.mkdir(mode=DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, path, "create directory") from None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` via a temporary name, fsync, rename and fsync the directory."""
    ensure_dir(path.parent)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise io_error(exc, path, "write") from None


def private_temp(path: Path) -> Path:
    """A new, empty file (0600) to write and then rename over ``path``.

    For derived files (caches) that readers write: the two directories above it are
    made 0700 first, and the name is unique to this process and call. Raises
    ``OSError`` (a read-only store, a full disk).
    """
    for d in (path.parent.parent, path.parent):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    return tmp


def io_error(exc: OSError, path: Path, what: str) -> StoreError:
    """The store error for an OS error: :class:`StoreFullError` when the disk is full."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFullError(
            f"{path}: cannot {what}: no space left on device; nothing acknowledged was "
            "lost, free some space (or apply retention) and retry"
        )
    return StoreError(f"{path}: cannot {what}: {exc.strerror or exc}")


__all__ = [
    "DIR_MODE",
    "EVENTS_DIR",
    "FILE_MODE",
    "LOCK",
    "MANIFEST",
    "TMP_PREFIX",
    "private_temp",
    "WAL_DIR",
    "ensure_dir",
    "fsync_dir",
    "io_error",
    "new_id",
    "partition_dir",
    "write_atomic",
]
