"""Friendly filters against a real store: each filter, the final-stage rule, bad values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from query_events import ev

from kaudit.errors import QueryError
from kaudit.query import api
from kaudit.query.filters import Filters, compile_filters, glob_to_like, select_sql
from kaudit.query.timeparse import parse_duration, parse_when
from kaudit.store import Store


@pytest.fixture
def store(day_store: Store) -> Store:
    return day_store


def ids(store: Store, **kw: Any) -> list[str]:
    t = api.find(store, columns=["audit_id"], order="asc", limit=0, **kw)
    return [str(v) for v in t.column("audit_id").to_pylist()]


NOISE = ["n0", "n1", "n2", "n3", "n4"]

# name -> (filters, expected audit IDs in time order)
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "no filter: one row per request": (
        {},
        ["a1", "a2", "a3", "a4", "a5", *NOISE, "x1", "s1", "h1", "w1"],
    ),
    "user exact": ({"user": "carol"}, ["a5"]),
    "user matches the impersonated identity": ({"user": "deployer"}, ["a3"]),
    "user glob": ({"user": "system:serviceaccount:*"}, NOISE),
    "several users": ({"user": ["bob", "mallory"]}, ["a2", "a4", "w1"]),
    "group exact": ({"group": "ci"}, ["a3"]),
    "group glob": ({"group": "system:serviceaccount*"}, NOISE),
    "verb": ({"verb": "delete"}, ["a4", "a5"]),
    "verb comma list": ({"verb": "update,patch"}, ["a3", "s1"]),
    "verb case-insensitive": ({"verb": "DELETE"}, ["a4", "a5"]),
    "resource plural excludes subresources": ({"resource": "pods"}, NOISE),
    "resource with subresources": ({"resource": "pods/*"}, [*NOISE, "x1"]),
    "resource subresource": ({"resource": "pods/exec"}, ["x1"]),
    "resource any/scale": ({"resource": "*/scale"}, ["s1"]),
    "resource with group": ({"resource": "deployments.apps/scale"}, ["s1"]),
    "resource wrong group": ({"resource": "deployments.batch/scale"}, []),
    "resource Kind name": ({"resource": "ConfigMap"}, ["a1", "a2", "a3", "a4", "a5"]),
    "resource short name": ({"resource": "cm", "verb": "get"}, ["a2"]),
    "namespace": ({"namespace": "prod", "verb": "patch"}, ["s1"]),
    "namespace - is cluster-scoped": ({"namespace": "-"}, [*NOISE, "h1"]),
    "name": ({"name": "web-0"}, ["x1"]),
    "name glob": ({"name": "web*"}, ["x1", "s1"]),
    "code exact": ({"code": "403"}, ["a4"]),
    "code class": ({"code": "5xx"}, ["h1"]),
    "code comparison": ({"code": ">=400"}, ["a4", "h1"]),
    "code below": ({"code": "<200"}, ["x1"]),
    "code range": ({"code": "400-499"}, ["a4"]),
    "code list": ({"code": "201,101"}, ["a1", "x1"]),
    "code negation": ({"code": "!200"}, ["a1", "a4", "x1", "h1"]),
    "code class minus one": ({"code": "4xx,5xx,!500"}, ["a4"]),
    "source ip exact": ({"source_ip": "203.0.113.9"}, ["a4"]),
    "source ip v4 cidr": ({"source_ip": "10.0.0.0/24"}, ["a1", *NOISE, "x1", "s1", "h1", "w1"]),
    "source ip v4 cidr /16": ({"source_ip": "10.1.0.0/16"}, ["a3"]),
    "source ip v6 cidr": ({"source_ip": "fd00::/8"}, ["a5"]),
    "source ip v6 exact, other spelling": ({"source_ip": "fd00:0::17"}, ["a5"]),
    "user agent substring, any case": ({"user_agent": "CURL"}, ["a2"]),
    "user agent glob": ({"user_agent": "kube-controller*"}, NOISE),
    "cluster": ({"cluster": "prod", "verb": "delete"}, ["a4", "a5"]),
    "other cluster": ({"cluster": "staging"}, []),
    "since and until": (
        {"since": "2025-03-03T09:10:00Z", "until": "2025-03-03T09:11:00Z"},
        NOISE,
    ),
    "since date": ({"since": "2025-03-04"}, []),
    "stage all": ({"stage": "all", "user": "carol"}, ["a5", "a5"]),
    "stage list": ({"stage": "RequestReceived"}, ["a1", "a5", "w1"]),
    "watch in progress shows its latest stage": ({"verb": "watch"}, ["w1"]),
    "where": ({"where": "code >= 500 OR verb = 'watch'"}, ["h1", "w1"]),
    "filters AND together": ({"user": "alice", "namespace": "prod", "code": "2xx"}, ["a1", "s1"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_filter(store: Store, name: str) -> None:
    kw, expected = CASES[name]
    assert ids(store, **kw) == expected


def test_final_stage_is_the_complete_one(store: Store) -> None:
    t = api.find(store, columns=["audit_id", "stage", "code"], user="carol")
    assert t.to_pylist() == [{"audit_id": "a5", "stage": "ResponseComplete", "code": 200}]
    w = api.find(store, columns=["stage"], verb="watch")
    assert w.column("stage").to_pylist() == ["ResponseStarted"]


def test_order_and_limit(store: Store) -> None:
    newest = api.find(store, columns=["audit_id"], limit=2)
    assert newest.column("audit_id").to_pylist() == ["w1", "h1"]
    oldest = api.find(store, columns=["audit_id"], limit=2, order="asc")
    assert oldest.column("audit_id").to_pylist() == ["a1", "a2"]
    assert api.find(store, columns=["audit_id"], limit=0).num_rows == 14


def test_relative_durations(make_store: Callable[..., Store]) -> None:
    now = datetime.now(UTC)
    recent = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    old = (now - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store = make_store([ev("new", at=recent), ev("old", at=old)])
    assert ids(store, since="1h") == ["new"]
    assert ids(store, since="7d") == ["old", "new"]
    assert ids(store, until="1d") == ["old"]


def test_values_are_bound_never_spliced(store: Store) -> None:
    hostile = "x' OR '1'='1"
    for key in ("user", "group", "namespace", "name", "user_agent", "cluster"):
        assert ids(store, **{key: hostile}) == [], key
    c = compile_filters(Filters(user=hostile, name="a%b_c"))
    assert hostile not in c.sql
    assert hostile in c.params
    assert "a\\%b\\_c" not in c.sql


def test_like_wildcards_in_values_are_literal(make_store: Callable[..., Store]) -> None:
    store = make_store([ev("p", user="a%b"), ev("q", user="axxb"), ev("r", user="a_b")])
    assert ids(store, user="a%b") == ["p"]
    assert ids(store, user="a_b*") == ["r"]
    assert glob_to_like("a*%_\\") == "a%\\%\\_\\\\"


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "code word": ({"code": "forbidden"}, "--code: invalid value 'forbidden'"),
    "code class with op": ({"code": ">=4xx"}, "--code: invalid value '>=4xx'"),
    "code reversed range": ({"code": "499-400"}, "--code: invalid range '499-400'"),
    "verb typo": ({"verb": "delet"}, "--verb: unknown verb 'delet': expected one of get"),
    "cidr": ({"source_ip": "10.0.0.0/33"}, "--source-ip: invalid value '10.0.0.0/33'"),
    "ip": ({"source_ip": "10.0.0.300"}, "--source-ip: invalid value '10.0.0.300'"),
    "since": ({"since": "3 weeks"}, "--since: invalid time '3 weeks': expected a duration"),
    "until": ({"until": "yesterday"}, "--until: invalid time 'yesterday'"),
    "empty range": (
        {"since": "2025-03-04", "until": "2025-03-03"},
        "--since/--until: the range is empty",
    ),
    "stage": ({"stage": "Complete"}, "--stage: unknown stage 'Complete'"),
    "resource": ({"resource": "pods/exec/x"}, "--resource: invalid value 'pods/exec/x'"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_value(store: Store, name: str) -> None:
    kw, message = BAD[name]
    with pytest.raises(QueryError) as info:
        api.find(store, **kw)
    assert message in str(info.value)


def test_bad_where_names_the_flag(store: Store) -> None:
    with pytest.raises(QueryError, match=r"--where: .*nosuch"):
        api.find(store, where="nosuch = 1")


def test_unknown_column_suggests(store: Store) -> None:
    with pytest.raises(QueryError, match=r"--columns: unknown column 'usernme'.*did you mean"):
        api.find(store, columns=["ts", "usernme"])


def test_verb_typo_suggests() -> None:
    with pytest.raises(QueryError, match='did you mean "delete"'):
        select_sql(Filters(verb="delet"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("90s", 90), ("2w", 1209600)],
)
def test_durations(text: str, seconds: int) -> None:
    d = parse_duration(text)
    assert d is not None and d.total_seconds() == seconds


def test_times() -> None:
    now = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert parse_when("24h", now=now) == datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
    assert parse_when("2025-03-01", now=now) == datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_when("2025-03-01T10:00:00+02:00") == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert parse_when("2025-03-01T10:00:00.123456789Z").microsecond == 123456
    assert parse_when("2025-03-01 10:00:00") == datetime(2025, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(QueryError, match="--until: empty value"):
        parse_when(" ", flag="--until")
