"""The apiserver's vocabulary, as the traffic generator speaks it.

Levels, resources, paths and the Status objects of the usual errors, plus the
:class:`Context` every group of actions shares.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from msgspec import Raw

from kaudit.model import Status, UserInfo
from kaudit.traffic import bodies
from kaudit.traffic.cluster import rbac_reason
from kaudit.traffic.engine import OK

if TYPE_CHECKING:
    from kaudit.traffic.cluster import Cluster
    from kaudit.traffic.engine import Traffic

MD: Final = "Metadata"
RQ: Final = "Request"
RRS: Final = "RequestResponse"

COORD: Final = "coordination.k8s.io"
PUBLIC_INFO: Final = rbac_reason(
    "ClusterRoleBinding",
    "system:public-info-viewer",
    "ClusterRole",
    "system:public-info-viewer",
    'Group "system:unauthenticated"',
)
DISCOVERY: Final = rbac_reason(
    "ClusterRoleBinding",
    "system:discovery",
    "ClusterRole",
    "system:discovery",
    'Group "system:authenticated"',
)

# (group, version, resource) that informers and controllers list and watch.
RESOURCES: Final = (
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("", "v1", "nodes"),
    ("", "v1", "namespaces"),
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("", "v1", "serviceaccounts"),
    ("", "v1", "persistentvolumeclaims"),
    ("", "v1", "persistentvolumes"),
    ("", "v1", "endpoints"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "replicasets"),
    ("apps", "v1", "statefulsets"),
    ("apps", "v1", "daemonsets"),
    ("batch", "v1", "jobs"),
    ("batch", "v1", "cronjobs"),
    ("discovery.k8s.io", "v1", "endpointslices"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("storage.k8s.io", "v1", "storageclasses"),
    ("storage.k8s.io", "v1", "csinodes"),
    ("coordination.k8s.io", "v1", "leases"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations"),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
    ("cert-manager.io", "v1", "certificates"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("argoproj.io", "v1alpha1", "applications"),
)
METADATA_ONLY: Final = frozenset({"secrets", "configmaps", "leases", "events", "tokenreviews"})
_CLUSTER_SCOPED: Final = frozenset(
    {
        "nodes",
        "namespaces",
        "persistentvolumes",
        "clusterroles",
        "clusterrolebindings",
        "storageclasses",
        "csinodes",
        "validatingwebhookconfigurations",
        "customresourcedefinitions",
    }
)


PROXY_SELECTOR: Final = (
    "&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2F"
    "service-proxy-name"
)


def read_level(resource: str) -> str:
    return MD if resource in METADATA_ONLY else RQ


def path(group: str, version: str, resource: str, ns: str = "", name: str = "") -> str:
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if ns:
        base += f"/namespaces/{ns}"
    base += f"/{resource}"
    return f"{base}/{name}" if name else base


def error_status(code: int, reason: str, message: str, details: Raw | None = None) -> Status:
    if details is None:
        return Status(status="Failure", message=message, reason=reason, code=code)
    return Status(status="Failure", message=message, reason=reason, details=details, code=code)


def status_details(name: str, group: str, kind: str) -> Raw:
    return Raw(bodies._enc(bodies.details(name, group, kind)))


def not_found(resource: str, group: str, name: str) -> tuple[Status, bytes]:
    qual = f"{resource}.{group}" if group else resource
    msg = f'{qual} "{name}" not found'
    st = error_status(404, "NotFound", msg, status_details(name, group, resource))
    return st, bodies.status(404, "NotFound", msg, bodies.details(name, group, resource))


def forbidden(user: str, verb: str, resource: str, group: str, ns: str, name: str = "") -> Status:
    qual = f"{resource}.{group}" if group else resource
    who = f'{qual} "{name}"' if name else qual
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    msg = (
        f'{who} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{group}" {where}'
    )
    return error_status(403, "Forbidden", msg, status_details(name, group, resource))


def conflict(resource: str, group: str, name: str) -> tuple[Status, bytes]:
    qual = f"{resource}.{group}" if group else resource
    msg = (
        f'Operation cannot be fulfilled on {qual} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    d = bodies.details(name, group, resource)
    return error_status(409, "Conflict", msg, Raw(bodies._enc(d))), bodies.status(
        409, "Conflict", msg, d
    )


def go_timeout(secs: int) -> str:
    return f"{secs // 60}m{secs % 60}s"


def watch(
    g: Traffic,
    t: int,
    user: UserInfo,
    ips: list[str],
    ua: str,
    ann: dict[str, str],
    group: str,
    version: str,
    res: str,
    ns: str,
    q: str,
    name: str = "",
) -> int:
    secs = 300 + int(g.rng.random() * 300)
    uri = (
        f"{path(group, version, res, ns)}?allowWatchBookmarks=true{q}&resourceVersion="
        f"{g.rv_now()}&timeout={go_timeout(secs)}&timeoutSeconds={secs}&watch=true"
    )
    g.request(
        t,
        read_level(res),
        "watch",
        uri,
        user,
        ips,
        ua,
        g.ref(res, ns, name, group, version),
        OK,
        ann,
        secs * 1_000_000 + g.lat(0.5, 40),
        long_running=True,
    )
    return 3


class Context:
    """What the groups of actions of one stream share: the stream and a few constants."""

    def __init__(self, g: Traffic) -> None:
        self.g = g
        self.c: Cluster = g.cluster
        self.kubelet_ua = f"kubelet{self.c.ua_suffix}"
        self.node_allow = g.allow("")
        self.deploy_created = g.ts_s(g.t - 86_400_000_000 * 40)
        self.rs_uids = {d.name: g.uuid() for d in self.c.deployments}
