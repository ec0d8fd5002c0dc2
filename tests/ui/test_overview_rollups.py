"""The overview from per-segment rollups equals the overview from a scan of the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from kaudit.model.types import Event, ObjectReference
from kaudit.query.rollup import CACHE_DIR
from kaudit.store import open_store, reader
from kaudit.store.verify import verify
from kaudit.traffic import generate
from kaudit.web.ui.pages import overview
from kaudit.web.ui.rollups import LAT_ERROR, aligned, estimate
from kaudit.web.ui.span import Span, open_span
from kaudit.web.ui.timerange import TimeRange, bucket_seconds

START = datetime(2026, 3, 1, 9, 40, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two clusters, four flushes over three hours, and a write-ahead log tail."""
    root = tmp_path_factory.mktemp("rollups") / "store"
    store = open_store(root)
    events = [
        _rbac(e) if i % 97 == 0 else e
        for i, e in enumerate(generate(5000, seed=11, start=START, rate_per_s=0.5))
    ]
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


def _rbac(ev: Event) -> Event:
    """The event made an RBAC write (a role binding created), every stage of it alike."""
    ref = ObjectReference(
        resource="rolebindings",
        namespace="payments",
        name=f"rb-{ev.audit_id[:8]}",
        api_group="rbac.authorization.k8s.io",
        api_version="v1",
    )
    return msgspec.structs.replace(ev, verb="create", object_ref=ref)


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


def _close(estimated: float, exact: float) -> bool:
    # Both rounded to 0.1 ms after the estimate (within LAT_ERROR, relatively).
    return abs(estimated - exact) <= LAT_ERROR * abs(exact) + 0.1 + 1e-9


def _same_but_latency(rolled: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every panel equal; latency: the same counts and maxima, quantiles within the
    documented error, and the answer says they are estimated."""
    lat, want = rolled.pop("latency"), expected["latency"]
    assert rolled == {k: v for k, v in expected.items() if k != "latency"}
    assert lat["estimated"] is True and want["estimated"] is False
    assert "estimated" in lat["note"] and lat["precision"] in lat["note"]
    assert lat["precision"] == f"within {LAT_ERROR:.1%}"
    for part in ("by_verb", "by_resource"):
        exact = {i["value"]: i for i in want[part]}
        if part == "by_verb":  # ranked by count (exact): the same rows in the same order
            assert [i["value"] for i in lat[part]] == list(exact)
        shared = [i for i in lat[part] if i["value"] in exact]
        assert len(shared) >= min(len(exact), 10)
        for i in shared:
            e = exact[i["value"]]
            assert (i["count"], i["max_ms"]) == (e["count"], e["max_ms"])
            for q in ("p50_ms", "p90_ms", "p99_ms"):
                assert _close(i[q], e[q]), (part, i, e)


@pytest.mark.parametrize("cluster", [None, "dev"])
@pytest.mark.parametrize("name", sorted(RANGES))
def test_rollups_give_the_scans_numbers(store_dir: Path, name: str, cluster: str | None) -> None:
    rng = _range(*RANGES[name])
    assert aligned(rng.since_us, rng.until_us, bucket_seconds(rng.seconds))
    expected = _scan(store_dir, rng, cluster)
    _same_but_latency(_rolled(store_dir, rng, cluster), expected)  # cold: rollups built
    _same_but_latency(_rolled(store_dir, rng, cluster), expected)  # warm: rollups read
    if name == "everything" and cluster is None:
        assert expected["requests"] > 0 and expected["clusters"] == ["dev", "prod"]
        # The list panels have something to compare.
        assert expected["anonymous"]["total"] > 0 and expected["anonymous"]["top_paths"]
        assert expected["authorization"]["top_denied_resources"]
        assert any(r["secrets"] > 1 for r in expected["secret_reads"])
        assert expected["sessions"]["items"] and expected["rbac_changes"]
        assert len(expected["latency"]["by_resource"]) > 3
        assert all(i["new"] for i in expected["top"]["users"])  # nothing before the range
    if name == "everything" and cluster == "dev":
        assert 0 < expected["requests"] < _scan(store_dir, rng, None)["requests"]
    if name == "one hour inside" and cluster is None:
        assert not all(i["new"] for i in expected["top"]["users"])  # seen before


def test_rollups_are_cached_per_segment_and_verify_ignores_them(store_dir: Path) -> None:
    rng = _range(*RANGES["everything"])
    _rolled(store_dir, rng, None)
    segs = reader.snapshot(store_dir).state.segments.values()
    for name in (
        "overview-counts",
        "overview-seen",
        "overview-lists",
        "overview-sessions",
        "overview-rbac",
        "overview-latency",
    ):
        cached = {p.name.split("-", 1)[0] for p in (store_dir / CACHE_DIR / name).iterdir()}
        assert cached == {s.sha256 for s in segs}
    verify(store_dir)


def test_a_range_inside_a_minute_is_scanned(store_dir: Path) -> None:
    base = START.replace(second=0, microsecond=0)
    rng = TimeRange(base + timedelta(seconds=30), base + timedelta(minutes=90), "custom")
    assert not aligned(rng.since_us, rng.until_us, bucket_seconds(rng.seconds))
    assert _rolled(store_dir, rng, None) == _scan(store_dir, rng, None)


def test_sessions_and_rbac_changes_of_a_range_inside_a_minute_come_from_their_selections(
    store_dir: Path,
) -> None:
    base = START.replace(second=0, microsecond=0)
    rng = TimeRange(base + timedelta(seconds=30), base + timedelta(minutes=90), "custom")
    expected = _scan(store_dir, rng, "prod")
    assert expected["latency"]["estimated"] is False
    assert _rolled(store_dir, rng, "prod") == expected
    cached = {p.name.split("-", 1)[0] for p in (store_dir / CACHE_DIR / "overview-rbac").iterdir()}
    span = open_span(store_dir)
    meeting = {s.sha256 for s in span.segments if s.min_ts < rng.until_us}
    span.close()
    assert meeting <= cached


def test_estimated_quantiles_hold_their_bound() -> None:
    import random

    import duckdb

    rnd = random.Random(5)
    values = [int(rnd.lognormvariate(9, 2)) for _ in range(3000)] + [0, 0, -3, 1, 2]
    con = duckdb.connect()
    con.execute("CREATE TABLE v AS SELECT unnest(?) AS us", [values])
    qs = [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0]
    exact = con.execute("SELECT quantile_cont(us, ?) FROM v", [qs]).fetchone()
    buckets = con.execute(
        "SELECT CASE WHEN us < 1 THEN -1000000 ELSE CAST(floor(8 * log2(us)) AS INTEGER) END "
        "AS k, count(*), min(us), max(us) FROM v GROUP BY k ORDER BY k"
    ).fetchall()
    con.close()
    assert exact is not None
    got = estimate(buckets, qs)
    assert got[0] == min(values) and got[-1] == max(values)  # the ends are exact
    for g, e in zip(got, exact[0], strict=True):
        assert abs(g - e) <= LAT_ERROR * abs(e) + 1e-6, (g, e)
    assert estimate([], [0.5]) == [0.0]
