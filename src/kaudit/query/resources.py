"""Resource names as people type them, mapped to ``objectRef`` fields.

``pods``, ``pod``, ``Pod``, ``po`` → resource ``pods``; ``deployments.apps`` →
resource ``deployments`` in group ``apps``; ``pods/exec`` → subresource ``exec``;
``*/scale`` → any resource's ``scale`` subresource; ``pods/*`` → any subresource of
pods. Names kaudit does not know are used as given (lower-cased), so custom
resources work when typed as their plural (``certificates.cert-manager.io``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Kind / singular / short name → (plural, group). The group is a hint used only when
# the user wrote no group; it is not required to match.
_BUILTIN: Final[dict[str, tuple[str, str]]] = {}


def _add(plural: str, group: str, *aliases: str) -> None:
    _BUILTIN[plural] = (plural, group)
    for a in aliases:
        _BUILTIN[a.lower()] = (plural, group)


_add("pods", "", "pod", "po")
_add("services", "", "service", "svc")
_add("configmaps", "", "configmap", "cm")
_add("secrets", "", "secret")
_add("namespaces", "", "namespace", "ns")
_add("nodes", "", "node", "no")
_add("serviceaccounts", "", "serviceaccount", "sa")
_add("persistentvolumes", "", "persistentvolume", "pv")
_add("persistentvolumeclaims", "", "persistentvolumeclaim", "pvc")
_add("endpoints", "", "endpoint", "ep")
_add("events", "", "event", "ev")
_add("replicationcontrollers", "", "replicationcontroller", "rc")
_add("resourcequotas", "", "resourcequota", "quota")
_add("limitranges", "", "limitrange", "limits")
_add("deployments", "apps", "deployment", "deploy")
_add("replicasets", "apps", "replicaset", "rs")
_add("statefulsets", "apps", "statefulset", "sts")
_add("daemonsets", "apps", "daemonset", "ds")
_add("controllerrevisions", "apps", "controllerrevision")
_add("jobs", "batch", "job")
_add("cronjobs", "batch", "cronjob", "cj")
_add("ingresses", "networking.k8s.io", "ingress", "ing")
_add("networkpolicies", "networking.k8s.io", "networkpolicy", "netpol")
_add("roles", "rbac.authorization.k8s.io", "role")
_add("rolebindings", "rbac.authorization.k8s.io", "rolebinding")
_add("clusterroles", "rbac.authorization.k8s.io", "clusterrole")
_add("clusterrolebindings", "rbac.authorization.k8s.io", "clusterrolebinding")
_add("customresourcedefinitions", "apiextensions.k8s.io", "customresourcedefinition", "crd")
_add(
    "mutatingwebhookconfigurations",
    "admissionregistration.k8s.io",
    "mutatingwebhookconfiguration",
)
_add(
    "validatingwebhookconfigurations",
    "admissionregistration.k8s.io",
    "validatingwebhookconfiguration",
)
_add("storageclasses", "storage.k8s.io", "storageclass", "sc")
_add("leases", "coordination.k8s.io", "lease")
_add("horizontalpodautoscalers", "autoscaling", "horizontalpodautoscaler", "hpa")
_add("poddisruptionbudgets", "policy", "poddisruptionbudget", "pdb")
_add("certificatesigningrequests", "certificates.k8s.io", "certificatesigningrequest", "csr")
_add("tokenreviews", "authentication.k8s.io", "tokenreview")
_add("subjectaccessreviews", "authorization.k8s.io", "subjectaccessreview")
_add("selfsubjectaccessreviews", "authorization.k8s.io", "selfsubjectaccessreview")
_add("priorityclasses", "scheduling.k8s.io", "priorityclass", "pc")


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """What ``--resource`` / ``KIND`` selects. ``None`` means "any"."""

    resource: str | None  # None: any resource (``*/scale``)
    api_group: str | None  # None: any group
    subresource: str | None  # None: no subresource; "*": any subresource
    any_subresource: bool = False


def normalise_resource(word: str) -> tuple[str, str | None]:
    """``(plural resource, explicit group or None)`` for ``word`` (``deployment.apps``...)."""
    w = word.strip()
    group: str | None = None
    if "." in w:
        w, group = w.split(".", 1)
    key = w.lower()
    if w in _BUILTIN:
        return _BUILTIN[w][0], group
    if key in _BUILTIN:
        return _BUILTIN[key][0], group
    return key, group


def parse_resource(text: str) -> ResourceSpec:
    """Parse ``pods``, ``pods/exec``, ``deployments.apps``, ``*/scale``, ``pods/*``.

    Raises :class:`ValueError` with what was expected.
    """
    t = text.strip()
    if not t or t.count("/") > 1 or t.startswith("/") or t.endswith("/"):
        raise ValueError(
            "expected RESOURCE[.GROUP][/SUBRESOURCE], e.g. pods, pods/exec, "
            "deployments.apps, */scale"
        )
    main, _, sub = t.partition("/")
    if main == "*":
        if not sub or sub == "*":
            return ResourceSpec(None, None, None, any_subresource=True)
        return ResourceSpec(None, None, sub)
    resource, group = normalise_resource(main)
    if sub == "*":
        return ResourceSpec(resource, group, None, any_subresource=True)
    return ResourceSpec(resource, group, sub or None)


__all__ = ["ResourceSpec", "normalise_resource", "parse_resource"]
