"""Evaluation, table-driven like the apiserver's checker_test.go (named requests x named rules)."""

from __future__ import annotations

import pytest

from kaudit.policy import Attributes, Decision, Evaluator, GroupResources, Policy, PolicyRule, User

RR, RS, RC, PANIC = "RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"

TIM = User("tim@k8s.io", ("humans", "developers"))

ATTRS = {
    "namespaced": Attributes(
        TIM, "get", "default", "", "v1", "pods", "", "busybox",
        "/api/v1/namespaces/default/pods/busybox", True,
    ),
    "cluster": Attributes(
        TIM, "get", "", "rbac.authorization.k8s.io", "v1beta1", "clusterroles", "", "edit",
        "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit", True,
    ),
    "nonResource": Attributes(TIM, "get", path="/logs/kubelet.log"),
    "subresource": Attributes(
        TIM, "get", "default", "", "v1", "pods", "log", "busybox",
        "/api/v1/namespaces/default/pods/busybox", True,
    ),
    "Unauthorized": Attributes(
        None, "get", "default", "", "v1", "pods", "", "busybox",
        "/api/v1/namespaces/default/pods/busybox", True,
    ),
}  # fmt: skip

RULES = {
    "default": PolicyRule(level="Metadata"),
    "create": PolicyRule(level="Request", verbs=("create",)),
    "tims": PolicyRule(level="Metadata", users=("tim@k8s.io",)),
    "humans": PolicyRule(level="Metadata", user_groups=("humans",)),
    "serviceAccounts": PolicyRule(level="Request", user_groups=("system:serviceaccounts",)),
    "getPods": PolicyRule(
        level="RequestResponse", verbs=("get",), resources=(GroupResources(resources=("pods",)),)
    ),
    "getPodLogs": PolicyRule(
        level="Request", verbs=("get",), resources=(GroupResources(resources=("pods/log",)),)
    ),
    "getPodWildcardMatching": PolicyRule(
        level="Request", verbs=("get",), resources=(GroupResources(resources=("*",)),)
    ),
    "getPodResourceWildcardMatching": PolicyRule(
        level="Request", verbs=("get",), resources=(GroupResources(resources=("*/log",)),)
    ),
    "getPodSubResourceWildcardMatching": PolicyRule(
        level="Request", verbs=("get",), resources=(GroupResources(resources=("pods/*",)),)
    ),
    "getClusterRoles": PolicyRule(
        level="RequestResponse",
        verbs=("get",),
        resources=(GroupResources("rbac.authorization.k8s.io", ("clusterroles",)),),
        namespaces=("",),
    ),
    "getLogs": PolicyRule(level="RequestResponse", verbs=("get",), non_resource_urls=("/logs*",)),
    "getMetrics": PolicyRule(level="Request", verbs=("get",), non_resource_urls=("/metrics",)),
    "clusterRoleEdit": PolicyRule(
        level="Request",
        resources=(GroupResources("rbac.authorization.k8s.io", ("clusterroles",), ("edit",)),),
    ),
    "omit RequestReceived": PolicyRule(level="Request", omit_stages=(RR,)),
    "only audit panic": PolicyRule(level="Request", omit_stages=(RR, RS, RC)),
}

# (request, expected level, rule names) - every case of upstream testAuditLevel.
LEVEL_CASES = [
    ("namespaced", "Metadata", ["default"]),
    ("namespaced", "None", ["create"]),
    ("namespaced", "Metadata", ["tims"]),
    ("namespaced", "Metadata", ["humans"]),
    ("namespaced", "None", ["serviceAccounts"]),
    ("namespaced", "RequestResponse", ["getPods"]),
    ("namespaced", "None", ["getClusterRoles"]),
    ("namespaced", "None", ["getLogs"]),
    ("namespaced", "None", ["getMetrics"]),
    ("namespaced", "Metadata", ["getMetrics", "serviceAccounts", "default"]),
    ("namespaced", "RequestResponse", ["getMetrics", "getPods", "default"]),
    ("namespaced", "RequestResponse", ["getPodLogs", "getPods"]),
    ("cluster", "Metadata", ["default"]),
    ("cluster", "None", ["create"]),
    ("cluster", "Metadata", ["tims"]),
    ("cluster", "Metadata", ["humans"]),
    ("cluster", "None", ["serviceAccounts"]),
    ("cluster", "None", ["getPods"]),
    ("cluster", "RequestResponse", ["getClusterRoles"]),
    ("cluster", "Request", ["clusterRoleEdit", "getClusterRoles"]),
    ("cluster", "None", ["getLogs"]),
    ("cluster", "None", ["getMetrics"]),
    ("cluster", "Metadata", ["getMetrics", "serviceAccounts", "default"]),
    ("cluster", "RequestResponse", ["getMetrics", "getClusterRoles", "default"]),
    ("cluster", "None", ["getPodLogs", "getPods"]),
    ("nonResource", "Metadata", ["default"]),
    ("nonResource", "None", ["create"]),
    ("nonResource", "Metadata", ["tims"]),
    ("nonResource", "Metadata", ["humans"]),
    ("nonResource", "None", ["serviceAccounts"]),
    ("nonResource", "None", ["getPods"]),
    ("nonResource", "None", ["getClusterRoles"]),
    ("nonResource", "RequestResponse", ["getLogs"]),
    ("nonResource", "None", ["getMetrics"]),
    ("nonResource", "Metadata", ["getMetrics", "serviceAccounts", "default"]),
    ("nonResource", "RequestResponse", ["getLogs", "getClusterRoles", "default"]),
    ("nonResource", "None", ["getPodLogs", "getPods"]),
    ("subresource", "Request", ["getPodLogs", "getPods"]),
    ("subresource", "Request", ["getPodWildcardMatching"]),
    ("subresource", "Request", ["getPodResourceWildcardMatching"]),
    ("subresource", "Request", ["getPodSubResourceWildcardMatching"]),
    ("Unauthorized", "None", ["tims"]),
    ("Unauthorized", "Metadata", ["tims", "default"]),
    ("Unauthorized", "None", ["humans"]),
    ("Unauthorized", "Metadata", ["humans", "default"]),
]


def _decide(req: str, policy_stages: tuple[str, ...], names: list[str]) -> Decision:
    pol = Policy(rules=tuple(RULES[n] for n in names), omit_stages=policy_stages)
    ev = Evaluator(pol)
    d = ev.evaluate(ATTRS[req])
    assert d == ev.evaluate_uncached(ATTRS[req])
    return d


@pytest.mark.parametrize("stages", [(), (RR, RS)], ids=["no-policy-stages", "policy-stages"])
@pytest.mark.parametrize(("req", "level", "names"), LEVEL_CASES)
def test_checker_levels(req: str, level: str, names: list[str], stages: tuple[str, ...]) -> None:
    d = _decide(req, stages, names)
    assert d.level == level
    assert d.omit_stages == frozenset(stages)


@pytest.mark.parametrize(
    ("req", "names", "level", "expected"),
    [
        ("namespaced", ["omit RequestReceived", "getPods", "default"], "Request", {RR}),
        ("namespaced", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
        ("cluster", ["omit RequestReceived", "getPods", "default"], "Request", {RR}),
        ("cluster", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
        ("nonResource", ["omit RequestReceived", "getPods", "default"], "Request", {RR}),
        ("nonResource", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
    ],
)
def test_checker_rule_omit_stages(
    req: str, names: list[str], level: str, expected: set[str]
) -> None:
    d = _decide(req, (), names)
    assert (d.level, d.omit_stages) == (level, frozenset(expected))


@pytest.mark.parametrize(
    ("req", "names", "level", "expected"),
    [
        ("namespaced", ["omit RequestReceived", "getPods", "default"], "Request", {RR, RS}),
        ("namespaced", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
        ("cluster", ["omit RequestReceived", "getPods", "default"], "Request", {RR, RS}),
        ("cluster", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
        ("nonResource", ["default", "omit RequestReceived", "getPods"], "Metadata", {RR, RS}),
        ("nonResource", ["only audit panic", "getPods", "default"], "Request", {RR, RS, RC}),
    ],
)
def test_checker_policy_omit_stages(
    req: str, names: list[str], level: str, expected: set[str]
) -> None:
    d = _decide(req, (RR, RS), names)
    assert (d.level, d.omit_stages) == (level, frozenset(expected))


@pytest.mark.parametrize(
    ("policy_value", "rule_value", "want"),
    [(False, None, False), (True, None, True), (True, False, False), (False, True, True)],
)
def test_omit_managed_fields_precedence(
    policy_value: bool, rule_value: bool | None, want: bool
) -> None:
    rule = PolicyRule(level="RequestResponse", verbs=("get",), omit_managed_fields=rule_value)
    pol = Policy(rules=(rule,), omit_managed_fields=policy_value)
    assert Evaluator(pol).evaluate(Attributes(verb="get")).omit_managed_fields is want


def test_no_match_uses_policy_defaults() -> None:
    pol = Policy(
        rules=(PolicyRule(level="Metadata", verbs=("create",)),),
        omit_stages=(PANIC,),
        omit_managed_fields=True,
    )
    d = Evaluator(pol).evaluate(Attributes(verb="get"))
    assert d == ("None", frozenset({PANIC}), True, None)


def _res(resources: tuple[str, ...], group: str = "", names: tuple[str, ...] = ()) -> Policy:
    gr = GroupResources(group, resources, names)
    return Policy(rules=(PolicyRule(level="Metadata", resources=(gr,)),))


def _pod(sub: str = "", name: str = "x", group: str = "", resource: str = "pods") -> Attributes:
    return Attributes(None, "get", "ns", group, "v1", resource, sub, name, "/p", True)


@pytest.mark.parametrize(
    ("resources", "attrs", "matches"),
    [
        (("pods",), _pod(), True),
        (("pods",), _pod("log"), False),  # pods does not match pods/log
        (("pods/log",), _pod("log"), True),
        (("pods/*",), _pod("log"), True),
        (("pods/*",), _pod(), True),  # pods/* also matches the bare resource
        (("*/scale",), _pod("scale", resource="deployments"), True),
        (("*/scale",), _pod(resource="deployments"), False),  # needs a subresource
        (("*",), _pod("exec"), True),
        (("*",), _pod(), True),
        (("services",), _pod(), False),
    ],
)
def test_resource_wildcards(resources: tuple[str, ...], attrs: Attributes, matches: bool) -> None:
    assert (Evaluator(_res(resources)).evaluate(attrs).level == "Metadata") is matches


def test_group_star_matches_every_group() -> None:
    ev = Evaluator(_res(("deployments",), group="*"))
    assert ev.evaluate(_pod(group="apps", resource="deployments")).level == "Metadata"
    assert ev.evaluate(_pod(group="", resource="deployments")).level == "Metadata"
    assert ev.evaluate(_pod(group="apps", resource="pods")).level == "None"


def test_group_must_match_exactly() -> None:
    ev = Evaluator(_res(("deployments",), group="apps"))
    assert ev.evaluate(_pod(group="extensions", resource="deployments")).level == "None"


def test_resource_names_only_when_name_matches() -> None:
    ev = Evaluator(_res(("configmaps",), names=("leader",)))
    assert ev.evaluate(_pod(name="leader", resource="configmaps")).level == "Metadata"
    assert ev.evaluate(_pod(name="other", resource="configmaps")).level == "None"
    assert ev.evaluate(_pod(name="", resource="configmaps")).level == "None"  # list/create


def test_group_without_resources_matches_whole_group() -> None:
    pol = Policy(rules=(PolicyRule(level="Request", resources=(GroupResources("apps"),)),))
    ev = Evaluator(pol)
    assert ev.evaluate(_pod("scale", group="apps", resource="deployments")).level == "Request"


def test_namespaces_including_empty() -> None:
    pol = Policy(rules=(PolicyRule(level="Metadata", namespaces=("",)),))
    ev = Evaluator(pol)
    cluster = Attributes(None, "list", "", "", "v1", "pods", "", "", "/api/v1/pods", True)
    assert ev.evaluate(cluster).level == "Metadata"  # all-namespace list
    assert ev.evaluate(_pod()).level == "None"
    assert ev.evaluate(Attributes(verb="get", path="/healthz")).level == "None"


@pytest.mark.parametrize(
    ("spec", "path", "matches"),
    [
        ("/healthz*", "/healthz", True),
        ("/healthz*", "/healthz/etcd", True),
        ("/healthz*", "/healthzfoo", True),  # a plain prefix, not segment-aware
        ("/metrics", "/metrics/slis", False),
        ("/metrics", "/metrics", True),
        ("/logs**", "/logs/x", True),  # every trailing * stripped
        ("*", "/anything", True),
        ("/api*", "/apis", True),
    ],
)
def test_non_resource_urls(spec: str, path: str, matches: bool) -> None:
    pol = Policy(rules=(PolicyRule(level="Metadata", non_resource_urls=(spec,)),))
    d = Evaluator(pol).evaluate(Attributes(verb="get", path=path))
    assert (d.level == "Metadata") is matches


def test_non_resource_rule_never_matches_resource_request() -> None:
    pol = Policy(rules=(PolicyRule(level="Metadata", non_resource_urls=("*",)),))
    assert Evaluator(pol).evaluate(_pod()).level == "None"


def test_rule_without_selectors_matches_both_kinds() -> None:
    ev = Evaluator(Policy(rules=(PolicyRule(level="Request"),)))
    assert ev.evaluate(_pod()).rule_index == 0
    assert ev.evaluate(Attributes(verb="get", path="/x")).rule_index == 0


def test_cache_is_bounded_and_consistent() -> None:
    ev = Evaluator(Policy(rules=(PolicyRule(level="Metadata", users=("u0",)),)), cache_size=8)
    for i in range(100):
        a = Attributes(User(f"u{i % 20}"), "get", path="/x")
        assert ev.evaluate(a) == ev.evaluate_uncached(a)
    assert len(ev._cache) <= 8


def test_explain_stops_at_match_and_says_why() -> None:
    pol = Policy(
        rules=(
            RULES["create"],
            RULES["tims"],
            RULES["getLogs"],
            RULES["default"],
        )
    )
    traces = Evaluator(pol).explain(ATTRS["Unauthorized"])
    assert [(t.index, t.matched) for t in traces] == [(0, False), (1, False), (2, False), (3, True)]
    assert traces[0].reason == 'verbs: "get" is not in ["create"]'
    assert traces[1].reason == 'users ["tim@k8s.io"]: the request has no user'
    assert traces[2].reason == "nonResourceURLs: this is a resource request"
    assert "no selectors" in traces[3].reason
