"""The final stage from the open rows (kaudit.query.finalstage) equals the probe over
every stored event, on stores with multi-stage requests, stages split across flushes,
events without requestReceivedTimestamp, and a write-ahead log tail not yet flushed."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from query_events import ev

from kaudit.cli import main
from kaudit.model import Event
from kaudit.query import api
from kaudit.query.filters import Filters, rows_sql, select_sql
from kaudit.query.finalstage import CACHE_NAME, OPEN_COLUMNS, groups
from kaudit.query.investigate import history_rows, stats, timeline
from kaudit.query.rollup import CACHE_DIR
from kaudit.query.schema import COLUMN_NAMES
from kaudit.store import Store, open_store
from kaudit.store.manifest import SegmentInfo

H9 = "2025-03-03T09:{m:02d}:{s:02d}.000000Z"
H10 = "2025-03-03T10:{m:02d}:{s:02d}.000000Z"


def at(hour: str, m: int, s: int = 0) -> str:
    return hour.format(m=m, s=s)


def staged(audit_id: str, stages: list[str], when: str, **kw: Any) -> list[Event]:
    """One request's events at ``stages`` (codes only where the apiserver sets them)."""
    out = []
    final_code = kw.pop("code", 200)
    for i, stage in enumerate(stages):
        code = final_code if stage in ("ResponseComplete", "Panic") else None
        e = ev(audit_id, stage=stage, at=when, code=code, **kw)
        out.append(msgspec.structs.replace(e, stage_timestamp=when[:-7] + f"{i:06d}Z"))
    return out


def no_received(e: Event, stage_at: str) -> Event:
    """``e`` without requestReceivedTimestamp (ts falls back to the stage time)."""
    return msgspec.structs.replace(e, request_received_timestamp=None, stage_timestamp=stage_at)


RR, RS, RC, PANIC = "RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"


def batches() -> Iterator[tuple[str, list[Event]]]:
    """(what, events) appended in this order; "flush" after each but the last."""
    first: list[Event] = []
    # Complete requests, in one flush.
    first += staged("a1", [RR, RC], at(H9, 1), user="alice", verb="patch", name="app")
    first += staged("a2", [RR, RC], at(H9, 2), user="alice", verb="patch", name="app", code=404)
    # A watch still running (open at ResponseStarted), a finished one.
    first += staged("w1", [RR, RS], at(H9, 3), user="bob", verb="watch", code=None)
    first += staged("w2", [RR, RS, RC], at(H9, 4), user="bob", verb="watch")
    # Authentication failed: RequestReceived only... and a Panic.
    first += staged("f1", [RR], at(H9, 5), user="", verb="get")
    first += staged("p1", [RR, PANIC], at(H9, 6), user="carol", verb="delete", code=500)
    # Impersonation: the filter matches the impersonated user.
    first += staged("i1", [RR, RC], at(H9, 7), user="admin", imp="alice", verb="delete")
    # Later stages in the next flush (and one before its RequestReceived).
    first += staged("s1", [RR], at(H9, 8), user="alice", verb="update", name="app")
    first += staged("s2", [RC], at(H9, 9), user="alice", verb="update", name="app")
    # No requestReceivedTimestamp: each stage has its own ts, each counts.
    first += [
        no_received(e, at(H9, 10, i))
        for i, e in enumerate(staged("n1", [RR, RC], at(H9, 10), user="dave", verb="create"))
    ]
    # No auditID at all, and a stage kaudit does not know.
    first += [ev("", stage=RR, at=at(H9, 11), user="erin", code=None)]
    first += [ev("x1", stage="Unusual", at=at(H9, 12), user="erin", code=None)]
    first += staged("x2", [RR, RC], at(H9, 12), user="erin")
    # The next hour, another partition.
    first += staged("h1", [RR], at(H10, 1), user="alice", verb="patch", name="app")
    first += staged("h2", [RR, RS, RC], at(H10, 2), user="alice", verb="get", name="app")
    yield "segments", first

    second: list[Event] = []
    second += staged("s1", [RC], at(H9, 8), user="alice", verb="update", name="app")
    second += staged("s2", [RR], at(H9, 9), user="alice", verb="update", name="app")
    # The same RequestReceived of a1 again with other bytes: superseded all the same.
    second += [
        msgspec.structs.replace(
            staged("a1", [RR], at(H9, 1), user="alice", verb="patch", name="app")[0],
            user_agent="other/1.0",
        )
    ]
    second += staged("c1", [RR], at(H10, 3), user="alice", verb="patch", name="app")
    yield "segments", second

    tail: list[Event] = []
    # Not yet flushed: closes open rows of the segments, and opens new ones.
    tail += staged("w1", [RC], at(H9, 3), user="bob", verb="watch")
    tail += staged("h1", [RS], at(H10, 1), user="alice", verb="patch", name="app", code=None)
    tail += staged("t1", [RR], at(H10, 4), user="alice", verb="patch", name="app")
    tail += staged("t2", [RR, RC], at(H10, 5), user="alice", verb="patch", name="app")
    tail += staged("c1", [RC], at(H10, 3), user="alice", verb="patch", name="app", code=409)
    yield "tail", tail


class Probe:
    """The store through ``query`` only: the probe over every event (the reference)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def query(self, sql: str, params: Any = None) -> Any:
        return self.store.query(sql, params)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Store]]:
    """(flushed, with a tail): the same events, the second with the last batch unflushed."""
    flushed = open_store(tmp_path_factory.mktemp("final") / "flushed")
    with flushed.writer() as w:
        for _, events in batches():
            w.append_events(events, cluster="prod")
            w.flush()
    live = open_store(tmp_path_factory.mktemp("final") / "live")
    w = live.writer()
    try:
        for what, events in batches():
            w.append_events(events, cluster="prod")
            if what != "tail":
                w.flush()
        yield flushed, live
    finally:
        w.close()


def both(stores: tuple[Store, Store]) -> list[Store]:
    return list(stores)


def rows(table: Any) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist())


FILTERS = {
    "all": Filters(),
    "user": Filters(user="alice"),
    "user-glob": Filters(user="a*"),
    "two-users": Filters(user=["bob", "erin"]),
    "verb": Filters(verb="patch"),
    "user+verb": Filters(user="alice", verb="patch"),
    "not-200": Filters(code="!200"),
    "user+not-200": Filters(user="alice", code="!200"),
    "4xx": Filters(code="4xx"),
    "who-deleted": Filters(verb="delete", resource="configmaps", namespace="default"),
    "object": Filters(resource="configmaps", name="app", namespace="default"),
    "window": Filters(since="2025-03-03T09:02:00Z", until="2025-03-03T10:02:00Z"),
    "where": Filters(where="event LIKE '%alice%'"),
    "where+user": Filters(user="alice", where="code IS NULL"),
    "stage-all": Filters(stage="all"),
    "stage-rr": Filters(stage="RequestReceived"),
    "stage-rs-rc": Filters(stage="ResponseStarted,ResponseComplete"),
    "cluster": Filters(cluster="prod", user="alice"),
}
COLUMN_SETS = {
    "small": ["ts", "audit_id", "stage", "username", "verb", "code"],
    "event": ["event"],
    "every": list(COLUMN_NAMES),
}


CASES = [(name, "small") for name in FILTERS] + [
    (name, cols)
    for name in ("all", "user+verb", "not-200", "user+not-200", "where", "object", "stage-rr")
    for cols in ("event", "every")
]


@pytest.mark.parametrize(("name", "columns"), CASES)
def test_rows_equal_the_probe(stores: tuple[Store, Store], name: str, columns: str) -> None:
    f = FILTERS[name]
    cols = COLUMN_SETS[columns]
    for store in both(stores):
        fast = api.find(store, columns=cols, limit=0, **_kw(f))
        slow = api.find(Probe(store), columns=cols, limit=0, **_kw(f))
        assert rows(fast) == rows(slow)
        if "ts" in cols:  # the same order (rows equal on the sort keys may swap)
            keys = ["ts", "audit_id", "stage"]
            assert fast.select(keys).to_pylist() == slow.select(keys).to_pylist()


def _kw(f: Filters) -> dict[str, Any]:
    return {
        k: getattr(f, k)
        for k in (
            "user",
            "verb",
            "resource",
            "namespace",
            "name",
            "code",
            "cluster",
            "stage",
            "since",
            "until",
            "where",
        )
    }


def test_the_cases_come_out_as_the_apiserver_means_them(stores: tuple[Store, Store]) -> None:
    """Spot checks of the reference itself: which stage each request shows, the same
    whether the last batch is flushed or still in the write-ahead log."""
    answers = []
    for store in both(stores):
        table = api.find(store, columns=["audit_id", "stage"], limit=0)
        answers.append(sorted((r["audit_id"], r["stage"]) for r in table.to_pylist()))
    assert answers[0] == answers[1]
    got = set(answers[0])
    assert ("w2", RC) in got and ("w2", RS) not in got and ("w2", RR) not in got
    assert ("w1", RC) in got and ("w1", RS) not in got  # a watch closed from the tail
    assert ("f1", RR) in got  # nothing after RequestReceived
    assert ("p1", PANIC) in got and ("p1", RR) not in got
    assert ("s1", RC) in got and ("s1", RR) not in got  # later stage in a later flush
    assert ("s2", RC) in got and ("s2", RR) not in got  # ... or an earlier one
    assert ("a1", RR) not in got  # a second RequestReceived with other bytes
    assert ("n1", RR) in got and ("n1", RC) in got  # no requestReceivedTimestamp
    assert ("", RR) in got and ("x1", "Unusual") in got
    assert ("h1", RS) in got and ("h1", RR) not in got
    assert ("c1", RC) in got and ("c1", RR) not in got
    assert ("t1", RR) in got and ("t2", RR) not in got
    assert len([k for k in answers[0] if k[0] == "a1"]) == 1


@pytest.mark.parametrize("name", ["all", "user", "not-200", "window", "where", "stage-all"])
def test_stats_equal_the_probe(stores: tuple[Store, Store], name: str) -> None:
    by = ["code", "verb", "user", "resource", "namespace", "stage", "level"]
    for store in both(stores):
        fast = stats(store, filters=FILTERS[name], by=by, top=50)
        slow = stats(Probe(store), filters=FILTERS[name], by=by, top=50)
        assert fast == slow


@pytest.mark.parametrize("user", ["alice", "bob", "a*", "nobody"])
def test_timeline_equals_the_probe(stores: tuple[Store, Store], user: str) -> None:
    for store in both(stores):
        fast = timeline(store, user)
        slow = timeline(Probe(store), user)
        assert fast.to_pylist() == slow.to_pylist()


@pytest.mark.parametrize("writes", [False, True])
def test_history_equals_the_probe(stores: tuple[Store, Store], writes: bool) -> None:
    for store in both(stores):
        fast = history_rows(store, "configmap/app", namespace="default", writes_only=writes)
        slow = history_rows(Probe(store), "configmap/app", namespace="default", writes_only=writes)
        assert fast == slow
        assert fast  # the object has requests


def test_cli_answers_equal_the_probe(stores: tuple[Store, Store]) -> None:
    runner = CliRunner()
    for store in both(stores):
        env = {"KAUDIT_STORE": str(store.path)}
        out = runner.invoke(
            main, ["query", "--user", "alice", "--verb", "patch", "--format", "jsonl"], env=env
        )
        assert out.exit_code == 0, out.output
        slow = api.find(Probe(store), columns=["event"], limit=0, user="alice", verb="patch")
        assert out.output == "".join(e + "\n" for e in slow.column("event").to_pylist())
        out = runner.invoke(main, ["stats", "--by", "code", "--format", "json"], env=env)
        assert out.exit_code == 0, out.output
        assert json.loads(out.output) == stats(Probe(store), by=["code"])


def cache_files(store: Store) -> list[Path]:
    d = store.path / CACHE_DIR / CACHE_NAME
    return sorted(p for p in d.iterdir() if p.suffix == ".parquet") if d.is_dir() else []


def test_cache_per_partition_private_and_renewed(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        w.append_events(staged("a", [RR, RC], at(H9, 1)) + staged("b", [RR], at(H10, 1)))
    api.find(store, limit=0)
    files = cache_files(store)
    assert len(files) == 2  # one per hour partition
    d = store.path / CACHE_DIR / CACHE_NAME
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    # b's ResponseComplete lands in a new segment of hour 10: that partition's file
    # is made again, the old one removed; hour 9's is kept.
    with store.writer() as w:
        w.append_events(staged("b", [RC], at(H10, 1)))
    got = api.find(store, columns=["audit_id", "stage"], limit=0).to_pylist()
    assert {(r["audit_id"], r["stage"]) for r in got} == {("a", RC), ("b", RC)}
    after = cache_files(store)
    assert len(after) == 2 and files[0] in after or files[1] in after
    assert set(after) != set(files)


def test_damaged_cache_is_computed_again(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        w.append_events(staged("a", [RR], at(H9, 1)) + staged("b", [RR, RC], at(H9, 2)))
    want = api.find(Probe(store), limit=0)
    api.find(store, limit=0)
    (path,) = cache_files(store)
    path.write_bytes(b"not parquet")
    assert api.find(store, limit=0).to_pylist() == want.to_pylist()
    assert path.read_bytes()[:4] == b"PAR1"


def test_cache_that_cannot_be_written_costs_only_time(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    with store.writer() as w:
        w.append_events(staged("a", [RR], at(H9, 1)) + staged("b", [RR, RC], at(H9, 2)))
    (store.path / CACHE_DIR).mkdir(mode=0o700)
    (store.path / CACHE_DIR / CACHE_NAME).write_bytes(b"")  # a file where the directory goes
    want = api.find(Probe(store), limit=0)
    assert api.find(store, limit=0).to_pylist() == want.to_pylist()
    assert stats(store, by=["code"]) == stats(Probe(store), by=["code"])


def test_cache_holds_the_small_columns() -> None:
    assert "event" not in OPEN_COLUMNS and "request_object" not in OPEN_COLUMNS
    assert [c for c in COLUMN_NAMES if c in OPEN_COLUMNS] == list(OPEN_COLUMNS)


def seg(path: str, lo: int, hi: int) -> SegmentInfo:
    return SegmentInfo(path, 1, 1, path[-8:].ljust(64, "0"), lo, hi)


def test_groups_by_hour_or_one_when_a_segment_strays() -> None:
    hour = 484_041  # 2025-03-21T09
    base = hour * 3_600_000_000
    a = seg("events/date=2025-03-21/hour=09/a.parquet", base, base + 10)
    b = seg("events/date=2025-03-21/hour=09/b.parquet", base + 5, base + 3_599_999_999)
    c = seg("events/date=2025-03-21/hour=10/c.parquet", base + 3_600_000_000, base + 3_600_000_001)
    gs = groups([c, a, b])
    assert [(g.hour, [s.path[-9:] for s in g.segments]) for g in gs] == [
        (hour, ["a.parquet", "b.parquet"]),
        (hour + 1, ["c.parquet"]),
    ]
    stray = seg("events/date=2025-03-21/hour=09/d.parquet", base, base + 3_600_000_000)
    (one,) = groups([a, b, c, stray])
    assert one.hour is None and len(one.segments) == 4
    assert groups([]) == []


def test_select_sql_still_stands_alone(stores: tuple[Store, Store]) -> None:
    """Other readers run select_sql/rows_sql on a plain connection: the probe form."""
    flushed, _ = stores
    q = select_sql(Filters(user="alice"), columns=["audit_id"], limit=0)
    assert "kaudit_open" not in q.sql
    assert flushed.query(q.sql, q.params).num_rows > 0
    assert "kaudit_open" not in rows_sql(Filters()).sql


def test_no_cache_without_segments(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s")
    w = store.writer()
    try:
        w.append_events(staged("a", [RR], at(H9, 1)) + staged("b", [RR, RC], at(H9, 2)))
        got = api.find(store, columns=["audit_id", "stage"], limit=0).to_pylist()
        assert {(r["audit_id"], r["stage"]) for r in got} == {("a", RR), ("b", RC)}
        assert cache_files(store) == []
    finally:
        w.close()
    assert os.listdir(store.path / "events")
