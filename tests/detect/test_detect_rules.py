"""The rule format, the loader's errors, allowlists and the built-in pack."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.detect.engine import Engine
from kaudit.detect.flat import table_from_events
from kaudit.detect.rule import RuleSetError, load_rules
from kaudit.detect.sql import check_rules_sql
from kaudit.detect.testing import expand_events, run_rule_tests

BUILTIN = load_rules()


def test_builtin_pack_size_and_metadata() -> None:
    assert len(BUILTIN) >= 50
    assert len({r.id for r in BUILTIN}) == len(BUILTIN)
    # The pack's SQL binds (load_rules checks only a user's rules).
    assert check_rules_sql(BUILTIN) == []
    for r in BUILTIN:
        assert r.mitre and r.title and r.description, r.id
        assert any(t.match for t in r.tests) and any(not t.match for t in r.tests), r.id


@pytest.mark.parametrize("rule", BUILTIN, ids=lambda r: r.id)
def test_builtin_embedded_tests(rule: object) -> None:
    from kaudit.detect.rule import Rule

    assert isinstance(rule, Rule)
    results = run_rule_tests(rule)
    assert len(results) == len(rule.tests)
    for res in results:
        assert res.ok, f"{rule.id} / {res.name}: {res.detail}"


BAD = """\
rules:
  - id: Bad Id
    title: x
    description: y
    severity: hgih
    mitre: [T16090]
    required_level: Metadata
    condition: verb = 'get'
    windw: 5m
    tests:
      - {name: a, match: true, events: [{verb: get}]}
      - {name: b, match: false, events: [{verb: list}]}
  - id: ok-rule
    title: x
    description: y
    severity: low
    mitre: [T1609]
    required_level: Metadata
    condition: verb = 'get'
    tests:
      - {name: a, match: true, events: [{verb: get}]}
"""


def test_every_problem_with_file_line_col(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    with pytest.raises(RuleSetError) as ei:
        load_rules([f], builtin=False)
    problems = ei.value.problems
    text = "\n".join(problems)
    assert f"{f}:2:9: id: 'Bad Id' must match" in text
    assert f'{f}:5:15: severity: Unsupported value: "hgih"' in text
    assert '(did you mean "high"?)' in text
    assert f"{f}:6:13: mitre[0]: 'T16090' is not an ATT&CK technique id" in text
    assert f'{f}:9:12: windw: unknown field (did you mean "window"?)' in text
    assert "tests: needs at least one test with match: false" in text
    assert len(problems) == 5


def test_invalid_sql_names_the_rule(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        BAD.split("  - id: ok-rule\n")[1]
        .replace("    ", "", 0)
        .join(["rules:\n  - id: ok-rule\n", ""])
        .replace("condition: verb = 'get'", "condition: verbb = 'get'")
        + "      - {name: b, match: false, events: [{verb: list}]}\n"
    )
    with pytest.raises(RuleSetError, match=r"r.yaml:2: condition: invalid SQL: .*verbb"):
        load_rules([f], builtin=False)


def test_user_rule_directory_and_override(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        """\
id: pod-exec
title: Exec (stricter)
description: every exec, even by the system
severity: critical
mitre: [T1609]
required_level: Metadata
condition: subresource = 'exec'
tests:
  - name: a
    match: true
    events:
      - {verb: create, objectRef: {resource: pods, namespace: a, name: p, subresource: exec}}
  - name: b
    match: false
    events: [{verb: get, objectRef: {resource: pods, namespace: a, name: p}}]
"""
    )
    rules = {r.id: r for r in load_rules([tmp_path])}
    assert rules["pod-exec"].severity == "critical"
    assert len(rules) == len(BUILTIN)


def test_allowlist_file_extends_rules(tmp_path: Path) -> None:
    allow = tmp_path / "allow.yaml"
    allow.write_text(
        "allowlist:\n  pod-exec:\n    username: ['ci-*']\n  '*':\n    namespace: [sandbox]\n"
    )
    rules = load_rules(allowlist=allow)
    events = expand_events(
        [
            {
                "verb": "create",
                "user": "ci-runner",
                "objectRef": {
                    "resource": "pods",
                    "namespace": "a",
                    "name": "p",
                    "subresource": "exec",
                },
            },
            {
                "verb": "create",
                "user": "bob",
                "objectRef": {
                    "resource": "pods",
                    "namespace": "sandbox",
                    "name": "p",
                    "subresource": "exec",
                },
            },
            {
                "verb": "create",
                "user": "bob",
                "objectRef": {
                    "resource": "pods",
                    "namespace": "a",
                    "name": "p",
                    "subresource": "exec",
                },
            },
        ]
    )
    ex = [r for r in rules if r.id == "pod-exec"]
    alerts = Engine(ex).process(table_from_events(events))
    assert [(a.username, a.namespace) for a in alerts] == [("bob", "a")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("allowlist:\n  pod-exce:\n    usernme: [x]\n")
    with pytest.raises(RuleSetError, match='unknown rule id \\(did you mean "pod-exec"\\?\\)'):
        load_rules(allowlist=bad)


@pytest.mark.slow
def test_cli_validate_and_test(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["rules", "validate"])
    assert res.exit_code == 0 and "rules OK" in res.output
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    res = runner.invoke(main, ["rules", "validate", str(f)])
    assert res.exit_code == 1
    assert res.output.count("error: ") == 5
    res = runner.invoke(main, ["rules", "test", "--rule", "pod-exec", "-v"])
    assert res.exit_code == 0, res.output
    assert "ok   pod-exec / kubectl exec" in res.output
    res = runner.invoke(main, ["rules", "show", "secret-enumeration", "--sql"])
    assert res.exit_code == 0 and "JOIN" in res.output
