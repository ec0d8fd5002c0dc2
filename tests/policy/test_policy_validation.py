"""Validation messages, verbatim as the apiserver writes them (spec 5.6)."""

from __future__ import annotations

import pytest

from kaudit.policy import GroupResources, Policy, PolicyRule, check, validate
from kaudit.policy.validation import go_json, go_quote

RFC1123 = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
STAGES = "allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"


def _one(rule: PolicyRule) -> list[str]:
    return validate(Policy(rules=(rule,)))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (PolicyRule(level=""), ["rules[0].level: Required value"]),
        (
            PolicyRule(level="FooBar"),
            [
                'rules[0].level: Unsupported value: "FooBar": supported values: "None", '
                '"Metadata", "Request", "RequestResponse"'
            ],
        ),
        (
            PolicyRule(level="None", non_resource_urls=("logs",)),
            [
                'rules[0].nonResourceURLs[0]: Invalid value: "logs": non-resource URL rules must '
                "begin with a '/' character"
            ],
        ),
        (
            PolicyRule(level="None", non_resource_urls=("",)),
            [
                'rules[0].nonResourceURLs[0]: Invalid value: "": non-resource URL rules must '
                "begin with a '/' character"
            ],
        ),
        (
            PolicyRule(level="None", non_resource_urls=("/logs/*.log",)),
            [
                'rules[0].nonResourceURLs[0]: Invalid value: "/logs/*.log": non-resource URL '
                "wildcards '*' must be the final character of the rule"
            ],
        ),
        (
            PolicyRule(level="None", non_resource_urls=("logs*/x",)),
            [
                'rules[0].nonResourceURLs[0]: Invalid value: "logs*/x": non-resource URL rules '
                "must begin with a '/' character",
                'rules[0].nonResourceURLs[0]: Invalid value: "logs*/x": non-resource URL '
                "wildcards '*' must be the final character of the rule",
            ],
        ),
        (PolicyRule(level="None", non_resource_urls=("*", "/x*")), []),
        (
            PolicyRule(
                level="None",
                resources=(GroupResources("rbac.authorization.k8s.io/v1beta1", ("roles",)),),
            ),
            [
                'rules[0].resources.group: Invalid value: "rbac.authorization.k8s.io/v1beta1": '
                + RFC1123
            ],
        ),
        (PolicyRule(level="None", resources=(GroupResources("*"),)), []),
        (PolicyRule(level="None", resources=(GroupResources(""),)), []),
        (
            PolicyRule(level="None", resources=(GroupResources("", (), ("leader",)),)),
            [
                'rules[0].resources.resourceNames: Invalid value: ["leader"]: using '
                "resourceNames requires at least one resource"
            ],
        ),
        (
            PolicyRule(level="None", omit_stages=("foo",)),
            [f'rules[0].omitStages[0]: Invalid value: "foo": {STAGES}'],
        ),
        (
            PolicyRule(level="None", non_resource_urls=("/logs*",), namespaces=("default",)),
            [
                'rules[0].nonResourceURLs: Invalid value: ["/logs*"]: rules cannot apply to '
                "both regular resources and non-resource URLs"
            ],
        ),
        (
            PolicyRule(
                level="None",
                non_resource_urls=("/logs*",),
                resources=(GroupResources(resources=("pods",)),),
            ),
            [
                'rules[0].nonResourceURLs: Invalid value: ["/logs*"]: rules cannot apply to '
                "both regular resources and non-resource URLs"
            ],
        ),
        # Not validated: users, groups, verbs, namespaces, resource strings, duplicates.
        (
            PolicyRule(
                level="Metadata",
                users=("", "x"),
                user_groups=("@",),
                verbs=("FOO",),
                namespaces=("", "Not_DNS"),
                resources=(GroupResources("", ("foo/*/bar", "pods", "pods")),),
            ),
            [],
        ),
    ],
)
def test_rule_messages(rule: PolicyRule, expected: list[str]) -> None:
    assert _one(rule) == expected


def test_long_group_joins_both_messages_with_comma() -> None:
    group = "a" * 254
    errs = _one(PolicyRule(level="None", resources=(GroupResources(group),)))
    assert errs == [
        f'rules[0].resources.group: Invalid value: "{group}": must be no more than 253 characters'
    ]
    group = "A" * 254
    errs = _one(PolicyRule(level="None", resources=(GroupResources(group),)))
    assert errs == [
        f'rules[0].resources.group: Invalid value: "{group}": must be no more than 253 '
        f"characters,{RFC1123}"
    ]


def test_policy_omit_stages_first_then_rules_in_order() -> None:
    pol = Policy(
        omit_stages=("RequestReceived", "responsecomplete"),
        rules=(
            PolicyRule(level="Metdata", non_resource_urls=("x",), omit_stages=("Bad",)),
            PolicyRule(
                level="",
                resources=(
                    GroupResources("Apps", ("deployments",)),
                    GroupResources("", (), ("n",)),
                ),
                non_resource_urls=("/x",),
            ),
        ),
    )
    assert validate(pol) == [
        f'omitStages[1]: Invalid value: "responsecomplete": {STAGES}',
        'rules[0].level: Unsupported value: "Metdata": supported values: "None", "Metadata", '
        '"Request", "RequestResponse"',
        'rules[0].nonResourceURLs[0]: Invalid value: "x": non-resource URL rules must begin '
        "with a '/' character",
        f'rules[0].omitStages[0]: Invalid value: "Bad": {STAGES}',
        "rules[1].level: Required value",
        f'rules[1].resources.group: Invalid value: "Apps": {RFC1123}',
        'rules[1].resources.resourceNames: Invalid value: ["n"]: using resourceNames requires '
        "at least one resource",
        'rules[1].nonResourceURLs: Invalid value: ["/x"]: rules cannot apply to both regular '
        "resources and non-resource URLs",
    ]


def test_values_are_go_quoted() -> None:
    errs = _one(PolicyRule(level="None", omit_stages=('a"b\\c\n\x01é',)))
    assert errs == [f'rules[0].omitStages[0]: Invalid value: "a\\"b\\\\c\\n\\x01é": {STAGES}']


def test_lists_are_go_json() -> None:
    assert go_json(["<a>&"]) == '["\\u003ca\\u003e\\u0026"]'
    assert go_quote("tab\there") == '"tab\\there"'


@pytest.mark.parametrize(
    ("level", "hint"),
    [
        ("Metdata", 'did you mean "Metadata"?'),
        ("metadata", 'did you mean "Metadata"? (values are case-sensitive)'),
        ("requestresponse", 'did you mean "RequestResponse"? (values are case-sensitive)'),
        ("Everything", None),
    ],
)
def test_hints_are_separate_from_the_message(level: str, hint: str | None) -> None:
    (err,) = check(Policy(rules=(PolicyRule(level=level),)))
    assert err.hint == hint
    assert err.message.startswith(f'rules[0].level: Unsupported value: "{level}"')
    assert "did you mean" not in err.message


def test_group_hint_and_locator_have_the_index() -> None:
    pol = Policy(
        rules=(
            PolicyRule(
                level="None",
                resources=(GroupResources(""), GroupResources("apps/v1", ("deployments",))),
            ),
        )
    )
    (err,) = check(pol)
    assert err.path == "rules[0].resources.group"
    assert err.locator == "rules[0].resources[1].group"
    assert err.hint == 'group is the API group without its version: write "apps"'
