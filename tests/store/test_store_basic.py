"""Appending and querying: the flat schema, the view, layout and permissions."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from store_helpers import make_event, make_records  # noqa: I001

from kaudit.errors import QueryError, StoreError, StoreLockedError
from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.model.types import Event, ObjectReference, UserInfo
from kaudit.query.schema import COLUMN_NAMES
from kaudit.store import Store, open_store


def test_empty_store_answers_with_zero_rows_and_the_schema(store: Store) -> None:
    t = store.query("SELECT * FROM events")
    assert t.num_rows == 0
    assert tuple(t.column_names) == COLUMN_NAMES
    assert store.stats().events == 0


def test_view_has_the_flat_schema_in_order_with_duckdb_types(store: Store) -> None:
    with store.writer() as w:
        w.append(make_records(3))
    con = store.connect()
    try:
        described = con.sql("DESCRIBE events").fetchall()
    finally:
        con.close()
    from kaudit.query.schema import COLUMNS

    assert [(r[0], r[1]) for r in described] == [(c.name, c.sql_type) for c in COLUMNS]


def test_round_trip_keeps_the_original_line_and_flattens_fields(store: Store) -> None:
    recs = make_records(50)
    with store.writer() as w:
        res = w.append(recs, cluster="prod")
        assert (res.received, res.stored, res.duplicates) == (50, 50, 0)
        # Visible before the flush (the WAL tail) ...
        assert store.query("SELECT count(*) FROM events").column(0)[0].as_py() == 50
    # ... and after it.
    rows = store.query("SELECT * FROM events ORDER BY ts").to_pylist()
    assert [r["event"].encode() for r in rows] == [r.raw for r in recs]
    ev = recs[0].event
    r = rows[0]
    assert r["audit_id"] == ev.audit_id
    assert r["verb"] == ev.verb
    assert r["username"] == ev.user.username
    assert r["groups"] == ["system:authenticated"]
    assert r["source_ip"] == ev.source_ips[0]  # type: ignore[index]
    assert r["code"] == ev.code
    assert r["decision"] == "allow"
    assert r["authz_reason"] == "RBAC: allowed"
    assert dict(r["annotations"]) == ev.annotations
    assert r["cluster"] == "prod"
    assert r["api_group"] == ""  # core group
    assert int(r["ts"].timestamp() * 1_000_000) == 1_714_979_289_000_000


def test_request_object_is_the_raw_json_text(store: Store) -> None:
    recs = make_records(40)
    with store.writer() as w:
        w.append(recs)
    rows = store.query(
        "SELECT audit_id, request_object, response_object FROM events "
        "WHERE request_object IS NOT NULL"
    ).to_pylist()
    assert rows
    by_id = {r.event.audit_id: r.event for r in recs}
    for row in rows:
        assert row["request_object"].encode() == bytes(by_id[row["audit_id"]].request_object)  # type: ignore[arg-type]
        assert row["response_object"] is None


def test_timestamp_fallbacks(store: Store) -> None:
    only_stage = Event(
        audit_id="a1",
        stage="ResponseComplete",
        verb="get",
        request_uri="/healthz",
        stage_timestamp="2024-05-06T07:08:09.5Z",
    )
    neither = Event(audit_id="a2", stage="ResponseComplete", verb="get", request_uri="/x")
    before = time.time()
    with store.writer() as w:
        w.append_events([only_stage, neither])
    rows = {
        r["audit_id"]: r
        for r in store.query(
            "SELECT audit_id, ts, stage_ts, resource, api_group FROM events"
        ).to_pylist()
    }
    assert rows["a1"]["ts"] == rows["a1"]["stage_ts"]
    assert rows["a1"]["ts"].microsecond == 500_000
    assert rows["a2"]["stage_ts"] is None
    assert rows["a2"]["ts"].timestamp() >= before - 1
    assert rows["a1"]["resource"] is None and rows["a1"]["api_group"] is None


def test_append_events_stores_the_exact_encoding(store: Store) -> None:
    ev = make_event(7)
    with store.writer() as w:
        w.append_events([ev])
    (line,) = store.query("SELECT event FROM events").column(0).to_pylist()
    assert line.encode() + b"\n" == encode_event(ev)


def test_parameters_are_bound_and_bad_sql_is_a_query_error(store: Store) -> None:
    with store.writer() as w:
        w.append(make_records(20))
    n = store.query("SELECT count(*) FROM events WHERE verb = ?", ["get"]).column(0)[0].as_py()
    m = store.query("SELECT count(*) FROM events WHERE verb = $v", {"v": "get"})
    assert n == m.column(0)[0].as_py()
    with pytest.raises(QueryError, match="query failed"):
        store.query("SELECT nope FROM events")


def test_layout_partitions_and_permissions(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    t0 = 1_714_979_289_000_000
    recs = [
        Record(e, encode_event(e)[:-1], "t", 1)
        for e in (make_event(1, ts_us=t0), make_event(2, ts_us=t0 + 3_600_000_000))
    ]
    with store.writer() as w:
        w.append(recs)
    files = sorted(p.relative_to(store.path).as_posix() for p in store.path.rglob("*.parquet"))
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "events/date=2024-05-06/hour=07",
        "events/date=2024-05-06/hour=08",
    ]
    for p in [store.path, *store.path.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def test_single_writer_lock_names_the_holder(store: Store) -> None:
    import os

    with store.writer():
        with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
            store.writer()
    with store.writer():  # released on close
        pass


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store here"):
        open_store(tmp_path / "absent", create=False)


def test_env_var_names_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAUDIT_STORE", str(tmp_path / "envstore"))
    assert open_store().path == tmp_path / "envstore"
    assert (tmp_path / "envstore").is_dir()


def test_non_resource_request_has_null_object_fields(store: Store) -> None:
    ev = Event(
        audit_id="nr",
        stage="ResponseComplete",
        verb="get",
        request_uri="/version",
        user=UserInfo(username="u"),
        request_received_timestamp="2024-05-06T07:08:09.000000Z",
        stage_timestamp="2024-05-06T07:08:09.000000Z",
    )
    ns_less = make_event(3)
    ns_less.object_ref = ObjectReference(resource="nodes", name="n1")
    with store.writer() as w:
        w.append_events([ev, ns_less])
    rows = {
        r["audit_id"]: r
        for r in store.query(
            "SELECT audit_id, resource, namespace, name, code, groups, source_ips, annotations "
            "FROM events"
        ).to_pylist()
    }
    assert rows["nr"]["resource"] is None and rows["nr"]["namespace"] is None
    assert rows["nr"]["code"] is None
    assert rows["nr"]["groups"] == [] and rows["nr"]["source_ips"] == []
    assert rows["nr"]["annotations"] == []
    assert rows[ns_less.audit_id]["namespace"] is None
