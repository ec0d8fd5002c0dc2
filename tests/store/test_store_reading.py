"""Reading a store that is being compacted, was tampered with, or is not a store at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_helpers import make_records

import kaudit
from kaudit.cli import main
from kaudit.errors import QueryError, StoreError
from kaudit.query.runner import stream
from kaudit.store import Store, open_store


def filled(tmp_path: Path, n: int = 400, parts: int = 4) -> Store:
    store = open_store(tmp_path / "store")
    recs = make_records(n)
    step = n // parts
    for i in range(parts):
        with store.writer() as w:  # one segment per writer session
            w.append(recs[i * step : (i + 1) * step])
    return store


def segments(store: Store) -> list[Path]:
    return sorted(store.path.glob("events/**/*.parquet"))


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_a_segment_replaced_after_the_snapshot_is_retried(tmp_path: Path) -> None:
    store = filled(tmp_path)
    seg = segments(store)[0]
    before = store.query("select count(*) as n from events").column("n")[0].as_py()
    # What compaction does between a reader's snapshot and its read: the old file goes
    # (and the manifest names the new one). A reader whose snapshot still lists it
    # must not fail with a traceback; the store's own retry takes a fresh snapshot.
    con = store.connect()
    seg.rename(seg.with_suffix(".moved"))
    with pytest.raises(Exception) as first:
        con.sql("select count(*) from events").fetchall()
    con.close()
    assert "No files found" in str(first.value) or "Failed to read" in str(first.value)
    with pytest.raises(StoreError, match="run `kaudit verify"):
        store.query("select count(*) from events")  # still gone: a clear error
    seg.with_suffix(".moved").rename(seg)
    assert store.query("select count(*) as n from events").column("n")[0].as_py() == before


def test_corrupt_segment_names_verify_in_every_reader(tmp_path: Path) -> None:
    store = filled(tmp_path)
    seg = segments(store)[0]
    data = bytearray(seg.read_bytes())
    data[-50] ^= 0xFF  # the footer: the schema can no longer be read
    seg.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="cannot be read .* run `kaudit verify --store"):
        store.query("select count(*) from events")
    with pytest.raises(StoreError, match="run `kaudit verify"):
        list(stream(store, "select event from events", None, what="query"))
    for args in (["query"], ["stats"], ["sql", "select count(*) from events"]):
        code, _, err = cli(*args, "--store", str(store.path))
        assert code == 1 and "run `kaudit verify" in err, (args, err)
    code, _, err = cli("verify", "--store", str(store.path))
    assert code != 0 and seg.name in err


def test_bad_sql_is_a_query_error_not_a_store_error(tmp_path: Path) -> None:
    store = filled(tmp_path, 40, 1)
    with pytest.raises(QueryError, match="query failed: .*no_such_column"):
        store.query("select no_such_column from events")


def test_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    for args in (["query"], ["verify"], ["stats"]):
        code, _, err = cli(*args, "--store", str(other))
        assert code == 1 and "not a kaudit store" in err, (args, err)
    with pytest.raises(StoreError, match="no store here"):
        kaudit.open_store(str(tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()  # reading never creates a store


def test_sql_cannot_reach_files_outside_the_store(tmp_path: Path) -> None:
    store = filled(tmp_path, 40, 1)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    code, _, err = cli("sql", "--store", str(store.path), f"select * from read_text('{outside}')")
    assert code == 1 and "disabled by configuration" in err
    target = tmp_path / "copy.csv"
    code, _, err = cli(
        "sql", "--store", str(store.path), f"copy (select username from events) to '{target}'"
    )
    assert code == 1 and not target.exists()
    with pytest.raises(QueryError):
        store.query("SET enable_external_access = true")


def test_the_python_api_on_the_store(tmp_path: Path) -> None:
    filled(tmp_path)
    store = kaudit.open_store(str(tmp_path / "store"))
    t = store.find(user="alice", limit=0)
    assert t.num_rows > 0 and set(t.column("username").to_pylist()) == {"alice"}
    counts = store.counts(by=["verb"])
    assert counts["total"] > 0 and counts["by"]["verb"]
    assert store.timeline("alice").num_rows > 0


def test_exports_are_complete_and_tables_say_when_they_are_cut(tmp_path: Path) -> None:
    store = filled(tmp_path, 400, 2)
    n = store.query("select count(*) as n from events").column("n")[0].as_py()
    code, out, err = cli("query", "--store", str(store.path), "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == n and err == ""
    code, out, err = cli("query", "--store", str(store.path))
    assert code == 0 and "showing the first 100 matching events" in err
    code, out, err = cli("query", "--store", str(store.path), "--limit", str(n))
    assert code == 0 and err == ""  # exactly n: nothing was cut
    code, out, err = cli("query", "--store", str(store.path), "--format", "json", "--limit", "5")
    assert len(json.loads(out)) == 5 and "showing the first 5" in err


def test_empty_namespace_means_cluster_scoped(tmp_path: Path) -> None:
    store = filled(tmp_path, 200, 1)
    code, out, _ = cli("query", "--store", str(store.path), "--namespace", "", "--format", "json")
    rows = json.loads(out)
    assert rows and {r["namespace"] for r in rows} == {None}
    code, out2, _ = cli("query", "--store", str(store.path), "--namespace", "-", "--format", "json")
    assert json.loads(out2) == rows


def test_queries_during_compaction_never_fail(tmp_path: Path) -> None:
    import threading

    store = filled(tmp_path, 800, 8)
    assert len(segments(store)) == 8
    expected = store.query("select count(*) as n from events").column("n")[0].as_py()
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set() or len(seen) < 5:
            try:
                batches = stream(store, "select audit_id from events", None, what="query")
                seen.append(sum(b.num_rows for b in batches))
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                return

    th = threading.Thread(target=reader)
    th.start()
    code, _, err = cli("compact", "--store", str(store.path))
    done.set()
    th.join(60)
    assert code == 0, err
    assert errors == []
    assert seen and set(seen) == {expected}
    assert len(segments(store)) < 8


def test_sql_cannot_read_the_quarantine(tmp_path: Path) -> None:
    store = filled(tmp_path, 40, 1)
    q = store.path / "quarantine"
    q.mkdir(mode=0o700)
    (q / "x.jsonl").write_text('{"raw": "password: hunter2"}\n')
    code, _, err = cli(
        "sql", "--store", str(store.path), f"select * from read_text('{q / 'x.jsonl'}')"
    )
    assert code == 1 and "disabled by configuration" in err


def test_a_writer_compacts_the_hours_that_are_over(tmp_path: Path) -> None:
    from store_helpers import BASE_US, make_event

    from kaudit.store import StoreSettings

    hour = 3_600_000_000
    settings = StoreSettings(compact_min_segments=3)
    store = open_store(tmp_path / "store", settings=settings)
    for i in range(4):  # four small segments in the first hour
        with store.writer() as w:
            w.append_events([make_event(i, ts_us=BASE_US + i)])
    first = [p for p in segments(store) if "hour=07" in str(p)]
    assert len(first) == 4
    with store.writer() as w:  # data of a later hour: the first one is over
        w.append_events([make_event(10, ts_us=BASE_US + 2 * hour)])
    first = [p for p in segments(store) if "hour=07" in str(p)]
    assert len(first) == 1
    assert store.query("select count(*) as n from events").column("n")[0].as_py() == 5
    code, _, err = cli("verify", "--store", str(store.path))
    assert code == 0, err
    # The hour still being written is left alone.
    for i in range(3):
        with store.writer() as w:
            w.append_events([make_event(20 + i, ts_us=BASE_US + 2 * hour + i)])
    assert len([p for p in segments(store) if "hour=09" in str(p)]) == 4
