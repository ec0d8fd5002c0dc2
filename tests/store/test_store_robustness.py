"""Crashes, torn writes, a full disk, and readers next to a live writer process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import make_records  # noqa: I001

from kaudit.errors import StoreFullError
from kaudit.store import Store, StoreSettings, open_store
from kaudit.store.verify import verify

HERE = Path(__file__).resolve().parent

WRITER = """
import sys
sys.path.insert(0, sys.argv[2])
from store_helpers import make_records
from kaudit.store import StoreSettings, open_store
store = open_store(sys.argv[1], settings=StoreSettings(flush_max_bytes=200_000))
with store.writer() as w:
    i = 0
    while True:
        w.append(make_records(100, start=i))
        i += 100
        print(i, flush=True)
"""


def count(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM events").column(0)[0].as_py())


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_acknowledged_and_readers_never_block(
    tmp_path: Path,
) -> None:
    root = tmp_path / "s"
    store = open_store(root)
    acked = 0
    seen: list[int] = []
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(HERE)],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            while acked < 3000:
                line = proc.stdout.readline()
                assert line, "writer process died"
                acked = int(line)
                seen.append(count(store))  # a reader next to the live writer
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert seen == sorted(seen)  # never goes back
    assert count(store) >= acked
    # No half file is visible: every segment the manifest lists reads completely,
    # and nothing acknowledged is missing.
    ids = set(store.query("SELECT audit_id FROM events").column(0).to_pylist())
    assert {r.event.audit_id for r in make_records(acked)} <= ids
    with store.writer():  # recovery: finishes the interrupted work
        pass
    assert not list(root.rglob(".tmp-*"))
    assert count(store) >= acked
    assert (
        store.query("SELECT count(*) - count(DISTINCT audit_id) FROM events").column(0)[0].as_py()
        == 0
    )
    verify(root)


def test_torn_wal_tail_is_dropped_and_acknowledged_batches_kept(store: Store) -> None:
    w = store.writer()
    w.append(make_records(30))
    w.append(make_records(30, start=30))
    wal = w._wal.path
    # Simulate a crash mid-write: the process dies with a half frame at the end.
    w._stop.set()
    w._wal.close()
    w._lock.release()
    with open(wal, "ab") as f:
        f.write(b"KAW1\x00\x10\x00\x00\x00\x00\x00\x00garbage")
    assert count(store) == 60  # readers ignore the torn tail
    with store.writer() as w2:
        assert w2.append(make_records(60)).duplicates == 60
    assert count(store) == 60
    assert not wal.exists()
    verify(store.path)


def _enospc_after(real: object, limit: int) -> object:
    def write(fd: int, data: bytes) -> int:
        # Write part of it, then report a full disk, as a real device does.
        part = bytes(data)[: min(limit, len(data) // 2)]
        if part:
            real(fd, part)  # type: ignore[operator]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_full_disk_on_wal_write_raises_and_loses_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.writer() as w:
        w.append(make_records(20))
        monkeypatch.setattr(os, "write", _enospc_after(os.write, 100))
        with pytest.raises(StoreFullError, match="no space left on device"):
            w.append(make_records(20, start=20))
        monkeypatch.undo()
        assert count(store) == 20
        assert w.append(make_records(40)).stored == 20  # the retry goes through
    assert count(store) == 40
    verify(store.path)


def test_full_disk_on_segment_write_keeps_the_wal(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaudit.store.layout as layout

    w = store.writer()
    w.append(make_records(50))
    monkeypatch.setattr(layout.os, "write", _enospc_after(os.write, 1000))
    with pytest.raises(StoreFullError):
        w.flush()
    monkeypatch.undo()
    assert not list(store.path.rglob("*.parquet"))
    assert count(store) == 50  # still answered from the WAL
    w.close()
    assert count(store) == 50
    assert len(list(store.path.rglob("*.parquet"))) == 1
    verify(store.path)


def test_flush_by_size_and_age(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", settings=StoreSettings(flush_max_bytes=10_000))
    with store.writer() as w:
        w.append(make_records(100))
        assert store.stats().segments == 1 and store.stats().wal_events == 0
    store = open_store(tmp_path / "a", settings=StoreSettings(flush_max_age_secs=0))
    with store.writer() as w:
        w.append(make_records(10))
        deadline = time.monotonic() + 10
        while store.stats().segments == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # the background flush
        assert store.stats().segments == 1
