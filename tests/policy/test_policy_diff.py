"""``kaudit policy diff``: level, rule and volume changes per request class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.policy import load_policy_bytes
from kaudit.policy.attributes import User
from kaudit.policy.simulate import capture_from_logs, diff, simulate, user_class
from kaudit.traffic import generate_lines

OLD = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""
NEW = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: Metadata
"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("diff") / "audit.log"
    path.write_bytes(b"".join(generate_lines(2000, seed=11)))
    return path


def test_same_policy_changes_nothing(log: Path) -> None:
    pol = load_policy_bytes(OLD, "old.yaml")
    d = diff(pol, pol, capture_from_logs([str(log)])).to_dict()
    assert d["changes"] == [] and d["delta_bytes"] == 0 and d["changed_attributes"] == 0


def test_dropping_leases(log: Path) -> None:
    old, new = load_policy_bytes(OLD, "old.yaml"), load_policy_bytes(NEW, "new.yaml")
    cap = capture_from_logs([str(log)])
    d = diff(old, new, cap).to_dict()
    rows = d["changes"]
    assert rows and all(r["resource"] == "leases.coordination.k8s.io" for r in rows)
    top = rows[0]
    assert top["old_levels"] == ["Metadata"] and top["new_levels"] == ["None"]
    assert top["old_rules"] == ["rules[0]"] and top["new_rules"] == ["rules[0]"]
    assert top["new"]["events"] == 0 and top["delta_bytes"] == -top["old"]["bytes"] < 0
    # The totals agree with two simulations.
    a, b = simulate(old, cap), simulate(new, cap)
    assert d["delta_bytes"] == round(b.simulated.bytes) - round(a.simulated.bytes)
    assert d["delta_events"] == sum(r["delta_events"] for r in rows)


def test_user_classes() -> None:
    assert user_class(None) == "(no user)"
    assert user_class(User("system:node:n1")) == "nodes"
    assert user_class(User("system:serviceaccount:kube-system:x")) == (
        "serviceaccounts (kube-system)"
    )
    assert user_class(User("system:serviceaccount:ci:x")) == "serviceaccounts"
    assert user_class(User("system:kube-scheduler")) == "system:kube-scheduler"
    assert user_class(User("alice@example.com")) == "users"


def test_cli(tmp_path: Path, log: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(OLD)
    new.write_text(NEW)
    runner = CliRunner()
    r = runner.invoke(main, ["policy", "diff", str(old), str(new), str(log)])
    assert r.exit_code == 0, r.output
    assert "leases.coordination.k8s.io" in r.output and "None rules[0]" in r.output
    r = runner.invoke(
        main, ["policy", "diff", str(old), str(new), "--format", "json", "--", str(log)]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["old_policy"] == str(old) and d["new_policy"] == str(new)
    assert d["delta_events"] < 0
