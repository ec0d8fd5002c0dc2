"""Redaction: secret material never reaches the store; everything else is untouched."""

from __future__ import annotations

import json
from typing import Any

from kaudit.model import decode_event, encode_event
from kaudit.model.documents import Record
from kaudit.transforms.redact import ANNOTATION, MARKER, Redactor, redact_event

KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"


def event(
    resource: str,
    verb: str = "create",
    req: Any = None,
    resp: Any = None,
    *,
    group: str = "",
    sub: str = "",
) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "namespace": "default", "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if sub:
        ref["subresource"] = sub
    ev: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "id-1",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/default/{resource}",
        "verb": verb,
        "user": {"username": "alice"},
        "objectRef": ref,
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.130001Z",
    }
    if req is not None:
        ev["requestObject"] = req
    if resp is not None:
        ev["responseObject"] = resp
    return ev


def run(ev: dict[str, Any]) -> dict[str, Any]:
    decoded = decode_event(json.dumps(ev))
    out = redact_event(decoded)
    return json.loads(encode_event(out))  # type: ignore[no-any-return]


def test_secret_data_string_data_and_last_applied_are_masked() -> None:
    secret = {
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"pw":"c2VjcmV0"}}',
                "team": "a",
            },
        },
        "data": {"pw": "c2VjcmV0", "user": "YWRtaW4="},
        "stringData": {"token": "plain"},
        "type": "Opaque",
    }
    out = run(event("secrets", req=secret, resp=secret))
    for body in (out["requestObject"], out["responseObject"]):
        assert body["data"] == {"pw": MARKER, "user": MARKER}
        assert body["stringData"] == {"token": MARKER}
        ann = body["metadata"]["annotations"]
        assert ann["kubectl.kubernetes.io/last-applied-configuration"] == MARKER
        assert ann["team"] == "a"
        assert body["type"] == "Opaque"
    assert "c2VjcmV0" not in json.dumps(out)
    assert "requestObject.data" in out["annotations"][ANNOTATION]
    assert "responseObject.stringData" in out["annotations"][ANNOTATION]


def test_secret_lists_and_patches() -> None:
    lst = {"kind": "SecretList", "items": [{"data": {"a": "eA=="}}, {"data": {"b": "eQ=="}}]}
    out = run(event("secrets", verb="list", resp=lst))
    assert [i["data"] for i in out["responseObject"]["items"]] == [{"a": MARKER}, {"b": MARKER}]

    merge = {"data": {"pw": "bmV3"}}
    assert run(event("secrets", verb="patch", req=merge))["requestObject"] == {
        "data": {"pw": MARKER}
    }

    ops = [
        {"op": "replace", "path": "/data/pw", "value": "bmV3"},
        {"op": "add", "path": "/stringData", "value": {"k": "v"}},
        {"op": "replace", "path": "/metadata/labels/x", "value": "keep"},
    ]
    out = run(event("secrets", verb="patch", req=ops))
    assert [o["value"] for o in out["requestObject"]] == [MARKER, {"k": MARKER}, "keep"]


def test_tokens_are_masked() -> None:
    tr = {"kind": "TokenRequest", "spec": {"audiences": ["x"]}, "status": {"token": "eyJhbGciOi"}}
    out = run(event("serviceaccounts", sub="token", resp=tr))
    assert out["responseObject"]["status"]["token"] == MARKER
    assert out["responseObject"]["spec"] == {"audiences": ["x"]}

    review = {"kind": "TokenReview", "spec": {"token": "eyJhbGciOi"}}
    out = run(event("tokenreviews", group="authentication.k8s.io", req=review, resp=review))
    assert out["requestObject"]["spec"]["token"] == MARKER
    assert out["responseObject"]["spec"]["token"] == MARKER


def test_private_keys_anywhere_are_masked() -> None:
    cm = {"kind": "ConfigMap", "data": {"tls.key": f"before\n{KEY}\nafter", "x": "y"}}
    out = run(event("configmaps", req=cm))
    assert out["requestObject"]["data"] == {"tls.key": f"before\n{MARKER}\nafter", "x": "y"}
    assert out["annotations"][ANNOTATION] == "requestObject.data.tls.key"


def test_events_without_secrets_are_not_touched() -> None:
    line = encode_event(decode_event(json.dumps(event("configmaps", req={"data": {"a": "b"}}))))[
        :-1
    ]
    ev = decode_event(line)
    assert redact_event(ev) is ev
    rec = Record(ev, line, "x", 1)
    red = Redactor()
    assert red([rec])[0] is rec
    assert red.events_redacted == 0


def test_redactor_reencodes_raw_exactly_and_counts() -> None:
    ev = decode_event(json.dumps(event("secrets", req={"data": {"a": "eA=="}})))
    red = Redactor()
    (out,) = red([Record(ev, b"original", "x", 7)])
    assert out.raw == encode_event(out.event)[:-1]
    assert b"eA==" not in out.raw
    assert (out.source, out.line) == ("x", 7)
    assert red.events_redacted == 1
    assert red.paths == {"requestObject.data": 1}


def test_json_patches_replacing_metadata_or_the_whole_secret() -> None:
    ops = [
        {"op": "replace", "path": "", "value": {"kind": "Secret", "data": {"pw": "eA=="}}},
        {
            "op": "add",
            "path": "/metadata",
            "value": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x"}},
        },
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {"kubectl.kubernetes.io/last-applied-configuration": "y", "keep": "me"},
        },
    ]
    out = run(event("secrets", verb="patch", req=ops))["requestObject"]
    assert out[0]["value"]["data"] == {"pw": MARKER}
    assert out[1]["value"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": MARKER
    }
    assert out[2]["value"] == {
        "kubectl.kubernetes.io/last-applied-configuration": MARKER,
        "keep": "me",
    }


def test_truncated_and_base64_private_keys() -> None:
    import base64

    cut = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB"  # pasted without its END line
    b64 = base64.b64encode(KEY.encode()).decode()
    csr = {"kind": "CertificateSigningRequest", "spec": {"request": b64, "signerName": "x"}}
    out = run(event("certificatesigningrequests", req=csr, group="certificates.k8s.io"))[
        "requestObject"
    ]
    assert out["spec"] == {"request": MARKER, "signerName": "x"}
    cm = run(event("configmaps", req={"data": {"k": f"a\n{cut}"}}))["requestObject"]
    assert cm["data"]["k"] == f"a\n{MARKER}"
    public = base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB").decode()
    same = run(event("certificatesigningrequests", req={"spec": {"request": public}}))
    assert same["requestObject"]["spec"]["request"] == public  # public material stays
