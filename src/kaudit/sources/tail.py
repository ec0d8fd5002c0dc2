"""``tail``: follow a live audit log file without losing or repeating events.

A :class:`Tailer` follows one path, the way the apiserver's log backend writes it:

* **First start** (no checkpoint): the rotated backups already there (lumberjack's
  ``audit-<time>.log[.gz]``, oldest first) are read, then the live file.
* **Growth**: only complete lines are read; a partial last line waits for its end.
* **Rename rotation** (lumberjack, logrotate ``create``): the old file is read to its
  end through the still-open descriptor, then the new file from its start.
* **Copytruncate rotation** (logrotate ``copytruncate``): the file shrinks; what was
  written between the last read and the copy is read from the copy (found by its
  first bytes), then the live file from its start.
* **Checkpoints**: :meth:`Tailer.poll` returns records; once the caller has stored
  them durably it calls :meth:`Tailer.commit`, which writes the position atomically.
  After a restart reading resumes there: in the same file, or — if it was rotated
  meanwhile — in the backup that file became (same inode, or same first bytes),
  then the newer backups, then the live file. What was read but not committed is
  read again; the store drops those duplicates (same auditID, stage and bytes).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, cast

from kaudit.errors import DecodeError, InputError
from kaudit.model.documents import Adapter, ErrorHandler, Record, parse_line
from kaudit.sources.files import GZIP_MAGIC, backups_of

#: Bytes at the start of a file that identify it across renames and compression.
HEAD_BYTES = 256
_CHUNK = 1024 * 1024


@dataclass
class Position:
    """Where reading stands: a file (by identity) and an offset into its content."""

    name: str  # the path being read
    dev: int
    ino: int
    offset: int  # bytes of (decompressed) content consumed
    line: int  # lines consumed, for error locations
    head: str  # sha256 of the first HEAD_BYTES (or fewer) bytes, "" while empty
    head_len: int
    live: bool  # the followed path itself (not a backup)
    committed_at: float = 0.0


class _Open:
    def __init__(self, path: Path, *, live: bool) -> None:
        self.path = path
        self.live = live
        raw = open(path, "rb")  # noqa: SIM115 - closed in close()
        st = os.fstat(raw.fileno())
        self.dev, self.ino = st.st_dev, st.st_ino
        self.raw = raw
        magic = raw.read(2)
        raw.seek(0)
        self.stream: IO[bytes] = raw
        if magic == GZIP_MAGIC:
            self.stream = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
        self.compressed = magic == GZIP_MAGIC
        self.renamed = False  # the followed path now names another file

    def close(self) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


def _head_of(path: Path, n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:
        magic = f.read(2)
        f.seek(0)
        if magic == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return gz.read(n)
        return f.read(n)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if data else ""


class Tailer:
    """Follow ``path``; checkpoint in ``checkpoint`` (a small JSON file, 0600)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        checkpoint: str | os.PathLike[str],
        *,
        max_batch: int = 10_000,
        adapters: Sequence[Adapter] = (),
    ) -> None:
        self.path = Path(path)
        self.checkpoint_path = Path(checkpoint)
        self.max_batch = max_batch
        self.adapters = adapters
        self._queue: list[Path] = []  # backups still to read before the live file
        self._cur: _Open | None = None
        self._pos: Position | None = None
        self._partial = b""
        self._started = False
        self._carry: list[Record] = []
        self._last: Position | None = None  # the rotated file read to its end last
        self._listed: set[Path] | None = None  # backups known when we started
        self._on_error: ErrorHandler | None = None
        self.rotations = 0
        self.warnings: list[str] = []

    # --- public -------------------------------------------------------------------

    def poll(self, on_error: ErrorHandler | None = None) -> list[Record]:
        """Read what is new (complete lines, at most ``max_batch`` records)."""
        if not self._started:
            self._start()
        self._on_error = on_error
        out, self._carry = self._carry, []
        while len(out) < self.max_batch:
            if self._cur is None and not self._open_next():
                break
            cur, pos = self._cur, self._pos
            assert cur is not None and pos is not None
            if cur.live and self._rewritten(cur, pos):
                # Copied and truncated since the last poll, and written again: what is
                # at our offset now is new data. Recover the gap from the copy first.
                self.rotations += 1
                self._restart_live(cur)
                continue
            got, at_eof = self._read(on_error, self.max_batch - len(out))
            out.extend(got)
            if not at_eof:
                continue
            if not self._advance_after_eof():
                break
            out.extend(self._carry)
            self._carry = []
        return out

    def commit(self) -> None:
        """Record that everything :meth:`poll` returned so far is stored."""
        if self._pos is None:
            return
        self._pos.committed_at = time.time()
        tmp = self.checkpoint_path.with_name(self.checkpoint_path.name + ".tmp")
        self.checkpoint_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self._pos), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)

    def close(self) -> None:
        if self._cur is not None:
            self._cur.close()
            self._cur = None

    def __enter__(self) -> Tailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- start and resume ------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        saved = self._load_checkpoint()
        backups = self._backups()
        if saved is None:
            self._queue = backups
            self._listed = set(backups)
            return
        # Where did the checkpointed file go?
        if saved.live and self._same_file(self.path, saved):
            self._resume(self.path, saved, live=True)
            return
        for i, b in enumerate(backups):
            if self._same_file(b, saved):
                self._queue = backups[i + 1 :]
                self._resume(b, saved, live=False)
                return
        copy = self._find_copy(saved)
        if copy is not None:  # a copytruncate copy
            self._resume(copy, saved, live=False)
            return
        # Not found (deleted before it was read): read the backups
        # rotated since the checkpoint, then the live file.
        newer = [b for b in backups if b.stat().st_mtime >= saved.committed_at]
        self.warnings.append(
            f"{saved.name}: the file read before the restart is gone; resuming with "
            f"{len(newer)} newer backup(s) and the live file (events may be repeated, "
            "never skipped, unless that file was deleted before it was read)"
        )
        self._queue = newer

    def _load_checkpoint(self) -> Position | None:
        try:
            data = json.loads(self.checkpoint_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.checkpoint_path}: unreadable tail checkpoint ({exc}); move it away to "
                "start over from the backups"
            ) from None
        try:
            return Position(**data)
        except TypeError as exc:
            raise InputError(f"{self.checkpoint_path}: not a tail checkpoint: {exc}") from None

    def _same_file(self, path: Path, saved: Position) -> bool:
        """Is ``path`` the file ``saved`` was reading? By its first bytes when they are
        known (inodes are reused after a delete, and compression makes a new one)."""
        try:
            st = path.stat()
        except OSError:
            return False
        if not saved.head:
            return (st.st_dev, st.st_ino) == (saved.dev, saved.ino)
        try:
            head = _head_of(path, saved.head_len)
        except (OSError, EOFError, gzip.BadGzipFile):
            return False
        return _digest(head) == saved.head

    def _resume(self, path: Path, saved: Position, *, live: bool) -> None:
        cur = _Open(path, live=live)
        self._skip(cur, saved.offset)
        self._cur = cur
        self._pos = Position(
            str(path),
            cur.dev,
            cur.ino,
            saved.offset,
            saved.line,
            saved.head,
            saved.head_len,
            live,
        )
        if live and os.fstat(cur.raw.fileno()).st_size < saved.offset:
            # Truncated while we were away (copytruncate): start it again.
            self._restart_live(cur)

    @staticmethod
    def _skip(cur: _Open, offset: int) -> None:
        if cur.compressed:
            remaining = offset
            while remaining > 0:
                got = cur.stream.read(min(remaining, _CHUNK))
                if not got:
                    break
                remaining -= len(got)
        else:
            cur.raw.seek(offset)

    # --- reading -------------------------------------------------------------------

    def _open_next(self) -> bool:
        while True:
            if not self._queue and self._last is not None:
                self._queue = self._backups_after(self._last)
            path = self._queue.pop(0) if self._queue else self.path
            live = path == self.path
            if not live and self._listed is not None:
                self._listed.add(path)  # read now: not new when we reach the live file
            try:
                cur = _Open(path, live=live)
            except FileNotFoundError:
                if live:
                    return False
                continue  # a backup removed by retention before we got to it
            if live and self._last is not None:
                later = self._backups_after(self._last)
                if later:
                    # Rotated again while we were between files: those come first.
                    cur.close()
                    self._queue = later
                    continue
                self._last = None
            if live and self._listed is not None:
                # First start: a rotation between listing the backups and opening the
                # live file turned it into a backup we have not read.
                new = [b for b in self._backups() if b not in self._listed]
                if new:
                    cur.close()
                    self._listed.update(new)
                    self._queue = new
                    continue
                self._listed = None
            self._cur = cur
            self._pos = Position(str(path), cur.dev, cur.ino, 0, 0, "", 0, live)
            self._partial = b""
            return True

    def _backups(self) -> list[Path]:
        # From the directory, not from the live file: between a rotation's rename and
        # the new file it is missing, and the backups must not vanish with it.
        try:
            chain = backups_of(self.path)
        except OSError:
            return []
        return [i.path for i in chain if i.path is not None]

    def _backups_after(self, last: Position) -> list[Path]:
        backups = self._backups()
        for i, b in enumerate(backups):
            if self._same_file(b, last):
                return backups[i + 1 :]
        return []

    def _read(self, on_error: ErrorHandler | None, limit: int) -> tuple[list[Record], bool]:
        cur, pos = self._cur, self._pos
        assert cur is not None and pos is not None
        out: list[Record] = []
        while len(out) < limit:
            if b"\n" not in self._partial:
                chunk = cur.stream.read(_CHUNK)
                if not chunk:
                    return out, True
                self._partial += chunk
                continue
            data = self._partial
            end = data.rfind(b"\n")
            complete, rest = data[: end + 1], data[end + 1 :]
            self._note_head(complete)
            lines = complete.splitlines(keepends=True)
            for i, line in enumerate(lines):
                if len(out) >= limit:
                    self._partial = b"".join(lines[i:]) + rest
                    return out, False
                pos.line += 1
                pos.offset += len(line)
                out.extend(parse_line(line, pos.name, pos.line, on_error, self.adapters))
            self._partial = rest
        return out, False

    def _note_head(self, complete: bytes) -> None:
        pos = self._pos
        assert pos is not None
        if pos.head_len < HEAD_BYTES and pos.offset == 0:
            head = complete[:HEAD_BYTES]
            pos.head, pos.head_len = _digest(head), len(head)

    def _advance_after_eof(self) -> bool:
        """At the end of the current file: move on if it was rotated; False to wait."""
        cur, pos = self._cur, self._pos
        assert cur is not None and pos is not None
        if not cur.live:
            self._finish_partial_and_close()
            return True  # next backup, or the live file
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False  # between rename and re-create: wait
        if (st.st_dev, st.st_ino) != (cur.dev, cur.ino):
            if not cur.renamed:
                # Renamed away. The writer may have appended between our last read and
                # the rename: read the old file to its end once more, then move on.
                cur.renamed = True
                return True
            self.rotations += 1
            self._finish_partial_and_close()
            return True
        if st.st_size < pos.offset or self._rewritten(cur, pos):
            # Truncated (copytruncate); perhaps already written past our offset again,
            # which the size alone does not show: the first bytes do.
            self.rotations += 1
            self._restart_live(cur)
            return True
        return False

    @staticmethod
    def _rewritten(cur: _Open, pos: Position) -> bool:
        """Does the file we hold open no longer start with the bytes we read first?"""
        if not pos.head or cur.compressed:
            return False
        head = os.pread(cur.raw.fileno(), pos.head_len, 0)
        return _digest(head) != pos.head

    def _finish_partial_and_close(self) -> None:
        # A rotated file will not grow again: its unterminated last line is complete.
        cur, pos = self._cur, self._pos
        assert cur is not None and pos is not None
        if self._partial:
            pos.line += 1
            pos.offset += len(self._partial)
            self._carry.extend(
                parse_line(self._partial, pos.name, pos.line, self._on_error, self.adapters)
            )
            self._partial = b""
        cur.close()
        self._cur = None
        self._last = pos

    def _restart_live(self, cur: _Open) -> None:
        """The live file shrank (copytruncate): recover the tail from its copy."""
        pos = self._pos
        assert pos is not None
        copy = self._find_copy(pos)
        if copy is not None and copy.stat().st_size > pos.offset:
            self._queue.insert(0, self.path)  # after the copy's tail, the live file
            cur.close()
            c = _Open(copy, live=False)
            self._skip(c, pos.offset)
            self._cur = c
            self._pos = Position(
                str(copy), c.dev, c.ino, pos.offset, pos.line, pos.head, pos.head_len, False
            )
            self._partial = b""
            return
        cur.raw.seek(0)
        self._pos = Position(str(self.path), cur.dev, cur.ino, 0, 0, "", 0, True)
        self._partial = b""

    def _find_copy(self, pos: Position) -> Path | None:
        if not pos.head:
            return None
        parent = self.path.parent
        candidates = sorted(
            (p for p in parent.iterdir() if p != self.path and p.name.startswith(self.path.stem)),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for p in candidates:
            try:
                if _digest(_head_of(p, pos.head_len)) == pos.head:
                    return p
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
        return None


class TailSource:
    """A :class:`Tailer` as a source of ``kaudit serve``: poll, hand each batch to the
    sink (which returns once it is durable), then commit the position."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        *,
        cluster: str = "",
        poll_interval_secs: float = 0.5,
        max_batch: int = 10_000,
        on_error: ErrorHandler | None = None,
    ) -> None:
        self.name = f"tail:{path}"
        key = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:16]
        checkpoint = Path(state_dir) / f"{Path(path).name}-{key}.json"
        self.tailer = Tailer(path, checkpoint, max_batch=max_batch)
        self.cluster = cluster
        self.poll_interval_secs = poll_interval_secs
        self.on_error: ErrorHandler = on_error or (lambda err, raw: None)
        self.errors = 0  # bad lines
        self.failures = 0  # polls or stores that failed (retried)
        self.last_error = ""

    def counters(self) -> dict[str, int]:
        return {
            "bad_lines": self.errors,
            "failures": self.failures,
            "rotations": self.tailer.rotations,
        }

    def _count(self, err: DecodeError, raw: bytes) -> None:
        self.errors += 1
        self.on_error(err, raw)

    async def run(self, sink: Any) -> None:
        """Follow the file for ever. A failure (the store full or overloaded, a file that
        cannot be read) is logged and retried with backoff from the last committed
        position: nothing is skipped, and what was read but not stored is read again."""
        import asyncio
        import logging

        log = logging.getLogger("kaudit.serve")
        backoff = self.poll_interval_secs
        try:
            while True:
                try:
                    records = await asyncio.to_thread(self.tailer.poll, self._count)
                    if records:
                        await sink(records, cluster=self.cluster)
                        await asyncio.to_thread(self.tailer.commit)
                    else:
                        await asyncio.sleep(self.poll_interval_secs)
                    backoff = self.poll_interval_secs
                    self.last_error = ""
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - retried, never fatal
                    self.failures += 1
                    self.last_error = str(exc) or type(exc).__name__
                    log.warning(
                        "tail failed; retrying",
                        extra={"fields": {"source": self.name, "error": self.last_error}},
                    )
                    self.tailer.close()
                    self.tailer = Tailer(
                        self.tailer.path,
                        self.tailer.checkpoint_path,
                        max_batch=self.tailer.max_batch,
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
        finally:
            self.tailer.close()


__all__ = ["HEAD_BYTES", "Position", "TailSource", "Tailer"]
