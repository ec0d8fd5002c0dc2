"""``kaudit policy validate|eval|apply`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kaudit.cli import main

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: Request
  verbs: [create, update, patch]
  omitManagedFields: true
- level: RequestResponse
  userGroups: [admins]
"""

BAD = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metdata
- level: None
  nonResourceURLs: [healthz]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return str(p)


def _run(*args: str, input: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_validate_ok(policy_file: str) -> None:
    r = _run("policy", "validate", policy_file)
    assert r.exit_code == 0
    assert r.stdout == (
        f"{policy_file}: valid, 4 rules (levels: None 1, Metadata 1, Request 1, "
        "RequestResponse 1); omitStages: RequestReceived\n"
    )


def test_validate_errors_with_positions_and_hints(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = _run("policy", "validate", str(p))
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [
        f'{p}:4:10: rules[0].level: Unsupported value: "Metdata": supported values: "None", '
        '"Metadata", "Request", "RequestResponse"',
        '  hint: did you mean "Metadata"?',
        f'{p}:6:21: rules[1].nonResourceURLs[0]: Invalid value: "healthz": non-resource URL '
        "rules must begin with a '/' character",
        '  hint: write "/healthz"',
    ]


def test_validate_decode_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verb: [get]\n"
    )
    r = _run("policy", "validate", str(p))
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert lines[0] == f'{p}:5:3: rules[0].verb: unknown field "verb" (did you mean "verbs"?)'
    assert lines[1].startswith("  hint: the apiserver itself would only log")


def test_validate_zero_rules_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.yaml"
    p.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\n")
    r = _run("policy", "validate", str(p))
    assert r.exit_code == 1
    assert r.stdout.splitlines()[0] == f"{p}: loaded illegal policy with 0 rules"
    r = _run("policy", "validate", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 1
    assert "cannot read policy file" in r.stderr


LINES = [
    {"method": "GET", "url": "/healthz/etcd", "user": None},
    {"method": "GET", "url": "/api/v1/namespaces/d/secrets/s", "user": {"name": "a", "groups": []}},
    {"user": {"name": "root", "groups": ["admins"]}, "verb": "list", "resource": "pods",
     "apiVersion": "v1", "path": "/api/v1/pods"},
    {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "x",
     "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/d/configmaps", "verb": "create",
     "user": {"username": "bob"}, "objectRef": {"resource": "configmaps", "namespace": "d",
     "apiVersion": "v1"}, "requestReceivedTimestamp": None, "stageTimestamp": None},
]  # fmt: skip


def test_eval_outputs_one_decision_per_line(policy_file: str) -> None:
    data = "\n".join(json.dumps(x) for x in LINES) + "\n\n"
    r = _run("policy", "eval", "--policy", policy_file, input=data)
    assert r.exit_code == 0, r.stderr
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(o["level"], o["rule"]) for o in out] == [
        ("None", 0),
        ("Metadata", 1),
        ("RequestResponse", 3),
        ("Request", 2),
    ]
    assert out[3]["omitManagedFields"] is True
    assert out[0]["omitStages"] == ["RequestReceived"]
    assert list(out[0]) == ["level", "omitStages", "omitManagedFields", "rule", "attributes"]
    assert out[2]["attributes"] == {
        "user": {"name": "root", "groups": ["admins"]},
        "verb": "list",
        "namespace": "",
        "apiGroup": "",
        "apiVersion": "v1",
        "resource": "pods",
        "subresource": "",
        "name": "",
        "path": "/api/v1/pods",
        "resourceRequest": True,
    }
    assert out[1]["attributes"]["name"] == "s"
    assert out[3]["attributes"]["user"] == {"name": "bob", "groups": []}


def test_eval_attributes_round_trip(policy_file: str) -> None:
    first = _run("policy", "eval", "--policy", policy_file, input=json.dumps(LINES[1]) + "\n")
    attrs = json.loads(first.stdout)["attributes"]
    again = _run("policy", "eval", "--policy", policy_file, input=json.dumps(attrs) + "\n")
    assert json.loads(again.stdout) == json.loads(first.stdout)


def test_eval_bad_lines_reported_others_processed(policy_file: str, tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_text(
        json.dumps(LINES[0]) + "\n"
        + "not json\n"
        + '{"verb": "get", "reource": "pods"}\n'
        + "[1, 2]\n"
        + '{"method": "GET", "url": 5}\n'
        + json.dumps(LINES[2]) + "\n"
    )  # fmt: skip
    r = _run("policy", "eval", "--policy", policy_file, str(p))
    assert r.exit_code == 1
    assert len(r.stdout.splitlines()) == 2
    err = r.stderr.splitlines()
    assert err[0].startswith(f"error: {p}:2: invalid JSON")
    assert err[1].startswith(f'error: {p}:3: unknown field "reource" (did you mean "resource"?)')
    assert err[2].startswith(f"error: {p}:4: expected a JSON object")
    assert err[3].startswith(f"error: {p}:5: url: expected a string")
    assert err[4] == "error: 4 of 6 lines could not be evaluated"


def test_eval_explain(policy_file: str) -> None:
    line = json.dumps(LINES[2]) + "\n"
    r = _run("policy", "eval", "--explain", "--policy", policy_file, input=line)
    assert r.exit_code == 0
    text = r.stdout
    assert "<stdin>:1: list pods (core/v1), user root" in text
    assert "rules[0] (None): resources/namespaces" not in text
    assert "rules[0] (None): nonResourceURLs: this is a resource request" in text
    assert 'rules[2] (Request): verbs: "list" is not in ["create", "update", "patch"]' in text
    assert 'match rules[3] (RequestResponse): matched: group "admins"' in text
    assert "level RequestResponse from rules[3]" in text


def test_eval_bad_policy_exits_1(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = _run("policy", "eval", "--policy", str(p), input="{}\n")
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {p}:4:10: rules[0].level: Unsupported value")
    assert r.stdout == ""


def _ev(
    stage: str, uri: str, verb: str, level: str = "RequestResponse", **extra: object
) -> dict[str, object]:
    ev: dict[str, object] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": "id-" + stage,
        "stage": stage, "requestURI": uri, "verb": verb, "user": {"username": "bob"},
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.123456Z",
    }  # fmt: skip
    ev.update(extra)
    return ev


CM_REF = {"resource": "configmaps", "namespace": "d", "apiVersion": "v1"}
CM_BODY = {"kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"manager": "k"}]}}


def test_apply_writes_exact_lines_and_reports(policy_file: str, tmp_path: Path) -> None:
    events = [
        _ev("RequestReceived", "/api/v1/namespaces/d/configmaps", "create", objectRef=CM_REF),
        _ev("ResponseComplete", "/api/v1/namespaces/d/configmaps", "create", objectRef=CM_REF,
            requestObject=CM_BODY, responseObject=CM_BODY),
        _ev("ResponseComplete", "/healthz", "get"),
        _ev("ResponseComplete", "/api/v1/namespaces/d/secrets/s", "get", level="Metadata",
            objectRef={"resource": "secrets", "namespace": "d", "name": "s", "apiVersion": "v1"}),
        _ev("ResponseComplete", "/api/v1/pods", "list", level="Metadata",
            user={"username": "root", "groups": ["admins"]},
            objectRef={"resource": "pods", "apiVersion": "v1"}),
    ]  # fmt: skip
    src = tmp_path / "audit.log"
    src.write_text("\n".join(json.dumps(e) for e in events[:2]) + "\nnot an event\n"
                   + "\n".join(json.dumps(e) for e in events[2:]) + "\n")  # fmt: skip
    out = tmp_path / "out.log"
    r = _run("policy", "apply", "--policy", policy_file, str(src), "-o", str(out))
    assert r.exit_code == 1  # the bad line
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    assert lines[0] == (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":'
        b'"id-ResponseComplete","stage":"ResponseComplete","requestURI":'
        b'"/api/v1/namespaces/d/configmaps","verb":"create","user":{"username":"bob"},'
        b'"objectRef":{"resource":"configmaps","namespace":"d","apiVersion":"v1"},'
        b'"requestObject":{"kind":"ConfigMap","metadata":{"name":"c"}},'
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
        b'"stageTimestamp":"2024-05-06T07:08:09.123456Z"}\n'
    )
    assert b'"level":"Metadata"' in lines[1]
    assert b'"level":"RequestResponse"' in lines[2]
    err = r.stderr.splitlines()
    assert err[0].startswith(f"error: {src}:3: ")
    assert err[1] == (
        "warning: 1 event: the policy asks for a higher level than the capture holds; written "
        "with what was captured (bodies that were never logged cannot be recovered)"
    )
    assert err[2] == (
        f"{src}: read 5 events, wrote 3, dropped 2 (level None: 1, omitted stage: 1), 1 bad line"
    )


def test_apply_reads_an_event_list_from_stdin(policy_file: str) -> None:
    items = [
        {k: v for k, v in _ev("ResponseComplete", "/api/v1/namespaces/d/secrets/s", "get",
                              objectRef={"resource": "secrets", "namespace": "d"}).items()
         if k not in ("kind", "apiVersion")},
    ]  # fmt: skip
    doc = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
                      "items": items}, indent=2)  # fmt: skip
    r = _run("policy", "apply", "--policy", policy_file, input=doc)
    assert r.exit_code == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert json.loads(line)["level"] == "Metadata"
    assert "wrote 1" in r.stderr
