"""What counts as "the same event" for deduplication, including against a forged Audit-ID."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from kaudit.model import decode_event, encode_event
from kaudit.model.documents import Record
from kaudit.store import open_store
from kaudit.store.dedup import _KEY_SQL, keys_of

BASE = {
    "level": "Metadata",
    "auditID": "11111111-2222-3333-4444-555555555555",  # chosen by the client (Audit-ID)
    "stage": "ResponseComplete",
    "user": {"username": "mallory"},
    "sourceIPs": ["203.0.113.9"],
    "requestReceivedTimestamp": "2024-05-06T07:08:09.000000Z",
    "stageTimestamp": "2024-05-06T07:08:09.100000Z",
}


def record(**fields: object) -> Record:
    ev = decode_event(json.dumps({**BASE, **fields}))
    return Record(ev, encode_event(ev)[:-1], "test", 1)


def stored(path: Path) -> list[str]:
    t = open_store(path, create=False).query("select verb from events order by verb")
    return t.column("verb").to_pylist()


def test_a_forged_audit_id_does_not_erase_the_second_request(tmp_path: Path) -> None:
    harmless = record(verb="list", requestURI="/api/v1/namespaces/default/pods")
    harmful = record(verb="delete", requestURI="/api/v1/namespaces/prod/secrets/db")
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        assert w.append([harmless]).stored == 1
        assert w.append([harmful]).stored == 1  # same auditID and stage, another request
    assert stored(tmp_path / "s") == ["delete", "list"]


def test_retries_and_reimports_are_still_dropped(tmp_path: Path) -> None:
    a = record(verb="list", requestURI="/api/v1/pods")
    b = record(verb="delete", requestURI="/api/v1/namespaces/prod/secrets/db")
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        w.append([a, b])
        again = w.append([a, b])  # the apiserver resends the identical body
        assert (again.stored, again.duplicates) == (0, 2)
        w.flush()
    with store.writer() as w:  # a new writer: the keys come back from disk
        assert w.append([b]).duplicates == 1
    assert stored(tmp_path / "s") == ["delete", "list"]


def test_events_without_an_audit_id_are_told_apart_by_their_bytes(tmp_path: Path) -> None:
    x = record(auditID="", verb="get", requestURI="/api/v1/namespaces/a/pods/x")
    y = record(auditID="", verb="get", requestURI="/api/v1/namespaces/a/pods/y")
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        assert w.append([x, y, x]).stored == 2


def test_python_and_duckdb_compute_the_same_key() -> None:
    events = ['{"a":"é <x>"}', '{"b":1}', ""]
    t = pa.table(
        {
            "audit_id": ["id-1", "", "id-3"],
            "stage": ["ResponseComplete", "Panic", ""],
            "event": pa.chunked_array([events[:2], events[2:]]),
        }
    )
    con = duckdb.connect()
    con.register("t", t)
    assert keys_of(t) == [r[0] for r in con.sql(f"select {_KEY_SQL} from t").fetchall()]


def test_events_without_timestamps_are_found_on_another_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time as _time

    # Trimmed exports sometimes carry no timestamp at all: ts is the time of storing,
    # so a re-import three days later lands in another hour and must still be found.
    bare = {k: v for k, v in BASE.items() if not k.endswith("Timestamp")}
    ev = decode_event(json.dumps({**bare, "verb": "get", "requestURI": "/api/v1/pods"}))
    rec = Record(ev, encode_event(ev)[:-1], "export", 1)
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        assert w.append([rec]).stored == 1
        w.flush()
    real = _time.time_ns
    monkeypatch.setattr(_time, "time_ns", lambda: real() + 3 * 86400 * 10**9)
    with store.writer() as w:
        r = w.append([rec])
    assert (r.stored, r.duplicates) == (0, 1)
