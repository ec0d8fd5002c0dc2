"""Per-segment rollups: computed once per segment, cached safely, merged with the tail."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kaudit.query.rollup import CACHE_DIR, Rollup, RollupReader, clear_memo
from kaudit.store import Store, open_store, reader
from kaudit.store.verify import verify
from kaudit.traffic import generate

START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
BY_VERB = Rollup(
    "test-verbs", "1", "SELECT verb, count(*) AS n, min(ts) AS first FROM {rows} GROUP BY verb"
)
MERGE = "SELECT verb, sum(n) AS n FROM r GROUP BY verb ORDER BY verb"


def _store(tmp_path: Path) -> Store:
    """Segments of two flushes, the second spanning two hours."""
    return _store_and_tail(tmp_path)[0]


def _store_and_tail(tmp_path: Path) -> tuple[Store, reader.Snapshot]:
    """Segments of two flushes and a snapshot with 500 events in the WAL tail."""
    store = open_store(tmp_path / "store")
    events = list(generate(3000, seed=3, start=START, rate_per_s=1.0))
    with store.writer() as w:
        w.append_events(events[:1000])
        w.flush()
        w.append_events(events[1000:2500])
        w.flush()
        w.append_events(events[2500:])
        snap = reader.snapshot(store.path)
    return store, snap


def _merged(store: Store, table: object) -> dict[str, int]:
    con = store.connect()
    con.register("r", table)
    return {r[0]: int(r[1]) for r in con.sql(MERGE).fetchall()}


def _direct(store: Store) -> dict[str, int]:
    t = store.query("SELECT verb, count(*) AS n FROM events GROUP BY verb ORDER BY verb")
    assert sum(t["n"].to_pylist()) == 3000
    return dict(zip(t["verb"].to_pylist(), t["n"].to_pylist(), strict=True))


def test_gather_caches_each_segment_and_adds_the_tail_live(tmp_path: Path) -> None:
    store, snap = _store_and_tail(tmp_path)
    segs = list(snap.state.segments.values())
    assert len(segs) >= 2 and snap.tail.num_rows == 500
    with RollupReader(store.path) as rr:
        cold = rr.gather(BY_VERB, segs, snap.tail)
        assert (rr.stats.computed, rr.stats.cached, rr.stats.written) == (len(segs), 0, len(segs))
    assert _merged(store, cold) == _direct(store)
    d = store.path / CACHE_DIR / BY_VERB.name
    files = sorted(d.iterdir())
    assert [f.name.split("-", 1)[0] for f in files] == sorted(s.sha256 for s in segs)
    assert all(f.name.endswith(f"-{BY_VERB.key}.parquet") for f in files)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((store.path / CACHE_DIR).stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    with RollupReader(store.path) as rr:
        warm = rr.gather(BY_VERB, segs, snap.tail)
        assert (rr.stats.computed, rr.stats.cached) == (0, len(segs))
    assert warm.sort_by("verb").equals(cold.sort_by("verb"))
    verify(store.path)  # the cache is derived data, not part of the verified record


def test_a_change_of_sql_or_parameters_is_a_new_cache_file(tmp_path: Path) -> None:
    other = Rollup(BY_VERB.name, "1", BY_VERB.sql.replace("min(ts)", "max(ts)"))
    with_params = Rollup(BY_VERB.name, "1", BY_VERB.sql, {"x": 1})
    assert len({BY_VERB.key, other.key, with_params.key}) == 3
    assert Rollup(BY_VERB.name, "2", BY_VERB.sql).key != BY_VERB.key


def test_unreadable_cache_file_is_recomputed_and_replaced(tmp_path: Path) -> None:
    store = _store(tmp_path)
    segs = list(reader.snapshot(store.path).state.segments.values())
    with RollupReader(store.path) as rr:
        rr.gather(BY_VERB, segs)
        victim = rr.path(BY_VERB, segs[0])
    victim.write_bytes(b"not parquet")
    clear_memo()  # as a new process would
    with RollupReader(store.path) as rr:
        table = rr.gather(BY_VERB, segs)
        assert (rr.stats.computed, rr.stats.cached) == (1, len(segs) - 1)
    assert pq.read_table(victim).num_rows > 0
    assert sum(table["n"].to_pylist()) == sum(s.rows for s in segs)


def test_read_only_cache_directory_still_answers(tmp_path: Path) -> None:
    # Root included: a file where the cache directory should be cannot be written under.
    store = _store(tmp_path)
    segs = list(reader.snapshot(store.path).state.segments.values())
    (store.path / CACHE_DIR).write_bytes(b"")
    with RollupReader(store.path) as rr:
        table = rr.gather(BY_VERB, segs)
        assert (rr.stats.computed, rr.stats.written) == (len(segs), 0)
    assert sum(table["n"].to_pylist()) == sum(s.rows for s in segs)
    assert not list(store.path.glob(f"{CACHE_DIR}*/**/*.parquet"))


def test_prune_removes_aggregates_of_segments_gone(tmp_path: Path) -> None:
    store = _store(tmp_path)
    segs = sorted(reader.snapshot(store.path).state.segments.values(), key=lambda s: s.path)
    with RollupReader(store.path) as rr:
        rr.gather(BY_VERB, segs)
        assert rr.prune(BY_VERB, segs) == 0
        assert rr.prune(BY_VERB, segs[1:]) == 1
        assert not rr.path(BY_VERB, segs[0]).exists()
        assert rr.path(BY_VERB, segs[1]).exists()
        assert rr.prune("no-such-rollup", segs) == 0


def test_no_segments_no_tail_gives_the_empty_shape(tmp_path: Path) -> None:
    store = open_store(tmp_path / "empty")
    with RollupReader(store.path) as rr:
        t = rr.gather(BY_VERB, [])
    assert t.num_rows == 0 and t.column_names == ["verb", "n", "first"]


def test_the_rollup_connection_reads_only_the_segments(tmp_path: Path) -> None:
    store = _store(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    sneaky = Rollup("sneaky", "1", f"SELECT * FROM read_text('{secret}')")
    with RollupReader(store.path) as rr, pytest.raises(Exception, match="ermission|access"):
        rr.compute(sneaky, store.path.as_posix())


def test_aggregates_are_kept_in_memory_until_forgotten(tmp_path: Path) -> None:
    store = _store(tmp_path)
    segs = list(reader.snapshot(store.path).state.segments.values())
    with RollupReader(store.path) as rr:
        first = rr.gather(BY_VERB, segs)
    for f in (store.path / CACHE_DIR / BY_VERB.name).iterdir():
        f.unlink()  # the files gone: the tables kept in memory still answer
    with RollupReader(store.path) as rr:
        assert rr.gather(BY_VERB, segs).equals(first)
        assert (rr.stats.computed, rr.stats.cached) == (0, len(segs))
    clear_memo()
    with RollupReader(store.path) as rr:
        assert rr.gather(BY_VERB, segs).sort_by("verb").equals(first.sort_by("verb"))
        assert (rr.stats.computed, rr.stats.cached) == (len(segs), 0)
