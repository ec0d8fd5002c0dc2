"""Scripted incidents, sprinkled into the everyday traffic at a low, deterministic rate.

:data:`INCIDENTS` is the catalogue (what each kind is and how to find it in the flat
schema); each generated occurrence is an :class:`~kaudit.traffic.engine.Incident` in
:attr:`Traffic.incidents <kaudit.traffic.engine.Traffic.incidents>`, with the audit IDs
of all its requests. An incident's requests are spread over seconds to minutes and
interleave with the rest of the traffic, as they would in a real log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from msgspec import UNSET, Raw

from kaudit.model import Status, UserInfo
from kaudit.traffic import bodies
from kaudit.traffic.cluster import ANONYMOUS, AUTHENTICATED, Human, rbac_reason
from kaudit.traffic.engine import CREATED, FORBID, OK, SWITCHING, Incident, Traffic
from kaudit.traffic.kube import MD, PUBLIC_INFO, RQ, RRS, error_status, forbidden

ATTACKER_UAS: Final = ("python-requests/2.32.3", "Go-http-client/1.1", "curl/8.5.0")


@dataclass(frozen=True, slots=True)
class IncidentKind:
    """One kind of incident: its name, what happened, and how to find it (flat schema SQL)."""

    kind: str
    title: str
    find: str


INCIDENTS: Final = (
    IncidentKind(
        "exec-into-pod",
        "A person opens a shell in a running pod and runs a command in it",
        "resource = 'pods' AND subresource = 'exec'",
    ),
    IncidentKind(
        "privileged-pod",
        "A person creates a privileged pod with host namespaces and hostPath /",
        "resource = 'pods' AND verb = 'create' AND request_object LIKE '%\"privileged\":true%'",
    ),
    IncidentKind(
        "cluster-admin-binding",
        "A person binds the cluster-admin ClusterRole to an outside user",
        "resource = 'clusterrolebindings' AND verb = 'create' AND request_object LIKE "
        '\'%"name":"cluster-admin"%\'',
    ),
    IncidentKind(
        "secret-enumeration",
        "One service account lists every secret, then reads them one by one",
        "resource = 'secrets' AND verb IN ('get', 'list') GROUP BY username",
    ),
    IncidentKind(
        "anonymous-access",
        "Unauthenticated requests from outside the cluster probe the API",
        "username = 'system:anonymous' AND source_ip NOT LIKE '10.%'",
    ),
    IncidentKind(
        "failed-auth-burst",
        "A burst of failed authentications (401) from one external address",
        "code = 401 GROUP BY source_ip",
    ),
    IncidentKind(
        "configmap-deleted",
        "A person deletes an application's ConfigMap",
        "resource = 'configmaps' AND verb = 'delete'",
    ),
    IncidentKind(
        "impersonation",
        "A developer tries to impersonate system:masters, then reads secrets as a service account",
        "impersonated_user IS NOT NULL OR status_message LIKE '%cannot impersonate%'",
    ),
)


def _human(g: Traffic, roles: tuple[str, ...]) -> Human:
    candidates = [h for h in g.cluster.humans if h.role in roles] or g.cluster.humans
    return g.pick(candidates)


def _new(g: Traffic, kind: str, actor: str, ip: str, t: int) -> Incident:
    title = next(k.title for k in INCIDENTS if k.kind == kind)
    return g.incident(kind, title, actor, ip, t)


def _external_ip(g: Traffic) -> str:
    return f"198.51.100.{2 + int(g.rng.random() * 250)}"


def exec_into_pod(g: Traffic, t: int) -> Incident:
    h = _human(g, ("admin", "developer", "sre"))
    i = h.ident
    p = g.pick(g.cluster.pods)
    ns = p.namespace
    inc = _new(g, "exec-into-pod", i.username, i.ips[0], t)
    inc.detail.update(namespace=ns, pod=p.name, container="app")
    allow = g.allow(i.reason)
    lat = g.lat(0.5, 4)
    g.request(
        t,
        RQ,
        "get",
        f"/api/v1/namespaces/{ns}/pods/{p.name}",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("pods", ns, p.name),
        OK,
        allow,
        lat,
        inc=inc,
    )
    cmd = g.pick(
        (
            (
                "cat+%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken",
                "cat /var/run/secrets/kubernetes.io/serviceaccount/token",
            ),
            ("env+%7C+grep+-i+pass", "env | grep -i pass"),
            (
                "curl+-s+http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2Fiam%2Fsecurity-credentials%2F",
                "curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            ),
        )
    )
    inc.detail["command"] = f"sh -c {cmd[1]}"
    uri = (
        f"/api/v1/namespaces/{ns}/pods/{p.name}/exec?command=sh&command=-c&command={cmd[0]}"
        "&container=app&stdin=true&stdout=true&tty=true"
    )
    g.request(
        t + lat + g.lat(20, 120),
        RQ,
        "get",
        uri,
        i.user,
        i.ips,
        i.user_agent,
        g.ref("pods", ns, p.name, subresource="exec"),
        SWITCHING,
        allow,
        g.lat(5_000, 90_000),
        long_running=True,
        inc=inc,
    )
    return inc


_PSA_VIOLATIONS: Final = (
    'would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true, '
    'hostPID=true, hostIPC=true), privileged (container "shell" must not set '
    'securityContext.privileged=true), allowPrivilegeEscalation != false (container "shell" '
    "must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities "
    '(container "shell" must set securityContext.capabilities.drop=["ALL"]), restricted '
    'volume types (volume "host" uses restricted volume type "hostPath"), runAsNonRoot != true '
    '(pod or container "shell" must set securityContext.runAsNonRoot=true), seccompProfile '
    '(pod or container "shell" must set securityContext.seccompProfile.type to "RuntimeDefault" '
    'or "Localhost")'
)


def privileged_pod(g: Traffic, t: int) -> Incident:
    h = _human(g, ("admin", "sre"))
    i = h.ident
    ns = "default"
    name = f"debug-{g.uuid()[:5]}"
    inc = _new(g, "privileged-pod", i.username, i.ips[0], t)
    inc.detail.update(namespace=ns, pod=name)
    uid = g.uuid()
    req, resp = bodies.privileged_pod(ns, name, uid, g.rv(), g.ts_s(t), "kubectl-run")
    ann = dict(g.allow(i.reason))
    ann["pod-security.kubernetes.io/enforce-policy"] = "privileged:latest"
    ann["pod-security.kubernetes.io/audit-violations"] = _PSA_VIOLATIONS
    lat = g.lat(5, 30)
    g.request(
        t,
        RRS,
        "create",
        f"/api/v1/namespaces/{ns}/pods?fieldManager=kubectl-run",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("pods", ns),
        CREATED,
        ann,
        lat,
        ref_done=g.ref("pods", ns, name),
        req_obj=Raw(req),
        resp_obj=Raw(resp),
        inc=inc,
    )
    g.request(
        t + lat + g.lat(800, 3000),
        RQ,
        "get",
        f"/api/v1/namespaces/{ns}/pods/{name}",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("pods", ns, name),
        OK,
        g.allow(i.reason),
        g.lat(0.5, 4),
        inc=inc,
    )
    return inc


def cluster_admin_binding(g: Traffic, t: int) -> Incident:
    h = _human(g, ("admin",))
    i = h.ident
    domain = g.cluster.profile.email_domain
    subject = f"oidc:{g.pick(('mallory', 'contractor-ops', 'trent'))}@{domain}"
    name = f"{subject.split(':')[1].split('@')[0]}-cluster-admin"
    inc = _new(g, "cluster-admin-binding", i.username, i.ips[0], t)
    inc.detail.update(binding=name, subject=subject, role="cluster-admin")
    req, resp = bodies.cluster_role_binding(
        name, "User", subject, "cluster-admin", g.uuid(), g.rv(), g.ts_s(t), "kubectl-create"
    )
    grp = "rbac.authorization.k8s.io"
    g.request(
        t,
        RRS,
        "create",
        f"/apis/{grp}/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("clusterrolebindings", group=grp),
        CREATED,
        g.allow(i.reason),
        g.lat(3, 20),
        ref_done=g.ref("clusterrolebindings", "", name, grp),
        req_obj=Raw(req),
        resp_obj=Raw(resp),
        inc=inc,
    )
    return inc


def secret_enumeration(g: Traffic, t: int) -> Incident:
    c = g.cluster
    victim = g.pick(c.pods)
    sa = victim.deployment.name
    ns = victim.namespace
    user = UserInfo(
        username=f"system:serviceaccount:{ns}:{sa}",
        uid=g.uuid(),
        groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED],
        extra={
            "authentication.kubernetes.io/credential-id": [f"JTI={g.uuid()}"],
            "authentication.kubernetes.io/node-name": [victim.node.name],
            "authentication.kubernetes.io/node-uid": [victim.node.uid],
            "authentication.kubernetes.io/pod-name": [victim.name],
            "authentication.kubernetes.io/pod-uid": [victim.uid],
        },
    )
    ips = [victim.ip]
    ua = "kubectl/v1.31.0 (linux/amd64) kubernetes/9b4fce2"
    allow = g.allow(
        rbac_reason(
            "ClusterRoleBinding",
            f"{sa}-reader",
            "ClusterRole",
            "secret-reader",
            f'ServiceAccount "{sa}/{ns}"',
        )
    )
    inc = _new(g, "secret-enumeration", str(user.username), victim.ip, t)
    inc.detail.update(namespace=ns, pod=victim.name)
    lat = g.lat(5, 60)
    g.request(
        t,
        MD,
        "list",
        "/api/v1/secrets?limit=500",
        user,
        ips,
        ua,
        g.ref("secrets"),
        OK,
        allow,
        lat,
        inc=inc,
    )
    t += lat
    targets = [(d.namespace, d.secret) for d in c.deployments]
    targets += [(d.namespace, f"{d.name}-tls") for d in c.deployments]
    targets += [
        ("kube-system", n)
        for n in (
            "bootstrap-token-abcdef",
            "cloud-provider-config",
            "sealed-secrets-key",
            "etcd-backup-credentials",
        )
    ]
    targets += [
        ("argocd", "argocd-secret"),
        ("cert-manager", "letsencrypt-prod-account-key"),
        ("monitoring", "alertmanager-main"),
        ("ci", "registry-push-token"),
    ]
    g.rng.shuffle(targets)
    count = min(len(targets), 25 + int(g.rng.random() * 16))
    for sns, name in targets[:count]:
        t += g.lat(150, 1500)
        lat = g.lat(0.4, 4)
        g.request(
            t,
            MD,
            "get",
            f"/api/v1/namespaces/{sns}/secrets/{name}",
            user,
            ips,
            ua,
            g.ref("secrets", sns, name),
            OK,
            allow,
            lat,
            inc=inc,
        )
    inc.detail["secrets_read"] = str(count)
    return inc


def anonymous_access(g: Traffic, t: int) -> Incident:
    ip = _external_ip(g)
    ips = [ip]
    ua = g.pick(ATTACKER_UAS)
    inc = _new(g, "anonymous-access", "system:anonymous", ip, t)
    anon = "system:anonymous"
    probes: list[tuple[str, str, str, str, str]] = [
        ("/version", "", "", "", ""),
        ("/apis", "", "", "", ""),
        ("/api/v1/namespaces/kube-system/secrets", "list", "secrets", "kube-system", ""),
        ("/api/v1/pods", "list", "pods", "", ""),
        ("/api/v1/namespaces/default/pods", "list", "pods", "default", ""),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "list",
            "clusterrolebindings",
            "",
            "rbac.authorization.k8s.io",
        ),
    ]
    for uri, verb, res, ns, group in probes:
        lat = g.lat(0.2, 2)
        if not res:
            if uri == "/version":
                g.request(
                    t,
                    MD,
                    "get",
                    uri,
                    ANONYMOUS,
                    ips,
                    ua,
                    UNSET,
                    OK,
                    g.allow(PUBLIC_INFO),
                    lat,
                    inc=inc,
                )
            else:
                st = error_status(
                    403,
                    "Forbidden",
                    f'forbidden: User "{anon}" cannot get path "{uri}"',
                    Raw(b"{}"),
                )
                g.request(t, MD, "get", uri, ANONYMOUS, ips, ua, UNSET, st, FORBID, lat, inc=inc)
        else:
            st = forbidden(anon, verb, res, group, ns)
            g.request(
                t,
                MD if res == "secrets" else RQ,
                verb,
                uri,
                ANONYMOUS,
                ips,
                ua,
                g.ref(res, ns, "", group),
                st,
                FORBID,
                lat,
                inc=inc,
            )
        t += lat + g.lat(100, 2500)
    return inc


def failed_auth_burst(g: Traffic, t: int) -> Incident:
    ip = _external_ip(g)
    ua = g.pick(ATTACKER_UAS)
    inc = _new(g, "failed-auth-burst", "", ip, t)
    uris: list[tuple[str, str, str, str]] = [
        ("/api/v1/namespaces/kube-system/secrets", "list", "secrets", "kube-system"),
        ("/api/v1/secrets", "list", "secrets", ""),
        ("/api/v1/pods", "list", "pods", ""),
        ("/api/v1/namespaces/default/pods", "list", "pods", "default"),
        ("/api/v1/nodes", "list", "nodes", ""),
        ("/apis", "get", "", ""),
        ("/version", "get", "", ""),
    ]
    count = 20 + int(g.rng.random() * 31)
    for _ in range(count):
        uri, verb, res, ns = g.pick(uris)
        ref = g.ref(res, ns) if res else UNSET
        g.failed_auth(t, MD, verb, uri, [ip], ua, ref, inc=inc)
        t += g.lat(50, 3000)
    inc.detail["attempts"] = str(count)
    return inc


def configmap_deleted(g: Traffic, t: int) -> Incident:
    h = _human(g, ("developer", "admin"))
    i = h.ident
    ns = g.pick(h.namespaces)
    d = g.pick([d for d in g.cluster.deployments if d.namespace == ns])
    allow = g.allow(
        rbac_reason(
            "RoleBinding", f"developers/{ns}", "ClusterRole", "edit", 'Group "oidc:developers"'
        )
        if h.role == "developer"
        else i.reason
    )
    inc = _new(g, "configmap-deleted", i.username, i.ips[0], t)
    inc.detail.update(namespace=ns, configmap=d.configmap)
    lat = g.lat(0.5, 4)
    g.request(
        t,
        MD,
        "get",
        f"/api/v1/namespaces/{ns}/configmaps/{d.configmap}",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("configmaps", ns, d.configmap),
        OK,
        allow,
        lat,
        inc=inc,
    )
    det = Raw(bodies._enc({"name": d.configmap, "kind": "configmaps", "uid": g.uuid()}))
    g.request(
        t + lat + g.lat(2000, 20000),
        MD,
        "delete",
        f"/api/v1/namespaces/{ns}/configmaps/{d.configmap}",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("configmaps", ns, d.configmap),
        Status(status="Success", details=det, code=200),
        allow,
        g.lat(2, 12),
        inc=inc,
    )
    return inc


def impersonation(g: Traffic, t: int) -> Incident:
    h = _human(g, ("developer",))
    i = h.ident
    inc = _new(g, "impersonation", i.username, i.ips[0], t)
    argocd = g.cluster.system["argocd"]
    inc.detail.update(impersonated=argocd.username, refused="system:admin")
    msg = (
        f'users "system:admin" is forbidden: User "{i.username}" cannot impersonate '
        'resource "users" in API group "" at the cluster scope'
    )
    st = error_status(403, "Forbidden", msg, Raw(b'{"name":"system:admin","kind":"users"}'))
    uri = "/api/v1/namespaces/kube-system/secrets?limit=500"
    lat = g.lat(0.3, 2)
    g.request(
        t,
        MD,
        "list",
        uri,
        i.user,
        i.ips,
        i.user_agent,
        g.ref("secrets", "kube-system"),
        st,
        None,
        lat,
        inc=inc,
    )
    t += lat + g.lat(5000, 40000)
    imp = UserInfo(username=argocd.username, groups=list(argocd.user.groups or []))
    allow = g.allow(argocd.reason)
    for _ in range(2):
        lat = g.lat(2, 20)
        g.request(
            t,
            MD,
            "list",
            uri,
            i.user,
            i.ips,
            i.user_agent,
            g.ref("secrets", "kube-system"),
            OK,
            allow,
            lat,
            imp=imp,
            inc=inc,
        )
        t += lat + g.lat(3000, 15000)
    name = "argocd-secret"
    g.request(
        t,
        MD,
        "get",
        f"/api/v1/namespaces/argocd/secrets/{name}",
        i.user,
        i.ips,
        i.user_agent,
        g.ref("secrets", "argocd", name),
        OK,
        allow,
        g.lat(0.4, 3),
        imp=imp,
        inc=inc,
    )
    return inc


SCRIPTS: Final[tuple[Callable[[Traffic, int], Incident], ...]] = (
    exec_into_pod,
    privileged_pod,
    cluster_admin_binding,
    secret_enumeration,
    anonymous_access,
    failed_auth_burst,
    configmap_deleted,
    impersonation,
)
assert len(SCRIPTS) == len(INCIDENTS)
