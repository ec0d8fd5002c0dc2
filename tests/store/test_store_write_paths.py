"""The write path: flatten against a row-by-row reading of the schema, set-based dedup,
and segments written in the background while appends go on."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from msgspec import UNSET, Raw
from store_helpers import BASE_US, make_event, make_records  # noqa: I001

from kaudit.errors import StoreFullError
from kaudit.model.codec import encode_event, format_micro, to_micros
from kaudit.model.documents import Record
from kaudit.model.types import Event, ObjectReference, Status, UserInfo
from kaudit.query.schema import COLUMN_NAMES
from kaudit.store import Store, StoreSettings, open_store
from kaudit.store.flatten import flatten
from kaudit.store.layout import io_error
from kaudit.store.verify import verify
from kaudit.traffic import generate

HOUR_US = 3_600_000_000


def _opt(v: object) -> object:
    return None if v is UNSET else v


def reference_row(ev: Event, raw: bytes, cluster: str) -> dict[str, object]:
    """One row of the flat schema, read field by field from the column docs."""
    ref = ev.object_ref
    st = ev.response_status
    ann = ev.annotations if ev.annotations is not UNSET else {}
    ips = ev.source_ips if ev.source_ips is not UNSET else []
    imp = ev.impersonated_user
    rrt = ev.request_received_timestamp
    sts = ev.stage_timestamp
    return {
        "ts": to_micros(rrt) if rrt else to_micros(sts) if sts else "now",
        "stage_ts": to_micros(sts) if sts else None,
        "audit_id": ev.audit_id,
        "stage": ev.stage,
        "level": ev.level,
        "verb": ev.verb,
        "request_uri": ev.request_uri,
        "username": ev.user.username if ev.user.username is not UNSET else "",
        "groups": ev.user.groups if ev.user.groups is not UNSET else [],
        "impersonated_user": None if imp is UNSET else _opt(imp.username),
        "source_ip": ips[0] if ips else None,
        "source_ips": ips,
        "user_agent": _opt(ev.user_agent),
        "api_group": None
        if ref is UNSET
        else ref.api_group
        if ref.api_group is not UNSET
        else ("" if ref.resource else None),
        "api_version": None if ref is UNSET else _opt(ref.api_version),
        "resource": None if ref is UNSET else _opt(ref.resource),
        "subresource": None if ref is UNSET else _opt(ref.subresource),
        "namespace": None if ref is UNSET else (ref.namespace or None),
        "name": None if ref is UNSET else (ref.name or None),
        "code": None if st is UNSET else _opt(st.code),
        "status_reason": None if st is UNSET else _opt(st.reason),
        "status_message": None if st is UNSET else _opt(st.message),
        "decision": ann.get("authorization.k8s.io/decision"),
        "authz_reason": ann.get("authorization.k8s.io/reason"),
        "annotations": list(ann.items()),
        "request_object": None if ev.request_object is UNSET else bytes(ev.request_object).decode(),
        "response_object": None
        if ev.response_object is UNSET
        else bytes(ev.response_object).decode(),
        "cluster": cluster,
        "event": raw.decode(),
    }


def odd_events() -> list[Event]:
    t = format_micro(BASE_US)
    return [
        Event(audit_id="bare", stage="ResponseComplete", verb="get", request_uri="/healthz"),
        Event(
            audit_id="imp",
            stage="ResponseStarted",
            verb="watch",
            request_uri="/api/v1/pods",
            user=UserInfo(),
            impersonated_user=UserInfo(username="bob", groups=["g"]),
            source_ips=[],
            object_ref=ObjectReference(resource="pods", namespace="", name=""),
            response_status=Status(code=0, reason="", message="m"),
            annotations={},
            request_received_timestamp=t,
        ),
        Event(
            audit_id="nouser-imp",
            impersonated_user=UserInfo(),
            object_ref=ObjectReference(api_group="apps", subresource="scale"),
            response_status=Status(),
            stage_timestamp=t,
            annotations={"authorization.k8s.io/reason": "", "x": "ünï <&>"},
            response_object=Raw(b'{"a":[1,2,{"b":"\\u003c"}]}'),
            source_ips=["::1", "10.0.0.1"],
        ),
    ]


def test_flatten_matches_the_schema_row_by_row() -> None:
    events = [*generate(300, seed=11), *odd_events()]
    records = [Record(e, encode_event(e)[:-1], "t", i) for i, e in enumerate(events)]
    table = flatten(records, "prod")
    assert table.column_names == list(COLUMN_NAMES)
    rows = table.to_pylist()
    for rec, row in zip(records, rows, strict=True):
        want = reference_row(rec.event, rec.raw, "prod")
        got = dict(row)
        got["ts"] = int(row["ts"].timestamp() * 1_000_000) if want["ts"] != "now" else "now"
        if row["stage_ts"] is not None:
            got["stage_ts"] = to_micros(row["stage_ts"].isoformat())
        assert got == want, rec.event.audit_id


def test_flatten_raw_that_is_not_utf8_fails_like_decoding() -> None:
    ev = make_event(1)
    with pytest.raises(UnicodeDecodeError):
        flatten([Record(ev, b'{"auditID":"\xff"}', "t", 1)])


def test_duplicates_in_one_batch_across_hours_and_after_rotation(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    a = make_event(1, ts_us=BASE_US)
    # Same auditID and stage but other bytes (another time): not a retry but another
    # event (a reused Audit-ID), so it is kept.
    a_later = make_event(1, ts_us=BASE_US + 2 * HOUR_US)
    b = make_event(2, ts_us=BASE_US + HOUR_US)
    with store.writer() as w:
        r = w.append_events([a, b, a, b, a_later])
        assert (r.stored, r.duplicates) == (3, 2)  # the first of each event is kept
        w.flush()
        assert w.append_events([a, b, make_event(3)]).stored == 1
        assert w.append_events([a_later]).duplicates == 1  # found in its own hour
    assert store.stats().events == 4


def _count(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM events").column(0)[0].as_py())


def test_background_flush_keeps_every_event_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", settings=StoreSettings(flush_max_bytes=20_000))
    with store.writer() as w:
        w.flush_in_background = True
        for i in range(20):
            batch = make_records(50, start=i * 50)
            assert w.append(batch).stored == 50
            # Retries land while earlier WAL files are being written as segments.
            assert w.append(batch).duplicates == 50
            assert _count(store) == (i + 1) * 50
        assert w.append(make_records(1000)).duplicates == 1000
    assert _count(store) == 1000
    assert store.stats().wal_events == 0
    assert store.stats().segments > 1
    assert not list((store.path / "wal").iterdir())
    verify(store.path)
    with store.writer() as w:
        assert w.append(make_records(1000)).duplicates == 1000


def _full_disk(path: Path, data: object) -> None:
    raise io_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path, "write")


def test_background_flush_on_a_full_disk_keeps_the_wal_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaudit.store.segments as segments
    import kaudit.store.writer as writer_mod

    monkeypatch.setattr(writer_mod, "_FLUSH_RETRY_SECS", 0.0)
    store = open_store(tmp_path / "s", settings=StoreSettings(flush_max_bytes=5_000))
    w = store.writer()
    w.flush_in_background = True
    monkeypatch.setattr(segments, "write_atomic", _full_disk)  # segments cannot be written
    for i in range(6):
        assert w.append(make_records(30, start=i * 30)).stored == 30  # the WAL still works
    t = w._flushing
    if t is not None:
        t.join()
    assert not list(store.path.rglob("*.parquet"))
    assert _count(store) == 180  # answered from the WAL files
    with pytest.raises(StoreFullError):
        w.flush()
    monkeypatch.undo()
    w.append(make_records(10, start=180))
    w.close()
    assert _count(store) == 190
    assert store.stats().wal_events == 0
    verify(store.path)


def _at(start: int, n: int, ts_us: int) -> list[Record]:
    evs = [make_event(i, ts_us=ts_us + i) for i in range(start, start + n)]
    return [Record(e, encode_event(e)[:-1], "t", i) for i, e in enumerate(evs)]


def test_retried_old_events_not_yet_flushed_are_duplicates(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", settings=StoreSettings(dedup_window_secs=0))
    new = _at(0, 40, BASE_US + 30 * 24 * HOUR_US)
    old = _at(1000, 40, BASE_US)
    with store.writer() as w:
        w.append(new)
        w.flush()  # the watermark moves past the old hour
        assert w.append(old).stored == 40
        assert w.append(old).duplicates == 40  # only in the WAL: not on any disk yet
        w.flush()
        assert w.append(old).duplicates == 40  # now from its partition
    assert _count(store) == 80


def test_keys_of_the_next_wal_survive_a_background_flush(tmp_path: Path) -> None:
    settings = StoreSettings(dedup_window_secs=0, flush_max_bytes=4_000)
    store = open_store(tmp_path / "s", settings=settings)
    new = _at(0, 40, BASE_US + 30 * 24 * HOUR_US)
    old = _at(1000, 10, BASE_US)
    with store.writer() as w:
        w.flush_in_background = True
        w.append(new)  # over flush_max_bytes: its WAL file goes to the background
        flushing = w._flushing
        assert flushing is not None
        assert w.append(old).stored == 10  # into the next WAL file meanwhile
        flushing.join()  # the watermark moves past the old hour
        assert w.append(old).duplicates == 10
    assert _count(store) == 50


def test_an_append_that_is_not_durable_skips_the_wal_and_is_stored_by_the_flush(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        assert w.append(make_records(100), durable=False).stored == 100
        assert w.append(make_records(100), durable=False).duplicates == 100
        assert all(p.stat().st_size == 0 for p in (store.path / "wal").iterdir())
    assert _count(store) == 100
    assert not list((store.path / "wal").iterdir())
    verify(store.path)


_CRASH_AFTER_APPENDS = """
import os, sys
sys.path.insert(0, sys.argv[2])
from store_helpers import make_records
from kaudit.store import open_store
w = open_store(sys.argv[1]).writer()
w.append(make_records(30), durable=True)
w.append(make_records(50, start=30), durable=False)
os._exit(0)  # no close: what a crash leaves
"""


def test_a_crash_loses_only_the_appends_that_were_not_durable(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s"
    here = str(Path(__file__).parent)
    subprocess.run([sys.executable, "-c", _CRASH_AFTER_APPENDS, str(path), here], check=True)
    store = open_store(path)
    with store.writer() as w:  # recovery flushes the WAL: the durable batch only
        assert _count(store) == 30
        r = w.append(make_records(80), durable=False)  # the same import, run again
        assert (r.stored, r.duplicates) == (50, 30)
    assert _count(store) == 80
    verify(store.path)


def test_appends_flush_at_flush_max_rows_even_without_a_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kaudit.store.writer as writer_mod

    monkeypatch.setattr(writer_mod, "FLUSH_MAX_ROWS", 100)
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        for i in range(5):
            w.append(make_records(40, start=i * 40), durable=False)
        # The third append makes 120 rows pending: flushed. The last 80 wait.
        assert _count(store) == 120
        assert store.stats().segments == 1
    assert _count(store) == 200
    verify(store.path)


def test_flatten_keeps_no_reference_to_the_lines_it_read() -> None:
    # A body is a msgspec Raw over the whole line it was decoded from; pyarrow keeps a
    # reference to any buffer object it converts into a binary array, so flattening
    # through memoryviews kept every line with a body alive for good.
    import sys

    from kaudit.model.codec import decode_event

    lines = [encode_event(make_event(i))[:-1] for i in range(200)]
    lines = [ln for ln in lines if b'"requestObject"' in ln]
    assert lines
    before = [sys.getrefcount(ln) for ln in lines]
    table = flatten([Record(decode_event(ln), ln, "t", 0) for ln in lines])
    assert table["request_object"].null_count == 0
    del table
    after = [sys.getrefcount(ln) for ln in lines]
    assert after == before
