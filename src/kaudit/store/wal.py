"""The write-ahead log: where an append becomes durable before ``append`` returns.

A WAL file is a sequence of frames, one per appended batch::

    b"KAW1" | payload length (u64 LE) | CRC-32 of payload (u32 LE) | payload

The payload is the batch as an Arrow IPC stream of the flat schema: the raw event
bytes (``event``) and the cluster label of every record, plus the columns already
flattened, so the not-yet-flushed tail is queryable without decoding anything
again. Each frame is written with one ``write`` and fsynced before the append is
acknowledged. A frame cut short by a crash (or with a bad checksum) can only be
the unacknowledged tail: readers stop there, and the writer truncates it away
when it recovers.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pyarrow as pa

from kaudit.store.layout import FILE_MODE, fsync_dir, io_error

MAGIC: Final = b"KAW1"
_HEADER: Final = struct.Struct("<4sQI")
HEADER_SIZE: Final = _HEADER.size
_IPC_OPTIONS: Final = pa.ipc.IpcWriteOptions(compression="lz4")


def encode_frame(table: pa.Table) -> bytes:
    """One WAL frame holding ``table``."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as w:
        w.write_table(table)
    payload: bytes = sink.getvalue().to_pybytes()
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> pa.Table:
    with pa.ipc.open_stream(payload) as r:
        return r.read_all()


@dataclass(frozen=True, slots=True)
class WalContents:
    tables: list[pa.Table]
    valid_bytes: int  # length of the intact prefix
    total_bytes: int  # file length when read (> valid_bytes: a torn tail)


def iter_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each intact frame; stops at the first torn or bad one."""
    pos = 0
    n = len(data)
    while pos + HEADER_SIZE <= n:
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start = pos + HEADER_SIZE
        end = start + length
        if magic != MAGIC or end > n:
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            return
        yield end, payload
        pos = end


def read_wal(path: Path) -> WalContents:
    """Every intact batch of the WAL file at ``path`` (missing file: nothing)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return WalContents([], 0, 0)
    except OSError as exc:
        raise io_error(exc, path, "read") from None
    tables: list[pa.Table] = []
    valid = 0
    for end, payload in iter_frames(data):
        try:
            tables.append(decode_payload(payload))
        except pa.ArrowInvalid:
            break
        valid = end
    return WalContents(tables, valid, len(data))


class WalFile:
    """An open WAL file being appended to by the writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            fsync_dir(path.parent)
        except OSError as exc:
            raise io_error(exc, path, "open the write-ahead log") from None
        self.size = os.fstat(self._fd).st_size

    def append(self, frame: bytes) -> None:
        """Write ``frame`` and fsync. On failure the file is cut back to where it was."""
        before = self.size
        try:
            view = memoryview(frame)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, before)
                os.fsync(self._fd)
            except OSError:
                pass  # a torn tail is detected by its checksum and dropped
            raise io_error(exc, self.path, "append to the write-ahead log") from None
        self.size = before + len(frame)

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError as exc:
            raise io_error(exc, self.path, "truncate the write-ahead log") from None
        self.size = size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "WalContents",
    "WalFile",
    "decode_payload",
    "encode_frame",
    "iter_frames",
    "read_wal",
]
