"""``kaudit policy lint``: each check on policies written here, containment, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.policy import load_policy_bytes
from kaudit.policy.containment import ALL, Atom, MatchSet, atom_covers, covering_rules
from kaudit.policy.containment import spec_covers as covers
from kaudit.policy.lint import Finding, lint_bytes, lint_policy

HEAD = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
"""
QUIET = """\
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: None
  users: ["system:kube-proxy", "system:kube-controller-manager", "system:kube-scheduler"]
  verbs: [watch]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: None
  resources: [{group: "", resources: [events]}, {group: events.k8s.io, resources: [events]}]
"""
TAIL = "- level: Metadata\n"


def lint(rules: str, head: str = HEAD, tail: str = TAIL) -> list[Finding]:
    pol = load_policy_bytes(head + QUIET + rules + tail, "p.yaml")
    return lint_policy(pol)


def checks(findings: list[Finding]) -> set[tuple[str, int | None]]:
    return {(f.check, f.rule) for f in findings}


# The QUIET rules are rules[0..3]; the rules under test start at rules[4].
N = 4


def test_quiet_policy_is_clean() -> None:
    assert lint("") == []


# --- sensitive bodies ----------------------------------------------------------------

SENSITIVE_CASES = {
    "catch-all at RequestResponse covers secrets": (
        "",
        "- level: RequestResponse\n",
        {("sensitive-bodies", N), ("configmap-bodies", N)},
    ),
    "core group at Request logs secret writes": (
        '- level: Request\n  resources: [{group: ""}]\n',
        TAIL,
        {("sensitive-bodies", N), ("configmap-bodies", N)},
    ),
    "earlier Metadata rule protects secrets and configmaps": (
        '- level: Metadata\n  resources: [{group: "", resources: [secrets, configmaps, '
        '"serviceaccounts/token"]}]\n- level: RequestResponse\n  resources: [{group: ""}]\n',
        TAIL,
        set(),
    ),
    "protection limited to one namespace does not protect": (
        '- level: Metadata\n  namespaces: [kube-system]\n  resources: [{group: "", '
        "resources: [secrets]}]\n"
        '- level: RequestResponse\n  resources: [{group: "", resources: [secrets]}]\n',
        TAIL,
        {("sensitive-bodies", N + 1)},
    ),
    "reads at Request carry no body": (
        '- level: Request\n  verbs: [get, list, watch]\n  resources: [{group: ""}]\n',
        TAIL,
        set(),
    ),
    "tokenreviews through a whole group": (
        "- level: Request\n  resources: [{group: authentication.k8s.io}]\n",
        TAIL,
        {("sensitive-bodies", N)},
    ),
    "token requests through pods-style wildcard": (
        '- level: RequestResponse\n  resources: [{group: "", resources: ["serviceaccounts/*"]}]\n',
        TAIL,
        {("sensitive-bodies", N)},
    ),
    "CSRs through group star": (
        '- level: RequestResponse\n  resources: [{group: "*", resources: ["*"]}]\n',
        TAIL,
        {("sensitive-bodies", N), ("configmap-bodies", N)},
    ),
    "writes protected by two earlier rules together": (
        '- level: Metadata\n  verbs: [create, update]\n  resources: [{group: "", '
        "resources: [secrets]}]\n"
        '- level: None\n  verbs: [patch]\n  resources: [{group: "", resources: [secrets]}]\n'
        '- level: Request\n  resources: [{group: "", resources: [secrets]}]\n',
        TAIL,
        set(),
    ),
}


@pytest.mark.parametrize("name", SENSITIVE_CASES)
def test_sensitive_bodies(name: str) -> None:
    rules, tail, expected = SENSITIVE_CASES[name]
    found = {
        c
        for c in checks(lint(rules, tail=tail))
        if c[0] in ("sensitive-bodies", "configmap-bodies")
    }
    assert found == expected


def test_sensitive_finding_says_where_and_how() -> None:
    f = next(
        f
        for f in lint('- level: Request\n  resources: [{group: ""}]\n')
        if f.check == "sensitive-bodies"
    )
    assert f.severity == "error"
    assert f.location == "p.yaml:15:10"  # rules[4].level
    assert "secrets" in f.message and "rules[4]" in f.message
    assert "Metadata" in f.fix


# --- unreachable rules ---------------------------------------------------------------

UNREACHABLE_CASES = {
    "whole group covers a resource": (
        '- level: Metadata\n  resources: [{group: ""}]\n'
        '- level: Request\n  resources: [{group: "", resources: [pods]}]\n',
        {N + 1: (N,)},
    ),
    "pods/* covers pods/exec and pods": (
        '- level: Request\n  resources: [{group: "", resources: ["pods/*"]}]\n'
        '- level: Metadata\n  resources: [{group: "", resources: ["pods/exec", pods]}]\n',
        {N + 1: (N,)},
    ),
    "*/scale covers deployments/scale": (
        '- level: Request\n  resources: [{group: apps, resources: ["*/scale"]}]\n'
        '- level: Metadata\n  resources: [{group: apps, resources: ["deployments/scale"]}]\n',
        {N + 1: (N,)},
    ),
    "pods does not cover pods/exec": (
        '- level: Request\n  resources: [{group: "", resources: [pods]}]\n'
        '- level: Metadata\n  resources: [{group: "", resources: ["pods/exec"]}]\n',
        {},
    ),
    "*/scale does not cover deployments": (
        '- level: Request\n  resources: [{group: apps, resources: ["*/scale"]}]\n'
        '- level: Metadata\n  resources: [{group: apps, resources: ["deployments"]}]\n',
        {},
    ),
    "group star covers any group": (
        '- level: Request\n  resources: [{group: "*", resources: [widgets]}]\n'
        "- level: Metadata\n  resources: [{group: example.com, resources: [widgets]}]\n",
        {N + 1: (N,)},
    ),
    "resourceNames subset is covered, superset is not": (
        '- level: None\n  resources: [{group: "", resources: [configmaps], '
        "resourceNames: [a, b]}]\n"
        '- level: Metadata\n  resources: [{group: "", resources: [configmaps], '
        "resourceNames: [a]}]\n"
        '- level: Metadata\n  resources: [{group: "", resources: [configmaps], '
        "resourceNames: [a, c]}]\n",
        {N + 1: (N,)},
    ),
    "verbs, users and namespaces subsets": (
        "- level: None\n  users: [alice, bob]\n  verbs: [get, list]\n"
        "  namespaces: [a, b]\n"
        "- level: Metadata\n  users: [alice]\n  verbs: [get]\n  namespaces: [a]\n"
        "  resources: [{group: apps}]\n"
        "- level: Metadata\n  users: [alice]\n  verbs: [get]\n",
        {N + 1: (N,)},
    ),
    "userGroups subset": (
        "- level: None\n  userGroups: [a, b]\n  verbs: [get]\n"
        "- level: Metadata\n  userGroups: [b]\n  verbs: [get]\n"
        "- level: Metadata\n  userGroups: [b, c]\n  verbs: [get]\n",
        {N + 1: (N,)},
    ),
    "nonResourceURLs prefixes": (
        '- level: None\n  nonResourceURLs: ["/api*"]\n'
        '- level: Metadata\n  nonResourceURLs: ["/apis/x", "/api*"]\n'
        '- level: Metadata\n  nonResourceURLs: ["/ap*"]\n',
        {N + 1: (N,)},
    ),
    "several earlier rules together": (
        "- level: None\n  verbs: [get]\n  resources: [{group: apps}]\n"
        "- level: Metadata\n  verbs: [list, watch]\n"
        "- level: Request\n  verbs: [get, list]\n  resources: [{group: apps, "
        "resources: [deployments]}]\n",
        {N + 2: (N, N + 1)},
    ),
    "a resource rule does not cover non-resource requests": (
        "- level: None\n  verbs: [get]\n  resources: [{group: '*'}]\n"
        "- level: Metadata\n  verbs: [get]\n",
        {},
    ),
}


@pytest.mark.parametrize("name", UNREACHABLE_CASES)
def test_unreachable_rules(name: str) -> None:
    rules, expected = UNREACHABLE_CASES[name]
    found = {f.rule: f.related for f in lint(rules) if f.check == "unreachable-rule"}
    assert found == expected


def test_unreachable_names_the_shadowing_rules() -> None:
    rules, _ = UNREACHABLE_CASES["several earlier rules together"]
    f = next(f for f in lint(rules) if f.check == "unreachable-rule")
    assert "rules[4], rules[5] together" in f.message
    assert f.severity == "warning"


def test_spec_and_atom_containment() -> None:
    assert covers("*", "pods/log") and covers(ALL, "*")
    assert covers("pods/*", "pods") and covers("pods/*", "pods/log")
    assert not covers("pods/*", "*/log") and not covers("pods", "pods/log")
    assert covers("*/scale", "deployments/scale") and not covers("*/scale", "deployments/*")
    assert not covers("pods/log", "pods/*") and not covers("*/x", "*")
    assert atom_covers(Atom("*", "pods"), Atom("", "pods"))
    assert not atom_covers(Atom("", "pods"), Atom("*", "pods"))
    assert not atom_covers(Atom("", "pods", "a"), Atom("", "pods"))
    assert atom_covers(Atom("", ALL), Atom("", "pods", "a"))


def test_universe_is_covered_by_a_resource_and_a_url_rule() -> None:
    pol = load_policy_bytes(
        HEAD + "- level: Metadata\n  resources: [{group: '*'}]\n"
        "- level: None\n  nonResourceURLs: ['*']\n",
        "u.yaml",
    )
    universe = MatchSet(None, None, None, "both", None, None, None)
    assert covering_rules(universe, list(enumerate(pol.rules))) == [0, 1]
    assert "no-catch-all" not in {f.check for f in lint_policy(pol)}


# --- catch-all, stages, managedFields, resourceNames, pods ------------------------------


def test_no_catch_all() -> None:
    found = [f for f in lint("- level: Request\n  verbs: [create]\n", tail="") if f.rule is None]
    assert [f.check for f in found] == ["no-catch-all"]
    assert found[0].severity == "warning"


def test_catch_all_not_last() -> None:
    found = lint("- level: Metadata\n- level: Request\n  verbs: [create]\n", tail="")
    assert ("catch-all-not-last", N) in checks(found)
    assert ("unreachable-rule", N + 1) in checks(found)
    f = next(f for f in found if f.check == "catch-all-not-last")
    assert f.related == (N + 1,)


def test_request_received_not_omitted() -> None:
    head = HEAD.replace("omitStages: [RequestReceived]\n", "")
    found = lint("- level: Request\n  verbs: [create]\n  omitStages: [RequestReceived]\n", head)
    f = next(f for f in found if f.check == "request-received")
    assert f.related == (N + 1,)  # the catch-all; rules[4] omits it itself
    assert f.severity == "warning"


def test_managed_fields() -> None:
    head = HEAD.replace("omitManagedFields: true\n", "")
    found = lint(
        "- level: Request\n  verbs: [create]\n  resources: [{group: apps}]\n"
        "- level: Request\n  verbs: [update]\n  omitManagedFields: true\n"
        "  resources: [{group: apps}]\n"
        "- level: Request\n  verbs: [get, list, watch]\n  resources: [{group: apps}]\n",
        head,
    )
    assert {c for c in checks(found) if c[0] == "managed-fields"} == {("managed-fields", N)}
    found = lint(
        "- level: Request\n  verbs: [create]\n  omitManagedFields: false\n"
        "  resources: [{group: apps}]\n"
    )
    f = next(f for f in found if f.check == "managed-fields")
    assert f.location == "p.yaml:17:22"  # the rule's own omitManagedFields: false


def test_resource_names_with_nameless_verbs() -> None:
    found = lint(
        '- level: None\n  verbs: [create, list]\n  resources: [{group: "", '
        "resources: [configmaps], resourceNames: [x]}]\n"
        '- level: None\n  verbs: [create]\n  resources: [{group: "", '
        'resources: ["pods/exec"], resourceNames: [x]}]\n'
        '- level: None\n  verbs: [get, list]\n  resources: [{group: "", '
        "resources: [configmaps], resourceNames: [y]}]\n"
    )
    assert {c for c in checks(found) if c[0] == "resource-names-verbs"} == {
        ("resource-names-verbs", N)
    }


def test_pods_without_subresources() -> None:
    found = lint('- level: RequestResponse\n  resources: [{group: "", resources: [pods]}]\n')
    f = next(f for f in found if f.check == "pods-subresources")
    assert f.rule == N and "pods/exec" in f.message and '"pods/*"' in f.fix
    found = lint(
        '- level: Request\n  resources: [{group: "", resources: ["pods/exec"]}]\n'
        '- level: RequestResponse\n  resources: [{group: "", resources: [pods]}]\n'
    )
    assert "pods-subresources" not in {f.check for f in found}
    found = lint('- level: Metadata\n  resources: [{group: "", resources: [pods]}]\n')
    assert "pods-subresources" not in {f.check for f in found}


def test_noisy_traffic_is_info() -> None:
    pol = load_policy_bytes(HEAD + "- level: Metadata\n", "n.yaml")
    noisy = [f for f in lint_policy(pol) if f.check == "noisy-traffic"]
    assert len(noisy) == 5
    assert {f.severity for f in noisy} == {"info"}
    assert any("/readyz" in f.message for f in noisy)


# --- invalid policies ----------------------------------------------------------------


def test_validation_errors_are_error_findings() -> None:
    _, found = lint_bytes(HEAD + "- level: Metdata\n", "bad.yaml")
    f = next(f for f in found if f.check == "invalid")
    assert f.severity == "error" and f.rule == 0
    assert f.location == "bad.yaml:6:10"
    assert 'did you mean "Metadata"' in f.fix


def test_decode_errors_are_error_findings() -> None:
    pol, found = lint_bytes(HEAD + "- level: Metadata\n  verb: [get]\n", "bad.yaml")
    assert pol is None
    assert [f.check for f in found] == ["invalid"]
    assert found[0].location == "bad.yaml:7:3"
    assert "verb" in found[0].message


# --- CLI -----------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    return str(p)


def test_cli_exit_codes_and_text(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = _write(tmp_path, HEAD + QUIET + TAIL)
    r = runner.invoke(main, ["policy", "lint", clean])
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("0 errors, 0 warnings, 0 info")
    warn = _write(tmp_path, HEAD + QUIET + "- level: Metadata\n- level: None\n")
    r = runner.invoke(main, ["policy", "lint", warn])
    assert r.exit_code == 0
    assert "warning: rules[5] can never match" in r.output
    assert "  fix: move rules[5]" in r.output
    err = _write(tmp_path, HEAD + QUIET + "- level: RequestResponse\n")
    r = runner.invoke(main, ["policy", "lint", err])
    assert r.exit_code == 1
    assert f"{err}:15:10: error: rules[4] logs request and response bodies of secrets" in (r.output)


def test_cli_json(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + QUIET + "- level: RequestResponse\n")
    r = CliRunner().invoke(main, ["policy", "lint", "--format", "json", path])
    assert r.exit_code == 1
    doc = json.loads(r.output)
    first = doc["findings"][0]
    assert set(first) == {"severity", "check", "rule", "location", "message", "fix", "related"}
    assert first["rule"] == "rules[4]" and first["location"].startswith(path + ":15:")
    assert doc["summary"].startswith("4 errors")


def test_cli_missing_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["policy", "lint", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 1
    assert "nope.yaml: cannot read policy file" in r.output
