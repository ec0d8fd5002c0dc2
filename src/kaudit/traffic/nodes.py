"""What kubelets send: lease renewals, node and pod status, watches, events, tokens."""

from __future__ import annotations

from msgspec import Raw

from kaudit.model import ObjectReference
from kaudit.traffic import bodies
from kaudit.traffic.engine import CREATED, OK
from kaudit.traffic.kube import (
    COORD,
    MD,
    RQ,
    Context,
    path,
    watch,
)


class Kubelets:
    """The kubelet of every node (the Node authorizer allows them: reason ``""``)."""

    def __init__(self, x: Context) -> None:
        self.g = x.g
        self.c = x.c
        self.kubelet_ua = x.kubelet_ua
        self.node_allow = x.node_allow
        self.deploy_created = x.deploy_created
        self.rs_uids = x.rs_uids

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
        return watch(
            self.g,
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
