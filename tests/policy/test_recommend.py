"""``kaudit policy recommend``: valid, lint-clean, never bodies for credentials, budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.errors import InputError
from kaudit.model.types import level_rank
from kaudit.policy import Evaluator, load_policy, load_policy_bytes
from kaudit.policy.attributes import Attributes, User
from kaudit.policy.lint import lint_policy
from kaudit.policy.recommend import parse_budget, recommend
from kaudit.policy.simulate import Capture, capture_from_logs
from kaudit.traffic import generate_lines


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rec") / "audit.log"
    path.write_bytes(b"".join(generate_lines(4000, seed=13)))
    return path


@pytest.fixture(scope="module")
def capture(log: Path) -> Capture:
    return capture_from_logs([str(log)])


def test_valid_and_lint_clean(capture: Capture) -> None:
    rec = recommend(capture)
    pol = load_policy_bytes(rec.yaml, "recommended.yaml")
    findings = lint_policy(pol)
    assert [f for f in findings if f.severity in ("error", "warning")] == []
    assert pol.omit_stages == ("RequestReceived",) and pol.omit_managed_fields
    assert pol.rules[-1].level == "Metadata" and not pol.rules[-1].resources
    # Every rule is commented with why and its volume.
    assert rec.yaml.count("  # rules[") == len(pol.rules)
    assert "events/day" in rec.yaml


SENSITIVE = [
    ("", "secrets", ""),
    ("", "configmaps", ""),
    ("", "serviceaccounts", "token"),
    ("authentication.k8s.io", "tokenreviews", ""),
    ("certificates.k8s.io", "certificatesigningrequests", ""),
]


@pytest.mark.parametrize("budget", [None, 10**6])
def test_never_bodies_for_credentials(capture: Capture, budget: int | None) -> None:
    ev = Evaluator(recommend(capture, budget=budget).policy)
    admin = User("alice", ("system:masters", "system:authenticated"))
    for group, resource, sub in SENSITIVE:
        for verb in ("create", "update", "patch", "get", "list"):
            attrs = Attributes(admin, verb, "default", group, "v1", resource, sub, "", "", True)
            assert level_rank(ev.evaluate(attrs).level) <= 1, (resource, verb)


def test_budget_lowers_the_biggest_body_rules(capture: Capture) -> None:
    free = recommend(capture)
    tight = recommend(capture, budget=int(free.bytes_per_day * 0.9))
    assert tight.lowered
    assert tight.bytes_per_day < free.bytes_per_day
    assert "lowered from" in tight.yaml
    impossible = recommend(capture, budget=1000)
    assert not impossible.within_budget
    rules = impossible.policy.rules
    for i, tally in impossible.simulation.by_rule.items():
        if tally.bytes and i is not None:
            assert rules[i].level in ("None", "Metadata"), i
    assert [f for f in lint_policy(impossible.policy) if f.severity != "info"] == []


def test_parse_budget() -> None:
    assert parse_budget("2GB/day") == 2 * 10**9
    assert parse_budget("500 MiB") == 500 * 2**20
    assert parse_budget("1.5g") == 1_500_000_000
    assert parse_budget("123") == 123
    for bad in ("", "lots", "0GB", "-1GB", "2XB"):
        with pytest.raises(InputError, match="--budget"):
            parse_budget(bad)


def test_cli_writes_a_private_file(tmp_path: Path, log: Path) -> None:
    out = tmp_path / "policy.yaml"
    r = CliRunner().invoke(
        main, ["policy", "recommend", str(log), "--budget", "5GB/day", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o777 == 0o600
    assert "estimated" in r.output
    load_policy(out)
    r = CliRunner().invoke(main, ["policy", "lint", str(out)])
    assert r.exit_code == 0 and " 0 errors, 0 warnings" in r.output


def test_cli_empty_capture(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    r = CliRunner().invoke(main, ["policy", "recommend", str(empty)])
    assert r.exit_code == 1 and "no events in the capture" in r.output
