"""``capture_from_store`` from per-segment rollups equals one pass over every event."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kaudit.policy import load_policy_bytes
from kaudit.policy.capture import ROLLUP_NAME, Capture
from kaudit.policy.simulate import (
    capture_from_connection,
    capture_from_store,
    names_of,
    simulate,
)
from kaudit.query.rollup import CACHE_DIR
from kaudit.store import open_store, reader
from kaudit.traffic import generate

START = datetime(2026, 2, 1, 22, 10, 3, tzinfo=UTC)
POLICY = load_policy_bytes(
    b"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: None
  resources: [{group: "", resources: [configmaps], resourceNames: [kube-root-ca.crt]}]
- level: RequestResponse
  verbs: [create, update, patch, delete]
- level: Request
  verbs: [get, list]
- level: Metadata
""",
    "policy.yaml",
)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three flushes across midnight and an unflushed write-ahead log tail."""
    root = tmp_path_factory.mktemp("capture") / "store"
    store = open_store(root)
    events = list(generate(4000, seed=5, start=START, rate_per_s=0.5))
    with store.writer() as w:
        for i in range(3):
            w.append_events(events[i * 1000 : (i + 1) * 1000])
            w.flush()
        w.append_events(events[3000:])
        assert reader.snapshot(root).tail.num_rows == 1000
        frozen = root.parent / "frozen"
        shutil.copytree(root, frozen, ignore=shutil.ignore_patterns("writer.lock"))
    return frozen


def _key(c: Capture) -> list[tuple[object, ...]]:
    return sorted((tuple(g) for g in c.groups), key=repr)


def _one_pass(root: Path, **kw: object) -> Capture:
    con = open_store(root, create=False).connect()
    return capture_from_connection(con, **kw)  # type: ignore[arg-type]


RANGES = {
    "everything": (None, None),
    "cut inside segments": (timedelta(minutes=17), timedelta(minutes=97)),
    "from a time on": (timedelta(minutes=40), None),
    "up to a time": (None, timedelta(minutes=55)),
}


@pytest.mark.parametrize("names", [(), ("kube-root-ca.crt",)], ids=["no names", "names"])
@pytest.mark.parametrize("name", sorted(RANGES))
def test_rollups_give_the_groups_of_one_pass(store_dir: Path, name: str, names: tuple[str]) -> None:
    lo, hi = RANGES[name]
    since = START + lo if lo is not None else None
    until = START + hi if hi is not None else None
    expected = _one_pass(store_dir, names=names, since=since, until=until)
    for _ in ("cold", "warm"):
        got = capture_from_store(str(store_dir), names=names, since=since, until=until)
        assert _key(got) == _key(expected)
        assert (got.first_ts, got.last_ts) == (expected.first_ts, expected.last_ts)
    if name == "everything":
        assert expected.events == 4000


def test_simulation_from_rollups_is_byte_for_byte_the_same(store_dir: Path) -> None:
    names = names_of([POLICY])
    cached = simulate(POLICY, capture_from_store(str(store_dir), names=names)).to_dict()
    direct = simulate(POLICY, _one_pass(store_dir, names=names)).to_dict()
    assert cached.pop("source") == f"store {store_dir}"
    direct.pop("source")
    assert cached == direct
    assert cached["simulated"]["bytes"] > 0


def test_rollups_follow_the_segments(store_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(store_dir, root)
    capture_from_store(str(root))
    d = root / CACHE_DIR / ROLLUP_NAME
    segs = reader.snapshot(root).state.segments.values()
    assert {p.name.split("-", 1)[0] for p in d.iterdir()} == {s.sha256 for s in segs}
    stale = d / ("f" * 64 + "-1.000000000000.parquet")
    stale.write_bytes(b"")
    got = capture_from_store(str(root))
    assert not stale.exists()  # a segment no longer listed: removed
    assert got.events == 4000
