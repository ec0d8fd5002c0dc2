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

from msgspec import UNSET, Raw

from kaudit.model import ObjectReference, Status
from kaudit.traffic import bodies
from kaudit.traffic.cluster import ANONYMOUS, ClusterProfile, Identity
from kaudit.traffic.engine import CREATED, FORBID, OK, Traffic
from kaudit.traffic.kube import (
    COORD,
    DISCOVERY,
    MD,
    PROXY_SELECTOR,
    PUBLIC_INFO,
    RESOURCES,
    RQ,
    RRS,
    Context,
    conflict,
    error_status,
    forbidden,
    not_found,
    path,
    read_level,
    watch,
)
from kaudit.traffic.nodes import Kubelets
from kaudit.traffic.people import People


class Background:
    """The everyday actions of one :class:`Traffic` stream, with what they precompute."""

    def __init__(self, g: Traffic) -> None:
        x = Context(g)
        self.g = g
        c = g.cluster
        self.c = c
        self.kubelet_ua = x.kubelet_ua
        self.node_allow = x.node_allow
        self.deploy_created = x.deploy_created
        self.rs_uids = x.rs_uids
        self.nodes = Kubelets(x)
        self.people = People(x)
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

    def weighted(self, profile: ClusterProfile) -> tuple[list[Callable[[int], int]], list[float]]:
        h = profile.human_share
        table: list[tuple[float, Callable[[int], int]]] = [
            (150, self.nodes.kubelet_lease),
            (45, self.nodes.kubelet_get_node),
            (22, self.nodes.kubelet_node_status),
            (30, self.nodes.kubelet_watch_object),
            (14, self.nodes.kubelet_get_pod),
            (22, self.nodes.kubelet_pod_status),
            (18, self.nodes.kubelet_event),
            (8, self.nodes.kubelet_token_request),
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
            (24 * h, self.people.human),
            (8 * h, self.people.ci_deploy),
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

    def informer_watch(self, t: int) -> int:
        g = self.g
        r = g.rng.random()
        if r < 0.25:  # kube-proxy on every node
            n = g.pick(self.c.nodes)
            kp = self.c.system["kube-proxy"]
            which = g.rng.random()
            if which < 0.45:
                sel = PROXY_SELECTOR
                return watch(
                    self.g,
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
                sel = PROXY_SELECTOR
                return watch(
                    self.g,
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
            return watch(
                self.g,
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
                return watch(
                    self.g,
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
            return watch(
                self.g,
                t,
                n.user,
                n.ips,
                self.kubelet_ua,
                self.node_allow,
                "",
                "v1",
                "services",
                "",
                "",
            )
        ident = g.pick(self.watchers)
        group, version, res = g.pick(RESOURCES)
        q = ""
        if res == "pods" and ident is self.c.system["scheduler"]:
            q = "&fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"
        return watch(
            self.g,
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
            req = bodies.deployment_apply(
                d, bodies.replicas_of(d), "kubectl", old, ts, self.deploy_created
            )[1]
            status = OK
            resp = bodies.deployment_apply(
                d, bodies.replicas_of(d), "kubectl", new, ts, self.deploy_created
            )[1]
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


def weighted_actions(g: Traffic) -> tuple[list[Callable[[int], int]], list[float]]:
    """The everyday actions of ``g`` with their cumulative weights (for ``bisect``)."""
    return Background(g).weighted(g.profile)
