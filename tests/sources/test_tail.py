"""The tailer on real files: growth, partial lines, both rotation styles, restarts."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kaudit.errors import DecodeError, InputError
from kaudit.sources.tail import Tailer


def line(i: int) -> bytes:
    return (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d",'
        b'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list",'
        b'"user":{"username":"u"},"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
        b'"stageTimestamp":"2024-05-06T07:08:09.123456Z"}\n' % i
    )


def lines(a: int, b: int) -> bytes:
    return b"".join(line(i) for i in range(a, b))


def ids(recs: list) -> list[int]:  # type: ignore[type-arg]
    return [int(r.event.audit_id.split("-")[1]) for r in recs]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d / "audit.log"


_open: list[Tailer] = []


@pytest.fixture(autouse=True)
def _close_tailers() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def tailer(log: Path, **kw: int) -> Tailer:
    t = Tailer(log, log.parent.parent / "state" / "audit.log.json", **kw)
    _open.append(t)
    return t


def test_first_start_reads_backups_oldest_first_then_live(log: Path) -> None:
    (log.parent / "audit-2024-05-06T07-00-00.000.log").write_bytes(lines(0, 3))
    with gzip.open(log.parent / "audit-2024-05-05T07-00-00.000.log.gz", "wb") as gz:
        gz.write(lines(10, 12))
    log.write_bytes(lines(20, 22))
    t = tailer(log)
    assert ids(t.poll()) == [10, 11, 0, 1, 2, 20, 21]
    assert t.poll() == []


def test_partial_last_line_waits_for_its_end(log: Path) -> None:
    whole = line(1)
    log.write_bytes(line(0) + whole[:50])
    t = tailer(log)
    assert ids(t.poll()) == [0]
    assert t.poll() == []
    append(log, whole[50:])
    assert ids(t.poll()) == [1]


def test_rename_rotation_loses_nothing(log: Path) -> None:
    log.write_bytes(lines(0, 2))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1]
    append(log, lines(2, 4))  # written before the rotation, not yet read
    log.rename(log.parent / "audit-2024-05-06T07-08-09.123.log")
    log.write_bytes(lines(4, 6))
    assert ids(t.poll()) == [2, 3, 4, 5]
    assert t.rotations == 1
    append(log, lines(6, 7))
    assert ids(t.poll()) == [6]


def test_unterminated_last_line_of_a_rotated_file_is_read(log: Path) -> None:
    log.write_bytes(line(0) + line(1).rstrip(b"\n"))
    t = tailer(log)
    assert ids(t.poll()) == [0]
    log.rename(log.parent / "audit-2024-05-06T07-08-09.123.log")
    log.write_bytes(line(2))
    assert ids(t.poll()) == [1, 2]


def test_copytruncate_rotation_reads_the_gap_from_the_copy(log: Path) -> None:
    log.write_bytes(lines(0, 3))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1, 2]
    append(log, lines(3, 5))  # the gap: written after our read, before the copy
    shutil.copyfile(log, log.parent / "audit.log.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, lines(5, 6))
    assert ids(t.poll()) == [3, 4, 5]


def test_restart_resumes_at_the_committed_position(log: Path) -> None:
    log.write_bytes(lines(0, 3))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1, 2]
    t.commit()
    append(log, lines(3, 5))
    assert ids(t.poll()) == [3, 4]  # read but never committed
    t.close()
    t2 = tailer(log)
    assert ids(t2.poll()) == [3, 4]  # read again: at least once, never lost
    ckpt = log.parent.parent / "state" / "audit.log.json"
    assert stat.S_IMODE(os.stat(ckpt).st_mode) == 0o600


def test_restart_after_rotation_while_down(log: Path) -> None:
    log.write_bytes(lines(0, 2))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1]
    t.commit()
    t.close()
    append(log, lines(2, 3))
    log.rename(log.parent / "audit-2024-05-06T07-08-09.123.log")
    log.write_bytes(lines(3, 4))
    t2 = tailer(log)
    assert ids(t2.poll()) == [2, 3]


def test_restart_after_rotation_and_compression_while_down(log: Path) -> None:
    log.write_bytes(lines(0, 2))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1]
    t.commit()
    t.close()
    append(log, lines(2, 3))
    backup = log.parent / "audit-2024-05-06T07-08-09.123.log.gz"
    with gzip.open(backup, "wb") as gz:
        gz.write(log.read_bytes())
    log.unlink()  # lumberjack compresses to a new file (new inode) and removes the old
    log.write_bytes(lines(3, 4))
    t2 = tailer(log)
    assert ids(t2.poll()) == [2, 3]


def test_bad_lines_are_reported_and_skipped(log: Path) -> None:
    log.write_bytes(line(0) + b"{not json\n" + line(1))
    errors: list[DecodeError] = []
    t = tailer(log)
    assert ids(t.poll(lambda e, raw: errors.append(e))) == [0, 1]
    assert [str(e).split(": ")[0] for e in errors] == [f"{log}:2"]


def test_batches_are_bounded(log: Path) -> None:
    log.write_bytes(lines(0, 25))
    t = tailer(log, max_batch=10)
    sizes = []
    while batch := t.poll():
        sizes.append(len(batch))
    assert sum(sizes) == 25 and max(sizes) <= 10 + 1


def test_corrupt_checkpoint_is_a_clear_error(log: Path) -> None:
    log.write_bytes(lines(0, 1))
    ckpt = log.parent.parent / "state" / "audit.log.json"
    ckpt.parent.mkdir()
    ckpt.write_text("{nope")
    with pytest.raises(InputError, match="unreadable tail checkpoint"):
        tailer(log).poll()


def test_restart_after_copytruncate_while_down(log: Path) -> None:
    log.write_bytes(lines(0, 2))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1]
    t.commit()
    t.close()
    append(log, lines(2, 4))
    shutil.copyfile(log, log.parent / "audit.log.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, lines(4, 5))
    assert ids(tailer(log).poll()) == [2, 3, 4]


def test_concurrent_writer_with_rotations_exactly_once_in_order(log: Path) -> None:
    import random
    import threading

    n = 3000
    rng = random.Random(7)
    done = threading.Event()

    def writer() -> None:
        f = open(log, "ab", buffering=0)
        try:
            for i in range(n):
                data = line(i)
                cut = rng.randrange(len(data))
                f.write(data[:cut])  # a torn write: the reader must wait for the rest
                f.write(data[cut:])
                if rng.random() < 0.01:
                    f.close()
                    stamp = f"2024-05-06T07-08-{i // 1000:02d}.{i % 1000:03d}"
                    log.rename(log.parent / f"audit-{stamp}.log")
                    f = open(log, "ab", buffering=0)
        finally:
            f.close()
            done.set()

    th = threading.Thread(target=writer)
    log.touch()
    t = tailer(log, max_batch=500)
    th.start()
    got: list[int] = []
    while not done.is_set():
        got.extend(ids(t.poll()))
    th.join()
    while batch := t.poll():
        got.extend(ids(batch))
    assert got == list(range(n))
    assert len(list(log.parent.glob("audit-*.log"))) > 1  # it really rotated, several times


def test_copytruncate_regrown_past_the_old_offset_between_polls(log: Path) -> None:
    log.write_bytes(lines(0, 3))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1, 2]
    append(log, lines(3, 5))
    shutil.copyfile(log, log.parent / "audit.log.1")
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, lines(5, 20))  # larger than before: the size alone hides the truncation
    got: list[int] = []
    while batch := t.poll():
        got.extend(ids(batch))
    assert got == list(range(3, 20))


def test_tail_source_retries_a_failing_sink_without_losing_anything(log: Path) -> None:
    import asyncio

    from kaudit.sources.tail import TailSource

    log.write_bytes(lines(0, 5))
    src = TailSource(log, log.parent.parent / "state", poll_interval_secs=0.01)
    stored: list[int] = []
    calls = {"n": 0}

    async def sink(records: list, *, cluster: str = "") -> None:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(28, "No space left on device")
        stored.extend(ids(records))

    async def main() -> None:
        task = asyncio.create_task(src.run(sink))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if stored:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stored == [0, 1, 2, 3, 4]
    assert src.failures == 2


def test_backups_are_found_while_the_live_file_is_missing(log: Path) -> None:
    # Between a rotation's rename and the new file, the live file does not exist. The
    # tailer, finishing the file it had open, must still see the backups written since
    # (it used to find none then, and skipped every file rotated meanwhile).
    log.write_bytes(lines(0, 3))
    t = tailer(log)
    assert ids(t.poll()) == [0, 1, 2]
    first = log.parent / "audit-2024-05-06T07-08-00.002.log"
    log.rename(first)
    log.write_bytes(lines(3, 6))
    second = log.parent / "audit-2024-05-06T07-08-00.005.log"
    log.rename(second)  # and no live file yet
    assert t._backups() == [first, second]
    assert ids(t.poll()) == []  # it waits for the new live file
    append(log, lines(6, 8))
    got: list[int] = []
    while batch := t.poll():
        got.extend(ids(batch))
    assert got == [3, 4, 5, 6, 7]
