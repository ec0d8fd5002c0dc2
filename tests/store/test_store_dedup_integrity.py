"""Deduplication on (audit_id, stage), and the manifest / verify / retention / compaction."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from store_helpers import make_event, make_records  # noqa: I001

from kaudit.cli import main
from kaudit.errors import IntegrityError
from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.store import Store, StoreSettings, open_store
from kaudit.store.schema_doc import render
from kaudit.store.verify import verify

HOUR_US = 3_600_000_000


def count(store: Store) -> int:
    return int(store.query("SELECT count(*) FROM events").column(0)[0].as_py())


def test_retried_batch_and_reingest_add_nothing(store: Store) -> None:
    recs = make_records(200)
    with store.writer() as w:
        assert w.append(recs).stored == 200
        assert w.append(recs).duplicates == 200  # retried before a flush
        w.flush()
        assert w.append(recs[:50]).duplicates == 50  # after the flush
    with store.writer() as w:  # a new writer (keys loaded from disk)
        r = w.append(recs)
        assert (r.received, r.stored, r.duplicates) == (200, 0, 200)
    assert count(store) == 200


def test_same_audit_id_other_stage_is_kept(store: Store) -> None:
    a = make_event(1, stage="RequestReceived")
    b = make_event(1, stage="ResponseComplete")
    with store.writer() as w:
        assert w.append_events([a, b, b]).stored == 2


def test_empty_audit_id_dedups_on_the_raw_bytes(store: Store) -> None:
    a = make_event(1, audit_id="")
    b = make_event(2, audit_id="")
    with store.writer() as w:
        assert w.append_events([a, b, a]).stored == 2
        w.flush()
    with store.writer() as w:
        assert w.append_events([a, b]).stored == 0


def test_old_partitions_are_checked_on_disk_with_bounded_memory(tmp_path: Path) -> None:
    settings = StoreSettings(dedup_window_secs=0, dedup_max_keys=100)
    store = open_store(tmp_path / "s", settings=settings)
    base = 1_714_979_289_000_000
    old = [
        Record(e, encode_event(e)[:-1], "old", i)
        for i, e in enumerate(make_event(i, ts_us=base + i) for i in range(150))
    ]
    new = [
        Record(e, encode_event(e)[:-1], "new", i)
        for i, e in enumerate(
            make_event(1000 + i, ts_us=base + 30 * 24 * HOUR_US + i) for i in range(150)
        )
    ]
    with store.writer() as w:
        w.append(old)
        w.flush()
        w.append(new)
        w.flush()
        assert w.dedup.keys_in_memory <= 150  # the old hour left memory
        r = w.append(old)  # a re-imported old file: answered from its partition
        assert r.duplicates == 150
        assert w.dedup.disk_checks >= 1
    assert count(store) == 300


def test_verify_is_green_and_reports_every_tampering(store: Store) -> None:
    base = 1_714_979_289_000_000
    with store.writer() as w:
        for h in range(3):
            w.append_events(make_event(h * 100 + i, ts_us=base + h * HOUR_US) for i in range(20))
            w.flush()
    report = verify(store.path)
    assert (report.entries, report.segments, report.rows) == (3, 3, 60)

    segs = sorted(store.path.rglob("*.parquet"))
    data = bytearray(segs[0].read_bytes())
    data[len(data) // 2] ^= 0x01
    segs[0].write_bytes(bytes(data))
    segs[1].unlink()
    stray = segs[2].parent / "stray.parquet"
    stray.write_bytes(b"PAR1")
    manifest = store.path / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[2])
    entry["add"][0]["rows"] = 1
    lines[2] = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
    manifest.write_bytes(b"".join(lines))

    with pytest.raises(IntegrityError) as info:
        verify(store.path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{segs[0]}: altered segment: sha256" in text
    assert f"{segs[1]}: missing segment" in text
    assert f"{stray}: unexpected file" in text
    assert "manifest.jsonl:3: manifest entry altered" in text
    assert len(problems) == 4

    result = CliRunner().invoke(main, ["verify", "--store", str(store.path)])
    assert result.exit_code == 1
    assert result.stderr.count("error: ") == 4  # one line per problem


def test_removing_a_manifest_line_breaks_the_chain(store: Store) -> None:
    with store.writer() as w:
        for i in range(3):
            w.append(make_records(5, start=i * 10))
            w.flush()
    manifest = store.path / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(lines[0] + lines[2])
    with pytest.raises(IntegrityError) as info:
        verify(store.path)
    text = "\n".join(info.value.problems)
    assert "manifest.jsonl:2: manifest chain broken" in text
    assert "unexpected file" in text  # the segment of the dropped entry


def test_cli_verify_ok(store: Store) -> None:
    with store.writer() as w:
        w.append(make_records(10))
    result = CliRunner().invoke(main, ["verify", "--store", str(store.path)])
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output and "10 events" in result.output


def test_retention_deletes_old_partitions_and_verify_stays_green(store: Store) -> None:
    now_us = int(time.time() * 1_000_000)
    old_us = now_us - 400 * 24 * HOUR_US
    with store.writer() as w:
        w.append_events(make_event(i, ts_us=old_us + i) for i in range(10))
        w.append_events(make_event(100 + i, ts_us=now_us + i) for i in range(5))
    runner = CliRunner()
    dry = runner.invoke(
        main, ["retention", "--store", str(store.path), "--keep", "365d", "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 partitions" in dry.output
    assert count(store) == 15
    res = runner.invoke(main, ["retention", "--store", str(store.path), "--keep", "365d"])
    assert res.exit_code == 0, res.output
    assert "deleted 1 partitions (1 segments, 10 events" in res.output
    assert count(store) == 5
    verify(store.path)
    last = json.loads((store.path / "manifest.jsonl").read_bytes().splitlines()[-1])
    assert last["op"] == "retention" and len(last["remove"]) == 1
    bad = runner.invoke(main, ["retention", "--store", str(store.path), "--keep", "soon"])
    assert bad.exit_code == 1 and "--keep: invalid duration 'soon'" in bad.stderr


def test_writer_applies_the_retention_setting(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s", settings=StoreSettings(retention_keep_days=30))
    now_us = int(time.time() * 1_000_000)
    with store.writer() as w:
        w.append_events(make_event(i, ts_us=now_us - 60 * 24 * HOUR_US) for i in range(3))
        w.flush()
    assert count(store) == 0
    verify(store.path)


def test_compaction_merges_segments_and_keeps_every_row(store: Store) -> None:
    with store.writer() as w:
        for i in range(4):
            w.append(make_records(25, start=i * 25))
            w.flush()
    assert len(list(store.path.rglob("*.parquet"))) == 4
    before = store.query("SELECT event FROM events ORDER BY event").column(0).to_pylist()
    res = CliRunner().invoke(main, ["compact", "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert "4 segments merged into 1" in res.output
    assert len(list(store.path.rglob("*.parquet"))) == 1
    after = store.query("SELECT event FROM events ORDER BY event").column(0).to_pylist()
    assert after == before
    verify(store.path)
    with store.writer() as w:  # dedup still sees the compacted rows
        assert w.append(make_records(100)).stored == 0


def test_compaction_merges_in_bounded_groups(store: Store) -> None:
    # A busy hour is merged a group at a time (memory and Arrow's 2 GiB string limit):
    # six segments of 25 rows with at most 50 rows a group give three merged segments.
    from kaudit.store.compact import compact
    from kaudit.store.manifest import Manifest

    with store.writer() as w:
        for i in range(6):
            w.append(make_records(25, start=i * 25))
            w.flush()
    before = store.query("SELECT event FROM events ORDER BY event").column(0).to_pylist()
    res = compact(store.path, Manifest(store.path), store.settings, max_rows=50)
    assert (res.merged_segments, res.new_segments) == (6, 3)
    assert len(list(store.path.rglob("*.parquet"))) == 3
    after = store.query("SELECT event FROM events ORDER BY event").column(0).to_pylist()
    assert after == before
    verify(store.path)


def test_schema_page_matches_the_columns() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "schema.md"
    assert page.read_text() == render(), (
        "docs/schema.md is stale: python -m kaudit.store.schema_doc > docs/schema.md"
    )


def test_every_store_setting_is_documented() -> None:
    from kaudit.store.settings import SETTINGS

    page = (Path(__file__).resolve().parents[2] / "docs" / "store.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in page]
    assert not missing, f"docs/store.md does not document: {missing}"


def test_compaction_leaves_segments_of_many_rows_alone(store: Store) -> None:
    # An import writes segments of up to FLUSH_MAX_ROWS rows; merging them would
    # only write every event again.
    from kaudit.store.compact import compact
    from kaudit.store.manifest import Manifest

    with store.writer() as w:
        for i, n in enumerate((60, 60, 10, 10, 10)):
            w.append(make_records(n, start=i * 100))
            w.flush()
    res = compact(store.path, Manifest(store.path), store.settings, small_rows=50)
    assert (res.merged_segments, res.new_segments) == (3, 1)
    rows = sorted(s.rows for s in Manifest(store.path).state.segments.values())
    assert rows == [30, 60, 60]
    verify(store.path)
