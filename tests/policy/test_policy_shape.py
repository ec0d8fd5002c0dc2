"""Shaping events to a level, omitManagedFields, and re-applying a policy (spec 2.1, 2.4)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from msgspec import UNSET

from kaudit.model import Event, decode_event, encode_event
from kaudit.policy import Evaluator, apply, load_policy_bytes, shape, strip_managed_fields

MF = [{"manager": "kubectl", "operation": "Update"}]


def _event(**over: Any) -> Event:
    base: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/configmaps",
        "verb": "create",
        "user": {"username": "alice", "groups": ["dev"]},
        "objectRef": {"resource": "configmaps", "namespace": "default", "apiVersion": "v1"},
        "requestObject": {
            "kind": "ConfigMap",
            "metadata": {"name": "c", "managedFields": MF, "labels": {"a": "<b>"}},
            "data": {"k": "v"},
        },
        "responseObject": {
            "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u", "managedFields": MF},
            "data": {"k": "v"},
        },
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.223456Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "patch.webhook.admission.k8s.io/round_0_index_0": "{}",
        },
    }
    base.update(over)
    base = {k: v for k, v in base.items() if v is not None}
    return decode_event(json.dumps(base).encode())


def _json(raw: object) -> Any:
    assert isinstance(raw, msgspec.Raw)
    return msgspec.json.decode(raw)


def test_none_drops() -> None:
    assert shape(_event(), "None", False) is None


def test_metadata_has_no_bodies_and_no_request_level_annotations() -> None:
    out = shape(_event(), "Metadata", False)
    assert out is not None
    assert out.level == "Metadata"
    assert out.request_object is UNSET and out.response_object is UNSET
    assert out.annotations == {"authorization.k8s.io/decision": "allow"}


def test_request_keeps_request_object_only() -> None:
    out = shape(_event(), "Request", False)
    assert out is not None and out.level == "Request"
    assert out.request_object is not UNSET and out.response_object is UNSET
    assert "patch.webhook.admission.k8s.io/round_0_index_0" in (out.annotations or {})


def test_request_response_unchanged_returns_same_object() -> None:
    ev = _event()
    assert shape(ev, "RequestResponse", False) is ev


def test_non_resource_never_has_bodies() -> None:
    ev = _event(objectRef=None, requestURI="/metrics", verb="get")
    out = shape(ev, "RequestResponse", False)
    assert out is not None
    assert out.request_object is UNSET and out.response_object is UNSET


def test_managed_fields_stripped_from_both_bodies() -> None:
    out = shape(_event(), "RequestResponse", True)
    assert out is not None
    req, resp = _json(out.request_object), _json(out.response_object)
    assert req["metadata"] == {"name": "c", "labels": {"a": "<b>"}}
    assert resp["metadata"] == {"name": "c", "uid": "u"}


def test_patch_body_is_never_stripped() -> None:
    ev = _event(verb="patch")
    out = shape(ev, "RequestResponse", True)
    assert out is not None
    assert out.request_object is ev.request_object  # untouched, byte for byte
    assert "managedFields" not in _json(out.response_object)["metadata"]


def test_list_items_stripped() -> None:
    body = {
        "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "1"},
        "items": [
            {"metadata": {"name": "a", "managedFields": MF}},
            {"metadata": {"name": "b"}},
            {"metadata": {"name": "c", "managedFields": MF}, "data": {"x": "1.50"}},
        ],
    }
    raw = msgspec.Raw(json.dumps(body).encode())
    out = strip_managed_fields(raw)
    assert _json(out) == {
        "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "1"},
        "items": [
            {"metadata": {"name": "a"}},
            {"metadata": {"name": "b"}},
            {"metadata": {"name": "c"}, "data": {"x": "1.50"}},
        ],
    }


def test_table_rows_stripped_and_rows_without_object_skipped() -> None:
    body = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": [{"name": "Name"}],
        "rows": [
            {"cells": ["a"], "object": {"kind": "PartialObjectMetadata",
                                        "metadata": {"name": "a", "managedFields": MF}}},
            {"cells": ["b"]},
        ],
    }  # fmt: skip
    out = strip_managed_fields(msgspec.Raw(json.dumps(body).encode()))
    rows = _json(out)["rows"]
    assert rows[0]["object"]["metadata"] == {"name": "a"}
    assert rows[1] == {"cells": ["b"]}


@pytest.mark.parametrize(
    "body",
    [
        b'{"kind":"Status","status":"Success","details":{"managedFields":[]}}',
        b'{"kind":"DeleteOptions","propagationPolicy":"Foreground"}',
        b'[{"metadata":{"managedFields":[]}}]',
        b"not json managedFields",
    ],
)
def test_other_shapes_unchanged(body: bytes) -> None:
    raw = msgspec.Raw(body)
    assert strip_managed_fields(raw) is raw


def test_stripping_keeps_other_bytes_and_key_order() -> None:
    raw = msgspec.Raw(
        b'{"z":1.0,"metadata":{"b":2,"managedFields":[{"m":1}],"a":1e3},"a":"\\u003c"}'
    )
    assert bytes(strip_managed_fields(raw)) == b'{"z":1.0,"metadata":{"b":2,"a":1e3},"a":"\\u003c"}'


def test_encoded_line_is_exact() -> None:
    out = shape(_event(), "Request", True)
    assert out is not None
    line = encode_event(out)
    assert line.startswith(b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request",')
    assert (
        b'"requestObject":{"kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"\\u003cb\\u003e"}}'
        in line
    )
    assert b"responseObject" not in line and line.endswith(b"}\n")


POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-proxy]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: Request
  resources: [{group: "", resources: [configmaps]}]
  omitManagedFields: true
- level: RequestResponse
  namespaces: [prod]
"""


@pytest.fixture
def evaluator() -> Evaluator:
    return Evaluator(load_policy_bytes(POLICY, "p.yaml"))


def test_apply_lowers_and_strips(evaluator: Evaluator) -> None:
    r = apply(evaluator, _event())
    assert r.event is not None and not r.above_capture
    assert r.event.level == "Request" and r.event.response_object is UNSET
    assert "managedFields" not in _json(r.event.request_object)["metadata"]
    assert r.decision.rule_index == 2


def test_apply_drops_omitted_stage_and_level_none(evaluator: Evaluator) -> None:
    assert apply(evaluator, _event(stage="RequestReceived")).event is None
    proxy = _event(user={"username": "system:kube-proxy"})
    r = apply(evaluator, proxy)
    assert r.event is None and r.decision.level == "None"
    # no rule matches: the default is None
    other = _event(objectRef={"resource": "pods", "namespace": "dev", "apiVersion": "v1"})
    assert apply(evaluator, other).event is None


def test_apply_flags_levels_above_the_capture(evaluator: Evaluator) -> None:
    ev = _event(
        level="Metadata",
        requestObject=None,
        responseObject=None,
        objectRef={"resource": "pods", "namespace": "prod", "apiVersion": "v1"},
    )
    r = apply(evaluator, ev)
    assert r.above_capture
    assert r.event is not None and r.event.level == "RequestResponse"
    assert r.event.request_object is UNSET
