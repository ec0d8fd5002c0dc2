"""The query commands through click's CliRunner and one real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from query_events import MakeStore, day, ev

from kaudit.cli import main
from kaudit.model import encode_event
from kaudit.store import Store


def run(store: Store, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, [args[0], "--store", str(store.path), *args[1:]])
    return r.exit_code, r.stdout, r.stderr


def test_jsonl_is_the_original_events_byte_for_byte(day_store: Store) -> None:
    code, out, _ = run(
        day_store, "query", "--format", "jsonl", "--order", "asc", "--limit", "0", "--stage", "all"
    )
    assert code == 0
    assert out.encode() == b"".join(encode_event(e) for e in day())


def test_jsonl_of_a_filtered_query(day_store: Store) -> None:
    code, out, _ = run(day_store, "query", "--user", "carol", "--format", "jsonl")
    assert code == 0
    complete = [e for e in day() if e.audit_id == "a5" and e.stage == "ResponseComplete"]
    assert out.encode() == encode_event(complete[0])


def test_json_is_an_array_of_flat_rows(day_store: Store) -> None:
    code, out, _ = run(day_store, "query", "--verb", "delete", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [r["username"] for r in rows] == ["carol", "mallory"]
    assert "event" not in rows[0]
    assert rows[0]["ts"] == "2025-03-03T09:05:00.000000Z"
    assert rows[0]["groups"] == ["system:authenticated"]
    assert rows[0]["annotations"] == {}
    assert rows[1]["code"] == 403


def test_json_columns_and_empty_result(day_store: Store) -> None:
    code, out, _ = run(day_store, "query", "--user", "nobody", "--format", "json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = run(
        day_store,
        "query",
        "--user",
        "bob",
        "--columns",
        "verb,code",
        "--format",
        "json",
        "--order",
        "asc",
    )
    assert json.loads(out) == [{"verb": "get", "code": 200}, {"verb": "watch", "code": 200}]


def test_csv_has_a_header(day_store: Store) -> None:
    code, out, _ = run(
        day_store,
        "query",
        "--user",
        "ci-bot",
        "--format",
        "csv",
        "--columns",
        "ts,username,impersonated_user,groups,code",
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["ts", "username", "impersonated_user", "groups", "code"],
        [
            "2025-03-03T09:03:00.000000Z",
            "ci-bot",
            "deployer",
            '["ci","system:authenticated"]',
            "200",
        ],
    ]


def test_table_shows_key_columns(day_store: Store) -> None:
    code, out, _ = run(day_store, "query", "--verb", "update")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split() == [
        "ts",
        "username",
        "verb",
        "resource",
        "namespace",
        "name",
        "code",
        "source_ip",
    ]
    assert "ci-bot (as deployer)" in row and "app-config" in row
    code, out, _ = run(day_store, "query", "--user", "nobody")
    assert (code, out.strip()) == (0, "no matching events")


@pytest.mark.parametrize(
    ("args", "message", "exit_code"),
    [
        (["--code", "4x"], "error: --code: invalid value '4x'", 1),
        (["--since", "3x"], "error: --since: invalid time '3x'", 1),
        (["--source-ip", "10.0.0.0/40"], "error: --source-ip: invalid value '10.0.0.0/40'", 1),
        (["--columns", "ts,usr"], "error: --columns: unknown column 'usr'", 1),
        (["--where", "nosuch = 1"], "error: --where 'nosuch = 1': Binder Error", 1),
        (["--format", "xml"], "Invalid value for '--format'", 2),
        (["--limit", "-1"], "Invalid value for '--limit'", 2),
        (["--format", "jsonl", "--columns", "ts"], "error: --columns: not used with", 1),
    ],
)
def test_bad_values(day_store: Store, args: list[str], message: str, exit_code: int) -> None:
    code, out, err = run(day_store, "query", *args)
    assert code == exit_code
    assert message in err
    assert out == ""


def test_missing_store_is_an_error(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["query", "--store", str(tmp_path / "none")])
    assert r.exit_code == 1
    assert "no store here" in r.stderr
    assert not (tmp_path / "none").exists()


def test_sql(day_store: Store) -> None:
    code, out, _ = run(
        day_store,
        "sql",
        "--format",
        "json",
        "SELECT verb, count(*) AS n FROM events WHERE stage = 'ResponseComplete' "
        "GROUP BY verb ORDER BY n DESC, verb LIMIT 2",
    )
    assert code == 0
    assert json.loads(out) == [{"verb": "list", "n": 5}, {"verb": "create", "n": 2}]
    code, out, _ = run(day_store, "sql", "SELECT count(*) AS total FROM events")
    assert out.split() == ["total", "17"]
    code, out, _ = run(
        day_store, "sql", "--format", "jsonl", "SELECT event FROM events WHERE audit_id = 'a4'"
    )
    assert out.encode() == encode_event(next(e for e in day() if e.audit_id == "a4"))


def test_sql_errors_are_clear(day_store: Store) -> None:
    code, out, err = run(day_store, "sql", "SELEC 1")
    assert code == 1
    assert err.startswith("error: sql: Parser Error: syntax error")
    assert out == ""
    code, _, err = run(day_store, "sql", "--format", "json", "SELECT nosuch FROM events")
    assert code == 1 and "error: sql: Binder Error" in err


def test_subprocess_with_kaudit_store_env(make_store: MakeStore) -> None:
    store = make_store([ev("e1", user="dora", verb="delete", name="db", resource="secrets")])
    env = {**os.environ, "KAUDIT_STORE": str(store.path)}
    p = subprocess.run(
        [sys.executable, "-m", "kaudit", "query", "--user", "dora", "--format", "jsonl"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == encode_event(
        ev("e1", user="dora", verb="delete", name="db", resource="secrets")
    )


def test_query_cli_imports_nothing_heavy() -> None:
    code = (
        "import sys, kaudit.cli.query, kaudit.cli.investigate\n"
        "heavy = [m for m in ('duckdb', 'pyarrow', 'starlette', 'uvicorn', 'sigma', 'rich', "
        "'yaml') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == ""
