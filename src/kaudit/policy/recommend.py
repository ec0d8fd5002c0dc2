"""Recommend an audit policy from observed traffic, within a byte budget.

The policy, first match wins:

1. ``None`` for health endpoints (``/healthz*``, ``/readyz*``, ``/livez*``).
2. ``Metadata`` for credentials: secrets, configmaps, serviceaccounts/token,
   tokenreviews, certificatesigningrequests (never their bodies), placed before
   anything that could log bodies or drop them.
3. ``None`` for high-volume, low-value system traffic: kube-proxy watches, leases,
   event writes and reads, and the reads/watches of the system identities that
   dominate the capture (by volume).
4. Bodies for security-relevant writes: RBAC, admission webhooks, workloads (at
   ``RequestResponse``), pods/exec, attach, portforward and ephemeral containers (at
   ``Request``); within the budget: while the estimated daily volume is over it, the
   body rule with the largest volume goes down a level (RequestResponse -> Request
   -> Metadata).
5. ``Metadata`` for everything else (the catch-all, last).

``omitStages: [RequestReceived]`` and ``omitManagedFields: true``. Every rule is
commented with why it is there and its estimated volume (the simulate machinery over
the capture, scaled to a day by the capture's time span).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field, replace

from kaudit.errors import InputError
from kaudit.model.types import LEVEL_METADATA, LEVEL_NONE, LEVEL_REQUEST, LEVEL_REQUEST_RESPONSE
from kaudit.policy.loader import load_policy_bytes
from kaudit.policy.simulate import Capture, Simulation, simulate
from kaudit.policy.types import GroupResources, Policy, PolicyRule

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*(?:/\s*(day|d))?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IUNITS = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}

#: At most this many system identities get a None rule for their reads and watches.
MAX_SYSTEM_IDENTITIES = 8
#: ... and only those with at least this share of the capture's read/watch events.
MIN_SYSTEM_SHARE = 0.01
_READS = ("get", "list", "watch")
_WRITES = ("create", "update", "patch", "delete", "deletecollection")
_LEVEL_DOWN = {LEVEL_REQUEST_RESPONSE: LEVEL_REQUEST, LEVEL_REQUEST: LEVEL_METADATA}


def parse_budget(text: str) -> int:
    """``2GB/day``, ``500MiB``, ``1.5G`` -> bytes per day. Raises InputError."""
    m = _SIZE.match(text)
    if not m:
        raise InputError(
            f"--budget: invalid size {text!r}: expected a number with an optional unit, "
            "per day, such as 2GB/day, 500MB or 1.5GiB"
        )
    unit = (m.group(2) or "").lower()
    mult = _IUNITS.get(unit[:2]) if unit[:2] in _IUNITS else _UNITS.get(unit[:1], 1)
    value = float(m.group(1)) * (mult or 1)
    if value <= 0:
        raise InputError(f"--budget: {text!r}: expected a size above zero")
    return int(value)


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@dataclass(slots=True)
class Rule:
    """A rule being recommended: the rule, why it is there, and whether its level may drop."""

    rule: PolicyRule
    why: str
    adjustable: bool = False
    notes: list[str] = field(default_factory=list)


def _gr(group: str, *resources: str) -> GroupResources:
    return GroupResources(group, tuple(resources))


def _system_identities(capture: Capture) -> list[str]:
    """System identities (not nodes) whose reads/watches dominate the capture."""
    reads: dict[str, int] = defaultdict(int)
    total = 0
    for g in capture.groups:
        a = g.attrs
        if a.verb not in _READS or not a.resource_request:
            continue
        total += g.n
        if a.user is None:
            continue
        name = a.user.name
        system = name.startswith("system:") and not name.startswith(
            ("system:node:", "system:serviceaccount:", "system:anonymous")
        )
        if system or name.startswith("system:serviceaccount:kube-system:"):
            reads[name] += g.n
    top = sorted(reads.items(), key=lambda kv: (-kv[1], kv[0]))
    return sorted(
        name for name, n in top[:MAX_SYSTEM_IDENTITIES] if total and n / total >= MIN_SYSTEM_SHARE
    )


def _rules(capture: Capture) -> list[Rule]:
    out = [
        Rule(
            PolicyRule(LEVEL_NONE, non_resource_urls=("/healthz*", "/readyz*", "/livez*")),
            "health checks: constant, high-volume, no security value",
        ),
        Rule(
            PolicyRule(
                LEVEL_METADATA,
                resources=(
                    _gr("", "secrets", "configmaps", "serviceaccounts/token"),
                    _gr("authentication.k8s.io", "tokenreviews"),
                    _gr("certificates.k8s.io", "certificatesigningrequests"),
                ),
            ),
            "credentials: who touched them, never their contents (bodies would put "
            "secret values, tokens and certificates in the audit log)",
        ),
        Rule(
            PolicyRule(
                LEVEL_NONE,
                users=("system:kube-proxy",),
                verbs=("watch",),
                resources=(
                    _gr("", "endpoints", "services", "services/status"),
                    _gr("discovery.k8s.io", "endpointslices"),
                ),
            ),
            "kube-proxy watches: constant and low-value",
        ),
        Rule(
            PolicyRule(
                LEVEL_NONE,
                verbs=("get", "list", "watch", "update"),
                resources=(_gr("coordination.k8s.io", "leases"),),
            ),
            "leases: leader election and node heartbeats, several per second",
        ),
        Rule(
            PolicyRule(
                LEVEL_NONE,
                verbs=("create", "update", "patch", *_READS),
                resources=(_gr("", "events"), _gr("events.k8s.io", "events")),
            ),
            "events: high volume; deletes are still logged by the catch-all",
        ),
    ]
    system = _system_identities(capture)
    if system:
        out.append(
            Rule(
                PolicyRule(LEVEL_NONE, users=tuple(system), verbs=_READS),
                "reads and watches of the system identities with the most traffic in the "
                "capture (their writes are still logged)",
            )
        )
    out.append(
        Rule(
            PolicyRule(
                LEVEL_NONE,
                user_groups=("system:nodes",),
                verbs=_READS,
                resources=(_gr("", "nodes", "nodes/status", "pods", "services", "endpoints"),),
            ),
            "kubelets reading their own nodes and pods: constant and low-value",
        )
    )
    out += [
        Rule(
            PolicyRule(
                LEVEL_REQUEST,
                resources=(
                    _gr(
                        "",
                        "pods/exec",
                        "pods/attach",
                        "pods/portforward",
                        "pods/ephemeralcontainers",
                        "pods/proxy",
                        "services/proxy",
                        "nodes/proxy",
                    ),
                ),
            ),
            "interactive access to workloads (exec, attach, port-forward, debug containers, "
            "proxies): who ran what where",
            adjustable=True,
        ),
        Rule(
            PolicyRule(
                LEVEL_REQUEST_RESPONSE,
                verbs=_WRITES,
                resources=(
                    _gr(
                        "rbac.authorization.k8s.io",
                        "roles",
                        "rolebindings",
                        "clusterroles",
                        "clusterrolebindings",
                    ),
                ),
            ),
            "RBAC changes: privilege escalation and persistence",
            adjustable=True,
        ),
        Rule(
            PolicyRule(
                LEVEL_REQUEST_RESPONSE,
                verbs=_WRITES,
                resources=(_gr("admissionregistration.k8s.io"),),
            ),
            "admission webhooks and policies: they can see or change every object",
            adjustable=True,
        ),
        Rule(
            PolicyRule(
                LEVEL_REQUEST_RESPONSE,
                verbs=_WRITES,
                resources=(
                    _gr("", "pods", "serviceaccounts"),
                    _gr("apps", "deployments", "daemonsets", "statefulsets", "replicasets"),
                    _gr("batch", "jobs", "cronjobs"),
                ),
            ),
            "workload changes: what runs, with which image, service account and privileges",
            adjustable=True,
        ),
        Rule(
            PolicyRule(
                LEVEL_REQUEST,
                verbs=_WRITES,
                resources=(
                    _gr("", "namespaces", "persistentvolumes", "nodes"),
                    _gr("apiextensions.k8s.io", "customresourcedefinitions"),
                    _gr("networking.k8s.io", "networkpolicies"),
                ),
            ),
            "cluster-level changes: namespaces, volumes, nodes, CRDs, network policies",
            adjustable=True,
        ),
        Rule(PolicyRule(LEVEL_METADATA), "everything else: who did what, when (catch-all)"),
    ]
    return out


def _policy(rules: list[Rule]) -> Policy:
    return Policy(
        rules=tuple(r.rule for r in rules),
        omit_stages=("RequestReceived",),
        omit_managed_fields=True,
        source="<recommended>",
    )


@dataclass(slots=True)
class Recommendation:
    policy: Policy
    yaml: str
    simulation: Simulation
    bytes_per_day: float
    budget: int | None
    within_budget: bool
    lowered: list[str]


def recommend(capture: Capture, *, budget: int | None = None) -> Recommendation:
    """A policy for the traffic in ``capture`` (``budget``: bytes per day, or None)."""
    rules = _rules(capture)
    per_day = 86400.0 / capture.span_seconds
    lowered: list[str] = []
    while True:
        policy = _policy(rules)
        sim = simulate(policy, capture)
        daily = sim.simulated.bytes * per_day
        if budget is None or daily <= budget:
            break
        candidates = [
            (sim.by_rule.get(i), i)
            for i, r in enumerate(rules)
            if r.adjustable and r.rule.level in _LEVEL_DOWN
        ]
        candidates = [(t, i) for t, i in candidates if t is not None and t.bytes > 0]
        if not candidates:
            break
        _, i = max(candidates, key=lambda ti: (ti[0].bytes if ti[0] else 0, -ti[1]))
        r = rules[i]
        new_level = _LEVEL_DOWN[r.rule.level]
        r.notes.append(f"lowered from {r.rule.level} to {new_level} to fit the budget")
        lowered.append(f"rules[{i}]: {r.rule.level} -> {new_level}")
        r.rule = replace(r.rule, level=new_level)
    text = render(rules, sim, per_day, budget, daily, capture)
    final = load_policy_bytes(text, "<recommended>")
    return Recommendation(
        final, text, sim, daily, budget, budget is None or daily <= budget, lowered
    )


def _q(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def render(
    rules: list[Rule],
    sim: Simulation,
    per_day: float,
    budget: int | None,
    daily: float,
    capture: Capture,
) -> str:
    """The policy as commented YAML."""
    lines = [
        "# Audit policy recommended by `kaudit policy recommend` from observed traffic:",
        f"#   {capture.description}: {capture.events:,} events over "
        f"{capture.span_seconds / 3600:.1f} h",
        f"# Estimated volume: {human_bytes(daily)}/day, "
        f"{sim.simulated.events * per_day:,.0f} events/day"
        + (f" (budget {human_bytes(budget)}/day)" if budget else "")
        + (" (includes estimates for bodies never captured)" if sim.estimated else ""),
        "# Rules are evaluated in order; the first match wins.",
        "apiVersion: audit.k8s.io/v1",
        "kind: Policy",
        "# The ResponseComplete event holds everything RequestReceived has: log each request once.",
        "omitStages: [RequestReceived]",
        "# managedFields are bulky server bookkeeping with no audit value.",
        "omitManagedFields: true",
        "rules:",
    ]
    for i, r in enumerate(rules):
        t = sim.by_rule.get(i)
        if r.rule.level == LEVEL_NONE:
            dropped = sim.dropped_by_rule.get(i, 0)
            est = f"drops ~{dropped * per_day:,.0f} events/day seen in the capture"
        elif t is None:
            est = "no matching traffic in the capture"
        else:
            est = f"~{t.events * per_day:,.0f} events/day, {human_bytes(t.bytes * per_day)}/day" + (
                " (estimated)" if t.estimated else ""
            )
        lines += textwrap.wrap(
            f"rules[{i}]: {r.why}.", 86, initial_indent="  # ", subsequent_indent="  #   "
        )
        for note in r.notes:
            lines.append(f"  # {note}.")
        lines.append(f"  # {est}")
        lines += _rule_yaml(r.rule)
    return "\n".join(lines) + "\n"


def _rule_yaml(rule: PolicyRule) -> list[str]:
    out = [f"  - level: {rule.level}"]
    if rule.users:
        out.append(f"    users: {_q(rule.users)}")
    if rule.user_groups:
        out.append(f"    userGroups: {_q(rule.user_groups)}")
    if rule.verbs:
        out.append(f"    verbs: {_q(rule.verbs)}")
    if rule.non_resource_urls:
        out.append(f"    nonResourceURLs: {_q(rule.non_resource_urls)}")
    if rule.resources:
        out.append("    resources:")
        for gr in rule.resources:
            out.append(f"      - group: {json.dumps(gr.group)}")
            if gr.resources:
                out.append(f"        resources: {_q(gr.resources)}")
    return out


__all__ = ["Recommendation", "human_bytes", "parse_budget", "recommend", "render"]
