"""The single writer: append (durable on return), flush to segments, recover.

An append flattens the batch, drops what is already stored (:mod:`.dedup`),
writes one WAL frame and fsyncs it. An append with ``durable=False`` (a file import,
which can always be read again) skips the WAL: its rows are held in memory until the
next flush, and a crash before that loses them (importing the same file again stores
them, and nothing twice). A flush turns the current WAL file into one
Parquet segment per hour partition, named after the WAL file, records them in the
manifest (with the WAL's name) and then deletes the WAL file. Because segment
names come from the WAL's id, a flush interrupted at any point is simply redone
on the next start: the same names are overwritten, and a WAL the manifest already
records is deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import pyarrow as pa

from kaudit.errors import StoreError
from kaudit.model.codec import encode_event, gc_paused
from kaudit.model.documents import Record
from kaudit.model.types import Event
from kaudit.store.dedup import Deduper, mask_or_all
from kaudit.store.flatten import SCHEMA, flatten, flatten_events
from kaudit.store.layout import EVENTS_DIR, TMP_PREFIX, WAL_DIR, ensure_dir, fsync_dir, new_id
from kaudit.store.lock import WriterLock
from kaudit.store.manifest import Manifest, SegmentInfo
from kaudit.store.reader import wal_files
from kaudit.store.segments import partition_of, write_segments
from kaudit.store.wal import WalFile, encode_frame, read_wal

if TYPE_CHECKING:
    from kaudit.store import Store

log = logging.getLogger("kaudit.store")

_FLUSH_RETRY_SECS = 5.0
#: A flush is due once this many rows are pending, whatever the WAL's size: it bounds
#: the memory of appends that skip the WAL, and it makes an import's segments big
#: enough that compaction leaves them alone (see :mod:`kaudit.store.compact`).
FLUSH_MAX_ROWS = 200_000


@dataclass(frozen=True, slots=True)
class AppendResult:
    received: int
    stored: int
    duplicates: int


class Writer:
    """Holds the single-writer lock from creation until :meth:`close`.

    ``flush_in_background``: when True, a flush that is due (by size or age) writes
    the segments on a background thread while appends go on into a new WAL file.
    Parquet encoding releases the GIL, so decoding and encoding overlap on two
    cores. An append waits for the flush only if the new WAL file reaches
    ``flush_max_bytes`` (or :data:`FLUSH_MAX_ROWS` rows) first, which bounds memory to
    two WAL files' worth.
    :meth:`flush` and :meth:`close` are always synchronous. ``kaudit serve`` and
    ``kaudit ingest`` turn it on.
    """

    def __init__(self, store: Store) -> None:
        prefer_retaining_memory_pool()
        self.store = store
        self.root: Path = store.path
        self.settings = store.settings
        self.flush_in_background = False
        self._mutex = threading.RLock()
        self._lock = WriterLock(self.root)
        self._closed = False
        try:
            ensure_dir(self.root / WAL_DIR)
            ensure_dir(self.root / EVENTS_DIR)
            self.manifest = Manifest(self.root)
            self.dedup = Deduper(self.root, self.settings)
            self._pending: list[pa.Table] = []
            self._pending_rows = 0
            self._pending_since: float | None = None
            self._flush_failed_at: float | None = None
            # WAL files closed for appending whose segments are not in the manifest
            # yet: being written in the background, or waiting for a retry.
            self._closed_wals: list[tuple[Path, pa.Table]] = []
            self._flushing: threading.Thread | None = None
            self._flush_error: BaseException | None = None
            self._recover()
            self.dedup.warm(list(self.manifest.state.segments.values()))
            self._wal = WalFile(self.root / WAL_DIR / f"{new_id()}.wal")
        except BaseException:
            self._lock.release()
            raise
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="kaudit-store-flush", daemon=True)
        self._ticker.start()

    # --- appending -----------------------------------------------------------------

    def append(
        self, records: Iterable[Record], *, cluster: str = "", durable: bool = True
    ) -> AppendResult:
        """Store ``records``; durable (fsynced) when this returns.

        ``durable=False`` skips the write-ahead log: the rows are stored by the next
        flush (at the latest :meth:`close`), and lost if the process dies first.
        """
        with gc_paused():
            table = flatten(records, cluster)
            return self._append_table(table, durable)

    def append_table(
        self, table: pa.Table, *, durable: bool = True, keys: list[str] | None = None
    ) -> AppendResult:
        """Store rows already in the flat schema (:data:`kaudit.store.flatten.SCHEMA`).

        ``keys`` are their dedup keys when the caller has them
        (:func:`kaudit.store.dedup.keys_of`); otherwise they are computed here.
        """
        if table.schema != SCHEMA:
            raise ValueError("append_table: the table does not have the flat schema")
        if keys is not None and len(keys) != table.num_rows:
            raise ValueError(f"append_table: {table.num_rows} rows but {len(keys)} keys")
        return self._append_table(table, durable, keys)

    def append_events(self, events: Iterable[Event], *, cluster: str = "") -> AppendResult:
        """Store events; ``event`` is their exact apiserver encoding."""
        with gc_paused():
            evs = list(events)
            table = flatten_events(evs, [encode_event(ev)[:-1] for ev in evs], cluster)
            return self._append_table(table, True)

    def _append_table(
        self, table: pa.Table, durable: bool, keys: list[str] | None = None
    ) -> AppendResult:
        received = table.num_rows
        if received == 0:
            return AppendResult(0, 0, 0)
        busy = self._flushing
        if busy is not None and self._full():
            busy.join()  # the background flush has fallen behind: wait for it
        with self._mutex:
            self._check_open()
            mask, kept = self.dedup.check(table, self._segments_for_hours, keys)
            table = mask_or_all(table, mask)
            stored = table.num_rows
            if stored:
                if durable:
                    self._wal.append(encode_frame(table))
                self.dedup.commit(kept, self._wal.path.name)
                self._pending.append(table)
                self._pending_rows += stored
                if self._pending_since is None:
                    self._pending_since = time.monotonic()
            self._maybe_flush()
        return AppendResult(received, stored, received - stored)

    def _segments_for_hours(self, hour_set: set[int] | None) -> list[str]:
        """The segments of these hours' partitions (None: every segment)."""
        segs = self.manifest.state.segments.values()
        if hour_set is None:
            return [str(self.root / s.path) for s in segs]
        wanted = {partition_of(h) for h in hour_set}
        return [str(self.root / s.path) for s in segs if s.partition in wanted]

    # --- flushing ------------------------------------------------------------------

    def _due(self) -> bool:
        if self._closed_wals:
            return True  # a failed flush, to retry
        if not self._pending:
            return False
        if self._full():
            return True
        since = self._pending_since
        return since is not None and time.monotonic() - since >= self.settings.flush_max_age_secs

    def _full(self) -> bool:
        """Whether the open WAL file (or what is pending) has reached its flush size."""
        return (
            self._wal.size >= self.settings.flush_max_bytes or self._pending_rows >= FLUSH_MAX_ROWS
        )

    def _reap(self) -> None:
        """Collect the outcome of a finished background flush."""
        t = self._flushing
        if t is None or t.is_alive():
            return
        self._flushing = None
        exc, self._flush_error = self._flush_error, None
        if exc is not None:
            self._flush_failed_at = time.monotonic()
            log.warning("store flush failed (will retry): %s", exc)

    def _maybe_flush(self) -> None:
        self._reap()
        if self._flushing is not None or not self._due():
            return
        failed = self._flush_failed_at
        if failed is not None and time.monotonic() - failed < _FLUSH_RETRY_SECS:
            return
        if self.flush_in_background:
            self._rotate()
            t = threading.Thread(
                target=self._flush_closed_in_background,
                args=(list(self._closed_wals),),
                name="kaudit-store-segments",
                daemon=True,
            )
            self._flushing = t
            t.start()
            return
        try:
            self._flush()
        except StoreError as exc:
            # The batch is durable in the WAL; the flush is retried later.
            self._flush_failed_at = time.monotonic()
            log.warning("store flush failed (will retry): %s", exc)

    def maybe_flush(self) -> None:
        """Flush if the WAL is over ``flush_max_bytes`` or ``flush_max_age_secs``."""
        with self._mutex:
            if not self._closed:
                self._maybe_flush()

    def flush(self) -> None:
        """Write the WAL's batches to Parquet segments now."""
        self._quiesced(self._flush, check=True)

    def _quiesced(self, fn: Callable[[], None], *, check: bool) -> None:
        """Run ``fn`` under the mutex once no background flush is running."""
        while True:
            with self._mutex:
                if check:
                    self._check_open()
                t = self._flushing
                if t is None or not t.is_alive():
                    self._reap()
                    fn()
                    return
            t.join()

    def _rotate(self) -> None:
        """Close the WAL file for appending (keeping its batches for the flush)."""
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._wal.close()
        self._closed_wals.append((self._wal.path, table))
        self._pending = []
        self._pending_rows = 0
        self._pending_since = None
        self._wal = WalFile(self.root / WAL_DIR / f"{new_id()}.wal")

    def _flush(self) -> None:
        self._rotate()
        for path, table in list(self._closed_wals):
            infos = write_segments(self.root, path.stem, table, self.settings)
            self._record_flush(path, table, infos)
        self._flush_failed_at = None
        self._compact()

    def _flush_closed_in_background(self, items: list[tuple[Path, pa.Table]]) -> None:
        try:
            for path, table in items:
                infos = write_segments(self.root, path.stem, table, self.settings)
                with self._mutex:
                    self._record_flush(path, table, infos)
            with self._mutex:
                self._flush_failed_at = None
            self._compact(lock=self._mutex)
        except BaseException as exc:  # reported by _reap on the appending side
            self._flush_error = exc

    def _compact(self, lock: threading.RLock | None = None) -> None:
        """Merge the small segments of the hours that are over (compact_min_segments)."""
        if self.settings.compact_min_segments <= 0:
            return
        from kaudit.store.compact import compact

        # Hours that are over, by the newest data written rather than the wall clock:
        # an import of an old log compacts as it goes.
        with lock if lock is not None else contextlib.nullcontext():
            newest = max(self.dedup.buckets, default=None)
        if newest is None:
            return
        compact(
            self.root,
            self.manifest,
            self.settings,
            min_segments=self.settings.compact_min_segments,
            before_hour=newest - 1,
            lock=lock,
        )

    def _record_flush(self, path: Path, table: pa.Table, infos: list[SegmentInfo]) -> None:
        """Segments written: record them, forget the WAL file, apply retention."""
        self.manifest.append("flush", add=infos, wal=path.name, rows=table.num_rows)
        _unlink(path)
        self._closed_wals = [(p, t) for p, t in self._closed_wals if p != path]
        self.dedup.flushed(path.name)
        if self.settings.retention_keep_days > 0:
            from kaudit.store.retention import apply_retention

            cutoff = time.time() - self.settings.retention_keep_days * 86400
            apply_retention(self.root, self.manifest, cutoff)

    def _flush_wal(self, wal_path: Path, table: pa.Table) -> None:
        segment_id = wal_path.stem
        infos = write_segments(self.root, segment_id, table, self.settings)
        self.manifest.append("flush", add=infos, wal=wal_path.name, rows=table.num_rows)
        _unlink(wal_path)

    # --- recovery ------------------------------------------------------------------

    def _recover(self) -> None:
        """Finish whatever a crashed writer left: torn tails, unflushed WALs, temp files."""
        state = self.manifest.state
        events = self.root / EVENTS_DIR
        for tmp in list(events.rglob(f"{TMP_PREFIX}*")) + list(
            (self.root / WAL_DIR).glob(f"{TMP_PREFIX}*")
        ):
            _unlink(tmp)
        for rel in sorted(state.removed):
            if rel not in state.segments:
                _unlink(self.root / rel, missing_ok=True)
        for path in wal_files(self.root):
            if path.name in state.flushed_wals:
                _unlink(path)
                continue
            contents = read_wal(path)
            if contents.total_bytes > contents.valid_bytes:
                log.warning(
                    "%s: dropping a torn tail of %d bytes (never acknowledged)",
                    path,
                    contents.total_bytes - contents.valid_bytes,
                )
                with open(path, "r+b") as f:
                    f.truncate(contents.valid_bytes)
                    os.fsync(f.fileno())
            if not contents.tables:
                _unlink(path)
                continue
            self._flush_wal(path, pa.concat_tables(contents.tables))

    # --- lifecycle -----------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.maybe_flush()
            except Exception:  # pragma: no cover - logged, never fatal
                log.exception("store background flush failed")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.root}: the writer is closed")

    def close(self) -> None:
        """Flush what is pending and release the lock."""
        if self._closed:
            return
        self._stop.set()
        self._quiesced(self._close, check=False)
        if self._ticker is not threading.current_thread():
            self._ticker.join(timeout=5)

    def _close(self) -> None:
        if self._closed:
            return
        try:
            self._flush()
        finally:
            self._closed = True
            self._wal.close()
            if not self._pending:
                _unlink(self._wal.path, missing_ok=True)
            self._lock.release()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def prefer_retaining_memory_pool() -> None:
    """Allocate Arrow memory with jemalloc rather than pyarrow's default mimalloc.

    The write path allocates and frees tens of megabytes per batch (columns, WAL
    frames, sorted segments). mimalloc hands freed memory back to the kernel within
    milliseconds, so every batch faults its pages in again: on a 2-core VM that
    doubled the CPU time of flattening and Parquet encoding. jemalloc keeps freed
    pages for seconds and reuses them. Only the process-wide default is changed,
    only from mimalloc, and never when ``ARROW_DEFAULT_MEMORY_POOL`` chooses a pool.
    """
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    if pa.default_memory_pool().backend_name != "mimalloc":
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowException):  # a build without jemalloc
        return
    pa.set_memory_pool(pool)


def _unlink(path: Path, *, missing_ok: bool = False) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        if not missing_ok:
            return
    except OSError as exc:
        log.warning("%s: cannot remove: %s", path, exc)
        return
    try:
        fsync_dir(path.parent)
    except OSError:
        pass


__all__ = ["FLUSH_MAX_ROWS", "AppendResult", "Writer", "prefer_retaining_memory_pool"]
