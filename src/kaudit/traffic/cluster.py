"""The simulated cluster: who talks to the apiserver, from where, about what.

:class:`ClusterProfile` holds the knobs a caller may turn; :func:`build_cluster` turns a
profile and a seed into concrete names, IPs, UIDs and identities, computed once so the
per-event work is only picking among them. Every :class:`~kaudit.model.UserInfo` here is
shared by all the events of that identity: treat events' sub-objects as read-only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from kaudit.model import UserInfo

AUTHENTICATED = "system:authenticated"
ANONYMOUS = UserInfo(username="system:anonymous", groups=["system:unauthenticated"])


def uuid4(rng: random.Random) -> str:
    """A UUID v4 (lower-case 8-4-4-4-12) drawn from ``rng``."""
    b = (rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    h = f"{b:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rbac_reason(kind: str, binding: str, role_kind: str, role: str, subject: str) -> str:
    """The RBAC authorizer's allow reason, e.g. ``RBAC: allowed by ClusterRoleBinding "x" ...``."""
    return f'RBAC: allowed by {kind} "{binding}" of {role_kind} "{role}" to {subject}'


@dataclass(frozen=True, slots=True)
class ClusterProfile:
    """What the simulated cluster looks like. The defaults are a mid-sized production cluster."""

    name: str = "prod-eu-1"
    nodes: int = 12
    control_plane_nodes: int = 3
    app_namespaces: tuple[str, ...] = ("payments", "checkout", "web", "search", "data")
    deployments_per_namespace: int = 3
    pods_per_deployment: int = 3
    admins: tuple[str, ...] = ("alice", "bob")
    developers: tuple[str, ...] = ("carol", "dave", "frank")
    sres: tuple[str, ...] = ("erin",)
    email_domain: str = "example.com"
    kubernetes_version: str = "v1.31.4"
    #: Requests between two incidents (0: no incidents).
    incident_every_requests: int = 1000
    #: Multiplier on the share of human (kubectl) and CI traffic.
    human_share: float = 1.0

    @classmethod
    def small(cls) -> ClusterProfile:
        return cls(name="dev-1", nodes=3, control_plane_nodes=1, app_namespaces=("web", "data"))

    @classmethod
    def large(cls) -> ClusterProfile:
        return cls(
            name="prod-us-1",
            nodes=150,
            app_namespaces=tuple(f"team-{i:02d}" for i in range(30)),
            deployments_per_namespace=5,
            human_share=0.5,
        )


@dataclass(slots=True)
class Node:
    name: str
    ip: str
    uid: str
    lease_uid: str
    user: UserInfo
    ips: list[str]


@dataclass(slots=True)
class Pod:
    namespace: str
    name: str
    uid: str
    node: Node
    ip: str
    deployment: Deployment


@dataclass(slots=True)
class Deployment:
    namespace: str
    name: str
    uid: str
    rs_hash: str
    image: str
    slice_name: str
    slice_uid: str
    configmap: str
    secret: str
    pods: list[Pod] = field(default_factory=list)
    # What changes over a day: new releases, restarts, scaling (see bodies.deployment_apply).
    generation: int = 7
    revision: int = 7
    replicas: int = 0  # 0: as many as its pods
    restarted_at: str = ""

    def release(self) -> None:
        """A new version of the application: the image's patch number goes up."""
        repo, _, tag = self.image.rpartition(":")
        major, minor, patch = (tag.split(".") + ["0", "0", "0"])[:3]
        self.image = f"{repo}:{major}.{minor}.{int(patch) + 1 if patch.isdigit() else 1}"
        self.changed()

    def changed(self) -> None:
        """The pod template changed: a new generation and a new ReplicaSet revision."""
        self.generation += 1
        self.revision += 1


@dataclass(slots=True)
class Identity:
    """An authenticated caller: user, where it connects from, its agent, its usual RBAC reason."""

    user: UserInfo
    ips: list[str]
    user_agent: str
    reason: str

    @property
    def username(self) -> str:
        u = self.user.username
        return u if isinstance(u, str) else ""


@dataclass(slots=True)
class Human:
    ident: Identity
    short: str
    role: str  # "admin" | "developer" | "sre"
    namespaces: list[str]


@dataclass(slots=True)
class Cluster:
    profile: ProfileT
    version: str
    ua_suffix: str
    nodes: list[Node]
    control_plane_ips: list[str]
    namespaces: list[str]
    deployments: list[Deployment]
    pods: list[Pod]
    humans: list[Human]
    system: dict[str, Identity]
    controllers: list[Identity]
    operators: list[Identity]
    ns_uids: dict[str, str]


ProfileT = ClusterProfile

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default")
OPERATOR_NAMESPACES = ("monitoring", "cert-manager", "ingress-nginx", "argocd")
_CONTROLLERS = (
    "replicaset-controller",
    "deployment-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "generic-garbage-collector",
    "resourcequota-controller",
    "namespace-controller",
    "node-controller",
    "daemon-set-controller",
    "job-controller",
    "cronjob-controller",
    "horizontal-pod-autoscaler",
    "statefulset-controller",
    "pvc-protection-controller",
)
_APP_NAMES = (
    "api",
    "worker",
    "frontend",
    "gateway",
    "scheduler",
    "cache",
    "indexer",
    "exporter",
    "notifier",
    "ledger",
)
_ALNUM = "bcdfghjklmnpqrstvwxz2456789"


def _suffix(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALNUM) for _ in range(n))


def _sa(ns: str, name: str) -> UserInfo:
    return UserInfo(
        username=f"system:serviceaccount:{ns}:{name}",
        groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED],
    )


def build_cluster(profile: ClusterProfile, rng: random.Random) -> Cluster:
    """Concrete names, addresses and identities for ``profile``, drawn from ``rng``."""
    ver = profile.kubernetes_version
    commit = f"{rng.getrandbits(28):07x}"
    ua_suffix = f"/{ver} (linux/amd64) kubernetes/{commit}"

    cp_ips = [f"10.0.0.{2 + i}" for i in range(max(1, profile.control_plane_nodes))]
    nodes: list[Node] = []
    for i in range(max(1, profile.nodes)):
        pool = "pool-a" if i % 3 else "pool-b"
        name = f"{profile.name}-{pool}-{rng.getrandbits(32):08x}-{_suffix(rng, 4)}"
        ip = f"10.0.{1 + i // 250}.{10 + i % 250}"
        user = UserInfo(username=f"system:node:{name}", groups=["system:nodes", AUTHENTICATED])
        nodes.append(Node(name, ip, uuid4(rng), uuid4(rng), user, [ip]))

    namespaces = [*SYSTEM_NAMESPACES, *OPERATOR_NAMESPACES, *profile.app_namespaces]
    ns_uids = {ns: uuid4(rng) for ns in namespaces}
    deployments: list[Deployment] = []
    pods: list[Pod] = []
    pod_ip = 0
    for ns in profile.app_namespaces:
        names = rng.sample(_APP_NAMES, min(len(_APP_NAMES), profile.deployments_per_namespace))
        for app in names:
            dname = f"{ns}-{app}"
            tag = f"1.{rng.randrange(3, 40)}.{rng.randrange(0, 9)}"
            image = f"registry.{profile.email_domain}/{ns}/{app}:{tag}"
            d = Deployment(
                namespace=ns,
                name=dname,
                uid=uuid4(rng),
                rs_hash=_suffix(rng, 10),
                image=image,
                slice_name=f"{dname}-{_suffix(rng, 5)}",
                slice_uid=uuid4(rng),
                configmap=f"{dname}-config",
                secret=f"{dname}-credentials",
            )
            for _ in range(max(1, profile.pods_per_deployment)):
                pod_ip += 1
                p = Pod(
                    namespace=ns,
                    name=f"{dname}-{d.rs_hash}-{_suffix(rng, 5)}",
                    uid=uuid4(rng),
                    node=rng.choice(nodes),
                    ip=f"10.244.{pod_ip // 200}.{2 + pod_ip % 200}",
                    deployment=d,
                )
                d.pods.append(p)
                pods.append(p)
            deployments.append(d)

    def pod_ip_of() -> list[str]:
        return [f"10.244.{rng.randrange(40, 60)}.{rng.randrange(2, 250)}"]

    kcm_ua = f"kube-controller-manager{ua_suffix}"
    sched_ua = f"kube-scheduler{ua_suffix}"

    def crb(name: str, subject: str) -> str:
        return rbac_reason("ClusterRoleBinding", name, "ClusterRole", name, subject)

    system = {
        "kcm": Identity(
            UserInfo(username="system:kube-controller-manager", groups=[AUTHENTICATED]),
            [cp_ips[0]],
            kcm_ua,
            crb("system:kube-controller-manager", 'User "system:kube-controller-manager"'),
        ),
        "kcm-le": Identity(
            UserInfo(username="system:kube-controller-manager", groups=[AUTHENTICATED]),
            [cp_ips[0]],
            kcm_ua + "/leader-election",
            crb("system:kube-controller-manager", 'User "system:kube-controller-manager"'),
        ),
        "scheduler": Identity(
            UserInfo(username="system:kube-scheduler", groups=[AUTHENTICATED]),
            [cp_ips[-1]],
            sched_ua + "/scheduler",
            crb("system:kube-scheduler", 'User "system:kube-scheduler"'),
        ),
        "scheduler-le": Identity(
            UserInfo(username="system:kube-scheduler", groups=[AUTHENTICATED]),
            [cp_ips[-1]],
            sched_ua + "/leader-election",
            crb("system:kube-scheduler", 'User "system:kube-scheduler"'),
        ),
        "apiserver": Identity(
            UserInfo(
                username="system:apiserver",
                uid=uuid4(rng),
                groups=["system:authenticated", "system:masters"],
            ),
            ["::1"],
            f"kube-apiserver{ua_suffix}",
            "",
        ),
        "kube-proxy": Identity(
            UserInfo(username="system:kube-proxy", groups=[AUTHENTICATED]),
            [nodes[0].ip],
            f"kube-proxy{ua_suffix}",
            crb("system:node-proxier", 'User "system:kube-proxy"'),
        ),
        "coredns": Identity(
            _sa("kube-system", "coredns"),
            pod_ip_of(),
            "coredns/v0.0.0 (linux/amd64) kubernetes/$Format",
            rbac_reason(
                "ClusterRoleBinding",
                "system:coredns",
                "ClusterRole",
                "system:coredns",
                'ServiceAccount "coredns/kube-system"',
            ),
        ),
        "prometheus": Identity(
            _sa("monitoring", "prometheus-k8s"),
            pod_ip_of(),
            "Prometheus/2.54.1",
            rbac_reason(
                "ClusterRoleBinding",
                "prometheus-k8s",
                "ClusterRole",
                "prometheus-k8s",
                'ServiceAccount "prometheus-k8s/monitoring"',
            ),
        ),
        "metrics-server": Identity(
            _sa("kube-system", "metrics-server"),
            pod_ip_of(),
            "metrics-server/v0.7.2 (linux/amd64) kubernetes/$Format",
            rbac_reason(
                "ClusterRoleBinding",
                "system:metrics-server",
                "ClusterRole",
                "system:metrics-server",
                'ServiceAccount "metrics-server/kube-system"',
            ),
        ),
        "helm": Identity(
            _sa("ci", "gitlab-deployer"),
            [f"192.0.2.{rng.randrange(10, 60)}"],
            "Helm/3.15.4",
            rbac_reason(
                "ClusterRoleBinding",
                "gitlab-deployer",
                "ClusterRole",
                "cluster-admin",
                'ServiceAccount "gitlab-deployer/ci"',
            ),
        ),
        "argocd": Identity(
            _sa("argocd", "argocd-application-controller"),
            pod_ip_of(),
            "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format",
            crb(
                "argocd-application-controller",
                'ServiceAccount "argocd-application-controller/argocd"',
            ),
        ),
    }

    controllers = [
        Identity(
            _sa("kube-system", c),
            [cp_ips[0]],
            f"{kcm_ua}/system:serviceaccount:kube-system:{c}",
            crb(f"system:controller:{c}", f'ServiceAccount "{c}/kube-system"'),
        )
        for c in _CONTROLLERS
    ]

    def op(ns: str, sa: str, ua: str) -> Identity:
        return Identity(_sa(ns, sa), pod_ip_of(), ua, crb(sa, f'ServiceAccount "{sa}/{ns}"'))

    operators = [
        op(
            "cert-manager",
            "cert-manager",
            "cert-manager-controller/v1.15.3 (linux/amd64) cert-manager/c5a9a2b",
        ),
        op(
            "ingress-nginx",
            "ingress-nginx",
            "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/"
            "46e76e5916813cfca2a9b0bfdc34b69a0000f6b9",
        ),
        op(
            "monitoring",
            "kube-state-metrics",
            "kube-state-metrics/v2.13.0 (linux/amd64) kubernetes/$Format",
        ),
        op(
            "monitoring",
            "prometheus-operator",
            "prometheus-operator/v0.76.0 (linux/amd64) kubernetes/$Format",
        ),
        system["argocd"],
    ]

    clients = (
        "kubectl/v1.31.0 (linux/amd64) kubernetes/9b4fce2",
        "kubectl/v1.30.2 (darwin/arm64) kubernetes/3968350",
        "kubectl/v1.31.1 (darwin/arm64) kubernetes/948afe5",
        "kubectl/v1.29.3 (windows/amd64) kubernetes/6813625",
    )
    humans: list[Human] = []
    roles = (
        [(h, "admin") for h in profile.admins]
        + [(h, "developer") for h in profile.developers]
        + [(h, "sre") for h in profile.sres]
    )
    for short, role in roles:
        group = {"admin": "platform-admins", "developer": "developers", "sre": "sre"}[role]
        user = UserInfo(
            username=f"oidc:{short}@{profile.email_domain}",
            groups=[f"oidc:{group}", AUTHENTICATED],
        )
        own = rng.sample(list(profile.app_namespaces), min(2, len(profile.app_namespaces)))
        if role == "admin":
            reason = rbac_reason(
                "ClusterRoleBinding",
                "platform-admins",
                "ClusterRole",
                "cluster-admin",
                'Group "oidc:platform-admins"',
            )
        elif role == "sre":
            reason = rbac_reason(
                "ClusterRoleBinding", "sre-edit", "ClusterRole", "edit", 'Group "oidc:sre"'
            )
        else:
            reason = rbac_reason(
                "RoleBinding",
                f"developers/{own[0]}",
                "ClusterRole",
                "edit",
                'Group "oidc:developers"',
            )
        ident = Identity(user, [f"203.0.113.{rng.randrange(2, 250)}"], rng.choice(clients), reason)
        humans.append(Human(ident, short, role, own))

    return Cluster(
        profile=profile,
        version=ver,
        ua_suffix=ua_suffix,
        nodes=nodes,
        control_plane_ips=cp_ips,
        namespaces=namespaces,
        deployments=deployments,
        pods=pods,
        humans=humans,
        system=system,
        controllers=controllers,
        operators=operators,
        ns_uids=ns_uids,
    )
