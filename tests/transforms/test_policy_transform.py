"""The policy transform: store what a stricter policy would have recorded."""

from __future__ import annotations

import json

from kaudit.model import decode_event, encode_event
from kaudit.model.documents import Record
from kaudit.policy import load_policy_bytes
from kaudit.transforms.policy import PolicyFilter

POLICY = b"""
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    resources: [{group: "coordination.k8s.io", resources: [leases]}]
  - level: Metadata
    resources: [{group: "", resources: [configmaps]}]
  - level: RequestResponse
"""


def rec(resource: str, stage: str, group: str = "", audit_id: str = "a") -> Record:
    ev = {
        "level": "RequestResponse",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": f"/apis/x/v1/namespaces/default/{resource}/n",
        "verb": "update",
        "user": {"username": "u"},
        "objectRef": {"resource": resource, "namespace": "default", "name": "n", "apiGroup": group},
        "requestObject": {"metadata": {"name": "n"}, "data": {"a": "b"}},
        "responseObject": {"metadata": {"name": "n"}},
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.123456Z",
    }
    e = decode_event(json.dumps(ev))
    return Record(e, encode_event(e)[:-1], "in", 1)


def test_drops_none_and_omitted_stages_and_shapes_levels() -> None:
    f = PolicyFilter.from_policy(load_policy_bytes(POLICY, "p.yaml"))
    batch = [
        rec("leases", "ResponseComplete", "coordination.k8s.io", "lease"),
        rec("configmaps", "RequestReceived", audit_id="early"),
        rec("configmaps", "ResponseComplete", audit_id="cm"),
        rec("deployments", "ResponseComplete", "apps", "dep"),
    ]
    out = f(batch)
    assert [r.event.audit_id for r in out] == ["cm", "dep"]
    cm = json.loads(out[0].raw)
    assert cm["level"] == "Metadata"
    assert "requestObject" not in cm and "responseObject" not in cm
    assert out[0].raw == encode_event(out[0].event)[:-1]
    assert out[1] is batch[3]  # already what the policy asks: kept as received
    assert (f.dropped, f.reshaped, f.above_capture) == (2, 1, 0)
