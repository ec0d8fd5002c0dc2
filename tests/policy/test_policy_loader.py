"""Loading policy files: strict v1 decoding, every problem with file:line:col (spec 5.5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaudit.errors import PolicyDecodeError, PolicyError, PolicyInvalidError
from kaudit.policy import (
    GroupResources,
    Policy,
    PolicyRule,
    decode_policy,
    load_policy,
    load_policy_bytes,
)
from kaudit.policy.loader import decode_problems_are_lenient

GOOD = """\
apiVersion: audit.k8s.io/v1
kind: Policy
metadata:
  name: example
omitStages:
  - RequestReceived
omitManagedFields: true
rules:
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
    resources:
      - group: ""
        resources: ["endpoints", "services"]
  - level: Metadata
    userGroups: ["system:nodes"]
    namespaces: ["kube-system", ""]
    omitStages: [Panic]
    omitManagedFields: false
  - level: RequestResponse
    resources:
      - group: rbac.authorization.k8s.io
        resources: [clusterroles]
        resourceNames: [cluster-admin]
  - level: Request
    nonResourceURLs: ["/logs*"]
"""


def test_good_policy_decodes_every_field() -> None:
    pol = load_policy_bytes(GOOD, "p.yaml")
    assert pol == Policy(
        rules=(
            PolicyRule(
                level="None",
                users=("system:kube-proxy",),
                verbs=("watch",),
                resources=(GroupResources("", ("endpoints", "services")),),
            ),
            PolicyRule(
                level="Metadata",
                user_groups=("system:nodes",),
                namespaces=("kube-system", ""),
                omit_stages=("Panic",),
                omit_managed_fields=False,
            ),
            PolicyRule(
                level="RequestResponse",
                resources=(
                    GroupResources(
                        "rbac.authorization.k8s.io", ("clusterroles",), ("cluster-admin",)
                    ),
                ),
            ),
            PolicyRule(level="Request", non_resource_urls=("/logs*",)),
        ),
        omit_stages=("RequestReceived",),
        omit_managed_fields=True,
    )
    assert pol.rules[0].omit_managed_fields is None  # absent is not false
    assert pol.where("rules[2].resources[0].group") == "p.yaml:22:16"
    assert pol.to_dict()["rules"][1]["omitManagedFields"] is False


def test_json_policy_with_tabs() -> None:
    text = (
        '{\n\t"apiVersion": "audit.k8s.io/v1",\n\t"kind": "Policy",\n'
        '\t"rules": [{"level": "Metadata"}]\n}'
    )
    assert load_policy_bytes(text.encode(), "p.json").rules == (PolicyRule(level="Metadata"),)


def test_load_policy_from_file(tmp_path: Path) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(GOOD)
    assert len(load_policy(p).rules) == 4
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyDecodeError) as info:
        decode_policy(text, "policy.yaml")
    return info.value.problems


HEAD = "apiVersion: audit.k8s.io/v1\nkind: Policy\n"


def test_unknown_field_with_line_col_and_suggestion() -> None:
    text = HEAD + "rules:\n- level: None\n- level: Metadata\n- level: Request\n  verb: [get]\n"
    assert _problems(text) == [
        'policy.yaml:7:3: rules[2].verb: unknown field "verb" (did you mean "verbs"?)'
    ]


def test_every_problem_at_once() -> None:
    text = HEAD + (
        "omitstages: [Panic]\n"
        "rules:\n"
        "- level: Metadata\n"
        "  resources:\n"
        "  - group: apps\n"
        "    verbs: [get]\n"
        "  Namespaces: [x]\n"
        "- level: None\n"
        "  level: Metadata\n"
        "  users: alice\n"
    )
    problems = _problems(text)
    assert problems == [
        'policy.yaml:3:1: omitstages: unknown field "omitstages" (did you mean "omitStages"?)',
        'policy.yaml:8:5: rules[0].resources[0].verbs: unknown field "verbs" ("verbs" is a field '
        "of the rule rules[0], not of a resources entry: check its indentation)",
        'policy.yaml:9:3: rules[0].Namespaces: unknown field "Namespaces" (did you mean '
        '"namespaces"?)',
        'policy.yaml:11:3: rules[1].level: duplicate field "level" (first set on line 10)',
        'policy.yaml:12:10: rules[1].users: expected a list of strings, got a string "alice" '
        '(write ["alice"])',
    ]
    assert decode_problems_are_lenient(problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEAD + "rules: {level: None}\n", "rules: expected a list of rules, got a mapping"),
        (HEAD + "rules:\n- level: [None]\n", "rules[0].level: expected a string, got a list"),
        (
            HEAD + "rules:\n- Metadata\n",
            'rules[0]: expected a PolicyRule object (a mapping), got a string "Metadata"',
        ),
        (
            HEAD + "omitManagedFields: 'yes'\nrules: []\n",
            'omitManagedFields: expected a boolean (true or false), got a string "yes"',
        ),
        (
            HEAD + "rules:\n- level: None\n  resources: [pods]\n",
            "rules[0].resources[0]: expected a GroupResources object (a mapping), "
            'got a string "pods"',
        ),
    ],
)
def test_wrong_types(text: str, message: str) -> None:
    (problem,) = _problems(text)
    assert problem.split(": ", 1)[1] == message


def test_v1beta1_rejected_with_removal_message() -> None:
    (p,) = _problems("apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n")
    assert p.startswith(
        'policy.yaml:1:13: apiVersion: "audit.k8s.io/v1beta1" is no longer accepted'
    )
    assert "removed in Kubernetes 1.24" in p
    assert "apiVersion: audit.k8s.io/v1" in p


def test_v1alpha1_rejected() -> None:
    (p,) = _problems("apiVersion: audit.k8s.io/v1alpha1\nkind: Policy\nrules: [{level: None}]\n")
    assert "removed in Kubernetes 1.24" in p


def test_missing_apiversion_and_kind_like_upstream() -> None:
    (p,) = _problems("rules:\n- level: None\n")
    assert p.startswith(
        "policy.yaml:1:1: unknown group version field audit.k8s.io/__internal, "
        "Kind=Policy in policy"
    )
    assert "expected apiVersion: audit.k8s.io/v1 and kind: Policy" in p


def test_wrong_kind_and_version() -> None:
    problems = _problems("apiVersion: v1\nkind: PolicyList\nrules: [{level: None}]\n")
    assert problems == [
        'policy.yaml:1:13: apiVersion: unsupported value "v1": expected apiVersion: '
        "audit.k8s.io/v1 and kind: Policy",
        'policy.yaml:2:7: kind: unsupported value "PolicyList": expected "Policy"',
    ]


def test_zero_rules() -> None:
    with pytest.raises(PolicyInvalidError) as info:
        load_policy_bytes(HEAD + "rules: []\n", "policy.yaml")
    assert info.value.errors == ["loaded illegal policy with 0 rules"]
    assert str(info.value) == "policy.yaml: loaded illegal policy with 0 rules"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(text: str) -> None:
    (p,) = _problems(text)
    assert p.startswith("policy.yaml: the policy file is empty")


def test_bad_yaml_syntax_has_position() -> None:
    (p,) = _problems(HEAD + "rules:\n- level: None\n  verbs: [get\n")
    assert p.startswith("policy.yaml:6:1: invalid YAML: ")


def test_not_a_mapping() -> None:
    (p,) = _problems("- a\n- b\n")
    assert p == "policy.yaml:1:1: expected a Policy (a mapping), got a list"


def test_two_documents() -> None:
    (p,) = _problems(HEAD + "rules: [{level: None}]\n---\n" + HEAD + "rules: [{level: None}]\n")
    assert "more than one YAML document" in p


def test_validation_runs_on_load() -> None:
    with pytest.raises(PolicyInvalidError) as info:
        load_policy_bytes(HEAD + "rules:\n- level: Metdata\n- level: ''\n", "p.yaml")
    assert info.value.errors == [
        'rules[0].level: Unsupported value: "Metdata": supported values: "None", "Metadata", '
        '"Request", "RequestResponse"',
        "rules[1].level: Required value",
    ]
    assert str(info.value).startswith("p.yaml: [rules[0].level: Unsupported value")


def test_metadata_unknown_field() -> None:
    (p,) = _problems(HEAD + "metadata: {nmae: x}\nrules: [{level: None}]\n")
    assert p == 'policy.yaml:3:12: metadata.nmae: unknown field "nmae" (did you mean "name"?)'


def test_numbers_and_booleans_are_not_strings_as_in_the_apiserver() -> None:
    # The apiserver turns YAML into JSON first: 123 stays a number and does not decode
    # into a string field; null decodes to "" (Go's encoding/json).
    with pytest.raises(PolicyDecodeError) as err:
        decode_policy(HEAD + "rules:\n- level: 5\n  namespaces: [123, null, '7']\n")
    assert err.value.problems == [
        '<policy>:4:10: rules[0].level: expected a string, got a number "5"',
        '<policy>:5:16: rules[0].namespaces[0]: expected a string, got a number "123"',
    ]
    pol = decode_policy(HEAD + "rules:\n- level: None\n  namespaces: [null, '7']\n")
    assert pol.rules[0].namespaces == ("", "7")
