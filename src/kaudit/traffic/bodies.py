"""Request and response bodies, shaped like the objects a real apiserver logs.

Each function returns compact JSON bytes (what :class:`msgspec.Raw` holds in an event).
Creates and updates carry the object as the client sent it; responses carry the stored
object with server-set fields (``uid``, ``resourceVersion``, ``creationTimestamp``) and
``metadata.managedFields``, as the apiserver returns them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from kaudit.traffic.cluster import Deployment, Pod

_enc = msgspec.json.encode
JSON = dict[str, Any]


def status(code: int, reason: str, message: str, details: JSON | None = None) -> bytes:
    """A ``meta/v1`` Status (what error responses, and some deletes, carry)."""
    body: JSON = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    if code < 300:
        body["status"] = "Success"
    else:
        body["status"] = "Failure"
        body["message"] = message
        body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return _enc(body)


def details(name: str | None, group: str, kind: str, **extra: Any) -> JSON:
    """``StatusDetails`` in Go field order: name, group, kind, uid, causes, retryAfterSeconds."""
    d: JSON = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    d.update(extra)
    return d


def _managed(manager: str, operation: str, api_version: str, ts: str, fields: JSON) -> JSON:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": ts,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }


_POD_SPEC_FIELDS: JSON = {
    "f:metadata": {
        "f:generateName": {},
        "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
        "f:ownerReferences": {".": {}, 'k:{"uid":"@OWNER@"}': {}},
    },
    "f:spec": {
        "f:containers": {
            'k:{"name":"app"}': {
                ".": {},
                "f:image": {},
                "f:imagePullPolicy": {},
                "f:name": {},
                "f:ports": {".": {}, 'k:{"containerPort":8080,"protocol":"TCP"}': {}},
                "f:resources": {".": {}, "f:requests": {}},
            }
        },
        "f:dnsPolicy": {},
        "f:restartPolicy": {},
        "f:schedulerName": {},
        "f:terminationGracePeriodSeconds": {},
    },
}


def _container(d: Deployment) -> JSON:
    return {
        "name": "app",
        "image": d.image,
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod_create(pod: Pod, rs_uid: str, rv: str, ts: str) -> tuple[bytes, bytes]:
    """A replicaset-controller pod create: (requestObject, responseObject)."""
    d = pod.deployment
    app = d.name
    labels = {"app": app, "pod-template-hash": d.rs_hash}
    owner = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": f"{d.name}-{d.rs_hash}",
            "uid": rs_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec: JSON = {
        "containers": [_container(d)],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    req = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": f"{d.name}-{d.rs_hash}-",
            "creationTimestamp": None,
            "labels": labels,
            "ownerReferences": owner,
        },
        "spec": spec,
        "status": {},
    }
    fields = msgspec.json.decode(_enc(_POD_SPEC_FIELDS).replace(b"@OWNER@", rs_uid.encode()))
    resp_spec = dict(spec)
    resp_spec["volumes"] = [
        {"name": f"kube-api-access-{pod.name[-5:]}", "projected": {"defaultMode": 420}}
    ]
    resp_spec["serviceAccountName"] = "default"
    resp_spec["serviceAccount"] = "default"
    resp_spec["enableServiceLinks"] = True
    resp_spec["preemptionPolicy"] = "PreemptLowerPriority"
    resp = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": pod.name,
            "generateName": f"{d.name}-{d.rs_hash}-",
            "namespace": pod.namespace,
            "uid": pod.uid,
            "resourceVersion": rv,
            "creationTimestamp": ts,
            "labels": labels,
            "ownerReferences": owner,
            "managedFields": [_managed("kube-controller-manager", "Update", "v1", ts, fields)],
        },
        "spec": resp_spec,
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }
    return _enc(req), _enc(resp)


def privileged_pod(
    ns: str, name: str, uid: str, rv: str, ts: str, manager: str
) -> tuple[bytes, bytes]:
    """A hand-made pod with ``privileged: true``, host namespaces and ``hostPath: /``."""
    container: JSON = {
        "name": "shell",
        "image": "alpine:3.20",
        "command": [
            "nsenter",
            "--target",
            "1",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--",
            "sh",
        ],
        "resources": {},
        "volumeMounts": [{"name": "host", "mountPath": "/host"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": True},
        "stdin": True,
        "tty": True,
    }
    spec: JSON = {
        "volumes": [{"name": "host", "hostPath": {"path": "/", "type": ""}}],
        "containers": [container],
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "hostNetwork": True,
        "hostPID": True,
        "hostIPC": True,
        "securityContext": {},
        "schedulerName": "default-scheduler",
    }
    req = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
        "spec": spec,
        "status": {},
    }
    fields: JSON = {
        "f:spec": {
            "f:containers": {
                'k:{"name":"shell"}': {".": {}, "f:securityContext": {".": {}, "f:privileged": {}}}
            },
            "f:hostIPC": {},
            "f:hostNetwork": {},
            "f:hostPID": {},
            "f:volumes": {
                ".": {},
                'k:{"name":"host"}': {".": {}, "f:hostPath": {".": {}, "f:path": {}}},
            },
        }
    }
    resp = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": ts,
            "managedFields": [_managed(manager, "Update", "v1", ts, fields)],
        },
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    return _enc(req), _enc(resp)


def deployment_apply(
    d: Deployment, replicas: int, manager: str, rv: str, ts: str, created: str
) -> tuple[bytes, bytes]:
    """A server-side apply of a Deployment: (the applied configuration, the stored object)."""
    labels = {"app": d.name}
    template = {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [{"name": "app", "image": d.image, "ports": [{"containerPort": 8080}]}]
        },
    }
    applied = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": d.name, "namespace": d.namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template},
    }
    apply_fields: JSON = {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}
                    }
                },
            },
        },
    }
    status_fields: JSON = {
        "f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
        "f:status": {
            "f:availableReplicas": {},
            "f:conditions": {},
            "f:observedGeneration": {},
            "f:readyReplicas": {},
            "f:replicas": {},
            "f:updatedReplicas": {},
        },
    }
    stored = {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {
            "name": d.name,
            "namespace": d.namespace,
            "uid": d.uid,
            "resourceVersion": rv,
            "generation": d.generation,
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": str(d.revision)},
            "managedFields": [
                _managed(manager, "Apply", "apps/v1", ts, apply_fields),
                _managed("kube-controller-manager", "Update", "apps/v1", ts, status_fields),
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": labels}
                | (
                    {"annotations": {"kubectl.kubernetes.io/restartedAt": d.restarted_at}}
                    if d.restarted_at
                    else {}
                ),
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": d.image,
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File",
                            "imagePullPolicy": "IfNotPresent",
                        }
                    ],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler",
                },
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": d.generation - 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }
    return _enc(applied), _enc(stored)


def replicas_of(d: Deployment) -> int:
    return d.replicas or len(d.pods)


def restart_patch(ts: str) -> bytes:
    """``kubectl rollout restart``: a strategic-merge patch of the pod template."""
    return _enc(
        {
            "spec": {
                "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": ts}}}
            }
        }
    )


def scale_patch(replicas: int) -> bytes:
    return _enc({"spec": {"replicas": replicas}})


DELETE_OPTIONS = _enc(
    {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
)


def cluster_role_binding(
    name: str, subject_kind: str, subject: str, role: str, uid: str, rv: str, ts: str, manager: str
) -> tuple[bytes, bytes]:
    subj: JSON = {"kind": subject_kind, "name": subject}
    if subject_kind in ("User", "Group"):
        subj = {"kind": subject_kind, "apiGroup": "rbac.authorization.k8s.io", "name": subject}
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
    req = {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name, "creationTimestamp": None},
        "subjects": [subj],
        "roleRef": ref,
    }
    fields: JSON = {"f:roleRef": {}, "f:subjects": {}}
    resp = {
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {
            "name": name,
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": ts,
            "managedFields": [
                _managed(manager, "Update", "rbac.authorization.k8s.io/v1", ts, fields)
            ],
        },
        "subjects": [subj],
        "roleRef": ref,
    }
    return _enc(req), _enc(resp)


def endpoint_slice(d: Deployment, rv: str, ts: str) -> bytes:
    """An EndpointSlice as the endpointslice-controller PUTs it (managedFields included)."""
    eps = [
        {
            "addresses": [p.ip],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
            "nodeName": p.node.name,
        }
        for p in d.pods
    ]
    fields: JSON = {
        "f:addressType": {},
        "f:endpoints": {},
        "f:metadata": {
            "f:labels": {
                ".": {},
                "f:endpointslice.kubernetes.io/managed-by": {},
                "f:kubernetes.io/service-name": {},
            }
        },
        "f:ports": {},
    }
    return _enc(
        {
            "kind": "EndpointSlice",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {
                "name": d.slice_name,
                "generateName": f"{d.name}-",
                "namespace": d.namespace,
                "uid": d.slice_uid,
                "resourceVersion": rv,
                "generation": 3,
                "creationTimestamp": ts,
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "kubernetes.io/service-name": d.name,
                },
                "managedFields": [
                    _managed("kube-controller-manager", "Update", "discovery.k8s.io/v1", ts, fields)
                ],
            },
            "addressType": "IPv4",
            "endpoints": eps,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        }
    )


_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
_ORDER = [{"type": c} for c in _CONDITIONS]


def node_status_patch(ts: str) -> bytes:
    """The kubelet's periodic strategic-merge patch of ``nodes/status``."""
    return _enc(
        {
            "status": {
                "$setElementOrder/conditions": _ORDER,
                "conditions": [{"lastHeartbeatTime": ts, "type": c} for c in _CONDITIONS],
            }
        }
    )


def pod_status_patch(pod: Pod, ts: str) -> bytes:
    return _enc(
        {
            "metadata": {"uid": pod.uid},
            "status": {
                "$setElementOrder/conditions": [
                    {"type": "PodReadyToStartContainers"},
                    {"type": "Initialized"},
                    {"type": "Ready"},
                    {"type": "ContainersReady"},
                    {"type": "PodScheduled"},
                ],
                "conditions": [
                    {"lastTransitionTime": ts, "status": "True", "type": "Ready"},
                    {"lastTransitionTime": ts, "status": "True", "type": "ContainersReady"},
                ],
                "containerStatuses": [
                    {
                        "containerID": "containerd://" + (pod.uid + pod.uid[:24]).replace("-", ""),
                        "image": pod.deployment.image,
                        "lastState": {},
                        "name": "app",
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": ts}},
                    }
                ],
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
            },
        }
    )


def binding(pod: Pod) -> tuple[bytes, bytes]:
    req = {
        "kind": "Binding",
        "apiVersion": "v1",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
            "creationTimestamp": None,
        },
        "target": {"kind": "Node", "name": pod.node.name},
    }
    return _enc(req), status(201, "", "")


def subject_access_review(
    user: str, groups: list[str], verb: str, resource: str, ns: str, allowed: bool, reason: str
) -> tuple[bytes, bytes]:
    attrs = {"namespace": ns, "verb": verb, "version": "v1", "resource": resource}
    spec = {"resourceAttributes": attrs, "user": user, "groups": groups}
    req = {
        "kind": "SubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": {"allowed": False},
    }
    st: JSON = {"allowed": allowed}
    if reason:
        st["reason"] = reason
    resp = dict(req)
    resp["status"] = st
    return _enc(req), _enc(resp)
