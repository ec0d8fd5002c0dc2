"""history (with diffs), timeline and stats, through the Python API and the CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from query_events import CM_V1, MakeStore, ev, ts

from kaudit.cli import main
from kaudit.errors import QueryError
from kaudit.query import api
from kaudit.query.investigate import parse_object
from kaudit.store import Store


def cli(store: Store, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [args[0], "--store", str(store.path), *args[1:]])
    return r.exit_code, r.stdout, r.stderr


def test_history_answers_who_deleted_it(day_store: Store) -> None:
    t = api.history(day_store, "configmap/app-config", namespace="prod")
    rows = t.to_pylist()
    assert [(r["username"], r["verb"], r["code"], r["change"]) for r in rows] == [
        ("alice", "create", 201, "created"),
        ("bob", "get", 200, "unchanged"),
        ("ci-bot", "update", 200, "changed"),
        ("mallory", "delete", 403, "failed"),
        ("carol", "delete", 200, "deleted"),
    ]
    assert rows[2]["impersonated_user"] == "deployer"
    assert rows[4]["source_ip"] == "fd00::17"


def test_history_writes_only_leaves_out_reads(day_store: Store) -> None:
    args = ("history", "configmap/app-config", "-n", "prod", "--writes", "--format", "json")
    code, out, _ = cli(day_store, *args)
    assert code == 0
    rows = json.loads(out)
    assert [r["verb"] for r in rows] == ["create", "update", "delete", "delete"]
    assert "bob" not in {r["username"] for r in rows}  # bob only read it


def test_history_diffs_ignore_noise(day_store: Store) -> None:
    rows = api.history(day_store, "ConfigMap/app-config").to_pylist()
    created, update = rows[0]["diff"], rows[2]["diff"]
    assert "+  mode: blue" in created
    for noise in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
        assert noise not in created and noise not in update
    body = [ln for ln in update.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert body == ["-  mode: blue", "+  mode: green", "+  replicas: '3'"]
    assert "update by ci-bot as deployer" in update


@pytest.mark.parametrize(
    "spec",
    ["configmap/app-config", "configmaps/app-config", "cm/app-config", "ConfigMap/app-config"],
)
def test_history_kind_spellings(day_store: Store, spec: str) -> None:
    assert api.history(day_store, spec).num_rows == 5


def test_history_of_a_grouped_resource(day_store: Store) -> None:
    rows = api.history(day_store, "deployments.apps/web", namespace="prod").to_pylist()
    assert [(r["verb"], r["subresource"]) for r in rows] == [("patch", "scale")]
    assert api.history(day_store, "deployment/web", namespace="other").num_rows == 0


def test_history_patch_without_response_shows_the_patch(make_store: MakeStore) -> None:
    store = make_store(
        [
            ev("c", verb="create", name="cfg", at=ts(1), code=201, level="Request", req=CM_V1),
            ev("p", verb="patch", name="cfg", at=ts(2), level="Request", req={"data": {"k": "v"}}),
            ev("m", verb="update", name="cfg", at=ts(3), level="Metadata"),
        ]
    )
    rows = api.history(store, "configmap/cfg").to_pylist()
    assert [r["change"] for r in rows] == ["created", "patch", None]
    assert rows[1]["diff"] == "data:\n  k: v\n"


def test_history_cli(day_store: Store) -> None:
    code, out, _ = cli(day_store, "history", "configmap/app-config", "-n", "prod")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "verb", "code"]
    assert "carol" in lines[5] and "delete" in lines[5] and "deleted" in lines[5]
    assert "+  mode: green" in out
    code, out, _ = cli(day_store, "history", "configmap/app-config", "--format", "json")
    data = json.loads(out)
    assert [d["change"] for d in data][-1] == "deleted"
    code, out, _ = cli(day_store, "history", "configmap/nothing")
    assert (code, out.strip()) == (0, "no requests recorded for configmaps/nothing")
    code, _, err = cli(day_store, "history", "app-config")
    assert code == 1 and "KIND/NAME: invalid value 'app-config'" in err


def test_parse_object() -> None:
    ref = parse_object("deployments.apps/web")
    assert (ref.resource, ref.api_group, ref.name) == ("deployments", "apps", "web")
    with pytest.raises(QueryError):
        parse_object("pods/a/b")


def test_timeline_groups_repeated_requests(day_store: Store) -> None:
    t = api.timeline(day_store, "system:serviceaccount:kube-system:ctrl")
    assert t.to_pylist()[0]["count"] == 5
    assert t.num_rows == 1
    alice = api.timeline(day_store, "alice").to_pylist()
    assert [(r["verb"], r["resource"], r["subresource"], r["code"]) for r in alice] == [
        ("create", "configmaps", None, 201),
        ("create", "pods", "exec", 101),
        ("patch", "deployments", "scale", 200),
        ("get", None, None, 500),
    ]
    deployer = api.timeline(day_store, "deployer").to_pylist()
    assert [(r["username"], r["impersonated_user"]) for r in deployer] == [("ci-bot", "deployer")]
    assert api.timeline(day_store, "alice", code="5xx").num_rows == 1


def test_timeline_cli(day_store: Store) -> None:
    code, out, _ = cli(day_store, "timeline", "system:serviceaccount:*")
    assert code == 0
    assert "5x" in out.splitlines()[1]
    code, out, _ = cli(
        day_store, "timeline", "alice", "--format", "json", "--since", "2025-03-03T09:12:00Z"
    )
    assert [r["verb"] for r in json.loads(out)] == ["patch", "get"]
    code, out, _ = cli(day_store, "timeline", "nobody")
    assert out.strip() == "no requests by nobody"


def test_stats(day_store: Store) -> None:
    s = api.stats(day_store, by=["code", "user"], top=2)
    assert s["total"] == 14
    assert s["first"] == "2025-03-03T09:01:00.000000Z"
    assert s["by"]["code"] == [{"value": 200, "count": 10}, {"value": 101, "count": 1}]
    assert s["by"]["user"] == [
        {"value": "system:serviceaccount:kube-system:ctrl", "count": 5},
        {"value": "alice", "count": 4},
    ]
    window = api.stats(
        day_store, by=["verb"], since="2025-03-03T09:04:00Z", until="2025-03-03T09:06:00Z"
    )
    assert window["total"] == 2 and window["by"]["verb"] == [{"value": "delete", "count": 2}]
    empty = api.stats(day_store, by=["verb"], user="nobody")
    assert empty == {"total": 0, "first": None, "last": None, "by": {"verb": []}}


def test_stats_cli(day_store: Store) -> None:
    code, out, _ = cli(day_store, "stats", "--by", "code,verb", "--top", "1", "--format", "json")
    assert code == 0
    assert json.loads(out)["by"] == {
        "code": [{"value": 200, "count": 10}],
        "verb": [{"value": "list", "count": 5}],
    }
    code, out, _ = cli(day_store, "stats", "--by", "verb", "--top", "2")
    assert out.splitlines()[0].startswith("14 requests from 2025-03-03T09:01:00")
    code, _, err = cli(day_store, "stats", "--by", "usr")
    assert code == 1 and "--by: unknown dimension 'usr'" in err and 'did you mean "user"' in err


def test_api_find_and_sql(day_store: Store) -> None:
    t = api.find(day_store, user="carol", columns=["username", "verb", "code"])
    assert t.to_pylist() == [{"username": "carol", "verb": "delete", "code": 200}]
    n = api.sql(day_store, "SELECT count(*) AS n FROM events WHERE verb = ?", ["list"])
    assert n.to_pylist() == [{"n": 5}]
    with pytest.raises(QueryError, match="^sql: "):
        api.sql(day_store, "SELECT * FROM nowhere")
