"""Everyday traffic: what a healthy production cluster's audit log is made of.

Each action emits one request (or a short burst such as leader election's get + update)
and returns how many events it produced. Weights are requests per ~1000: system
components dominate (kubelet leases, node and pod status, leader election, informer
watches, endpointslices), then health probes and discovery, then operators, humans
with kubectl and CI deployers, and a thin layer of 403/404/409/422/429/500/401.

Levels follow one implied policy, close to the GCE default: Metadata for secrets,
configmaps, leases, events, token reviews and non-resource URLs; Request for reads and
for node/pod status writes; RequestResponse for other writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from msgspec import UNSET, Raw

from kaudit.model import ObjectReference, Status, UserInfo
from kaudit.traffic import bodies
from kaudit.traffic.cluster import (
    ANONYMOUS,
    ClusterProfile,
    Human,
    Identity,
    rbac_reason,
)
from kaudit.traffic.engine import CREATED, FORBID, OK, SWITCHING, Traffic

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
_METADATA_ONLY: Final = frozenset({"secrets", "configmaps", "leases", "events", "tokenreviews"})
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


_PROXY_SELECTOR: Final = (
    "&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2F"
    "service-proxy-name"
)


def read_level(resource: str) -> str:
    return MD if resource in _METADATA_ONLY else RQ


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


def _details(name: str, group: str, kind: str) -> Raw:
    return Raw(bodies._enc(bodies.details(name, group, kind)))


def not_found(resource: str, group: str, name: str) -> tuple[Status, bytes]:
    qual = f"{resource}.{group}" if group else resource
    msg = f'{qual} "{name}" not found'
    st = error_status(404, "NotFound", msg, _details(name, group, resource))
    return st, bodies.status(404, "NotFound", msg, bodies.details(name, group, resource))


def forbidden(user: str, verb: str, resource: str, group: str, ns: str, name: str = "") -> Status:
    qual = f"{resource}.{group}" if group else resource
    who = f'{qual} "{name}"' if name else qual
    where = f'in the namespace "{ns}"' if ns else "at the cluster scope"
    msg = (
        f'{who} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{group}" {where}'
    )
    return error_status(403, "Forbidden", msg, _details(name, group, resource))


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


def _timeout(secs: int) -> str:
    return f"{secs // 60}m{secs % 60}s"


class Background:
    """The everyday actions of one :class:`Traffic` stream, with what they precompute."""

    def __init__(self, g: Traffic) -> None:
        self.g = g
        c = g.cluster
        self.c = c
        self.kubelet_ua = f"kubelet{c.ua_suffix}"
        self.node_allow = g.allow("")
        s = c.system
        self.kcm_informers = Identity(
            s["kcm"].user, s["kcm"].ips, s["kcm"].user_agent + "/shared-informers", s["kcm"].reason
        )
        by_name = {i.username.rsplit(":", 1)[-1]: i for i in c.controllers + c.operators}
        self.ctl = by_name
        self.leaders: list[tuple[Identity, str, str, str]] = [
            (s["kcm-le"], "kube-system", "kube-controller-manager", g.uuid()),
            (s["scheduler-le"], "kube-system", "kube-scheduler", g.uuid()),
            (by_name["cert-manager"], "kube-system", "cert-manager-controller", g.uuid()),
            (by_name["ingress-nginx"], "ingress-nginx", "ingress-nginx-leader", g.uuid()),
            (by_name["prometheus-operator"], "monitoring", "prometheus-operator-lock", g.uuid()),
        ]
        self.apiserver_leases = [
            (f"apiserver-{g.uuid()[:26].replace('-', '')}", g.uuid()) for _ in c.control_plane_ips
        ]
        self.watchers = [self.kcm_informers, s["scheduler"], *c.operators, s["coredns"]]
        self.listers = [
            by_name["generic-garbage-collector"],
            by_name["resourcequota-controller"],
            by_name["namespace-controller"],
            *c.operators,
        ]
        self.probe_ips = [[ip] for ip in c.control_plane_ips] + [["10.0.0.250"]]
        self.deploy_created = g.ts_s(g.t - 86_400_000_000 * 40)
        self.rs_uids = {d.name: g.uuid() for d in c.deployments}

    def weighted(self, profile: ClusterProfile) -> tuple[list[Callable[[int], int]], list[float]]:
        h = profile.human_share
        table: list[tuple[float, Callable[[int], int]]] = [
            (150, self.kubelet_lease),
            (45, self.kubelet_get_node),
            (22, self.kubelet_node_status),
            (30, self.kubelet_watch_object),
            (14, self.kubelet_get_pod),
            (22, self.kubelet_pod_status),
            (18, self.kubelet_event),
            (8, self.kubelet_token_request),
            (45, self.leader_election),
            (12, self.apiserver_lease),
            (8, self.apiserver_get_namespace),
            (22, self.endpointslice_update),
            (22, self.controller_list),
            (85, self.informer_watch),
            (14, self.controller_write),
            (7, self.scheduler_bind),
            (10, self.token_review),
            (5, self.access_review),
            (45, self.health_probe),
            (8, self.metrics_scrape),
            (12, self.discovery),
            (14, self.operator_read),
            (5, self.controller_not_found),
            (3, self.forbidden_sa),
            (2, self.throttled),
            (0.4, self.internal_error),
            (1, self.stray_401),
            (24 * h, self.human),
            (8 * h, self.ci_deploy),
        ]
        actions: list[Callable[[int], int]] = []
        cum: list[float] = []
        total = 0.0
        for w, fn in table:
            if w <= 0:
                continue
            total += w
            actions.append(fn)
            cum.append(total)
        return actions, cum

    # --- kubelets --------------------------------------------------------------------

    def kubelet_lease(self, t: int) -> int:
        g = self.g
        n = g.pick(self.c.nodes)
        old = g.rv_now()
        g.rv()
        uri = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n.name}?timeout=10s"
        ref = g.ref("leases", "kube-node-lease", n.name, COORD)
        done = ObjectReference(
            resource="leases",
            namespace="kube-node-lease",
            name=n.name,
            uid=n.lease_uid,
            api_group=COORD,
            api_version="v1",
            resource_version=old,
        )
        g.request(
            t,
            MD,
            "update",
            uri,
            n.user,
            n.ips,
            self.kubelet_ua,
            ref,
            OK,
            self.node_allow,
            g.lat(1.2, 14),
            ref_done=done,
        )
        return 2

    def kubelet_get_node(self, t: int) -> int:
        g = self.g
        n = g.pick(self.c.nodes)
        uri = f"/api/v1/nodes/{n.name}?resourceVersion=0&timeout=10s"
        g.request(
            t,
            RQ,
            "get",
            uri,
            n.user,
            n.ips,
            self.kubelet_ua,
            g.ref("nodes", "", n.name),
            OK,
            self.node_allow,
            g.lat(0.3, 4),
        )
        return 2

    def kubelet_node_status(self, t: int) -> int:
        g = self.g
        n = g.pick(self.c.nodes)
        uri = f"/api/v1/nodes/{n.name}/status?timeout=10s"
        body = Raw(bodies.node_status_patch(g.ts_s(t)))
        g.rv()
        g.request(
            t,
            RQ,
            "patch",
            uri,
            n.user,
            n.ips,
            self.kubelet_ua,
            g.ref("nodes", "", n.name, subresource="status"),
            OK,
            self.node_allow,
            g.lat(2, 25),
            req_obj=body,
        )
        return 2

    def kubelet_watch_object(self, t: int) -> int:
        g = self.g
        p = g.pick(self.c.pods)
        r = g.rng.random()
        if r < 0.4:
            res, name = "configmaps", "kube-root-ca.crt"
        elif r < 0.7:
            res, name = "configmaps", p.deployment.configmap
        else:
            res, name = "secrets", p.deployment.secret
        n = p.node
        q = f"&fieldSelector=metadata.name%3D{name}"
        return self._watch(
            t,
            n.user,
            n.ips,
            self.kubelet_ua,
            self.node_allow,
            "",
            "v1",
            res,
            p.namespace,
            q,
            name=name,
        )

    def kubelet_get_pod(self, t: int) -> int:
        g = self.g
        p = g.pick(self.c.pods)
        n = p.node
        g.request(
            t,
            RQ,
            "get",
            path("", "v1", "pods", p.namespace, p.name),
            n.user,
            n.ips,
            self.kubelet_ua,
            g.ref("pods", p.namespace, p.name),
            OK,
            self.node_allow,
            g.lat(0.4, 5),
        )
        return 2

    def kubelet_pod_status(self, t: int) -> int:
        g = self.g
        p = g.pick(self.c.pods)
        n = p.node
        body = Raw(bodies.pod_status_patch(p, g.ts_s(t)))
        g.rv()
        g.request(
            t,
            RQ,
            "patch",
            path("", "v1", "pods", p.namespace, p.name) + "/status",
            n.user,
            n.ips,
            self.kubelet_ua,
            g.ref("pods", p.namespace, p.name, subresource="status"),
            OK,
            self.node_allow,
            g.lat(2, 18),
            req_obj=body,
        )
        return 2

    def kubelet_event(self, t: int) -> int:
        g = self.g
        p = g.pick(self.c.pods)
        n = p.node
        name = f"{p.name}.{g.rng.getrandbits(64):016x}"
        g.rv()
        g.request(
            t,
            MD,
            "create",
            f"/api/v1/namespaces/{p.namespace}/events",
            n.user,
            n.ips,
            self.kubelet_ua,
            g.ref("events", p.namespace),
            CREATED,
            self.node_allow,
            g.lat(1, 8),
            ref_done=g.ref("events", p.namespace, name),
        )
        return 2

    def kubelet_token_request(self, t: int) -> int:
        g = self.g
        p = g.pick(self.c.pods)
        n = p.node
        ref = g.ref("serviceaccounts", p.namespace, "default", subresource="token")
        ann = dict(self.node_allow)
        ann["authentication.kubernetes.io/issued-credential-id"] = f"JTI={g.uuid()}"
        g.request(
            t,
            MD,
            "create",
            path("", "v1", "serviceaccounts", p.namespace, "default") + "/token",
            n.user,
            n.ips,
            self.kubelet_ua,
            ref,
            CREATED,
            ann,
            g.lat(2, 9),
        )
        return 2

    # --- control plane ---------------------------------------------------------------

    def leader_election(self, t: int) -> int:
        g = self.g
        ident, ns, name, uid = g.pick(self.leaders)
        uri = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}?timeout=5s"
        ref = g.ref("leases", ns, name, COORD)
        allow = g.allow(ident.reason)
        lat = g.lat(0.4, 4)
        g.request(t, MD, "get", uri, ident.user, ident.ips, ident.user_agent, ref, OK, allow, lat)
        old = g.rv_now()
        g.rv()
        done = ObjectReference(
            resource="leases",
            namespace=ns,
            name=name,
            uid=uid,
            api_group=COORD,
            api_version="v1",
            resource_version=old,
        )
        status = OK
        if g.rng.random() < 0.01:
            status = conflict("leases", COORD, name)[0]
        g.request(
            t + lat + g.lat(0.5, 3),
            MD,
            "update",
            uri,
            ident.user,
            ident.ips,
            ident.user_agent,
            ref,
            status,
            allow,
            g.lat(1.5, 12),
            ref_done=done,
        )
        return 4

    def apiserver_lease(self, t: int) -> int:
        g = self.g
        a = self.c.system["apiserver"]
        name, uid = g.pick(self.apiserver_leases)
        old = g.rv_now()
        g.rv()
        done = ObjectReference(
            resource="leases",
            namespace="kube-system",
            name=name,
            uid=uid,
            api_group=COORD,
            api_version="v1",
            resource_version=old,
        )
        g.request(
            t,
            MD,
            "update",
            path(COORD, "v1", "leases", "kube-system", name),
            a.user,
            a.ips,
            a.user_agent,
            g.ref("leases", "kube-system", name, COORD),
            OK,
            g.allow(""),
            g.lat(1.5, 10),
            ref_done=done,
        )
        return 2

    def apiserver_get_namespace(self, t: int) -> int:
        g = self.g
        a = self.c.system["apiserver"]
        ns = g.pick(("default", "kube-system", "kube-public", "kube-node-lease"))
        g.request(
            t,
            RQ,
            "get",
            f"/api/v1/namespaces/{ns}",
            a.user,
            a.ips,
            a.user_agent,
            g.ref("namespaces", ns, ns),
            OK,
            g.allow(""),
            g.lat(0.3, 2),
        )
        return 2

    def endpointslice_update(self, t: int) -> int:
        g = self.g
        d = g.pick(self.c.deployments)
        ident = self.ctl["endpointslice-controller"]
        old = g.rv_now()
        new = g.rv()
        ts = g.ts_s(t)
        req = Raw(bodies.endpoint_slice(d, old, ts))
        done = ObjectReference(
            resource="endpointslices",
            namespace=d.namespace,
            name=d.slice_name,
            uid=d.slice_uid,
            api_group="discovery.k8s.io",
            api_version="v1",
            resource_version=old,
        )
        if g.rng.random() < 0.04:
            status, resp = conflict("endpointslices", "discovery.k8s.io", d.slice_name)
        else:
            status, resp = OK, bodies.endpoint_slice(d, new, ts)
        g.request(
            t,
            RRS,
            "update",
            path("discovery.k8s.io", "v1", "endpointslices", d.namespace, d.slice_name),
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("endpointslices", d.namespace, d.slice_name, "discovery.k8s.io"),
            status,
            g.allow(ident.reason),
            g.lat(2, 20),
            ref_done=done,
            req_obj=req,
            resp_obj=Raw(resp),
        )
        return 2

    def controller_list(self, t: int) -> int:
        g = self.g
        ident = g.pick(self.listers)
        group, version, res = g.pick(RESOURCES)
        uri = path(group, version, res) + "?limit=500&resourceVersion=0"
        lat = g.lat(2, 90) if g.rng.random() > 0.01 else g.lat(520, 2400)
        g.request(
            t,
            read_level(res),
            "list",
            uri,
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref(res, group=group, version=version),
            OK,
            g.allow(ident.reason),
            lat,
        )
        return 2

    def _watch(
        self,
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
        g = self.g
        secs = 300 + int(g.rng.random() * 300)
        uri = (
            f"{path(group, version, res, ns)}?allowWatchBookmarks=true{q}&resourceVersion="
            f"{g.rv_now()}&timeout={_timeout(secs)}&timeoutSeconds={secs}&watch=true"
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

    def informer_watch(self, t: int) -> int:
        g = self.g
        r = g.rng.random()
        if r < 0.25:  # kube-proxy on every node
            n = g.pick(self.c.nodes)
            kp = self.c.system["kube-proxy"]
            which = g.rng.random()
            if which < 0.45:
                sel = _PROXY_SELECTOR
                return self._watch(
                    t,
                    kp.user,
                    n.ips,
                    kp.user_agent,
                    g.allow(kp.reason),
                    "discovery.k8s.io",
                    "v1",
                    "endpointslices",
                    "",
                    sel,
                )
            if which < 0.9:
                sel = _PROXY_SELECTOR
                return self._watch(
                    t,
                    kp.user,
                    n.ips,
                    kp.user_agent,
                    g.allow(kp.reason),
                    "",
                    "v1",
                    "services",
                    "",
                    sel,
                )
            return self._watch(
                t,
                kp.user,
                n.ips,
                kp.user_agent,
                g.allow(kp.reason),
                "",
                "v1",
                "nodes",
                "",
                f"&fieldSelector=metadata.name%3D{n.name}",
                name=n.name,
            )
        if r < 0.45:  # kubelets
            n = g.pick(self.c.nodes)
            if g.rng.random() < 0.5:
                return self._watch(
                    t,
                    n.user,
                    n.ips,
                    self.kubelet_ua,
                    self.node_allow,
                    "",
                    "v1",
                    "pods",
                    "",
                    f"&fieldSelector=spec.nodeName%3D{n.name}",
                )
            return self._watch(
                t, n.user, n.ips, self.kubelet_ua, self.node_allow, "", "v1", "services", "", ""
            )
        ident = g.pick(self.watchers)
        group, version, res = g.pick(RESOURCES)
        q = ""
        if res == "pods" and ident is self.c.system["scheduler"]:
            q = "&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"
        return self._watch(
            t,
            ident.user,
            ident.ips,
            ident.user_agent,
            g.allow(ident.reason),
            group,
            version,
            res,
            "",
            q,
        )

    def controller_write(self, t: int) -> int:
        g = self.g
        d = g.pick(self.c.deployments)
        r = g.rng.random()
        ts = g.ts_s(t)
        if r < 0.5:
            ident = self.ctl["deployment-controller"]
            old = g.rv_now()
            new = g.rv()
            req = bodies.deployment_apply(d, len(d.pods), "kubectl", old, ts, self.deploy_created)[
                1
            ]
            status = OK
            resp = bodies.deployment_apply(d, len(d.pods), "kubectl", new, ts, self.deploy_created)[
                1
            ]
            if g.rng.random() < 0.05:
                status, resp = conflict("deployments", "apps", d.name)
            done = ObjectReference(
                resource="deployments",
                namespace=d.namespace,
                name=d.name,
                uid=d.uid,
                api_group="apps",
                api_version="v1",
                resource_version=old,
                subresource="status",
            )
            g.request(
                t,
                RRS,
                "update",
                path("apps", "v1", "deployments", d.namespace, d.name) + "/status",
                ident.user,
                ident.ips,
                ident.user_agent,
                g.ref("deployments", d.namespace, d.name, "apps", subresource="status"),
                status,
                g.allow(ident.reason),
                g.lat(3, 25),
                ref_done=done,
                req_obj=Raw(req),
                resp_obj=Raw(resp),
            )
            return 2
        ident = self.ctl["replicaset-controller"]
        p = g.pick(d.pods)
        if r < 0.8:
            req, resp = bodies.pod_create(p, self.rs_uids[d.name], g.rv(), ts)
            g.request(
                t,
                RRS,
                "create",
                f"/api/v1/namespaces/{p.namespace}/pods",
                ident.user,
                ident.ips,
                ident.user_agent,
                g.ref("pods", p.namespace),
                CREATED,
                g.allow(ident.reason),
                g.lat(4, 30),
                ref_done=g.ref("pods", p.namespace, p.name),
                req_obj=Raw(req),
                resp_obj=Raw(resp),
            )
            return 2
        _, resp = bodies.pod_create(p, self.rs_uids[d.name], g.rv(), ts)
        g.request(
            t,
            RRS,
            "delete",
            path("", "v1", "pods", p.namespace, p.name),
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("pods", p.namespace, p.name),
            OK,
            g.allow(ident.reason),
            g.lat(3, 20),
            req_obj=Raw(bodies.DELETE_OPTIONS),
            resp_obj=Raw(resp),
        )
        return 2

    def scheduler_bind(self, t: int) -> int:
        g = self.g
        s = self.c.system["scheduler"]
        p = g.pick(self.c.pods)
        req, resp = bodies.binding(p)
        g.rv()
        g.request(
            t,
            RRS,
            "create",
            path("", "v1", "pods", p.namespace, p.name) + "/binding",
            s.user,
            s.ips,
            s.user_agent,
            g.ref("pods", p.namespace, p.name, subresource="binding"),
            CREATED,
            g.allow(s.reason),
            g.lat(2, 15),
            req_obj=Raw(req),
            resp_obj=Raw(resp),
        )
        return 2

    def token_review(self, t: int) -> int:
        g = self.g
        ident = g.pick(
            (
                self.c.system["metrics-server"],
                self.ctl["kube-state-metrics"],
                self.c.system["prometheus"],
            )
        )
        g.request(
            t,
            MD,
            "create",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("tokenreviews", group="authentication.k8s.io"),
            CREATED,
            g.allow(ident.reason),
            g.lat(0.5, 6),
        )
        return 2

    def access_review(self, t: int) -> int:
        g = self.g
        ident = self.c.system["metrics-server"]
        p = g.pick(self.c.pods)
        caller = self.c.system["prometheus"].user
        req, resp = bodies.subject_access_review(
            str(caller.username),
            list(caller.groups or []),
            "get",
            "pods",
            p.namespace,
            True,
            self.c.system["prometheus"].reason,
        )
        g.request(
            t,
            RRS,
            "create",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("subjectaccessreviews", group="authorization.k8s.io"),
            CREATED,
            g.allow(ident.reason),
            g.lat(0.5, 4),
            req_obj=Raw(req),
            resp_obj=Raw(resp),
        )
        return 2

    # --- non-resource ----------------------------------------------------------------

    def health_probe(self, t: int) -> int:
        g = self.g
        ips = g.pick(self.probe_ips)
        ua = "kube-probe/1.31" if ips[0] != "10.0.0.250" else "GoogleHC/1.0"
        uri = g.pick(("/livez", "/readyz", "/healthz", "/readyz", "/livez"))
        g.request(
            t, MD, "get", uri, ANONYMOUS, ips, ua, UNSET, OK, g.allow(PUBLIC_INFO), g.lat(0.2, 3)
        )
        return 2

    def metrics_scrape(self, t: int) -> int:
        g = self.g
        p = self.c.system["prometheus"]
        g.request(
            t,
            MD,
            "get",
            "/metrics",
            p.user,
            p.ips,
            p.user_agent,
            UNSET,
            OK,
            g.allow(p.reason),
            g.lat(15, 180),
        )
        return 2

    def discovery(self, t: int) -> int:
        g = self.g
        ident = g.pick(self.c.operators + self.c.controllers[:3])
        uri = g.pick(
            (
                "/api",
                "/apis",
                "/api?timeout=32s",
                "/apis?timeout=32s",
                "/version",
                "/apis/apps/v1",
                "/apis/metrics.k8s.io/v1beta1",
                "/openapi/v2",
            )
        )
        lat = g.lat(30, 350) if uri.startswith("/openapi") else g.lat(0.5, 8)
        g.request(
            t,
            MD,
            "get",
            uri,
            ident.user,
            ident.ips,
            ident.user_agent,
            UNSET,
            OK,
            g.allow(DISCOVERY),
            lat,
        )
        return 2

    # --- operators and their failures ------------------------------------------------

    def operator_read(self, t: int) -> int:
        g = self.g
        ident = g.pick(self.c.operators)
        d = g.pick(self.c.deployments)
        r = g.rng.random()
        if r < 0.35:
            res, name = "secrets", d.secret
        elif r < 0.6:
            res, name = "configmaps", d.configmap
        elif r < 0.8:
            res, name = "services", d.name
        else:
            res, name = "pods", g.pick(d.pods).name
        g.request(
            t,
            read_level(res),
            "get",
            path("", "v1", res, d.namespace, name),
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref(res, d.namespace, name),
            OK,
            g.allow(ident.reason),
            g.lat(0.4, 5),
        )
        return 2

    def controller_not_found(self, t: int) -> int:
        g = self.g
        ident = self.ctl["generic-garbage-collector"]
        d = g.pick(self.c.deployments)
        name = f"{d.name}-{d.rs_hash}-{g.uuid()[:5]}"
        status, _ = not_found("pods", "", name)
        g.request(
            t,
            RQ,
            "get",
            path("", "v1", "pods", d.namespace, name),
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("pods", d.namespace, name),
            status,
            g.allow(ident.reason),
            g.lat(0.4, 3),
        )
        return 2

    def forbidden_sa(self, t: int) -> int:
        g = self.g
        if g.rng.random() < 0.6:
            ident = self.ctl["kube-state-metrics"]
            res, group, ns = "verticalpodautoscalers", "autoscaling.k8s.io", ""
            uri = "/apis/autoscaling.k8s.io/v1/verticalpodautoscalers?limit=500&resourceVersion=0"
            verb, version = "list", "v1"
        else:
            d = g.pick(self.c.deployments)
            ident = self.ctl["cert-manager"]
            res, group, ns, version = "secrets", "", "kube-system", "v1"
            uri, verb = "/api/v1/namespaces/kube-system/secrets?limit=500", "list"
            del d
        status = forbidden(ident.username, verb, res, group, ns)
        g.request(
            t,
            read_level(res),
            verb,
            uri,
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref(res, ns, "", group, version),
            status,
            FORBID,
            g.lat(0.3, 2),
        )
        return 2

    def throttled(self, t: int) -> int:
        g = self.g
        ident = g.pick(self.c.operators)
        group, version, res = g.pick(RESOURCES)
        g.request(
            t,
            read_level(res),
            "list",
            path(group, version, res) + "?limit=500",
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref(res, group=group, version=version),
            Status(code=429),
            None,
            g.lat(0.1, 1),
        )
        return 2

    def internal_error(self, t: int) -> int:
        g = self.g
        ident = self.c.system["argocd"]
        d = g.pick(self.c.deployments)
        hook = "validate.nginx.ingress.kubernetes.io"
        cause = (
            f'failed calling webhook "{hook}": failed to call webhook: Post "https://ingress-'
            "nginx-controller-admission.ingress-nginx.svc:443/networking/v1/ingresses?"
            'timeout=10s": context deadline exceeded'
        )
        msg = f"Internal error occurred: {cause}"
        det = {"causes": [{"message": cause}]}
        status = error_status(500, "InternalError", msg, Raw(bodies._enc(det)))
        patch = Raw(
            bodies._enc({"spec": {"rules": [{"host": f"{d.name}.{self.c.profile.email_domain}"}]}})
        )
        g.request(
            t,
            RRS,
            "patch",
            path("networking.k8s.io", "v1", "ingresses", d.namespace, d.name)
            + "?fieldManager=argocd-controller&force=true",
            ident.user,
            ident.ips,
            ident.user_agent,
            g.ref("ingresses", d.namespace, d.name, "networking.k8s.io"),
            status,
            g.allow(ident.reason),
            g.lat(10_000, 10_400),
            slow_layer="validating-webhook",
            req_obj=patch,
            resp_obj=Raw(bodies.status(500, "InternalError", msg, det)),
        )
        return 2

    def stray_401(self, t: int) -> int:
        g = self.g
        ident = self.c.system["helm"]
        ns = g.pick(self.c.profile.app_namespaces)
        g.failed_auth(
            t,
            MD,
            "list",
            f"/api/v1/namespaces/{ns}/secrets?labelSelector=owner%3Dhelm",
            ident.ips,
            ident.user_agent,
            g.ref("secrets", ns),
        )
        return 1

    # --- people ----------------------------------------------------------------------

    def _human_ns(self, h: Human) -> tuple[str, dict[str, str]]:
        g = self.g
        if h.role == "developer":
            ns = g.pick(h.namespaces)
            reason = rbac_reason(
                "RoleBinding", f"developers/{ns}", "ClusterRole", "edit", 'Group "oidc:developers"'
            )
            return ns, g.allow(reason)
        return g.pick(self.c.profile.app_namespaces), g.allow(h.ident.reason)

    def human(self, t: int) -> int:
        g = self.g
        h = g.pick(self.c.humans)
        i = h.ident
        u, ips, ua = i.user, i.ips, i.user_agent
        ns, allow = self._human_ns(h)
        ds = [d for d in self.c.deployments if d.namespace == ns]
        d = g.pick(ds)
        p = g.pick(d.pods)
        r = g.rng.random()
        ts = g.ts_s(t)
        if r < 0.30:
            g.request(
                t,
                RQ,
                "list",
                f"/api/v1/namespaces/{ns}/pods?limit=500",
                u,
                ips,
                ua,
                g.ref("pods", ns),
                OK,
                allow,
                g.lat(3, 40),
            )
        elif r < 0.38:
            g.request(
                t,
                RQ,
                "get",
                path("apps", "v1", "deployments", ns, d.name),
                u,
                ips,
                ua,
                g.ref("deployments", ns, d.name, "apps"),
                OK,
                allow,
                g.lat(0.5, 6),
            )
        elif r < 0.46:  # kubectl describe pod
            lat = g.lat(0.5, 6)
            g.request(
                t,
                RQ,
                "get",
                path("", "v1", "pods", ns, p.name),
                u,
                ips,
                ua,
                g.ref("pods", ns, p.name),
                OK,
                allow,
                lat,
            )
            sel = (
                f"involvedObject.name%3D{p.name}%2CinvolvedObject.namespace%3D{ns}"
                f"%2CinvolvedObject.uid%3D{p.uid}"
            )
            g.request(
                t + lat + g.lat(2, 10),
                MD,
                "list",
                f"/api/v1/namespaces/{ns}/events?fieldSelector={sel}&limit=500",
                u,
                ips,
                ua,
                g.ref("events", ns),
                OK,
                allow,
                g.lat(1, 12),
            )
            return 4
        elif r < 0.53:  # kubectl logs -f
            secs = g.lat(5_000, 900_000)
            g.request(
                t,
                RQ,
                "get",
                path("", "v1", "pods", ns, p.name) + "/log?container=app&follow=true&tailLines=100",
                u,
                ips,
                ua,
                g.ref("pods", ns, p.name, subresource="log"),
                OK,
                allow,
                secs,
                long_running=True,
            )
            return 3
        elif r < 0.59:  # kubectl apply --server-side
            old = g.rv_now()
            applied, stored = bodies.deployment_apply(
                d, len(d.pods), "kubectl", g.rv(), ts, self.deploy_created
            )
            del old
            g.request(
                t,
                RRS,
                "patch",
                path("apps", "v1", "deployments", ns, d.name)
                + "?fieldManager=kubectl&fieldValidation=Strict&force=false",
                u,
                ips,
                ua,
                g.ref("deployments", ns, d.name, "apps"),
                OK,
                allow,
                g.lat(5, 40),
                req_obj=Raw(applied),
                resp_obj=Raw(stored),
            )
        elif r < 0.63:  # kubectl rollout restart
            stored = bodies.deployment_apply(
                d, len(d.pods), "kubectl", g.rv(), ts, self.deploy_created
            )[1]
            g.request(
                t,
                RRS,
                "patch",
                path("apps", "v1", "deployments", ns, d.name) + "?fieldManager=kubectl-rollout",
                u,
                ips,
                ua,
                g.ref("deployments", ns, d.name, "apps"),
                OK,
                allow,
                g.lat(4, 30),
                req_obj=Raw(bodies.restart_patch(ts)),
                resp_obj=Raw(stored),
            )
        elif r < 0.66:  # kubectl scale
            n = 2 + int(g.rng.random() * 6)
            scale = {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {
                    "name": d.name,
                    "namespace": ns,
                    "uid": d.uid,
                    "resourceVersion": g.rv(),
                    "creationTimestamp": self.deploy_created,
                },
                "spec": {"replicas": n},
                "status": {"replicas": len(d.pods), "selector": f"app={d.name}"},
            }
            g.request(
                t,
                RRS,
                "patch",
                path("apps", "v1", "deployments", ns, d.name) + "/scale",
                u,
                ips,
                ua,
                g.ref("deployments", ns, d.name, "apps", subresource="scale"),
                OK,
                allow,
                g.lat(3, 20),
                req_obj=Raw(bodies.scale_patch(n)),
                resp_obj=Raw(bodies._enc(scale)),
            )
        elif r < 0.70:  # kubectl delete pod
            _, resp = bodies.pod_create(p, self.rs_uids[d.name], g.rv(), ts)
            g.request(
                t,
                RRS,
                "delete",
                path("", "v1", "pods", ns, p.name),
                u,
                ips,
                ua,
                g.ref("pods", ns, p.name),
                OK,
                allow,
                g.lat(3, 25),
                req_obj=Raw(
                    bodies._enc(
                        {
                            "kind": "DeleteOptions",
                            "apiVersion": "v1",
                            "propagationPolicy": "Background",
                        }
                    )
                ),
                resp_obj=Raw(resp),
            )
        elif r < 0.74:
            g.request(
                t,
                MD,
                "get",
                path("", "v1", "secrets", ns, d.secret),
                u,
                ips,
                ua,
                g.ref("secrets", ns, d.secret),
                OK,
                allow,
                g.lat(0.5, 4),
            )
        elif r < 0.77:  # kubectl edit configmap
            old = g.rv_now()
            g.rv()
            done = ObjectReference(
                resource="configmaps",
                namespace=ns,
                name=d.configmap,
                uid=g.uuid(),
                api_version="v1",
                resource_version=old,
            )
            g.request(
                t,
                MD,
                "update",
                path("", "v1", "configmaps", ns, d.configmap),
                u,
                ips,
                ua,
                g.ref("configmaps", ns, d.configmap),
                OK,
                allow,
                g.lat(2, 15),
                ref_done=done,
            )
        elif r < 0.81:  # typo: 404
            name = p.name[:-3] + g.uuid()[:3]
            status, _ = not_found("pods", "", name)
            g.request(
                t,
                RQ,
                "get",
                path("", "v1", "pods", ns, name),
                u,
                ips,
                ua,
                g.ref("pods", ns, name),
                status,
                allow,
                g.lat(0.4, 3),
            )
        elif r < 0.85:
            if h.role == "developer":
                status = forbidden(str(u.username), "list", "secrets", "", "kube-system")
                g.request(
                    t,
                    MD,
                    "list",
                    "/api/v1/namespaces/kube-system/secrets?limit=500",
                    u,
                    ips,
                    ua,
                    g.ref("secrets", "kube-system"),
                    status,
                    FORBID,
                    g.lat(0.3, 2),
                )
            else:
                g.request(
                    t,
                    RQ,
                    "list",
                    "/api/v1/nodes?limit=500",
                    u,
                    ips,
                    ua,
                    g.ref("nodes"),
                    OK,
                    g.allow(h.ident.reason),
                    g.lat(3, 30),
                )
        elif r < 0.92:
            uri = g.pick(
                (
                    "/api?timeout=32s",
                    "/apis?timeout=32s",
                    "/version?timeout=32s",
                    "/openapi/v3?timeout=32s",
                )
            )
            g.request(t, MD, "get", uri, u, ips, ua, UNSET, OK, g.allow(DISCOVERY), g.lat(0.5, 12))
        elif r < 0.94:  # kubectl port-forward
            g.request(
                t,
                RRS,
                "create",
                path("", "v1", "pods", ns, p.name) + "/portforward",
                u,
                ips,
                ua,
                g.ref("pods", ns, p.name, subresource="portforward"),
                SWITCHING,
                allow,
                g.lat(10_000, 1_800_000),
                long_running=True,
            )
            return 3
        elif r < 0.97:  # invalid create
            msg = (
                f'Deployment.apps "{d.name}-canary" is invalid: spec.template.metadata.labels: '
                f'Invalid value: map[string]string{{"app":"{d.name}"}}: `selector` does not '
                "match template `labels`"
            )
            det = {
                "name": f"{d.name}-canary",
                "group": "apps",
                "kind": "Deployment",
                "causes": [
                    {
                        "reason": "FieldValueInvalid",
                        "message": msg.split(": ", 2)[2],
                        "field": "spec.template.metadata.labels",
                    }
                ],
            }
            applied, _ = bodies.deployment_apply(d, 1, "kubectl", "", ts, ts)
            g.request(
                t,
                RRS,
                "create",
                f"/apis/apps/v1/namespaces/{ns}/deployments?fieldManager=kubectl-create&fieldValidation=Strict",
                u,
                ips,
                ua,
                g.ref("deployments", ns, "", "apps"),
                error_status(422, "Invalid", msg, Raw(bodies._enc(det))),
                allow,
                g.lat(2, 10),
                ref_done=g.ref("deployments", ns, f"{d.name}-canary", "apps"),
                req_obj=Raw(applied),
                resp_obj=Raw(bodies.status(422, "Invalid", msg, det)),
            )
        else:  # create an existing configmap: 409 AlreadyExists
            msg = f'configmaps "{d.configmap}" already exists'
            det = bodies.details(d.configmap, "", "configmaps")
            g.request(
                t,
                MD,
                "create",
                f"/api/v1/namespaces/{ns}/configmaps?fieldManager=kubectl-create&fieldValidation=Strict",
                u,
                ips,
                ua,
                g.ref("configmaps", ns),
                error_status(409, "AlreadyExists", msg, Raw(bodies._enc(det))),
                allow,
                g.lat(1, 6),
                ref_done=g.ref("configmaps", ns, d.configmap),
            )
        return 2

    def ci_deploy(self, t: int) -> int:
        g = self.g
        d = g.pick(self.c.deployments)
        ns = d.namespace
        ts = g.ts_s(t)
        if g.rng.random() < 0.5:  # argocd sync: server-side apply
            a = self.c.system["argocd"]
            applied, stored = bodies.deployment_apply(
                d, len(d.pods), "argocd-controller", g.rv(), ts, self.deploy_created
            )
            g.request(
                t,
                RRS,
                "patch",
                path("apps", "v1", "deployments", ns, d.name)
                + "?fieldManager=argocd-controller&force=true",
                a.user,
                a.ips,
                a.user_agent,
                g.ref("deployments", ns, d.name, "apps"),
                OK,
                g.allow(a.reason),
                g.lat(5, 40),
                req_obj=Raw(applied),
                resp_obj=Raw(stored),
            )
            return 2
        hm = self.c.system["helm"]
        allow = g.allow(hm.reason)
        rel = d.name
        lat = g.lat(2, 20)
        g.request(
            t,
            MD,
            "list",
            f"/api/v1/namespaces/{ns}/secrets?labelSelector=name%3D{rel}%2Cowner%3Dhelm",
            hm.user,
            hm.ips,
            hm.user_agent,
            g.ref("secrets", ns),
            OK,
            allow,
            lat,
        )
        t2 = t + lat + g.lat(20, 200)
        version = 2 + int(g.rng.random() * 60)
        g.rv()
        g.request(
            t2,
            MD,
            "create",
            f"/api/v1/namespaces/{ns}/secrets",
            hm.user,
            hm.ips,
            hm.user_agent,
            g.ref("secrets", ns),
            CREATED,
            allow,
            g.lat(2, 12),
            ref_done=g.ref("secrets", ns, f"sh.helm.release.v1.{rel}.v{version}"),
        )
        t3 = t2 + g.lat(20, 150)
        patch = Raw(
            bodies._enc(
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"image": d.image, "name": "app"}]}}
                    }
                }
            )
        )
        stored = bodies.deployment_apply(d, len(d.pods), "helm", g.rv(), ts, self.deploy_created)[1]
        g.request(
            t3,
            RRS,
            "patch",
            path("apps", "v1", "deployments", ns, d.name),
            hm.user,
            hm.ips,
            hm.user_agent,
            g.ref("deployments", ns, d.name, "apps"),
            OK,
            allow,
            g.lat(5, 40),
            req_obj=patch,
            resp_obj=Raw(stored),
        )
        return 6


def weighted_actions(g: Traffic) -> tuple[list[Callable[[int], int]], list[float]]:
    """The everyday actions of ``g`` with their cumulative weights (for ``bisect``)."""
    return Background(g).weighted(g.profile)
