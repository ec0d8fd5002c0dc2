"""The audit policy kaudit ships (`kaudit setup apiserver`) is valid and lints clean."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.deploy.apiserver import default_policy
from kaudit.policy import Evaluator, User, from_http, load_policy_bytes


def test_default_policy_validates_and_lints_clean(tmp_path: Path) -> None:
    path = tmp_path / "audit-policy.yaml"
    path.write_text(default_policy())
    r = CliRunner().invoke(main, ["policy", "lint", str(path)])
    assert r.exit_code == 0, r.output
    assert "0 errors, 0 warnings" in r.output


def test_default_policy_records_what_an_investigation_needs() -> None:
    ev = Evaluator(load_policy_bytes(default_policy().encode(), "default.yaml"))
    alice = User("alice@example.com", ("developers", "system:authenticated"))
    kubelet = User("system:node:n1", ("system:nodes", "system:authenticated"))
    cases = {
        ("GET", "/api/v1/namespaces/prod/secrets/db", alice): "Metadata",
        ("PUT", "/api/v1/namespaces/prod/secrets/db", alice): "Metadata",
        ("DELETE", "/api/v1/namespaces/prod/configmaps/app", alice): "Metadata",
        ("POST", "/apis/apps/v1/namespaces/prod/deployments", alice): "RequestResponse",
        (
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            alice,
        ): "RequestResponse",
        ("POST", "/api/v1/namespaces/prod/pods/web/exec", alice): "Metadata",
        ("GET", "/api/v1/nodes/n1", kubelet): "None",
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            kubelet,
        ): "None",
        ("GET", "/healthz", None): "None",
        ("GET", "/api/v1/namespaces/prod/pods", alice): "Metadata",
    }
    got = {k: ev.evaluate(from_http(k[0], k[1], k[2])).level for k in cases}
    assert got == cases
