"""The dashboard's JSON twins, in process, against a real store (segments + WAL tail)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from ui_harness import AUTH, TOKEN, Client, UIStore, ui_app

from kaudit.query.filters import Filters, rows_sql
from kaudit.web.ui.pages.overview import REQUEST

RANGE = {"since": "2025-03-03T09:00:00Z", "until": "2025-03-03T10:00:00Z"}


def get(client: Client, path: str, **params: Any) -> Any:
    r = client.get(path, params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def requests_in_range(store: Any) -> tuple[int, int]:
    """``kaudit query --stage final`` over RANGE: the requests, and those among them
    whose final stored stage is a completion (or a failed authentication's single
    ResponseStarted), which is what the overview counts."""
    inner = rows_sql(Filters(since=RANGE["since"], until=RANGE["until"]))
    row = store.query(
        f"SELECT count(*) AS n, count(*) FILTER ({REQUEST}) AS done FROM ({inner.sql})",
        inner.params,
    ).to_pylist()[0]
    return int(row["n"]), int(row["done"])


# --- authentication ---------------------------------------------------------------------

JSON_TWINS = [
    "/api/v1/overview",
    "/api/v1/search",
    "/api/v1/search/export.jsonl",
    "/api/v1/search/export.csv",
    "/api/v1/events/x",
    "/api/v1/history",
    "/api/v1/timeline",
    "/api/v1/alerts",
]


@pytest.mark.parametrize("path", JSON_TWINS)
def test_json_twins_refuse_unauthenticated_callers_with_the_error_shape(
    client: Client, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 401
    assert r.json()["error"]["reason"] == "Unauthorized"
    assert "authentication required" in r.json()["error"]["message"]
    bad = client.get(path, headers={"Authorization": "Bearer wrong"})
    assert bad.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/alerts/x/state", "/api/v1/policy/check"])
def test_json_posts_refuse_unauthenticated_callers(client: Client, path: str) -> None:
    r = client.post(path, content=b"{}")
    assert r.status_code == 401
    assert set(r.json()["error"]) == {"status", "reason", "message"}


def test_read_identities_restrict_the_json_twins(ui_store: UIStore) -> None:
    app = ui_app(ui_store.store, read_identities=["someone-else"])
    r = Client(app).get("/api/v1/overview", headers=AUTH)
    assert r.status_code == 403
    assert '"admin" is not allowed' in r.json()["error"]["message"]


# --- overview -----------------------------------------------------------------------------


def test_overview_counts_requests_as_the_cli_does(client: Client, ui_store: UIStore) -> None:
    d = get(client, "/api/v1/overview", **RANGE)
    assert d["range"] == {
        "since": "2025-03-03T09:00:00.000000Z",
        "until": "2025-03-03T10:00:00.000000Z",
        "preset": "custom",
    }
    final, done = requests_in_range(ui_store.store)
    assert d["requests"] == done > 0
    assert final > done  # the generated traffic has watches still open at its end
    rot = d["requests_over_time"]
    assert sum(sum(b["counts"].values()) for b in rot["buckets"]) == d["requests"]
    codes = d["response_codes"]
    assert sum(codes["classes"].values()) + codes["no_response"] == d["requests"]
    assert codes["errors"] == codes["classes"]["4xx"] + codes["classes"]["5xx"]
    cov = d["policy_coverage"]
    stored = ui_store.store.query(
        "SELECT count(*) AS n FROM events WHERE ts >= ? AND ts < ?",
        ["2025-03-03T09:00:00Z", "2025-03-03T10:00:00Z"],
    )["n"][0].as_py()
    assert cov["events"] == sum(lv["count"] for lv in cov["levels"]) == stored
    assert d["pipeline"]["source"] == "store"
    assert d["pipeline"]["stored_events"] == ui_store.store.stats().events
    assert d["clusters"] == ["prod"]


def test_overview_panels_find_the_generated_incidents(client: Client) -> None:
    d = get(client, "/api/v1/overview", **RANGE)
    assert d["anonymous"]["total"] > 0
    assert d["secret_reads"] and all(r["count"] > 0 for r in d["secret_reads"])
    assert d["latency"]["by_verb"] and all(
        r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"] for r in d["latency"]["by_verb"]
    )
    top = d["top"]
    assert top["users"] and top["service_accounts"] and top["source_ips"]
    assert all(i["value"].startswith("system:serviceaccount:") for i in top["service_accounts"])
    # Everything is new in the first hour of the store; nothing in a later window is.
    assert all(i["new"] for i in top["users"])
    later = get(client, "/api/v1/overview", since="2025-03-03T09:10:00Z", until=RANGE["until"])
    assert not all(i["new"] for i in later["top"]["users"])


def test_overview_filters_by_cluster(client: Client) -> None:
    d = get(client, "/api/v1/overview", cluster="no-such-cluster", **RANGE)
    assert d["requests"] == 0
    assert d["response_codes"]["error_rate"] == 0.0


def client_newest(client: Client) -> str:
    d = get(client, "/api/v1/search", sql="SELECT max(ts) AS t FROM events")
    return str(d["rows"][0]["t"])


def test_overview_presets_count_back_from_the_newest_event(client: Client) -> None:
    d = get(client, "/api/v1/overview", since="1h")
    assert d["range"]["preset"] == "1h"
    from datetime import datetime, timedelta

    newest = datetime.fromisoformat(client_newest(client).replace("Z", "+00:00"))
    until = newest.replace(second=0, microsecond=0) + timedelta(minutes=1)  # rounded up
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    assert d["range"]["until"] == until.strftime(fmt)
    assert d["range"]["since"] == (until - timedelta(hours=1)).strftime(fmt)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday-ish"}, "since: invalid time 'yesterday-ish'"),
        ({"since": "2025-03-04T00:00:00Z", "until": "2025-03-03T00:00:00Z"}, "the range is empty"),
    ],
)
def test_overview_bad_range_names_the_parameter(
    client: Client, params: dict[str, str], message: str
) -> None:
    r = client.get("/api/v1/overview", params=params, headers=AUTH)
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


def test_exec_commands_are_decoded_from_the_request_uri() -> None:
    from kaudit.web.ui.pages.overview import decode_command

    d = decode_command(
        "/api/v1/namespaces/ns/pods/web/exec?command=sh&command=-c&command=cat%20%2Fetc%2Fshadow"
        "&container=app&stdin=true"
    )
    assert d["command"] == ["sh", "-c", "cat /etc/shadow"]
    assert d["container"] == "app"
    assert decode_command(None)["command"] == []


# --- search and export ----------------------------------------------------------------------


def test_search_applies_the_cli_filters_and_pages(client: Client) -> None:
    p1 = get(client, "/api/v1/search", verb="get,list", limit="10", **RANGE)
    assert p1["columns"][0] == "ts" and len(p1["rows"]) == 10 and p1["has_more"]
    assert {r["verb"] for r in p1["rows"]} <= {"get", "list"}
    p2 = get(client, "/api/v1/search", verb="get,list", limit="10", page="2", **RANGE)
    assert not {r["audit_id"] for r in p1["rows"]} & {r["audit_id"] for r in p2["rows"]}
    assert p1["rows"][-1]["ts"] >= p2["rows"][0]["ts"]  # newest first
    cols = get(client, "/api/v1/search", columns="username,code", limit="5")
    assert cols["columns"] == ["username", "code"]


def test_search_sql_box_runs_read_only_sql(client: Client) -> None:
    d = get(client, "/api/v1/search", sql="SELECT verb, count(*) AS n FROM events GROUP BY verb")
    assert d["columns"] == ["verb", "n"] and d["rows"]
    r = client.get(
        "/api/v1/search",
        params={"sql": "SELECT * FROM read_csv('/etc/passwd')"},
        headers=AUTH,
    )
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"columns": "usernme"}, "columns: unknown column 'usernme'"),
        ({"verb": "gett"}, "--verb: unknown verb 'gett'"),
        ({"limit": "many"}, "limit: invalid value 'many'"),
        ({"sql": "SELEC 1"}, "search:"),
    ],
)
def test_search_errors_name_the_field(client: Client, params: dict[str, str], message: str) -> None:
    r = client.get("/api/v1/search", params=params, headers=AUTH)
    assert r.status_code == 400
    assert message in r.json()["error"]["message"]


def test_export_jsonl_is_the_original_events_byte_for_byte(
    client: Client, ui_store: UIStore
) -> None:
    r = client.get(
        "/api/v1/search/export.jsonl", params={"resource": "secrets", "stage": "all"}, headers=AUTH
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    expected = ui_store.store.query(
        "SELECT event FROM events WHERE resource = 'secrets' AND subresource IS NULL"
    )["event"].to_pylist()
    lines = r.content.splitlines()
    assert sorted(lines) == sorted(e.encode() for e in expected)
    assert r.content.endswith(b"\n")


def test_export_csv_has_the_chosen_columns(client: Client) -> None:
    r = client.get(
        "/api/v1/search/export.csv",
        params={"columns": "username,verb,groups", "verb": "delete"},
        headers=AUTH,
    )
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["username", "verb", "groups"]
    assert len(rows) > 1 and all(row[1] == "delete" for row in rows[1:])
    assert rows[1][2].startswith("[")


# --- event, history, timeline -------------------------------------------------------------------


def test_event_has_every_stage_and_links(client: Client, ui_store: UIStore) -> None:
    aid = ui_store.store.query(
        "SELECT audit_id FROM events WHERE stage = 'RequestReceived' AND resource = 'deployments' "
        "AND verb = 'update' LIMIT 1"
    )["audit_id"][0].as_py()
    d = get(client, f"/api/v1/events/{aid}")
    assert [s["stage"] for s in d["stages"]] == ["RequestReceived", "ResponseComplete"]
    assert d["final"]["stage"] == "ResponseComplete"
    assert d["object"].startswith("deployments.apps/")
    assert d["username"] == d["final"]["username"]


def test_unknown_event_is_404(client: Client) -> None:
    r = client.get("/api/v1/events/no-such-id", headers=AUTH)
    assert r.status_code == 404
    assert "no stored event has this auditID" in r.json()["error"]["message"]


def test_history_has_side_by_side_diffs(client: Client) -> None:
    d = get(client, "/api/v1/history", object="configmap/app-config", namespace="shop")
    assert [r["change"] for r in d["requests"]] == ["created", "changed"]
    assert d["changes"] == 2
    hunks = d["requests"][1]["side_by_side"]
    cells = [(row["left"]["text"], row["right"]["text"]) for h in hunks for row in h["rows"]]
    # keys sorted: "debug" is added before "mode" changes; the old value of "mode" faces
    # its new value (paired by content, not by position), the added key an empty cell
    assert ("  mode: blue", "  mode: green") in cells
    assert ("", "  debug: 'true'") in cells
    assert ("  replicas: '2'", "  replicas: '2'") in cells
    r = client.get("/api/v1/history", params={"object": "nonsense"}, headers=AUTH)
    assert r.status_code == 400 and "KIND/NAME" in r.json()["error"]["message"]


def test_side_by_side_pairs_removed_and_added_lines() -> None:
    from kaudit.web.ui.pages.history import side_by_side

    diff = "--- a\n+++ b\n@@ -1,3 +1,3 @@\n a: 1\n-b: 2\n+b: 3\n+c: 4\n d: 5\n"
    [hunk] = side_by_side(diff)
    rows = [
        (r["left"]["kind"], r["left"]["text"], r["right"]["kind"], r["right"]["text"])
        for r in hunk["rows"]
    ]
    assert rows == [
        ("same", "a: 1", "same", "a: 1"),
        ("del", "b: 2", "add", "b: 3"),
        ("empty", "", "add", "c: 4"),
        ("same", "d: 5", "same", "d: 5"),
    ]
    assert hunk["rows"][3]["left"]["n"] == 3 and hunk["rows"][3]["right"]["n"] == 4
    assert side_by_side(None) == []


def test_side_by_side_pairs_a_changed_key_with_its_old_value() -> None:
    from kaudit.web.ui.pages.history import side_by_side

    diff = (
        "--- a\n+++ b\n@@ -1,4 +1,5 @@\n kind: ConfigMap\n-a: 1\n-c: 3\n-d: 4\n"
        "+a: 1x\n+b: 2\n+d: 5\n+e: 6\n"
    )
    [hunk] = side_by_side(diff)
    rows = [(r["left"]["text"], r["right"]["text"]) for r in hunk["rows"]]
    assert rows == [
        ("kind: ConfigMap", "kind: ConfigMap"),
        ("a: 1", "a: 1x"),
        ("c: 3", "b: 2"),  # a key replaced by another at the same place
        ("d: 4", "d: 5"),
        ("", "e: 6"),
    ]
    numbers = [(r["left"]["n"], r["right"]["n"]) for r in hunk["rows"]]
    assert numbers == [(1, 1), (2, 2), (3, 3), (4, 4), (None, 5)]


def test_timeline_groups_what_a_user_did(client: Client, ui_store: UIStore) -> None:
    user = ui_store.alerts[0].username
    d = get(client, "/api/v1/timeline", user=user, **RANGE)
    assert d["user"] == user and d["rows"]
    assert d["requests"] == sum(r["count"] for r in d["rows"])
    assert all(user in (r["username"], r["impersonated_user"]) for r in d["rows"])
    empty = get(client, "/api/v1/timeline")
    assert empty["rows"] == []


# --- alerts ---------------------------------------------------------------------------------------


def test_alerts_filter_by_rule_and_severity(client: Client) -> None:
    every = get(client, "/api/v1/alerts")
    assert {a["rule_id"] for a in every["alerts"]} == {"secret-read", "impersonation-privileged"}
    assert all(a["state"] == "open" for a in every["alerts"])
    high = get(client, "/api/v1/alerts", severity="high")
    assert [a["rule_id"] for a in high["alerts"]] == ["impersonation-privileged"]
    one = get(client, "/api/v1/alerts", rule="secret-read")
    assert len(one["alerts"]) == 1 and len(one["alerts"][0]["audit_ids"]) == 3
    r = client.get("/api/v1/alerts", params={"severity": "urgent"}, headers=AUTH)
    assert r.status_code == 400 and "severity: unknown value 'urgent'" in r.text


def test_acknowledge_and_suppress_through_the_api(fresh_store: UIStore) -> None:
    if True:
        c = Client(ui_app(fresh_store.store))
        aid = "a" * 32
        r = c.post(f"/api/v1/alerts/{aid}/state", json={"state": "acknowledged"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["by"] == "admin (token)"
        assert get(c, "/api/v1/alerts", rule="secret-read")["alerts"][0]["state"] == "acknowledged"
        c.post(f"/api/v1/alerts/{aid}/state", json={"state": "suppressed"}, headers=AUTH)
        assert get(c, "/api/v1/alerts", rule="secret-read")["alerts"] == []
        assert len(get(c, "/api/v1/alerts", state="suppressed")["alerts"]) == 1
        bad = c.post(f"/api/v1/alerts/{aid}/state", json={"state": "gone"}, headers=AUTH)
        assert bad.status_code == 400 and "expected one of open" in bad.json()["error"]["message"]
        missing = c.post("/api/v1/alerts/nope/state", json={"state": "open"}, headers=AUTH)
        assert missing.status_code == 404
    state = fresh_store.path / "ui" / "alert-state.jsonl"
    assert state.stat().st_mode & 0o777 == 0o600
    assert state.parent.stat().st_mode & 0o777 == 0o700


# --- policy ---------------------------------------------------------------------------------------

POLICY = b"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: "", resources: [events]}]
- level: Metadata
  resources: [{group: "", resources: [secrets, configmaps]}]
- level: Request
"""


def test_policy_check_lints_and_simulates(client: Client) -> None:
    r = client.post("/api/v1/policy/check", content=POLICY, headers=AUTH)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["valid"] is True
    sim = d["simulation"]
    assert sim["captured"]["events"] > 0
    assert set(sim["events_by_level"]) == {"Metadata", "Request", "RequestResponse"}
    assert sim["events_by_level"]["RequestResponse"] == 0
    assert "rules[2]" in sim["events_by_rule"]


def test_invalid_policy_gives_findings_not_a_simulation(client: Client) -> None:
    bad = POLICY.replace(b"level: Request\n", b"level: Metdata\n")
    d = client.post("/api/v1/policy/check", content=bad, headers=AUTH).json()
    assert d["valid"] is False and d["simulation"] is None
    assert any("Metdata" in f["message"] for f in d["findings"])
    empty = client.post("/api/v1/policy/check", content=b"  ", headers=AUTH)
    assert empty.status_code == 400 and "the policy is empty" in empty.text


def test_token_constant_is_used(client: Client) -> None:
    assert TOKEN in AUTH["Authorization"]
