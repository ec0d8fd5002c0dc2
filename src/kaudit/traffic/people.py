"""People and pipelines: kubectl users (OIDC identities) and CI deployers (Helm, Argo CD)."""

from __future__ import annotations

from msgspec import UNSET, Raw

from kaudit.model import ObjectReference
from kaudit.traffic import bodies
from kaudit.traffic.cluster import Human, rbac_reason
from kaudit.traffic.engine import CREATED, FORBID, OK, SWITCHING
from kaudit.traffic.kube import (
    DISCOVERY,
    MD,
    RQ,
    RRS,
    Context,
    error_status,
    forbidden,
    not_found,
    path,
)


class People:
    """Humans with kubectl (reads, describe, logs, apply, restarts, mistakes) and CI."""

    def __init__(self, x: Context) -> None:
        self.g = x.g
        self.c = x.c
        self.kubelet_ua = x.kubelet_ua
        self.node_allow = x.node_allow
        self.deploy_created = x.deploy_created
        self.rs_uids = x.rs_uids

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
            if g.rng.random() < 0.3:
                d.release()
            old = g.rv_now()
            applied, stored = bodies.deployment_apply(
                d, bodies.replicas_of(d), "kubectl", g.rv(), ts, self.deploy_created
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
            d.restarted_at = ts
            d.changed()
            stored = bodies.deployment_apply(
                d, bodies.replicas_of(d), "kubectl", g.rv(), ts, self.deploy_created
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
            d.replicas = n
            d.generation += 1
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
                "status": {"replicas": bodies.replicas_of(d), "selector": f"app={d.name}"},
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
            if g.rng.random() < 0.2:  # a new commit in the git repository
                d.release()
            applied, stored = bodies.deployment_apply(
                d, bodies.replicas_of(d), "argocd-controller", g.rv(), ts, self.deploy_created
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
        d.release()  # helm upgrade: the new chart version's image
        patch = Raw(
            bodies._enc(
                {
                    "spec": {
                        "template": {"spec": {"containers": [{"image": d.image, "name": "app"}]}}
                    }
                }
            )
        )
        stored = bodies.deployment_apply(
            d, bodies.replicas_of(d), "helm", g.rv(), ts, self.deploy_created
        )[1]
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
