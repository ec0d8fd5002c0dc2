"""The single-writer lock: ``writer.lock``, held with ``flock`` for the writer's lifetime.

The holder writes its pid into the file so a second writer can say who holds it.
The kernel releases the lock when the holder dies, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from kaudit.errors import StoreLockedError
from kaudit.store.layout import FILE_MODE, LOCK, io_error


class WriterLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise io_error(exc, self.path, "open the writer lock") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise StoreLockedError(
                f"{root}: the store is locked by another writer ({who}); one writer at a "
                "time: stop it, or query the store read-only instead"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


__all__ = ["WriterLock"]
