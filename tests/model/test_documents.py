"""The document reader: every shape real files come in, and bad lines that lose nothing."""

from __future__ import annotations

import gzip
import io
import json

import pytest

from kaudit.errors import DecodeError
from kaudit.model import encode_event
from kaudit.model.documents import iter_records

LINE_A = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1",'
    b'"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/configmaps/cm",'
    b'"verb":"delete","user":{"username":"alice","groups":["dev"]},"sourceIPs":["10.0.0.1"],'
    b'"objectRef":{"resource":"configmaps","namespace":"default","name":"cm","apiVersion":"v1"},'
    b'"responseStatus":{"metadata":{},"code":200},'
    b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
    b'"stageTimestamp":"2024-05-06T07:08:09.130001Z"}'
)
LINE_B = LINE_A.replace(b'"a-1"', b'"b-2"').replace(b"alice", b"bob")


def read(data: bytes, source: str = "input") -> tuple[list[bytes], list[str]]:
    errors: list[str] = []
    raws = [
        r.raw for r in iter_records(io.BytesIO(data), source, lambda e, raw: errors.append(str(e)))
    ]
    return raws, errors


def item(line: bytes) -> dict[str, object]:
    d = json.loads(line)
    del d["kind"], d["apiVersion"]
    return d


def test_json_lines_keep_the_original_bytes() -> None:
    raws, errors = read(LINE_A + b"\n" + LINE_B + b"\n")
    assert raws == [LINE_A, LINE_B]
    assert errors == []


def test_crlf_blank_lines_and_bom_are_tolerated() -> None:
    raws, errors = read(b"\xef\xbb\xbf" + LINE_A + b"\r\n\r\n\n" + LINE_B)
    assert raws == [LINE_A, LINE_B]
    assert errors == []


def test_webhook_event_list_items_become_log_lines() -> None:
    # What the apiserver POSTs: items without kind/apiVersion, compact, one line.
    body = (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + b"{"
        + LINE_A[len(b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",') :]
        + b"]}\n"
    )
    raws, errors = read(body)
    assert errors == []
    assert raws == [LINE_A]


def test_pretty_event_list_and_array_documents() -> None:
    doc = json.dumps(
        {
            "kind": "EventList",
            "apiVersion": "audit.k8s.io/v1",
            "items": [item(LINE_A), item(LINE_B)],
        },
        indent=2,
    ).encode()
    raws, errors = read(doc)
    assert errors == []
    assert raws == [LINE_A, LINE_B]
    raws, errors = read(json.dumps([json.loads(LINE_A), json.loads(LINE_B)], indent=1).encode())
    assert errors == []
    assert raws == [LINE_A, LINE_B]


def test_one_line_per_event_list_file() -> None:
    # A file of saved webhook bodies, one EventList per line.
    one = json.dumps({"kind": "EventList", "items": [item(LINE_A)]}).encode()
    two = json.dumps({"kind": "EventList", "items": [item(LINE_B)]}).encode()
    raws, errors = read(one + b"\n" + two + b"\n")
    assert errors == []
    assert raws == [LINE_A, LINE_B]


def test_bad_lines_are_reported_with_place_and_the_rest_is_read() -> None:
    data = LINE_A + b"\n{not json\n" + b'{"kind": 0}\n' + b'{"foo": 1}\n' + b"hello\n" + LINE_B
    raws, errors = read(data, "audit.log")
    assert raws == [LINE_A, LINE_B]
    assert len(errors) == 4
    assert errors[0].startswith("audit.log:2: ")
    assert errors[1].startswith("audit.log:3: ") and "$.kind" in errors[1]
    assert errors[2].startswith("audit.log:4: ") and "not an audit event" in errors[2]
    assert errors[3].startswith("audit.log:5: ") and "expected a JSON audit event" in errors[3]


def test_corrupt_first_line_does_not_hide_the_rest() -> None:
    raws, errors = read(b'{"kind":"Event","auditID":\n' + LINE_A + b"\n")
    assert raws == [LINE_A]
    assert len(errors) == 1 and errors[0].startswith("input:1: ")


def test_without_a_handler_the_first_error_is_raised() -> None:
    with pytest.raises(DecodeError, match=r"^x:1: "):
        list(iter_records(io.BytesIO(b"{oops}\n"), "x"))


def test_v1beta1_event_is_normalised() -> None:
    old = (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":'
        b'"2018-10-25T13:58:49Z"},"level":"Request","timestamp":"2018-10-25T13:58:49Z",'
        b'"auditID":"x","stage":"ResponseComplete","requestURI":"/api/v1/namespaces",'
        b'"verb":"create","user":{"username":"minikube-user"}}'
    )
    errors: list[str] = []
    recs = list(iter_records(io.BytesIO(old), "old", lambda e, r: errors.append(str(e))))
    assert errors == []
    ev = recs[0].event
    assert recs[0].raw == old  # the original is kept as received
    assert ev.request_received_timestamp == "2018-10-25T13:58:49.000000Z"
    assert b'"timestamp"' not in encode_event(ev)
    assert b'"metadata"' not in encode_event(ev)


def test_gzip_stream_can_be_read_through_gzip_file() -> None:
    blob = gzip.compress(LINE_A + b"\n")
    recs = list(iter_records(gzip.GzipFile(fileobj=io.BytesIO(blob)), "a.gz"))
    assert [r.raw for r in recs] == [LINE_A]
    assert recs[0].line == 1
