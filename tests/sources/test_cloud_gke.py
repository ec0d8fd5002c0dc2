"""GKE audit entries from Cloud Logging, mapped back to audit events."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ingest_samples import write

from kaudit.cli import main
from kaudit.errors import DecodeError, Location
from kaudit.model.codec import decode_event
from kaudit.model.documents import iter_records
from kaudit.model.types import Event
from kaudit.sources.cloud import adapter
from kaudit.sources.cloud.gke import entry_to_event
from kaudit.store import open_store

# Shaped after real entries: create a privileged pod, denied by admission.
POD_CREATE: dict[str, Any] = {
    "protoPayload": {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "dev@example.com"},
        "authorizationInfo": [
            {
                "granted": True,
                "permission": "io.k8s.core.v1.pods.create",
                "resource": "core/v1/namespaces/team-a/pods/web",
            }
        ],
        "methodName": "io.k8s.core.v1.pods.create",
        "request": {
            "@type": "core.k8s.io/v1.Pod",
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"containers": [{"image": "nginx", "name": "web"}]},
        },
        "requestMetadata": {
            "callerIp": "203.0.113.7",
            "callerSuppliedUserAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/abc",
        },
        "resourceName": "core/v1/namespaces/team-a/pods/web",
        "response": {
            "@type": "core.k8s.io/v1.Status",
            "apiVersion": "v1",
            "kind": "Status",
            "code": 403,
            "message": 'pods "web" is forbidden: violates PodSecurity "restricted:latest"',
            "reason": "Forbidden",
            "status": "Failure",
            "metadata": {},
        },
        "serviceName": "k8s.io",
        "status": {"code": 7, "message": "Forbidden"},
    },
    "insertId": "5b0ad2c8-e2f2-4c43-a6c5-6d2b0bd0a1f3",
    "resource": {
        "type": "k8s_cluster",
        "labels": {"project_id": "p", "cluster_name": "prod", "location": "europe-west1"},
    },
    "timestamp": "2024-06-26T04:10:49.129747123Z",
    "labels": {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": "access granted by IAM permissions.",
        "pod-security.kubernetes.io/enforce-policy": "restricted:latest",
    },
    "logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity",
    "operation": {
        "id": "5b0ad2c8-e2f2-4c43-a6c5-6d2b0bd0a1f3",
        "producer": "k8s.io",
        "first": True,
        "last": True,
    },
    "receiveTimestamp": "2024-06-26T04:11:07.021037923Z",
}

EXEC: dict[str, Any] = {
    "protoPayload": {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "system:serviceaccount:ci:deployer"},
        "authorizationInfo": [
            {"permission": "io.k8s.core.v1.pods.exec.create", "resource": "core/v1/x"}
        ],
        "methodName": "io.k8s.core.v1.pods.exec.create",
        "requestMetadata": {"callerIP": "10.1.2.3"},
        "resourceName": "core/v1/namespaces/prod/pods/api-0/exec",
        "serviceName": "k8s.io",
        "status": {},
    },
    "resource": {"type": "k8s_cluster", "labels": {"project_id": "p"}},
    "timestamp": "2024-02-16 11:48:22.742154000",
}

PATCH_DEPLOYMENT: dict[str, Any] = {
    "protoPayload": {
        "at_sign_type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "ops@example.com"},
        "methodName": "io.k8s.apps.v1.deployments.patch",
        "resourceName": "apps/v1/namespaces/prod/deployments/api",
        "serviceName": "k8s.io",
        "request": {"spec": {"replicas": 3}},
        "requestMetadata": {"requestAttributes": {"time": "2024-02-16T11:48:22.700001Z"}},
    },
    "insertId": "11111111-2222-4333-8444-555555555555",
    "timestamp": "2024-02-16T11:48:22.742154Z",
}

CLUSTER_ROLE_BINDING: dict[str, Any] = {
    "protoPayload": {
        "methodName": "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
        "serviceName": "k8s.io",
        "authorizationInfo": [{"granted": False}],
        "status": {"code": 7},
    },
    "insertId": "crb-1",
    "timestamp": "2024-02-16T11:48:22Z",
}

NOT_K8S: dict[str, Any] = {
    "protoPayload": {
        "authorizationInfo": [{"granted": True, "permission": "io.k8s.batch.v1.cronjobs.create"}],
        "methodName": "v2.deploymentmanager.deployments.insert",
        "serviceName": "deploymentmanager.googleapis.com",
    },
    "resource": {"type": "deployment"},
    "timestamp": "2024-01-19 13:47:18.279921000",
}


def roundtrip(entry: dict[str, Any]) -> Event:
    """The event, and proof it is a valid audit event that survives our own codec."""
    from kaudit.model.codec import encode_event

    ev = entry_to_event(copy.deepcopy(entry), Location("e"))
    again = decode_event(encode_event(ev))
    assert encode_event(again) == encode_event(ev)
    return ev


def test_pod_create_denied_by_admission() -> None:
    ev = roundtrip(POD_CREATE)
    assert ev.audit_id == "5b0ad2c8-e2f2-4c43-a6c5-6d2b0bd0a1f3"
    assert (ev.stage, ev.level, ev.verb) == ("ResponseComplete", "RequestResponse", "create")
    assert ev.request_uri == "/api/v1/namespaces/team-a/pods/web"
    assert ev.username == "dev@example.com"
    assert ev.source_ips == ["203.0.113.7"]
    assert ev.user_agent == "kubectl/v1.30.1 (linux/amd64) kubernetes/abc"
    from msgspec import UNSET, structs

    assert structs.asdict(ev.object_ref) == {  # type: ignore[arg-type]
        "resource": "pods",
        "namespace": "team-a",
        "name": "web",
        "uid": UNSET,
        "api_group": UNSET,
        "api_version": "v1",
        "resource_version": UNSET,
        "subresource": UNSET,
    }
    assert ev.code == 403
    st = ev.response_status
    assert st is not UNSET
    assert (st.reason, st.status) == ("Forbidden", "Failure")  # type: ignore[union-attr]
    assert "@type" not in json.loads(bytes(ev.request_object))  # type: ignore[arg-type]
    assert json.loads(bytes(ev.request_object))["metadata"]["name"] == "web"  # type: ignore[arg-type]
    assert ev.annotations == POD_CREATE["labels"]
    assert ev.request_received_timestamp == "2024-06-26T04:10:49.129747Z"
    assert ev.stage_timestamp == "2024-06-26T04:10:49.129747Z"


def test_exec_subresource_and_space_separated_time() -> None:
    ev = roundtrip(EXEC)
    assert (ev.verb, ev.level, ev.code) == ("create", "Metadata", 200)
    assert ev.request_uri == "/api/v1/namespaces/prod/pods/api-0/exec"
    assert ev.object_ref.subresource == "exec"  # type: ignore[union-attr]
    assert ev.source_ips == ["10.1.2.3"]
    # authorizationInfo without "granted" is a denial (proto3 default false).
    assert ev.annotations == {"authorization.k8s.io/decision": "forbid"}
    assert ev.stage_timestamp == "2024-02-16T11:48:22.742154Z"
    # No id at all: a stable name-based one, so re-ingesting still deduplicates.
    assert ev.audit_id and ev.audit_id == roundtrip(EXEC).audit_id


def test_patch_deployment_request_time_and_group() -> None:
    ev = roundtrip(PATCH_DEPLOYMENT)
    assert (ev.verb, ev.level) == ("patch", "Request")
    assert ev.request_uri == "/apis/apps/v1/namespaces/prod/deployments/api"
    assert ev.object_ref.api_group == "apps"  # type: ignore[union-attr]
    assert ev.request_received_timestamp == "2024-02-16T11:48:22.700001Z"
    assert ev.stage_timestamp == "2024-02-16T11:48:22.742154Z"


def test_group_from_method_when_there_is_no_resource_name() -> None:
    ev = roundtrip(CLUSTER_ROLE_BINDING)
    ref = ev.object_ref
    assert ref.api_group == "rbac.authorization.k8s.io"  # type: ignore[union-attr]
    assert ref.resource == "clusterrolebindings"  # type: ignore[union-attr]
    assert ev.request_uri == "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
    assert (ev.code, ev.annotations) == (403, {"authorization.k8s.io/decision": "forbid"})


@pytest.mark.parametrize(
    ("rpc", "http"), [(0, 200), (3, 400), (5, 404), (6, 409), (7, 403), (16, 401), (99, 500)]
)
def test_rpc_codes_become_http(rpc: int, http: int) -> None:
    entry = copy.deepcopy(CLUSTER_ROLE_BINDING)
    entry["protoPayload"]["status"] = {"code": rpc}
    assert entry_to_event(entry).code == http


def test_non_kubernetes_entries_are_quarantined_with_a_reason() -> None:
    bad: list[str] = []
    ad = adapter(["gke"], lambda err, raw: bad.append(str(err)))
    data = b"\n".join(
        json.dumps(e).encode()
        for e in (NOT_K8S, POD_CREATE, {"operation": {"producer": "k8s.io"}, "insertId": "x"})
    )
    recs = list(iter_records(io.BytesIO(data), "gke.json", lambda e, r: bad.append(str(e)), [ad]))
    assert [r.event.audit_id for r in recs] == [POD_CREATE["insertId"]]
    assert bad == [
        'gke.json:1: protoPayload: not a Kubernetes audit entry (expected serviceName "k8s.io" '
        'and a methodName "io.k8s...."; got serviceName "deploymentmanager.googleapis.com", '
        'methodName "v2.deploymentmanager.deployments.insert", @type none)',
        "gke.json:3: protoPayload: expected a google.cloud.audit.AuditLog object; this Cloud "
        "Logging entry has none, so it is not a Kubernetes audit entry",
    ]


def test_ingest_gcloud_array_and_reingest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    # `gcloud logging read --format=json` prints a pretty JSON array of entries.
    export = write(
        tmp_path / "gke.json",
        json.dumps([POD_CREATE, EXEC, NOT_K8S, PATCH_DEPLOYMENT], indent=2).encode(),
    )
    args = ["ingest", "--store", str(store), "--output", "json", str(export)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["stored"], s["quarantined"]) == (3, 1)
    rows = (
        open_store(store)
        .query(
            "select verb, resource, subresource, namespace, name, username, source_ip, code, "
            "decision from events order by verb, code desc"
        )
        .to_pylist()
    )
    assert rows == [
        {
            "verb": "create",
            "resource": "pods",
            "subresource": None,
            "namespace": "team-a",
            "name": "web",
            "username": "dev@example.com",
            "source_ip": "203.0.113.7",
            "code": 403,
            "decision": "allow",
        },
        {
            "verb": "create",
            "resource": "pods",
            "subresource": "exec",
            "namespace": "prod",
            "name": "api-0",
            "username": "system:serviceaccount:ci:deployer",
            "source_ip": "10.1.2.3",
            "code": 200,
            "decision": "forbid",
        },
        {
            "verb": "patch",
            "resource": "deployments",
            "subresource": None,
            "namespace": "prod",
            "name": "api",
            "username": "ops@example.com",
            "source_ip": None,
            "code": 200,
            "decision": None,
        },
    ]
    r = CliRunner().invoke(main, args)
    assert json.loads(r.stdout)["duplicates"] == 3


def test_errors_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        entry_to_event({"protoPayload": {"serviceName": "k8s.io"}})
