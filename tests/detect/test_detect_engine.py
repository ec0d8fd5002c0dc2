"""Retro-hunt over a real store and the streaming engine give the same alerts."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from kaudit.detect.alert import AlertStore
from kaudit.detect.engine import Engine, hunt
from kaudit.detect.flat import table_from_events, table_from_records
from kaudit.detect.rule import load_rules
from kaudit.detect.testing import expand_events
from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.store import open_store
from kaudit.traffic import Traffic

RULES = load_rules()
N_EVENTS = 12_000

#: The rule that must fire for each kind of scripted incident (kaudit.traffic.INCIDENTS).
INCIDENT_RULES = {
    "privileged-pod": "pod-privileged",
    "anonymous-access": "anonymous-resource-probe",
    "exec-into-pod": "pod-exec",
    "impersonation": "impersonation-privileged",
    "cluster-admin-binding": "binding-cluster-admin",
    "failed-auth-burst": "unauthorized-burst",
    "configmap-deleted": "configmap-deleted-by-person",
    "secret-enumeration": "secret-enumeration",
}


@pytest.fixture(scope="module")
def traffic_table() -> pa.Table:
    tr = Traffic(seed=7)
    events = list(tr.events(N_EVENTS))
    t = table_from_events(events)
    return t.sort_by([("ts", "ascending"), ("audit_id", "ascending"), ("stage", "ascending")])


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "kaudit-data"
    st = open_store(path)
    events = list(Traffic(seed=7).events(N_EVENTS))
    with st.writer() as w:
        w.append_events(events)
        w.flush()
    return path


def _stream(table: pa.Table, batch: int, engine: Engine) -> list:
    out = []
    for off in range(0, table.num_rows, batch):
        out += engine.process(table.slice(off, batch))
    return out


@pytest.mark.slow
def test_hunt_over_store_equals_streaming(stored: Path, traffic_table: pa.Table) -> None:
    con = open_store(stored, create=False).connect()
    try:
        hunted = hunt(con, RULES)
    finally:
        con.close()
    streamed = _stream(traffic_table, 4000, Engine(RULES))
    assert hunted, "generated traffic with incidents must raise alerts"
    key = lambda a: (a.rule_id, a.id)  # noqa: E731
    assert sorted(hunted, key=key) == sorted(streamed, key=key)
    fired = Counter(a.rule_id for a in hunted)
    # Every incident the generator completed within the stream is seen by the pack.
    tr = Traffic(seed=7)
    for _ in tr.events(N_EVENTS):
        pass
    done = [i.kind for i in tr.incidents if i.complete]
    assert len(done) >= 2, done
    for kind in done:
        assert fired[INCIDENT_RULES[kind]] >= 1, (kind, fired)
    assert fired["secret-read"] >= 1, fired
    # The controllers of the default allowlists (cert-manager, argocd, ...) list and
    # read secrets all the time: none of that is an alert; incidents (even unfinished
    # ones, such as a service account starting to enumerate secrets) may be.
    scripted = {aid for i in tr.incidents for aid in i.audit_ids}
    assert not [
        a
        for a in hunted
        if a.severity == "high"
        and "serviceaccount" in (a.username or "")
        and not scripted.intersection(a.audit_ids)
    ]


@pytest.mark.parametrize("batch", [13, 5000])
def test_stateful_rules_same_alerts_for_any_batching(batch: int) -> None:
    rules = [r for r in RULES if r.kind != "simple"]
    events = expand_events(
        [
            {
                "verb": "get",
                "objectRef": {"resource": "secrets", "namespace": "a", "name": "s{i}"},
                "userAgent": "kubectl/1.0",
                "repeat": 25,
            },
            {
                "verb": "list",
                "user": {},
                "responseStatus": {"code": 401},
                "sourceIPs": ["203.0.113.9"],
                "repeat": 45,
            },
            {"verb": "list", "objectRef": {"resource": "k{i}"}, "repeat": 40},
            {
                "verb": "create",
                "objectRef": {
                    "resource": "rolebindings",
                    "apiGroup": "rbac.authorization.k8s.io",
                    "namespace": "a",
                    "name": "b",
                },
            },
            {
                "verb": "create",
                "objectRef": {"resource": "pods", "namespace": "a", "name": "p"},
                "userAgent": "evil/1.0",
                "sourceIPs": ["198.51.100.1"],
            },
        ]
    )
    table = table_from_events(events)
    con = duckdb.connect()
    con.register("events", table)
    hunted = hunt(con, rules)
    streamed = _stream(table, batch, Engine(rules))
    assert {a.rule_id for a in hunted} >= {
        "secret-enumeration",
        "unauthorized-burst",
        "discovery-burst",
        "rbac-change-then-workload",
        "first-seen-user-agent",
        "first-seen-source-ip",
    }
    assert sorted(hunted, key=lambda a: a.id) == sorted(streamed, key=lambda a: a.id)


@pytest.mark.slow
def test_state_survives_restart(tmp_path: Path) -> None:
    """Windows and first-seen terms persist under <store>/detect: a restart mid-burst
    gives the alerts of one uninterrupted run."""
    events = expand_events(
        [
            {"verb": "list", "objectRef": {"resource": "pods"}, "userAgent": "kubectl/1.0"},
            {
                "verb": "get",
                "objectRef": {"resource": "secrets", "namespace": "a", "name": "s{i}"},
                "repeat": 12,
            },
            {"verb": "list", "objectRef": {"resource": "pods"}, "userAgent": "curl/8"},
        ]
    )
    table = table_from_events(events)
    whole = _stream(table, 7, Engine(RULES))
    first = Engine.for_store(tmp_path, RULES)
    a = first.process(table.slice(0, 7))
    first.close()
    state = tmp_path / "detect" / "state.json"
    assert state.exists() and (state.stat().st_mode & 0o777) == 0o600
    second = Engine.for_store(tmp_path, RULES)
    b = second.process(table.slice(7))
    assert sorted(x.id for x in a + b) == sorted(x.id for x in whole)
    assert {"secret-enumeration", "first-seen-user-agent"} <= {x.rule_id for x in b}
    stored = AlertStore(tmp_path).read()
    assert sorted(x.id for x in stored) == sorted(x.id for x in whole)
    assert (tmp_path / "alerts" / "alerts.jsonl").stat().st_mode & 0o777 == 0o600


def test_restarted_engine_without_state_forgets(tmp_path: Path) -> None:
    events = expand_events(
        [
            {
                "verb": "get",
                "objectRef": {"resource": "secrets", "namespace": "a", "name": "s{i}"},
                "repeat": 12,
            }
        ]
    )
    table = table_from_events(events)
    rules = [r for r in RULES if r.id == "secret-enumeration"]
    Engine(rules).process(table.slice(0, 6))
    assert Engine(rules).process(table.slice(6)) == []


def test_process_accepts_records() -> None:
    events = expand_events(
        [
            {
                "verb": "create",
                "objectRef": {"resource": "pods", "namespace": "kube-system", "name": "x"},
            }
        ]
    )
    recs = [Record(e, encode_event(e)[:-1], "t", i + 1) for i, e in enumerate(events)]
    eng = Engine(RULES)
    alerts = eng.process(recs)
    assert [a.rule_id for a in alerts] == ["pod-created-in-system-namespace"]
    assert table_from_records(recs).num_rows == 1


def test_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    from kaudit.errors import StoreError

    d = tmp_path / "detect"
    d.mkdir()
    (d / "state.json").write_bytes(b"{not json")
    with pytest.raises(StoreError, match="state.json: cannot read detection state"):
        Engine.for_store(tmp_path, RULES)


def test_state_is_bounded() -> None:
    rules = [r for r in RULES if r.id == "first-seen-source-ip"]
    eng = Engine(rules, max_keys_per_rule=50)
    events = expand_events(
        [
            {
                "verb": "get",
                "user": "user{i}",
                "objectRef": {"resource": "pods"},
                "sourceIPs": ["10.1.0.{i}"],
                "repeat": 200,
            }
        ]
    )
    eng.process(table_from_events(events))
    assert eng.state_sizes()["first-seen-source-ip"] <= 100


def test_hunt_time_range(traffic_table: pa.Table) -> None:
    con = duckdb.connect()
    con.register("events", traffic_table)
    rules = [r for r in RULES if r.id == "secret-read"]
    every = hunt(con, rules)
    assert every
    cut = traffic_table.column("ts").to_pylist()[-1]
    from kaudit.model.codec import to_micros

    last = max(to_micros(a.last_ts) for a in every)
    assert hunt(con, rules, since_us=last + 1) == []
    assert len(hunt(con, rules, until_us=last + 1)) == len(every)
    assert cut is not None
    assert os.sep  # keeps the import used on every platform
