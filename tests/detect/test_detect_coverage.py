"""``kaudit rules coverage``: rules that cannot fire under an audit policy."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.detect.coverage import check_coverage
from kaudit.detect.rule import load_rules

METADATA_ONLY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: "", resources: [secrets]}]
  - level: Metadata
"""

RECORD_ALL = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: RequestResponse
"""


def test_metadata_policy_blinds_body_rules(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(METADATA_ONLY)
    rules = load_rules()
    cov = {c.rule_id: c for c in check_coverage(rules, p)}
    assert not cov["pod-privileged"].ok
    assert "needs Request" in cov["pod-privileged"].reason
    assert not cov["secret-read"].ok  # secrets are not recorded at all
    assert "recorded at None" in cov["secret-read"].reason
    assert cov["pod-exec"].ok and cov["anonymous-request-allowed"].ok


def test_record_everything_covers_every_rule(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(RECORD_ALL)
    assert all(c.ok for c in check_coverage(load_rules(), p))


def test_cli(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(METADATA_ONLY)
    res = CliRunner().invoke(main, ["rules", "coverage", "--policy", str(p)])
    assert res.exit_code == 0, res.output
    assert "MISS pod-privileged: needs Request" in res.output
    assert "cannot" in res.output.splitlines()[-1]
