"""The overview from per-segment rollups equals the overview from a scan of the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kaudit.query.rollup import CACHE_DIR
from kaudit.store import open_store, reader
from kaudit.store.verify import verify
from kaudit.traffic import generate
from kaudit.web.ui.pages import overview
from kaudit.web.ui.rollups import aligned
from kaudit.web.ui.span import Span, open_span
from kaudit.web.ui.timerange import TimeRange, bucket_seconds

START = datetime(2026, 3, 1, 9, 40, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clusters, four flushes over three hours, and a write-ahead log tail."""
    root = tmp_path_factory.mktemp("rollups") / "store"
    store = open_store(root)
    events = list(generate(5000, seed=11, start=START, rate_per_s=0.5))
    with store.writer() as w:
        for i, cluster in enumerate(("prod", "dev", "prod", "dev")):
            w.append_events(events[i * 1000 : (i + 1) * 1000], cluster=cluster)
            w.flush()
        w.append_events(events[4000:], cluster="prod")
        # The tail stays in the WAL while the writer is open: copy the store as it is.
        span = open_span(root)
        assert span.tail is not None and span.tail.num_rows == 1000
        span.close()
        frozen = root.parent / "frozen"
        _copy(root, frozen)
    return frozen


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("writer.lock"))


def _scan(root: Path, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    span = open_span(root)
    try:
        span.narrow(rng.since_us, rng.until_us)
        return overview._panels(span, rng, cluster, None)
    finally:
        span.close()


def _rolled(root: Path, rng: TimeRange, cluster: str | None) -> dict[str, Any]:
    span: Span = open_span(root)
    try:
        return overview.panels(span, rng, cluster)
    finally:
        span.close()


def _range(minutes_from_start: int, minutes: int) -> TimeRange:
    base = START.replace(second=0, microsecond=0)
    since = base + timedelta(minutes=minutes_from_start)
    return TimeRange(since, since + timedelta(minutes=minutes), "custom")


RANGES = {
    "everything": (-60, 6 * 60),
    "one hour inside": (50, 60),
    "a range cut inside segments": (17, 111),
    "before everything": (-600, 60),
    "the tail only": (140, 60),
}


@pytest.mark.parametrize("cluster", [None, "dev"])
@pytest.mark.parametrize("name", sorted(RANGES))
def test_rollups_give_the_scans_numbers(store_dir: Path, name: str, cluster: str | None) -> None:
    rng = _range(*RANGES[name])
    assert aligned(rng.since_us, rng.until_us, bucket_seconds(rng.seconds))
    expected = _scan(store_dir, rng, cluster)
    assert _rolled(store_dir, rng, cluster) == expected  # cold: rollups built
    assert _rolled(store_dir, rng, cluster) == expected  # warm: rollups read
    if name == "everything" and cluster is None:
        assert expected["requests"] > 0 and expected["clusters"] == ["dev", "prod"]
        assert all(i["new"] for i in expected["top"]["users"])  # nothing before the range
    if name == "everything" and cluster == "dev":
        assert 0 < expected["requests"] < _scan(store_dir, rng, None)["requests"]
    if name == "one hour inside" and cluster is None:
        assert not all(i["new"] for i in expected["top"]["users"])  # seen before


def test_rollups_are_cached_per_segment_and_verify_ignores_them(store_dir: Path) -> None:
    rng = _range(*RANGES["everything"])
    _rolled(store_dir, rng, None)
    segs = reader.snapshot(store_dir).state.segments.values()
    for name in ("overview-counts", "overview-seen"):
        cached = {p.name.split("-", 1)[0] for p in (store_dir / CACHE_DIR / name).iterdir()}
        assert cached == {s.sha256 for s in segs}
    verify(store_dir)


def test_a_range_inside_a_minute_is_scanned(store_dir: Path) -> None:
    base = START.replace(second=0, microsecond=0)
    rng = TimeRange(base + timedelta(seconds=30), base + timedelta(minutes=90), "custom")
    assert not aligned(rng.since_us, rng.until_us, bucket_seconds(rng.seconds))
    assert _rolled(store_dir, rng, None) == _scan(store_dir, rng, None)
