"""The JSON codec against lines as the apiserver writes them (spec 1.3), byte for byte."""

from __future__ import annotations

import json

import msgspec
import pytest

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import (
    canonical,
    canonical_time,
    decode_event,
    decode_event_list,
    encode_event,
    encode_event_list,
    format_micro,
    to_micros,
)
from kaudit.model.types import Event, ObjectReference, Status, UserInfo

TYPED = '{"kind":"Event","apiVersion":"audit.k8s.io/v1",'

# name -> one log line as the JSON log backend writes it (without the "\n"). Raw strings:
# every backslash is the apiserver's.
CORPUS: dict[str, str] = {
    # spec 1.3, the constructed Metadata example
    "spec-metadata": TYPED + r'"level":"Metadata","auditID":"2f1e5c1a-7b9d-4c3e-9a51-0d6f3b2a8c44",'
    r'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=500",'
    r'"verb":"list","user":{"username":"admin","groups":["system:masters",'
    r'"system:authenticated"]},"sourceIPs":["127.0.0.1"],'
    r'"userAgent":"kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0",'
    r'"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},'
    r'"responseStatus":{"metadata":{},"code":200},'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.130001Z","annotations":'
    r'{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed '
    r"by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group "
    r'\"system:masters\""}}',
    # spec 1.3, every field empty (173 bytes with the newline)
    "spec-empty": TYPED + r'"level":"","auditID":"","stage":"","requestURI":"","verb":"",'
    r'"user":{},"requestReceivedTimestamp":null,"stageTimestamp":null}',
    "request-received": TYPED
    + r'"level":"Request","auditID":"0b6e9c1e-4d0f-4f6a-9a8e-1f2d3c4b5a69",'
    r'"stage":"RequestReceived","requestURI":"/api/v1/namespaces/kube-system/configmaps",'
    r'"verb":"create","user":{"username":"system:serviceaccount:kube-system:ctrl",'
    r'"uid":"5a1e0f3c-8d7b-4c6a-9e2f-0a1b2c3d4e5f","groups":["system:serviceaccounts",'
    r'"system:serviceaccounts:kube-system","system:authenticated"],"extra":'
    r'{"authentication.kubernetes.io/credential-id":["JTI=7d2a"],'
    r'"authentication.kubernetes.io/node-name":["node-1"],'
    r'"authentication.kubernetes.io/pod-name":["ctrl-5f7d"]}},'
    r'"sourceIPs":["10.0.0.12"],"userAgent":"kube-controller-manager/v1.36.0 '
    r'(linux/amd64) kubernetes/abcdef0/leader-election",'
    r'"objectRef":{"resource":"configmaps","namespace":"kube-system",'
    r'"apiVersion":"v1"},"requestObject":{"kind":"ConfigMap","apiVersion":"v1",'
    r'"metadata":{"name":"cfg","namespace":"kube-system","creationTimestamp":null,'
    r'"labels":{"app":"a\u0026b"}},"data":{"html":"\u003cb\u003ebold\u003c/b\u003e",'
    r'"unicode":"h\u00e9llo","raw":"héllo 日本 🎉","ls":"\u2028\u2029",'
    r'"esc":"tab\there \"quoted\" back\\slash \u0000 \u001b","n":[1,2.5,-3e-7,true,null]}},'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.000000Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.000000Z"}',
    "request-response": TYPED
    + r'"level":"RequestResponse","auditID":"7a0a4d52-5f0b-4b5f-8f3a-6d2c1b0e9f88",'
    r'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets'
    r'?fieldManager=kubectl-create\u0026fieldValidation=Strict","verb":"create",'
    r'"user":{"username":"kubernetes-admin","groups":["kubeadm:cluster-admins",'
    r'"system:authenticated"]},"sourceIPs":["192.168.49.1"],'
    r'"userAgent":"kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9",'
    r'"objectRef":{"resource":"secrets","namespace":"default","name":"db",'
    r'"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},'
    r'"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db",'
    r'"creationTimestamp":null},"data":{"password":"czNjcjN0"},"type":"Opaque"},'
    r'"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db",'
    r'"namespace":"default","uid":"1c5b3e0e-2a8f-4a57-b1e6-9f6a3f5d2c11",'
    r'"resourceVersion":"4242","creationTimestamp":"2024-05-06T07:08:09Z",'
    r'"managedFields":[{"manager":"kubectl-create","operation":"Update",'
    r'"apiVersion":"v1","time":"2024-05-06T07:08:09Z","fieldsType":"FieldsV1",'
    r'"fieldsV1":{"f:data":{".":{},"f:password":{}},"f:type":{}}}]},'
    r'"data":{"password":"czNjcjN0"},"type":"Opaque"},'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.100000Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.112233Z","annotations":'
    r'{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}',
    "impersonated-patch": TYPED
    + r'"level":"Metadata","auditID":"e3b0c442-98fc-4c14-9afb-f4c8996fb924",'
    r'"stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/team-a/deployments'
    r'/web?fieldManager=kubectl-client-side-apply","verb":"patch","user":{"username":"alice",'
    r'"groups":["devs","system:authenticated"]},"impersonatedUser":{"username":"bob",'
    r'"groups":["ops","system:authenticated"]},"authenticationMetadata":'
    r'{"impersonationConstraint":"impersonate:user-info"},"sourceIPs":["203.0.113.9",'
    r'"10.0.0.1"],"userAgent":"kubectl/v1.36.0 (darwin/arm64) kubernetes/abcdef0",'
    r'"objectRef":{"resource":"deployments","namespace":"team-a","name":"web",'
    r'"uid":"9d2b6a4e-1f0c-4e8a-b7d3-5c6e7f8a9b0c","apiGroup":"apps","apiVersion":"v1",'
    r'"resourceVersion":"12345","subresource":"scale"},"responseStatus":{"metadata":{},'
    r'"code":200},"requestReceivedTimestamp":"2024-05-06T07:08:09.999999Z",'
    r'"stageTimestamp":"2024-05-06T07:08:10.000001Z","annotations":'
    r'{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":'
    r'"RBAC: allowed by RoleBinding \"ops/team-a\" of Role \"ops\" to Group \"ops\""}}',
    # spec 12: failed authentication
    "failed-authentication": TYPED
    + r'"level":"Metadata","auditID":"5d3c9c43-8a4b-4c3f-a6a2-2d1e0f9b8a77",'
    r'"stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods","verb":"list",'
    r'"user":{},"sourceIPs":["127.0.0.1"],"userAgent":"curl/8.5.0","objectRef":'
    r'{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":'
    r'{"metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized",'
    r'"code":401},"requestReceivedTimestamp":"2024-05-06T07:08:09.424242Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.424500Z"}',
    "forbidden-with-details": TYPED
    + r'"level":"Metadata","auditID":"c1d2e3f4-0000-4111-8222-333344445555",'
    r'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods/db-0/exec'
    r'?command=sh\u0026stdin=true\u0026tty=true","verb":"create","user":'
    r'{"username":"mallory","groups":["system:authenticated"]},"sourceIPs":["198.51.100.4"],'
    r'"userAgent":"kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9","objectRef":'
    r'{"resource":"pods","namespace":"prod","name":"db-0","apiVersion":"v1",'
    r'"subresource":"exec"},"responseStatus":{"metadata":{},"status":"Failure",'
    r'"message":"pods \"db-0\" is forbidden: User \"mallory\" cannot create resource '
    r'\"pods/exec\" in API group \"\" in the namespace \"prod\"","reason":"Forbidden",'
    r'"details":{"name":"db-0","kind":"pods"},"code":403},'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.000100Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.000900Z","annotations":'
    r'{"authorization.k8s.io/decision":"forbid","authorization.k8s.io/reason":""}}',
    "non-resource": TYPED + r'"level":"Metadata","auditID":"11111111-2222-4333-8444-555555555555",'
    r'"stage":"ResponseComplete","requestURI":"/healthz?verbose","verb":"get","user":'
    r'{"username":"system:anonymous","groups":["system:unauthenticated"]},'
    r'"sourceIPs":["::1"],"userAgent":"kube-probe/1.36","responseStatus":{"metadata":{},'
    r'"code":200},"requestReceivedTimestamp":"2024-05-06T07:08:09.000000Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.000050Z"}',
    "panic": TYPED
    + r'"level":"Request","auditID":"deadbeef-0000-4000-8000-000000000000","stage":"Panic",'
    r'"requestURI":"/api/v1/nodes","verb":"list","user":{"username":"admin"},'
    r'"objectRef":{"resource":"nodes","apiVersion":"v1"},"responseStatus":{"metadata":{},'
    r'"status":"Failure","message":"APIServer panic'
    "'d: runtime error"
    r'","reason":'
    r'"InternalError","code":500},"requestReceivedTimestamp":"2024-05-06T07:08:09.500000Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.600000Z"}',
    "escaped-strings": TYPED
    + r'"level":"Metadata","auditID":"\u003cid\u003e","stage":"ResponseComplete",'
    r'"requestURI":"/api/v1/namespaces/d%C3%A9v/pods?labelSelector=a%3Db\u0026x=\u003c\u003e",'
    r'"verb":"get","user":{"username":"jöhn \"j\" \\ d","groups":["g\u0026h","日本"],'
    r'"extra":{"a":["1","2"],"b\u003c":[""],"z":[]}},"sourceIPs":["10.0.0.1"],'
    r'"userAgent":"bad\u0000agent\u0007\b\f\n\r\t\u001f'
    "\x7f"  # DEL is written raw
    r'-\u2028\u2029 é ☃",'
    r'"objectRef":{"resource":"pods","namespace":"dév"},"requestReceivedTimestamp":'
    r'"2024-05-06T07:08:09.000000Z","stageTimestamp":"2024-05-06T07:08:09.000000Z",'
    r'"annotations":{"":"empty key","a\u0026b":"\u003c\u003e","é":"x"}}',
    "watch-started": TYPED + r'"level":"Request","auditID":"feedface-1234-4567-89ab-cdef01234567",'
    r'"stage":"ResponseStarted","requestURI":"/api/v1/pods?allowWatchBookmarks=true'
    r'\u0026resourceVersion=1\u0026timeoutSeconds=300\u0026watch=true","verb":"watch",'
    r'"user":{"username":"system:kube-scheduler","groups":["system:authenticated"]},'
    r'"sourceIPs":["172.18.0.2"],"userAgent":"kube-scheduler/v1.36.0 (linux/amd64) '
    r'kubernetes/abcdef0/scheduler","objectRef":{"resource":"pods","apiVersion":"v1"},'
    r'"responseStatus":{"metadata":{},"code":200},'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.010101Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.020202Z","annotations":'
    r'{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":'
    r'"RBAC: allowed by ClusterRoleBinding \"system:kube-scheduler\" of ClusterRole '
    r'\"system:kube-scheduler\" to User \"system:kube-scheduler\""}}',
    "empty-details-and-list-body": TYPED
    + r'"level":"RequestResponse","auditID":"abcdefab-cdef-4abc-8def-abcdefabcdef",'
    r'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x","verb":"delete",'
    r'"user":{"username":"admin"},"objectRef":{"resource":"namespaces","name":"x",'
    r'"apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","details":{},'
    r'"code":200},"requestObject":{"kind":"DeleteOptions","apiVersion":"v1",'
    r'"propagationPolicy":"Background"},"responseObject":[],'
    r'"requestReceivedTimestamp":"2024-05-06T07:08:09.000000Z",'
    r'"stageTimestamp":"2024-05-06T07:08:09.000000Z"}',
}


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_round_trip_byte_exact(name: str) -> None:
    line = CORPUS[name].encode() + b"\n"
    ev = decode_event(line)
    assert encode_event(ev) == line
    assert encode_event(canonical(ev)) == line
    assert json.loads(encode_event(ev)) == json.loads(line)


@pytest.mark.parametrize("name", CORPUS)
def test_corpus_untyped_and_event_list(name: str) -> None:
    line = CORPUS[name].encode() + b"\n"
    item = b"{" + line[len(TYPED) : -1]
    ev = decode_event(line)
    assert encode_event(ev, typed=False) == item + b"\n"
    # a webhook item (no kind/apiVersion) decodes to the same event
    assert encode_event(decode_event(item)) == line
    body = encode_event_list([ev, ev])
    assert body == (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + item
        + b","
        + item
        + b"]}\n"
    )
    assert [encode_event(e) for e in decode_event_list(body)] == [line, line]


def test_spec_sizes() -> None:
    assert len(CORPUS["spec-empty"].encode()) + 1 == 173
    assert encode_event(Event()) == CORPUS["spec-empty"].encode() + b"\n"


def test_corpus_as_one_jsonl_file() -> None:
    data = b"".join(v.encode() + b"\n" for v in CORPUS.values())
    out = b"".join(encode_event(decode_event(ln)) for ln in data.splitlines(keepends=True))
    assert out == data


# --- Go escaping -------------------------------------------------------------------------

ESCAPES: dict[str, tuple[str, str]] = {
    "html": ("<a href='x'>&amp;</a>", r"\u003ca href='x'\u003e\u0026amp;\u003c/a\u003e"),
    "line-separators": ("a\u2028b\u2029c", r"a\u2028b\u2029c"),
    "quote-backslash": ('"\\', r"\"\\"),
    "short-controls": ("\b\f\n\r\t", r"\b\f\n\r\t"),
    "other-controls": ("\x00\x01\x07\x0b\x1b\x1f", r"\u0000\u0001\u0007\u000b\u001b\u001f"),
    "del-raw": ("\x7f", "\x7f"),
    "non-ascii-raw": ("é日本🎉\u00a0\ufeff", "é日本🎉\u00a0\ufeff"),
    "slash-raw": ("/a/b", "/a/b"),
}


@pytest.mark.parametrize("name", ESCAPES)
def test_go_string_escaping(name: str) -> None:
    value, written = ESCAPES[name]
    out = encode_event(Event(audit_id="x", user_agent=value))
    assert f'"userAgent":"{written}"'.encode() in out
    assert decode_event(out).user_agent == value


def test_raw_bodies_are_html_escaped_and_compacted() -> None:
    body = b'{\n  "a": "<&>",\n  "b": "\xe2\x80\xa8",\n  "c": [1, 2.50, "\\u00e9"]\n}'
    ev = Event(audit_id="x", request_object=msgspec.Raw(body))
    out = encode_event(ev)
    want = rb'"requestObject":{"a":"\u003c\u0026\u003e","b":"\u2028","c":[1,2.50,"\u00e9"]}'
    assert want in out


# --- omitempty and normalisation ---------------------------------------------------------


def test_empty_values_are_omitted() -> None:
    src = (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a",'
        b'"stage":"ResponseComplete","requestURI":"/","verb":"get","user":{"username":"",'
        b'"uid":"","groups":[],"extra":{}},"impersonatedUser":{"groups":[]},'
        b'"authenticationMetadata":{},"sourceIPs":[],"userAgent":"","objectRef":'
        b'{"resource":"","namespace":"","name":"n"},"responseStatus":{"kind":"",'
        b'"apiVersion":"","metadata":null,"status":"","message":"","reason":"","details":null,'
        b'"code":0},"requestReceivedTimestamp":null,"stageTimestamp":null,"annotations":{}}'
    )
    assert encode_event(decode_event(src)) == (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a",'
        b'"stage":"ResponseComplete","requestURI":"/","verb":"get","user":{},'
        b'"impersonatedUser":{},"authenticationMetadata":{},"objectRef":{"name":"n"},'
        b'"responseStatus":{"metadata":{}},"requestReceivedTimestamp":null,'
        b'"stageTimestamp":null}\n'
    )


def test_response_status_metadata_always_written() -> None:
    ev = Event(audit_id="a", response_status=Status(code=200))
    assert b'"responseStatus":{"metadata":{},"code":200}' in encode_event(ev)
    ev = decode_event(b'{"auditID":"a","responseStatus":{"code":404}}')
    assert b'"responseStatus":{"metadata":{},"code":404}' in encode_event(ev)
    ev = decode_event(b'{"auditID":"a","responseStatus":{"metadata":{ },"code":404}}')
    assert b'"responseStatus":{"metadata":{},"code":404}' in encode_event(ev)


def test_status_kind_and_api_version_kept_in_order() -> None:
    ev = decode_event(
        b'{"auditID":"a","responseStatus":{"code":500,"status":"Failure","apiVersion":"v1",'
        b'"kind":"Status","metadata":{}}}'
    )
    assert (
        b'"responseStatus":{"kind":"Status","apiVersion":"v1","metadata":{},'
        b'"status":"Failure","code":500}' in encode_event(ev)
    )


def test_map_keys_sorted_and_struct_fields_in_order() -> None:
    ev = decode_event(
        b'{"annotations":{"z":"1","a":"2","m":"3"},"verb":"get","auditID":"a",'
        b'"user":{"extra":{"y":["1"],"b":["2"]},"username":"u"},"level":"Metadata",'
        b'"objectRef":{"subresource":"s","resource":"r"}}'
    )
    assert encode_event(ev) == (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a",'
        b'"stage":"","requestURI":"","verb":"get","user":{"username":"u","extra":{"b":["2"],'
        b'"y":["1"]}},"objectRef":{"resource":"r","subresource":"s"},'
        b'"requestReceivedTimestamp":null,"stageTimestamp":null,'
        b'"annotations":{"a":"2","m":"3","z":"1"}}\n'
    )


TIMESTAMPS: dict[str, tuple[str, str]] = {
    "whole-seconds": ("2017-09-11T14:27:24Z", "2017-09-11T14:27:24.000000Z"),
    "millis": ("2017-09-11T14:27:24.5Z", "2017-09-11T14:27:24.500000Z"),
    "micro": ("2017-09-11T14:27:24.123456Z", "2017-09-11T14:27:24.123456Z"),
    "nanos-truncated": ("2017-09-11T14:27:24.123456999Z", "2017-09-11T14:27:24.123456Z"),
    "offset": ("2017-09-11T16:27:24.5+02:00", "2017-09-11T14:27:24.500000Z"),
    "negative-offset-crossing-day": ("2017-09-11T20:00:00-05:00", "2017-09-12T01:00:00.000000Z"),
    "lower-z": ("2017-09-11T14:27:24z", "2017-09-11T14:27:24.000000Z"),
    "year-before-1000": ("0999-01-02T03:04:05Z", "0999-01-02T03:04:05.000000Z"),
}


@pytest.mark.parametrize("name", TIMESTAMPS)
def test_timestamps_normalised_to_micro_utc(name: str) -> None:
    given, want = TIMESTAMPS[name]
    assert canonical_time(given) == want
    src = json.dumps(
        {"auditID": "a", "requestReceivedTimestamp": given, "stageTimestamp": given}
    ).encode()
    out = encode_event(decode_event(src))
    assert f'"requestReceivedTimestamp":"{want}","stageTimestamp":"{want}"'.encode() in out


def test_format_micro_and_to_micros() -> None:
    assert format_micro(None) is None
    assert format_micro(0) == "1970-01-01T00:00:00.000000Z"
    assert format_micro(1_500_000) == "1970-01-01T00:00:01.500000Z"
    assert to_micros("1970-01-01T00:00:01.5Z") == 1_500_000
    assert to_micros("1969-12-31T23:59:59Z") == -1_000_000


# --- v1beta1 and webhook shapes ----------------------------------------------------------


def test_v1beta1_event_normalised() -> None:
    src = (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":'
        b'{"creationTimestamp":"2019-03-04T05:06:08Z"},"level":"Metadata",'
        b'"timestamp":"2019-03-04T05:06:07Z","auditID":"b","stage":"ResponseComplete",'
        b'"requestURI":"/api","verb":"get","user":{"username":"u"}}'
    )
    assert encode_event(decode_event(src)) == (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"b",'
        b'"stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},'
        b'"requestReceivedTimestamp":"2019-03-04T05:06:07.000000Z",'
        b'"stageTimestamp":"2019-03-04T05:06:08.000000Z"}\n'
    )


def test_v1beta1_without_api_version_and_only_timestamp() -> None:
    ev = decode_event(b'{"timestamp":"2019-03-04T05:06:07.25+01:00","auditID":"b"}')
    assert ev.request_received_timestamp == "2019-03-04T04:06:07.250000Z"
    assert ev.stage_timestamp == "2019-03-04T04:06:07.250000Z"
    assert ev.timestamp is msgspec.UNSET and ev.metadata is msgspec.UNSET


def test_v1_timestamps_win_over_v1beta1_ones() -> None:
    ev = decode_event(
        b'{"auditID":"b","timestamp":"2019-01-01T00:00:00Z",'
        b'"requestReceivedTimestamp":"2020-01-01T00:00:00.000000Z"}'
    )
    assert ev.request_received_timestamp == "2020-01-01T00:00:00.000000Z"


def test_bad_v1beta1_timestamp() -> None:
    with pytest.raises(DecodeError, match=r"\$\.timestamp: "):
        decode_event(b'{"auditID":"b","timestamp":"yesterday"}')


def test_event_list_envelope() -> None:
    assert encode_event_list([]) == (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n'
    )
    assert decode_event_list(b'{"items":[]}') == []
    evs = decode_event_list(
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":'
        b'[{"level":"Metadata","auditID":"a"},{"kind":"Event","auditID":"b"}]}'
    )
    assert [e.audit_id for e in evs] == ["a", "b"]


LIST_REJECTS: dict[str, tuple[bytes, str]] = {
    "wrong-kind": (b'{"kind":"PodList","items":[]}', 'kind: expected "EventList", got "PodList"'),
    "wrong-version": (
        b'{"kind":"EventList","apiVersion":"v1","items":[]}',
        '$.apiVersion: expected "audit.k8s.io/v1", got "v1"',
    ),
    "bad-item": (
        b'{"items":[{"auditID":"a"},{"foo":1}]}',
        "$.items[1]: not an audit event",
    ),
    "item-of-wrong-kind": (
        b'{"items":[{"kind":"Pod","auditID":"a"}]}',
        '$.items[0].kind: expected "Event", got "Pod"',
    ),
    "array": (b"[]", "Expected `object`, got `array`"),
}


@pytest.mark.parametrize("name", LIST_REJECTS)
def test_event_list_rejects(name: str) -> None:
    data, message = LIST_REJECTS[name]
    with pytest.raises(DecodeError) as info:
        decode_event_list(data, Location("body.json"))
    assert str(info.value).startswith("body.json: ")
    assert message in str(info.value)


# --- what is not an event ----------------------------------------------------------------

REJECTS: dict[str, tuple[bytes, str]] = {
    "kind-not-a-string": (b'{"kind": 0}', "Expected `str`, got `int` - at `$.kind`"),
    "no-event-fields": (b'{"foo":1}', "$: not an audit event: none of auditID, stage"),
    "empty-object": (b"{}", "not an audit event"),
    "array": (b'[{"auditID":"a"}]', "expected a JSON object (an audit.k8s.io/v1 Event)"),
    "string": (b'"x"', "expected a JSON object"),
    "wrong-kind": (b'{"kind":"Pod","auditID":"a"}', '$.kind: expected "Event", got "Pod"'),
    "event-list": (b'{"kind":"EventList","items":[]}', 'expected "Event", got "EventList"'),
    "wrong-api-version": (
        b'{"apiVersion":"v1","auditID":"a"}',
        '$.apiVersion: expected "audit.k8s.io/v1", got "v1"',
    ),
    "wrong-type": (b'{"auditID":"a","level":5}', "Expected `str`, got `int` - at `$.level`"),
    "bad-groups": (b'{"auditID":"a","user":{"groups":"g"}}', "at `$.user.groups`"),
    "truncated": (b'{"auditID":"a"', "truncated"),
    "empty": (b"", "truncated"),
    "trailing-garbage": (b'{"auditID":"a"} x', "trailing characters"),
}


@pytest.mark.parametrize("name", REJECTS)
def test_rejects_non_events(name: str) -> None:
    data, message = REJECTS[name]
    with pytest.raises(DecodeError) as info:
        decode_event(data, Location("audit.log", 3))
    assert str(info.value).startswith("audit.log:3: "), str(info.value)
    assert message in str(info.value)


def test_accepted_old_api_versions() -> None:
    for version in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1"):
        ev = decode_event(json.dumps({"apiVersion": version, "auditID": "a"}).encode())
        assert ev.api_version is msgspec.UNSET and ev.kind is msgspec.UNSET


# --- text that is not UTF-8 --------------------------------------------------------------
# kaudit's decision, following Go: a byte that is not UTF-8 reads as U+FFFD; a lone
# surrogate in a str (a raw byte carried by surrogateescape, e.g. from a legacy line's
# \xff) is written as the escape \ufffd, as Go writes an invalid byte. A JSON escape of a
# lone surrogate ("\ud800") is rejected (msgspec); Go would read it as U+FFFD, but Go never
# writes one.


def test_invalid_utf8_reads_as_replacement_character() -> None:
    ev = decode_event(b'{"auditID":"a\xffb","userAgent":"\xe2\x82"}')
    assert ev.audit_id == "a\ufffdb"
    assert ev.user_agent == "\ufffd"  # Python's decoder: one U+FFFD per maximal bad sequence
    evs = decode_event_list(b'{"items":[{"auditID":"\xc0"}]}')
    assert evs[0].audit_id == "\ufffd"


def test_invalid_utf8_outside_strings_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_event(b'{"auditID":"a"}\xff')


def test_lone_surrogates_encode_as_escaped_replacement() -> None:
    ev = Event(
        audit_id="a\udcffb",
        user=UserInfo(username="\ud800", extra={"k\udc80": ["v"]}),
        object_ref=ObjectReference(namespace="ns\udcc3"),
    )
    out = encode_event(ev)
    assert b'"auditID":"a\\ufffdb"' in out
    assert b'"user":{"username":"\\ufffd","extra":{"k\\ufffd":["v"]}}' in out
    assert b'"objectRef":{"namespace":"ns\\ufffd"}' in out
    json.loads(out)
    assert encode_event_list([ev]).count(b"\\ufffd") == 4


def test_lone_surrogate_next_to_a_noncharacter_in_the_data() -> None:
    ev = Event(audit_id="\udcff\ufdd0")
    assert b'"auditID":"\\ufffd\xef\xb7\x90"' in encode_event(ev)


def test_lone_surrogate_escape_is_rejected() -> None:
    with pytest.raises(DecodeError):
        decode_event(b'{"auditID":"\\ud800x"}')
    assert decode_event(b'{"auditID":"\\ud83d\\ude00"}').audit_id == "\U0001f600"
