"""Which rules can fire under an audit policy.

A rule's ``needs`` names the requests it concerns (resources, subresources, verbs,
users, non-resource URLs); ``required_level`` what it reads. For each rule this
evaluates the policy (:mod:`kaudit.policy`) for representative requests built from
``needs`` and reports the rule as blind when none of them is recorded at the
required level in a stage the rule looks at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import product
from typing import Any

from kaudit.detect.rule import Rule
from kaudit.model.types import level_rank
from kaudit.policy import Attributes, Evaluator, User, load_policy

#: API group of the resources rules name (core resources are absent: group "").
API_GROUPS: dict[str, str] = {
    "deployments": "apps",
    "daemonsets": "apps",
    "statefulsets": "apps",
    "replicasets": "apps",
    "jobs": "batch",
    "cronjobs": "batch",
    "roles": "rbac.authorization.k8s.io",
    "clusterroles": "rbac.authorization.k8s.io",
    "rolebindings": "rbac.authorization.k8s.io",
    "clusterrolebindings": "rbac.authorization.k8s.io",
    "ingresses": "networking.k8s.io",
    "certificatesigningrequests": "certificates.k8s.io",
    "mutatingwebhookconfigurations": "admissionregistration.k8s.io",
    "validatingwebhookconfigurations": "admissionregistration.k8s.io",
    "validatingadmissionpolicies": "admissionregistration.k8s.io",
    "validatingadmissionpolicybindings": "admissionregistration.k8s.io",
    "selfsubjectrulesreviews": "authorization.k8s.io",
    "selfsubjectaccessreviews": "authorization.k8s.io",
    "apiservices": "apiregistration.k8s.io",
}
_CLUSTER_SCOPED = {
    "nodes",
    "namespaces",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
    "certificatesigningrequests",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "selfsubjectrulesreviews",
    "selfsubjectaccessreviews",
    "apiservices",
}
_ANY_RESOURCES = ("pods", "secrets", "configmaps", "deployments")
_DEFAULT_USER = User("alice", ("system:authenticated",))


@dataclass(frozen=True)
class Coverage:
    rule_id: str
    ok: bool
    reason: str
    required_level: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "can_fire": self.ok,
            "required_level": self.required_level,
            "reason": self.reason,
        }


def _requests(rule: Rule) -> list[Attributes]:
    n = rule.needs
    users = [
        User(
            u, ("system:unauthenticated",) if u == "system:anonymous" else ("system:authenticated",)
        )
        for u in n.users
    ] or [_DEFAULT_USER]
    out: list[Attributes] = []
    resources = [r for r in n.resources if r != "*"] or (
        list(_ANY_RESOURCES) if "*" in n.resources else []
    )
    verbs = list(n.verbs) or ["get", "list", "create", "update", "patch", "delete"]
    subs = list(n.subresources) or [""]
    for user, res, verb, sub in product(users, resources, verbs, subs):
        ns = "" if res in _CLUSTER_SCOPED else "default"
        group = n.api_groups[0] if n.api_groups else API_GROUPS.get(res, "")
        out.append(
            Attributes(
                user=user,
                verb=verb,
                namespace=ns,
                api_group=group,
                api_version="v1",
                resource=res,
                subresource=sub,
                name="x",
                path="",
                resource_request=True,
            )
        )
    for url, user in product(n.non_resource_urls, users):
        path = "/api" if url == "*" else url
        out.append(Attributes(user=user, verb="get", path=path, resource_request=False))
    return out


def check_coverage(rules: list[Rule], policy_path: str | os.PathLike[str]) -> list[Coverage]:
    """One :class:`Coverage` per rule (in order) under the policy at ``policy_path``."""
    ev = Evaluator(load_policy(os.fspath(policy_path)))
    out = []
    for rule in rules:
        reqs = _requests(rule)
        if not reqs:
            out.append(
                Coverage(rule.id, True, "no needs: declared; not checked", rule.required_level)
            )
            continue
        need = level_rank(rule.required_level)
        best: tuple[int, str] = (-1, "")
        fired = False
        for a in reqs:
            d = ev.evaluate(a)
            stages_ok = any(s not in d.omit_stages for s in rule.stages)
            what = (
                f"{a.verb} {a.resource}{'/' + a.subresource if a.subresource else ''}"
                if a.resource_request
                else f"get {a.path}"
            )
            if level_rank(d.level) >= need and stages_ok:
                fired = True
                out.append(
                    Coverage(rule.id, True, f"recorded at {d.level} ({what})", rule.required_level)
                )
                break
            rank = level_rank(d.level)
            if rank > best[0]:
                note = "" if stages_ok else f", stages {', '.join(rule.stages)} omitted"
                best = (rank, f"{what} recorded at {d.level}{note}")
        if not fired:
            out.append(
                Coverage(
                    rule.id,
                    False,
                    f"needs {rule.required_level}; best: {best[1]}",
                    rule.required_level,
                )
            )
    return out
