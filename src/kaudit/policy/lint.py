"""Policy lint: what a valid policy gets wrong for security and volume.

Each :class:`Finding` has a severity (``error``, ``warning``, ``info``), a check id,
the rule it is about (``rules[i]``), ``file:line:col`` and a fix. The checks:

``invalid`` (error)
    decode and validation problems (the apiserver would refuse the file).
``sensitive-bodies`` (error) / ``configmap-bodies`` (warning)
    a rule at Request/RequestResponse that can be the first match for secrets,
    tokenreviews, serviceaccounts/token (TokenRequest) or certificatesigningrequests
    (configmaps: warning, they often hold credentials). Decided on match sets: the
    rule's requests for that resource, minus what earlier rules take first
    (:func:`~kaudit.policy.containment.covering_rules`). Request level counts only
    when the rule can match a verb that carries a body (create, update, patch).
``unreachable-rule`` (warning)
    earlier rules match everything this rule matches (one rule, or several together).
``no-catch-all`` / ``catch-all-not-last`` (warning)
    requests matching no rule are not audited at all; rules after a catch-all are dead.
``request-received`` (warning)
    RequestReceived is not omitted: every request is logged twice.
``managed-fields`` (warning)
    a rule logs bodies with omitManagedFields off.
``resource-names-verbs`` (warning)
    resourceNames on a rule whose verbs never carry a name (create, list, watch,
    deletecollection): the entry can never match.
``pods-subresources`` (warning)
    a rule logs ``pods`` bodies (Request+) while no rule of the policy can match any
    pods subresource: ``pods`` does not match ``pods/exec``, ``pods/attach`` or
    ``pods/portforward``, so interactive access falls through (``pods/*`` was meant).
``noisy-traffic`` (info)
    well-known high-volume system traffic is logged (probe requests evaluated
    against the policy: kube-proxy watches, leases, controller-manager/scheduler
    watches, health endpoints, events).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kaudit.errors import InputError, Location, PolicyDecodeError
from kaudit.model.types import LEVEL_NONE, LEVEL_REQUEST, LEVEL_REQUEST_RESPONSE
from kaudit.policy.attributes import Attributes, User
from kaudit.policy.containment import ANY_NAME, Atom, MatchSet, covering_rules
from kaudit.policy.evaluate import Evaluator
from kaudit.policy.loader import LENIENT_HINT, decode_policy, decode_problems_are_lenient
from kaudit.policy.types import Policy, PolicyRule
from kaudit.policy.validation import check

SEVERITIES = ("error", "warning", "info")
_BODY_LEVELS = (LEVEL_REQUEST, LEVEL_REQUEST_RESPONSE)
_WRITE_VERBS = frozenset({"create", "update", "patch"})
#: Verbs whose requests have no name (list/watch only with fieldSelector=metadata.name).
NAMELESS_VERBS = frozenset({"create", "list", "watch", "deletecollection"})


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    check: str
    message: str
    fix: str
    rule: int | None = None
    path: str = ""
    location: str = ""
    related: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "check": self.check,
            "rule": None if self.rule is None else f"rules[{self.rule}]",
            "location": self.location,
            "message": self.message,
            "fix": self.fix,
            "related": [f"rules[{i}]" for i in self.related],
        }

    def __str__(self) -> str:
        head = f"{self.location}: " if self.location else ""
        return f"{head}{self.severity}: {self.message} [{self.check}]"


@dataclass(frozen=True, slots=True)
class Sensitive:
    """A resource whose bodies must not be logged (what each level would expose)."""

    name: str
    group: str
    spec: str  # "secrets" or "serviceaccounts/token"
    severity: str
    request: str  # what request bodies expose
    response: str  # what response bodies add


SENSITIVE: tuple[Sensitive, ...] = (
    Sensitive(
        "secrets",
        "",
        "secrets",
        "error",
        "creates and updates carry the secret values",
        "every get and list returns them",
    ),
    Sensitive(
        "tokenreviews",
        "authentication.k8s.io",
        "tokenreviews",
        "error",
        "every TokenReview carries the bearer token under review in spec.token",
        "the response echoes it",
    ),
    Sensitive(
        "tokenrequests (serviceaccounts/token)",
        "",
        "serviceaccounts/token",
        "error",
        "token requests are logged, one level below the issued tokens themselves",
        "every response holds a freshly issued service-account token",
    ),
    Sensitive(
        "certificatesigningrequests",
        "certificates.k8s.io",
        "certificatesigningrequests",
        "error",
        "CSRs carry the identity a credential is being requested for",
        "responses carry the issued client certificates",
    ),
    Sensitive(
        "configmaps",
        "",
        "configmaps",
        "warning",
        "configmaps often hold credentials and connection strings",
        "every get and list returns them",
    ),
)


@dataclass(frozen=True, slots=True)
class NoisyClass:
    name: str
    fix: str
    probes: tuple[tuple[str, Attributes], ...] = field(default_factory=tuple)


def _res(
    user: User | None, verb: str, group: str, resource: str, namespace: str = "", name: str = ""
) -> Attributes:
    return Attributes(user, verb, namespace, group, "v1", resource, "", name, "", True)


def _url(user: User | None, path: str) -> Attributes:
    return Attributes(user, "get", path=path)


_AUTH = "system:authenticated"
_PROXY = User("system:kube-proxy", (_AUTH,))
_KCM = User("system:kube-controller-manager", (_AUTH,))
_SCHED = User("system:kube-scheduler", (_AUTH,))
_NODE = User("system:node:node-1", ("system:nodes", _AUTH))
_ANON = User("system:anonymous", ("system:unauthenticated",))

NOISY: tuple[NoisyClass, ...] = (
    NoisyClass(
        "kube-proxy watches",
        '- level: None\n  users: ["system:kube-proxy"]\n  verbs: ["watch"]\n'
        '  resources:\n  - group: ""\n    resources: ["endpoints", "services"]\n'
        '  - group: "discovery.k8s.io"\n    resources: ["endpointslices"]',
        (
            ("watch endpoints by system:kube-proxy", _res(_PROXY, "watch", "", "endpoints")),
            ("watch services by system:kube-proxy", _res(_PROXY, "watch", "", "services")),
            (
                "watch endpointslices by system:kube-proxy",
                _res(_PROXY, "watch", "discovery.k8s.io", "endpointslices"),
            ),
        ),
    ),
    NoisyClass(
        "leases (leader election, node heartbeats)",
        '- level: None\n  verbs: ["get", "update", "watch"]\n'
        '  resources:\n  - group: "coordination.k8s.io"\n    resources: ["leases"]',
        (
            (
                "update leases by system:kube-controller-manager",
                _res(
                    _KCM,
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "kube-system",
                    "kube-controller-manager",
                ),
            ),
            (
                "update leases by a node",
                _res(_NODE, "update", "coordination.k8s.io", "leases", "kube-node-lease", "node-1"),
            ),
            (
                "get leases by system:kube-scheduler",
                _res(
                    _SCHED, "get", "coordination.k8s.io", "leases", "kube-system", "kube-scheduler"
                ),
            ),
        ),
    ),
    NoisyClass(
        "controller-manager and scheduler watches",
        '- level: None\n  users: ["system:kube-controller-manager", "system:kube-scheduler"]\n'
        '  verbs: ["watch"]',
        (
            ("watch pods by system:kube-controller-manager", _res(_KCM, "watch", "", "pods")),
            ("watch nodes by system:kube-scheduler", _res(_SCHED, "watch", "", "nodes")),
        ),
    ),
    NoisyClass(
        "health endpoints",
        '- level: None\n  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]',
        (
            ("GET /healthz", _url(_ANON, "/healthz")),
            ("GET /readyz", _url(_ANON, "/readyz")),
            ("GET /livez", _url(_ANON, "/livez")),
        ),
    ),
    NoisyClass(
        "events",
        '- level: None\n  resources:\n  - group: ""\n    resources: ["events"]\n'
        '  - group: "events.k8s.io"\n    resources: ["events"]',
        (
            ("create events by a node", _res(_NODE, "create", "", "events", "default")),
            ("patch events by a node", _res(_NODE, "patch", "", "events", "default", "x.1")),
            (
                "create events.k8s.io events",
                _res(_NODE, "create", "events.k8s.io", "events", "default"),
            ),
        ),
    ),
)


# --- entry points ------------------------------------------------------------------


def lint_bytes(data: bytes | str, source: str = "<policy>") -> tuple[Policy | None, list[Finding]]:
    """Decode, validate and lint; decode/validation problems are ``invalid`` errors."""
    try:
        policy = decode_policy(data, source)
    except PolicyDecodeError as exc:
        fix = LENIENT_HINT if decode_problems_are_lenient(exc.problems) else "fix the file"
        out = []
        for problem in exc.problems:
            loc, _, msg = _split_location(problem, source)
            out.append(Finding("error", "invalid", msg, fix, None, "", loc))
        return None, out
    return policy, lint_policy(policy)


def lint_file(path: str) -> tuple[Policy | None, list[Finding]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"cannot read policy file: {exc.strerror}", Location(path)) from None
    return lint_bytes(data, path)


def lint_policy(policy: Policy) -> list[Finding]:
    """Every finding for a decoded policy, in rule order (policy-wide ones last)."""
    out: list[Finding] = []
    for err in check(policy):
        path = err.locator or err.path
        msg = err.message
        out.append(
            Finding(
                "error",
                "invalid",
                msg,
                err.hint or "the apiserver refuses to start with this policy; fix the field",
                _rule_index(path),
                path,
                policy.where(path),
            )
        )
    if not policy.rules:
        out.append(
            Finding(
                "error",
                "invalid",
                "loaded illegal policy with 0 rules",
                "add rules, at least a catch-all: rules: [{level: Metadata}]",
                None,
                "rules",
                policy.where(""),
            )
        )
        return out
    sets = [MatchSet.of(r) for r in policy.rules]
    for i, rule in enumerate(policy.rules):
        out += _sensitive(policy, sets, i, rule)
        out += _unreachable(policy, sets, i)
        out += _managed_fields(policy, i, rule)
        out += _resource_names(policy, i, rule)
        out += _pods_subresources(policy, i, rule)
    out += _catch_all(policy, sets)
    out += _request_received(policy)
    out += _noisy(policy)
    return out


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


# --- the checks ----------------------------------------------------------------------


def _f(
    policy: Policy,
    severity: str,
    check_id: str,
    rule: int | None,
    path: str,
    message: str,
    fix: str,
    related: Iterable[int] = (),
) -> Finding:
    return Finding(severity, check_id, message, fix, rule, path, policy.where(path), tuple(related))


def _names(rules: Iterable[int]) -> str:
    return ", ".join(f"rules[{i}]" for i in rules)


def _rule_matches_resource(rule: PolicyRule, group: str, spec: str) -> list[str | None] | None:
    """Names (None: any) under which ``rule`` can match requests for ``group``/``spec``.

    None when it cannot match them at all. ``spec`` is ``resource`` or ``resource/sub``.
    """
    if rule.non_resource_urls and not (rule.resources or rule.namespaces):
        return None
    if not rule.resources:
        return [ANY_NAME]
    resource, _, sub = spec.partition("/")
    names: list[str | None] = []
    for gr in rule.resources:
        if gr.group not in (group, "*"):
            continue
        if not gr.resources:
            return [ANY_NAME]
        for res in gr.resources:
            hit = (
                res == spec
                or res == "*"
                or (res.endswith("/*") and res[:-2] == resource)
                or (bool(sub) and res.startswith("*/") and res[2:] == sub)
            )
            if not hit:
                continue
            if not gr.resource_names:
                return [ANY_NAME]
            names.extend(gr.resource_names)
    return names or None


def _logs_bodies(rule: PolicyRule) -> bool:
    if rule.level == LEVEL_REQUEST_RESPONSE:
        return not rule.verbs or bool(set(rule.verbs) - {"watch"})
    if rule.level == LEVEL_REQUEST:
        return not rule.verbs or bool(_WRITE_VERBS & set(rule.verbs))
    return False


def _sensitive(policy: Policy, sets: list[MatchSet], i: int, rule: PolicyRule) -> list[Finding]:
    if rule.level not in _BODY_LEVELS or not _logs_bodies(rule):
        return []
    out = []
    earlier = list(enumerate(sets[:i]))
    for s in SENSITIVE:
        names = _rule_matches_resource(rule, s.group, s.spec)
        if names is None:
            continue
        mine = sets[i]
        verbs = mine.verbs
        if rule.level == LEVEL_REQUEST:
            # At Request only writes carry a body: reads of the rule do not count.
            verbs = _WRITE_VERBS if verbs is None else verbs & _WRITE_VERBS
        piece = MatchSet(
            mine.users,
            mine.groups,
            verbs,
            "resource",
            mine.namespaces,
            frozenset(Atom(s.group, s.spec, n) for n in names),
            None,
        )
        if covering_rules(piece, earlier) is not None:
            continue
        if rule.level == LEVEL_REQUEST_RESPONSE:
            what, why = "request and response bodies", f"{s.request}; {s.response}"
        else:
            what, why = "request bodies", s.request
        group = f'group: "{s.group}"' if s.group else 'group: ""'
        out.append(
            _f(
                policy,
                s.severity,
                "sensitive-bodies" if s.severity == "error" else "configmap-bodies",
                i,
                f"rules[{i}].level",
                f"rules[{i}] logs {what} of {s.name} at {rule.level}: {why}",
                f"add a rule before rules[{i}]: - level: Metadata, resources: [{{{group}, "
                f'resources: ["{s.spec}"]}}]',
            )
        )
    return out


def _unreachable(policy: Policy, sets: list[MatchSet], i: int) -> list[Finding]:
    if i == 0:
        return []
    cover = covering_rules(sets[i], list(enumerate(sets[:i])))
    if cover is None:
        return []
    by = _names(cover)
    together = " together" if len(cover) > 1 else ""
    return [
        _f(
            policy,
            "warning",
            "unreachable-rule",
            i,
            f"rules[{i}]",
            f"rules[{i}] can never match: {by}{together} match every request it matches "
            "(the first matching rule wins)",
            f"move rules[{i}] before {by}, narrow {'them' if len(cover) > 1 else 'it'}, "
            "or delete it",
            cover,
        )
    ]


def _is_catch_all(rule: PolicyRule) -> bool:
    return not (
        rule.users
        or rule.user_groups
        or rule.verbs
        or rule.namespaces
        or rule.resources
        or rule.non_resource_urls
    )


def _catch_all(policy: Policy, sets: list[MatchSet]) -> list[Finding]:
    n = len(policy.rules)
    alls = [i for i, r in enumerate(policy.rules) if _is_catch_all(r)]
    if alls:
        first = alls[0]
        if first == n - 1:
            return []
        return [
            _f(
                policy,
                "warning",
                "catch-all-not-last",
                first,
                f"rules[{first}]",
                f"rules[{first}] matches every request but is not the last rule: "
                f"{_names(range(first + 1, n))} can never match",
                f"move rules[{first}] to the end of the policy",
                range(first + 1, n),
            )
        ]
    universe = MatchSet(None, None, None, "both", None, None, None)
    if covering_rules(universe, list(enumerate(sets))) is not None:
        return []
    return [
        _f(
            policy,
            "warning",
            "no-catch-all",
            None,
            "rules",
            "no catch-all rule: requests that match no rule get level None and are "
            "silently not audited",
            "end the policy with a catch-all rule: - level: Metadata",
        )
    ]


def _request_received(policy: Policy) -> list[Finding]:
    if "RequestReceived" in policy.omit_stages:
        return []
    logged = [
        i
        for i, r in enumerate(policy.rules)
        if r.level not in (LEVEL_NONE, "") and "RequestReceived" not in r.omit_stages
    ]
    if not logged:
        return []
    return [
        _f(
            policy,
            "warning",
            "request-received",
            None,
            "omitStages" if policy.omit_stages else "",
            f"RequestReceived is not omitted for {_names(logged)}: each request is logged "
            "at RequestReceived and again at ResponseComplete, roughly doubling the volume "
            "(the later stage holds everything the first has)",
            'add at the top of the policy: omitStages: ["RequestReceived"]',
            logged,
        )
    ]


def _managed_fields(policy: Policy, i: int, rule: PolicyRule) -> list[Finding]:
    if rule.level not in _BODY_LEVELS or not _logs_bodies(rule):
        return []  # e.g. reads at Request: no body is logged
    omf = (
        policy.omit_managed_fields
        if rule.omit_managed_fields is None
        else (rule.omit_managed_fields)
    )
    if omf:
        return []
    path = (
        f"rules[{i}].omitManagedFields"
        if rule.omit_managed_fields is not None
        else f"rules[{i}].level"
    )
    return [
        _f(
            policy,
            "warning",
            "managed-fields",
            i,
            path,
            f"rules[{i}] logs bodies at {rule.level} with omitManagedFields off: "
            "metadata.managedFields is often the largest part of an object and says "
            "nothing an audit needs",
            "set omitManagedFields: true at the top of the policy"
            + (" (and remove the rule's false)" if rule.omit_managed_fields is False else ""),
        )
    ]


def _resource_names(policy: Policy, i: int, rule: PolicyRule) -> list[Finding]:
    if not rule.verbs or not set(rule.verbs) <= NAMELESS_VERBS:
        return []
    out = []
    for j, gr in enumerate(rule.resources):
        if not gr.resource_names or not gr.resources:
            continue
        # A create on a subresource (pods/exec, pods/eviction) does carry a name.
        if "create" in rule.verbs and any("/" in r or r == "*" for r in gr.resources):
            continue
        out.append(
            _f(
                policy,
                "warning",
                "resource-names-verbs",
                i,
                f"rules[{i}].resources[{j}].resourceNames",
                f"rules[{i}].resources[{j}] has resourceNames but the rule's verbs "
                f"({', '.join(rule.verbs)}) never carry a name, so it can never match "
                "(list and watch have one only with fieldSelector=metadata.name=...)",
                "remove resourceNames, or add the verbs that address one object (get, update, "
                "patch, delete)",
            )
        )
    return out


def _mentions_pod_subresources(policy: Policy) -> bool:
    for rule in policy.rules:
        if rule.non_resource_urls and not rule.resources:
            continue
        if not rule.resources:
            continue
        for gr in rule.resources:
            if gr.group not in ("", "*"):
                continue
            if not gr.resources:
                return True
            for res in gr.resources:
                if res == "*" or res.startswith("*/") or res.startswith("pods/"):
                    return True
    return False


def _pods_subresources(policy: Policy, i: int, rule: PolicyRule) -> list[Finding]:
    if rule.level not in _BODY_LEVELS:
        return []
    for j, gr in enumerate(rule.resources):
        if gr.group in ("", "*") and "pods" in gr.resources and not gr.resource_names:
            if _mentions_pod_subresources(policy):
                return []
            k = gr.resources.index("pods")
            return [
                _f(
                    policy,
                    "warning",
                    "pods-subresources",
                    i,
                    f"rules[{i}].resources[{j}].resources[{k}]",
                    f'rules[{i}] logs "pods" at {rule.level} but no rule matches any pods '
                    'subresource: "pods" does not match pods/exec, pods/attach or '
                    "pods/portforward, so interactive access to pods falls through to later "
                    "rules",
                    'use "pods/*" (pods and all subresources) or add a rule for '
                    '["pods/exec", "pods/attach", "pods/portforward"]',
                )
            ]
    return []


def _noisy(policy: Policy) -> list[Finding]:
    ev = Evaluator(policy)
    out = []
    for cls in NOISY:
        logged = []
        for what, attrs in cls.probes:
            d = ev.evaluate_uncached(attrs)
            if d.level != LEVEL_NONE:
                logged.append((what, d.level, d.rule_index))
        if not logged:
            continue
        rules = sorted({r for _, _, r in logged if r is not None})
        detail = "; ".join(f"{w} at {lv} (rules[{r}])" for w, lv, r in logged)
        out.append(
            _f(
                policy,
                "info",
                "noisy-traffic",
                None,
                "rules",
                f"high-volume system traffic is logged ({cls.name}): {detail}",
                "add a None rule near the top, e.g.\n" + cls.fix,
                rules,
            )
        )
    return out


# --- helpers -------------------------------------------------------------------------


def _rule_index(path: str) -> int | None:
    if not path.startswith("rules["):
        return None
    end = path.find("]")
    try:
        return int(path[6:end])
    except ValueError:
        return None


def _split_location(problem: str, source: str) -> tuple[str, str, str]:
    """``source:line:col: message`` -> (location, "", message)."""
    if problem.startswith(source + ":"):
        rest = problem[len(source) + 1 :]
        parts = rest.split(":", 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            return f"{source}:{parts[0]}:{parts[1]}", "", parts[2].strip()
        return source, "", rest.strip()
    return source, "", problem


def format_text(findings: list[Finding]) -> list[str]:
    """Findings as lines: ``location: severity: message [check]`` then an indented fix."""
    lines = []
    for f in findings:
        lines.append(str(f))
        fix = f.fix.splitlines()
        lines.append(f"  fix: {fix[0]}")
        lines.extend(f"       {line}" for line in fix[1:])
    return lines


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
    return ", ".join(
        f"{counts[s]} {s}{'s' if counts[s] != 1 and s != 'info' else ''}" for s in SEVERITIES
    )


__all__ = [
    "NAMELESS_VERBS",
    "NOISY",
    "SENSITIVE",
    "SEVERITIES",
    "Finding",
    "format_text",
    "has_errors",
    "lint_bytes",
    "lint_file",
    "lint_policy",
    "summary",
]
