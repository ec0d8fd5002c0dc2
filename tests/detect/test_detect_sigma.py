"""Sigma import: real SigmaHQ Kubernetes audit rules converted and run, refusals explained."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from kaudit.cli import main
from kaudit.detect.engine import Engine
from kaudit.detect.flat import table_from_events
from kaudit.detect.rule import load_rules
from kaudit.detect.sigma import convert_text
from kaudit.detect.testing import expand_events

# Shaped like SigmaHQ rules/application/kubernetes/audit/*.yml (DRL 1.1).
ADMISSION = """\
title: Kubernetes Admission Controller Modification
id: eed82177-38f5-4299-8a76-098d50d225ab
status: experimental
description: Detects a change to mutating or validating webhook configurations.
references:
    - https://kubernetes.io/docs/reference/config-api/apiserver-audit.v1/
tags:
    - attack.persistence
    - attack.t1078
    - attack.credential_access
    - attack.t1552.007
logsource:
    product: kubernetes
    service: audit
detection:
    selection:
        objectRef.apiGroup: admissionregistration.k8s.io
        objectRef.resource:
            - mutatingwebhookconfigurations
            - validatingwebhookconfigurations
        verb:
            - create
            - delete
            - patch
            - replace
            - update
    condition: selection
level: medium
"""

EXEC = """\
title: Potential Remote Command Execution In Pod Container
id: a1b0ca4e-7835-413e-8471-3ff2b8a66be6
status: experimental
description: Detects attempts to execute remote commands within a pod's container.
tags:
    - attack.t1609
logsource:
    category: application
    product: kubernetes
    service: audit
detection:
    selection:
        verb: 'create'
        objectRef.resource: 'pods'
        objectRef.subresource: 'exec'
    filter_system:
        user.username|startswith: 'system:'
    condition: selection and not filter_system
level: medium
"""

UNKNOWN_FIELD = EXEC.replace("objectRef.subresource", "objectRef.subresourse")
NO_K8S = EXEC.replace("product: kubernetes", "product: windows")
CIDR = EXEC.replace("user.username|startswith: 'system:'", "sourceIPs|cidr: 10.0.0.0/8")
KEYWORDS = EXEC.replace(
    "    condition: selection and not filter_system",
    "    keywords:\n        - 'kubectl'\n    condition: selection and keywords",
)


def _rules_from(text: str, tmp_path: Path, name: str) -> list:
    done, refused = convert_text(text, name)
    assert not refused, refused
    for rid, body in done:
        (tmp_path / f"{rid}.yaml").write_text(body)
    return load_rules([tmp_path], builtin=False)


def test_convert_and_run(tmp_path: Path) -> None:
    rules = _rules_from(ADMISSION, tmp_path, "admission.yml") + []
    (tmp_path / "x").mkdir()
    rules += _rules_from(EXEC, tmp_path / "x", "exec.yml")
    ids = {r.id for r in rules}
    assert "sigma.kubernetes-admission-controller-modification" in ids
    adm = next(r for r in rules if r.id.startswith("sigma.kubernetes-admission"))
    assert adm.mitre == ("T1078", "T1552.007") and adm.severity == "medium"
    events = expand_events(
        [
            {
                "verb": "delete",
                "objectRef": {
                    "resource": "validatingwebhookconfigurations",
                    "apiGroup": "admissionregistration.k8s.io",
                    "name": "g",
                },
            },
            {
                "verb": "CREATE",
                "objectRef": {
                    "resource": "pods",
                    "namespace": "a",
                    "name": "p",
                    "subresource": "exec",
                },
            },
            {
                "verb": "create",
                "user": "system:node:n1",
                "objectRef": {
                    "resource": "pods",
                    "namespace": "a",
                    "name": "p",
                    "subresource": "exec",
                },
            },
            {
                "verb": "get",
                "objectRef": {
                    "resource": "validatingwebhookconfigurations",
                    "apiGroup": "admissionregistration.k8s.io",
                },
            },
        ]
    )
    alerts = Engine(rules).process(table_from_events(events))
    got = sorted((a.rule_id, a.username) for a in alerts)
    assert got == [
        ("sigma.kubernetes-admission-controller-modification", "alice"),
        ("sigma.potential-remote-command-execution-in-pod-container", "alice"),
    ]


def test_refusals_say_why() -> None:
    cases = {
        "unknown.yml": (UNKNOWN_FIELD, "unknown field 'objectRef.subresourse'"),
        "windows.yml": (NO_K8S, "expected product kubernetes, service audit"),
        "cidr.yml": (CIDR, "cannot be mapped"),
        "keywords.yml": (KEYWORDS, "keyword search"),
    }
    for name, (text, reason) in cases.items():
        done, refused = convert_text(text, name)
        assert not done, name
        assert len(refused) == 1 and reason in refused[0][1], (name, refused)


def test_cli_import_sigma(tmp_path: Path) -> None:
    src = tmp_path / "sigma"
    src.mkdir()
    (src / "a.yml").write_text(ADMISSION)
    (src / "b.yml").write_text(UNKNOWN_FIELD)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["rules", "import-sigma", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 rules written" in res.output and "skipped:" in res.output
    assert (
        out / "sigma.kubernetes-admission-controller-modification.yaml"
    ).stat().st_mode & 0o777 == 0o600
    res = CliRunner().invoke(main, ["rules", "validate", str(out)])
    assert res.exit_code == 0, res.output
