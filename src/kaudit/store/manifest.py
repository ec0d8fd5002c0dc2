"""The manifest: an append-only, hash-chained ledger of every segment.

``manifest.jsonl`` holds one JSON object per line, one per change to the set of
segments (a flush, a compaction, a retention run)::

    {"seq": 3, "time": "...", "op": "flush", "wal": "<id>.wal",
     "add": [{"path": "events/date=.../hour=../<id>.parquet", "size": 123,
              "rows": 10, "sha256": "...", "min_ts": 1714979289000000,
              "max_ts": 1714979290000000}],
     "remove": [], "prev": "<hash of entry 2>", "hash": "<sha256 of this entry>"}

``hash`` is the SHA-256 of the entry's canonical JSON (sorted keys, compact)
without ``hash``; ``prev`` is the previous entry's ``hash`` (64 zeros for the
first). Changing, dropping or reordering a line breaks the chain; changing a
segment breaks its ``sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kaudit.store.layout import FILE_MODE, MANIFEST, io_error

GENESIS: Final = "0" * 64


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    path: str  # relative to the store, with "/" separators
    size: int
    rows: int
    sha256: str
    min_ts: int
    max_ts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "rows": self.rows,
            "sha256": self.sha256,
            "min_ts": self.min_ts,
            "max_ts": self.max_ts,
        }

    @property
    def partition(self) -> str:
        return self.path.rsplit("/", 1)[0]


@dataclass(slots=True)
class ManifestState:
    """The fold of every entry: the live segments and what was flushed."""

    segments: dict[str, SegmentInfo] = field(default_factory=dict)
    flushed_wals: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    last_hash: str = GENESIS
    seq: int = 0


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()


def _segment(d: dict[str, Any]) -> SegmentInfo:
    return SegmentInfo(
        str(d["path"]),
        int(d["size"]),
        int(d["rows"]),
        str(d["sha256"]),
        int(d.get("min_ts", 0)),
        int(d.get("max_ts", 0)),
    )


def apply(state: ManifestState, entry: dict[str, Any]) -> None:
    for p in entry.get("remove", ()):
        state.segments.pop(str(p), None)
        state.removed.add(str(p))
    for d in entry.get("add", ()):
        seg = _segment(d)
        state.segments[seg.path] = seg
        state.removed.discard(seg.path)
    if entry.get("wal"):
        state.flushed_wals.add(str(entry["wal"]))
    state.last_hash = str(entry.get("hash", ""))
    state.seq = int(entry.get("seq", state.seq))


def read_lines(root: Path) -> tuple[list[bytes], bool]:
    """The complete lines of the manifest and whether a torn (unterminated) tail follows."""
    try:
        data = (root / MANIFEST).read_bytes()
    except FileNotFoundError:
        return [], False
    except OSError as exc:
        raise io_error(exc, root / MANIFEST, "read") from None
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    return lines[:-1], torn


_CACHE: dict[Path, tuple[int, int, ManifestState]] = {}
_CACHE_LOCK = threading.Lock()


def load(root: Path) -> ManifestState:
    """The current state, for readers and the writer (no verification: see verify).

    The manifest only grows, so a process re-reads only the bytes appended since its
    last look (a file that shrank or was replaced is read again from the start).
    """
    path = root / MANIFEST
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return ManifestState()
    except OSError as exc:
        raise io_error(exc, path, "read") from None
    key = path.resolve()
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    state = ManifestState()
    offset = 0
    if cached is not None and cached[0] == st.st_ino and cached[1] <= st.st_size:
        _, offset, base = cached
        state = _copy(base)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError as exc:
        raise io_error(exc, path, "read") from None
    end = data.rfind(b"\n") + 1
    _apply_lines(state, data[:end].split(b"\n")[:-1])
    with _CACHE_LOCK:
        _CACHE[key] = (st.st_ino, offset + end, _copy(state))
    return state


def _copy(s: ManifestState) -> ManifestState:
    return ManifestState(dict(s.segments), set(s.flushed_wals), set(s.removed), s.last_hash, s.seq)


def _apply_lines(state: ManifestState, lines: list[bytes]) -> None:
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # verify reports it
        if isinstance(entry, dict):
            apply(state, entry)


class Manifest:
    """The writer's handle: appends chained entries (fsynced) and keeps the state."""

    def __init__(self, root: Path) -> None:
        self.path = root / MANIFEST
        lines, torn = read_lines(root)
        if torn:
            # An entry cut short by a crash was never committed: drop it.
            good = sum(len(line) + 1 for line in lines)
            try:
                with open(self.path, "r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            except OSError as exc:
                raise io_error(exc, self.path, "repair") from None
        self.state = load(root)

    def append(
        self,
        op: str,
        add: Iterable[SegmentInfo] = (),
        remove: Iterable[str] = (),
        wal: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": self.state.seq + 1,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "op": op,
            "add": [s.to_json() for s in add],
            "remove": list(remove),
            "prev": self.state.last_hash,
        }
        if wal is not None:
            entry["wal"] = wal
        entry.update(extra)
        entry["hash"] = entry_hash(entry)
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
            try:
                before = os.fstat(fd).st_size
                try:
                    if os.write(fd, line) != len(line):
                        raise OSError(28, "short write")
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, before)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            raise io_error(exc, self.path, "append to the manifest") from None
        apply(self.state, entry)
        return entry


__all__ = [
    "GENESIS",
    "Manifest",
    "ManifestState",
    "SegmentInfo",
    "apply",
    "entry_hash",
    "load",
    "read_lines",
]
