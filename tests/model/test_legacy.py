"""The legacy text format: EventString byte for byte, its parser, Go's %q both ways."""

from __future__ import annotations

import json
from datetime import datetime

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import encode_event
from kaudit.model.legacy import (
    format_legacy,
    format_rfc3339nano,
    go_quote,
    go_unquote,
    is_legacy_line,
    parse_legacy,
)
from kaudit.model.types import Event, ObjectReference, Status, UserInfo

# --- the examples of legacy-format-examples.txt (copied: the file is not in the repo) ----
# name -> (event JSON, requestReceivedTimestamp or None, expected line without "\n")
EXAMPLES: dict[str, tuple[str, str | None, str]] = {
    "only-audit-id": (
        '{"auditID": "0f3b6a8e-6c55-4d5e-9d8b-0a4f1f5f2a11"}',
        None,
        '0001-01-01T00:00:00Z AUDIT: id="0f3b6a8e-6c55-4d5e-9d8b-0a4f1f5f2a11" stage="" '
        'ip="<unknown>" method="" user="<none>" groups="<none>" as="<self>" '
        'asgroups="<lookup>" user-agent="" namespace="<none>" uri="" response="<deferred>"',
    ),
    "admin-two-groups": (
        '{"auditID": "5c9a1d0e-2b7f-4c36-8a0e-3f6b2d9c4e77", "stage": "RequestReceived", '
        '"verb": "get", "requestURI": "/apis/rbac.authorization.k8s.io/v1/roles", '
        '"sourceIPs": ["127.0.0.1"], "userAgent": "kube-admin", "user": {"username": "admin", '
        '"groups": ["system:masters", "system:authenticated"]}, "objectRef": {"namespace": '
        '"default"}, "responseStatus": {"code": 200}}',
        "2024-05-06T07:08:09.123456789Z",
        '2024-05-06T07:08:09.123456789Z AUDIT: id="5c9a1d0e-2b7f-4c36-8a0e-3f6b2d9c4e77" '
        'stage="RequestReceived" ip="127.0.0.1" method="get" user="admin" '
        'groups="\\"system:masters\\",\\"system:authenticated\\"" as="<self>" '
        'asgroups="<lookup>" user-agent="kube-admin" namespace="default" '
        'uri="/apis/rbac.authorization.k8s.io/v1/roles" response="200"',
    ),
    "objectref-without-namespace": (
        '{"auditID": "a1b2c3d4-0000-4000-8000-000000000003", "level": "Metadata", '
        '"objectRef": {"resource": "foo", "apiVersion": "v1", "subresource": "bar"}}',
        None,
        '0001-01-01T00:00:00Z AUDIT: id="a1b2c3d4-0000-4000-8000-000000000003" stage="" '
        'ip="<unknown>" method="" user="<none>" groups="<none>" as="<self>" '
        'asgroups="<lookup>" user-agent="" namespace="<none>" uri="" response="<deferred>"',
    ),
    "impersonated-watch-offset-zone": (
        '{"auditID": "b7e2c1aa-9f00-4c1e-8d2f-1234567890ab", "stage": "ResponseComplete", '
        '"verb": "watch", "requestURI": '
        '"/api/v1/namespaces/kube-system/pods?watch=true&resourceVersion=100", '
        '"sourceIPs": ["203.0.113.7", "10.0.0.5"], "userAgent": '
        '"kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0", "user": {"username": "admin", '
        '"groups": ["system:masters", "system:authenticated"]}, "impersonatedUser": '
        '{"username": "jane", "groups": ["dev", "system:authenticated"]}, "objectRef": '
        '{"resource": "pods", "namespace": "kube-system", "apiVersion": "v1"}, '
        '"responseStatus": {"code": 200}}',
        "2024-05-06T09:08:09.500000+02:00",
        '2024-05-06T09:08:09.5+02:00 AUDIT: id="b7e2c1aa-9f00-4c1e-8d2f-1234567890ab" '
        'stage="ResponseComplete" ip="203.0.113.7" method="watch" user="admin" '
        'groups="\\"system:masters\\",\\"system:authenticated\\"" as="jane" '
        'asgroups="\\"dev\\",\\"system:authenticated\\"" '
        'user-agent="kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0" '
        'namespace="kube-system" '
        'uri="/api/v1/namespaces/kube-system/pods?watch=true&resourceVersion=100" '
        'response="200"',
    ),
    "failed-authentication": (
        '{"auditID": "c0ffee00-1111-4222-8333-444455556666", "stage": "ResponseStarted", '
        '"verb": "list", "requestURI": "/api/v1/namespaces/default/pods", "sourceIPs": '
        '["127.0.0.1"], "userAgent": "curl/8.5.0", "objectRef": {"resource": "pods", '
        '"namespace": "default", "apiVersion": "v1"}, "responseStatus": {"code": 401, '
        '"message": "Authentication failed, attempted: basic"}}',
        "2024-05-06T07:08:09.000001Z",
        '2024-05-06T07:08:09.000001Z AUDIT: id="c0ffee00-1111-4222-8333-444455556666" '
        'stage="ResponseStarted" ip="127.0.0.1" method="list" user="<none>" groups="<none>" '
        'as="<self>" asgroups="<lookup>" user-agent="curl/8.5.0" namespace="default" '
        'uri="/api/v1/namespaces/default/pods" response="401"',
    ),
    "escaping-and-empty-asgroups": (
        '{"auditID": "d00d0000-aaaa-4bbb-8ccc-dddddddddddd", "stage": "RequestReceived", '
        '"verb": "create", "requestURI": '
        '"/api/v1/namespaces/default/configmaps?fieldManager=j%C3%B6hn", "sourceIPs": '
        '["::1"], "userAgent": "my \\"agent\\"\\\\v1\\tx", "user": {"username": "j\u00f6hn"}, '
        '"impersonatedUser": {"username": "system:serviceaccount:ns:sa", "groups": []}, '
        '"objectRef": {"resource": "configmaps", "namespace": "default", "apiVersion": "v1"}}',
        "2024-05-06T07:08:09.100000Z",
        '2024-05-06T07:08:09.1Z AUDIT: id="d00d0000-aaaa-4bbb-8ccc-dddddddddddd" '
        'stage="RequestReceived" ip="::1" method="create" user="j\u00f6hn" groups="<none>" '
        'as="system:serviceaccount:ns:sa" asgroups="" user-agent="my \\"agent\\"\\\\v1\\tx" '
        'namespace="default" uri="/api/v1/namespaces/default/configmaps?fieldManager=j%C3%B6hn" '
        'response="<deferred>"',
    ),
}


def _example_event(name: str) -> Event:
    doc, ts, _ = EXAMPLES[name]
    ev = msgspec.convert(json.loads(doc), Event)
    ev.request_received_timestamp = ts
    return ev


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_byte_for_byte(name: str) -> None:
    line = format_legacy(_example_event(name))
    assert line == EXAMPLES[name][2] + "\n"
    assert line.encode() == (EXAMPLES[name][2] + "\n").encode()


def test_go_unit_test_regexes() -> None:
    """The three events of backend_test.go TestLogEventsLegacy, against its regexes."""
    import re

    prefix = r"[\d\:\-\.\+TZ]+ AUDIT: "
    empty = re.compile(
        prefix + r'id="[\w-]+" stage="" ip="<unknown>" method="" user="<none>" '
        r'groups="<none>" as="<self>" asgroups="<lookup>" user-agent="" namespace="<none>" '
        r'uri="" response="<deferred>"'
    )
    full = re.compile(
        prefix + r'id="[\w-]+" stage="RequestReceived" ip="127.0.0.1" method="get" '
        r'user="admin" groups="\\"system:masters\\",\\"system:authenticated\\"" as="<self>" '
        r'asgroups="<lookup>" user-agent="kube-admin" namespace="default" '
        r'uri="/apis/rbac.authorization.k8s.io/v1/roles" response="200"'
    )
    assert empty.fullmatch(format_legacy(_example_event("only-audit-id"))[:-1])
    assert full.fullmatch(format_legacy(_example_event("admin-two-groups"))[:-1])
    assert empty.fullmatch(format_legacy(_example_event("objectref-without-namespace"))[:-1])


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse(name: str) -> None:
    line = EXAMPLES[name][2] + "\n"
    ev = parse_legacy(line)
    want = _example_event(name)
    assert ev.audit_id == want.audit_id
    assert ev.stage == want.stage
    assert ev.verb == want.verb
    assert ev.request_uri == want.request_uri
    assert ev.username == want.username
    assert ev.groups == want.groups
    assert ev.namespace == want.namespace
    assert ev.code == want.code
    assert ev.user_agent == want.user_agent
    assert (ev.source_ips or [])[:1] == (want.source_ips or [])[:1]
    # What the line does not carry is left empty.
    assert ev.level == ""
    assert ev.stage_timestamp is None
    assert ev.annotations is msgspec.UNSET
    # The time comes back as UTC MicroTime.
    again = format_legacy(ev)
    if name in ("admin-two-groups", "impersonated-watch-offset-zone"):
        assert again != line  # nanoseconds / the +02:00 zone are not kept
    else:
        assert again == line


def test_parse_times_to_utc_microtime() -> None:
    ev = parse_legacy(EXAMPLES["impersonated-watch-offset-zone"][2])
    assert ev.request_received_timestamp == "2024-05-06T07:08:09.500000Z"
    ev = parse_legacy(EXAMPLES["admin-two-groups"][2])
    assert ev.request_received_timestamp == "2024-05-06T07:08:09.123456Z"  # truncated
    ev = parse_legacy(EXAMPLES["only-audit-id"][2])
    assert ev.request_received_timestamp is None


def test_parse_impersonation_shapes() -> None:
    ev = parse_legacy(EXAMPLES["escaping-and-empty-asgroups"][2])
    assert ev.impersonated_user == UserInfo(username="system:serviceaccount:ns:sa", groups=[])
    ev = parse_legacy(EXAMPLES["impersonated-watch-offset-zone"][2])
    assert ev.impersonated_user == UserInfo(username="jane", groups=["dev", "system:authenticated"])
    ev = parse_legacy(EXAMPLES["admin-two-groups"][2])
    assert ev.impersonated_user is msgspec.UNSET
    assert ev.user.groups == ["system:masters", "system:authenticated"]


def test_parse_then_encode_json() -> None:
    ev = parse_legacy(EXAMPLES["failed-authentication"][2])
    assert encode_event(ev) == (
        b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"",'
        b'"auditID":"c0ffee00-1111-4222-8333-444455556666","stage":"ResponseStarted",'
        b'"requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{},'
        b'"sourceIPs":["127.0.0.1"],"userAgent":"curl/8.5.0","objectRef":{"namespace":"default"},'
        b'"responseStatus":{"metadata":{},"code":401},'
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.000001Z","stageTimestamp":null}\n'
    )


# --- placeholders, table-driven ----------------------------------------------------------

BASE = Event(audit_id="x", request_received_timestamp="2024-01-02T03:04:05.000000Z")

PLACEHOLDERS: dict[str, tuple[Event, str, str]] = {
    "no-source-ips": (BASE, "ip", "<unknown>"),
    "empty-source-ips": (msgspec.structs.replace(BASE, source_ips=[]), "ip", "<unknown>"),
    "first-source-ip": (
        msgspec.structs.replace(BASE, source_ips=["10.0.0.1", "10.0.0.2"]),
        "ip",
        "10.0.0.1",
    ),
    "no-user": (BASE, "user", "<none>"),
    "groups-without-username": (
        msgspec.structs.replace(BASE, user=UserInfo(groups=["g"])),
        "groups",
        "<none>",
    ),
    "username-without-groups": (
        msgspec.structs.replace(BASE, user=UserInfo(username="u")),
        "groups",
        "<none>",
    ),
    "username-empty-groups": (
        msgspec.structs.replace(BASE, user=UserInfo(username="u", groups=[])),
        "groups",
        "<none>",
    ),
    "one-group": (
        msgspec.structs.replace(BASE, user=UserInfo(username="u", groups=["a b"])),
        "groups",
        '\\"a b\\"',
    ),
    "no-impersonation": (BASE, "as", "<self>"),
    "impersonation-no-groups": (
        msgspec.structs.replace(BASE, impersonated_user=UserInfo(username="bob")),
        "asgroups",
        "<lookup>",
    ),
    "impersonation-empty-groups": (
        msgspec.structs.replace(BASE, impersonated_user=UserInfo(username="bob", groups=[])),
        "asgroups",
        "",
    ),
    "impersonation-empty-username": (
        msgspec.structs.replace(BASE, impersonated_user=UserInfo()),
        "as",
        "",
    ),
    "no-objectref": (BASE, "namespace", "<none>"),
    "objectref-empty-namespace": (
        msgspec.structs.replace(BASE, object_ref=ObjectReference(namespace="")),
        "namespace",
        "<none>",
    ),
    "no-response": (BASE, "response", "<deferred>"),
    "response-without-code": (
        msgspec.structs.replace(BASE, response_status=Status(message="m")),
        "response",
        "0",
    ),
    "response-code": (
        msgspec.structs.replace(BASE, response_status=Status(code=503)),
        "response",
        "503",
    ),
}


@pytest.mark.parametrize("name", PLACEHOLDERS)
def test_placeholders(name: str) -> None:
    ev, field, value = PLACEHOLDERS[name]
    line = format_legacy(ev)
    assert f' {field}="{value}"' in line


# --- timestamps --------------------------------------------------------------------------

TIMES: dict[str, tuple[str | None, str]] = {
    "absent": (None, "0001-01-01T00:00:00Z"),
    "empty": ("", "0001-01-01T00:00:00Z"),
    "microtime": ("2024-05-06T07:08:09.123450Z", "2024-05-06T07:08:09.12345Z"),
    "whole-second": ("2024-05-06T07:08:09.000000Z", "2024-05-06T07:08:09Z"),
    "no-fraction": ("2024-05-06T07:08:09Z", "2024-05-06T07:08:09Z"),
    "nanoseconds": ("2024-05-06T07:08:09.000000001Z", "2024-05-06T07:08:09.000000001Z"),
    "too-many-digits": ("2024-05-06T07:08:09.1234567891Z", "2024-05-06T07:08:09.123456789Z"),
    "offset": ("2024-05-06T07:08:09.10-05:30", "2024-05-06T07:08:09.1-05:30"),
    "zero-offset": ("2024-05-06T07:08:09+00:00", "2024-05-06T07:08:09Z"),
    "lower-case": ("2024-05-06t07:08:09z", "2024-05-06T07:08:09Z"),
    "garbage": ("yesterday", "yesterday"),
}


@pytest.mark.parametrize("name", TIMES)
def test_rfc3339nano(name: str) -> None:
    given_, want = TIMES[name]
    assert format_rfc3339nano(given_) == want


# --- round trips -------------------------------------------------------------------------


def _events() -> st.SearchStrategy[Event]:
    text = st.text(max_size=12)
    groups = st.one_of(st.just(msgspec.UNSET), st.lists(text, max_size=3))
    micro = st.datetimes(min_value=datetime(1, 1, 1, 0, 0, 1)).map(
        lambda d: d.isoformat(timespec="microseconds") + "Z"
    )
    return st.builds(
        Event,
        audit_id=text,
        stage=text,
        verb=text,
        request_uri=text,
        user=st.builds(
            UserInfo,
            username=st.one_of(st.just(msgspec.UNSET), text.filter(bool)),
            groups=groups,
        ),
        impersonated_user=st.one_of(
            st.just(msgspec.UNSET),
            st.builds(
                UserInfo,
                username=st.one_of(st.just(msgspec.UNSET), text.filter(bool)),
                groups=groups,
            ),
        ),
        source_ips=st.one_of(st.just(msgspec.UNSET), st.lists(text, min_size=1, max_size=1)),
        user_agent=st.one_of(st.just(msgspec.UNSET), text.filter(bool)),
        object_ref=st.one_of(
            st.just(msgspec.UNSET), st.builds(ObjectReference, namespace=text.filter(bool))
        ),
        response_status=st.one_of(
            st.just(msgspec.UNSET),
            st.builds(Status, code=st.integers(-(2**31), 2**31 - 1).filter(bool)),
            st.just(Status()),
        ),
        request_received_timestamp=st.one_of(st.none(), micro),
    )


def _placeholder_free(ev: Event) -> bool:
    """Values spelt like a placeholder cannot be told from it on the way back."""
    imp = ev.impersonated_user
    return (
        ev.username != "<none>"
        and (ev.source_ips is msgspec.UNSET or ev.source_ips[0] != "<unknown>")
        and ev.namespace != "<none>"
        and (imp is msgspec.UNSET or imp.username != "<self>")
    )


@given(_events())
def test_format_parse_format(ev: Event) -> None:
    line = format_legacy(ev)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert is_legacy_line(line.encode())
    back = parse_legacy(line)
    assert format_legacy(back) == line


@given(_events().filter(_placeholder_free))
def test_parse_recovers_carried_fields(ev: Event) -> None:
    back = parse_legacy(format_legacy(ev))
    assert back.audit_id == ev.audit_id
    assert back.stage == ev.stage
    assert back.verb == ev.verb
    assert back.request_uri == ev.request_uri
    assert back.username == ev.username
    if ev.username:
        assert back.groups == ev.groups
    assert back.user_agent == (ev.user_agent or msgspec.UNSET)
    assert back.namespace == ev.namespace
    assert back.code == (ev.code or None if ev.response_status is not msgspec.UNSET else None)
    assert back.request_received_timestamp == ev.request_received_timestamp
    if ev.impersonated_user is msgspec.UNSET:
        assert back.impersonated_user is msgspec.UNSET
    else:
        assert back.impersonated_user == ev.impersonated_user


# --- Go strconv.Quote / Unquote ----------------------------------------------------------

QUOTES: dict[str, tuple[str, str]] = {
    "empty": ("", '""'),
    "plain": ("abc", '"abc"'),
    "quote-backslash": ('a"b\\c', '"a\\"b\\\\c"'),
    "short-escapes": ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
    "other-control": ("\x00\x01\x1b\x7f", '"\\x00\\x01\\x1b\\x7f"'),
    "c1-control": ("\x80\x9f", '"\\u0080\\u009f"'),
    "nbsp-not-printable": ("\u00a0", '"\\u00a0"'),
    "printable-latin": ("j\u00f6hn \u00e9", '"j\u00f6hn \u00e9"'),
    "cjk-and-emoji": ("\u65e5\u672c \U0001f600", '"\u65e5\u672c \U0001f600"'),
    "combining-mark": ("e\u0301", '"e\u0301"'),
    "line-separator": ("\u2028\u2029", '"\\u2028\\u2029"'),
    "zero-width-space": ("\u200b", '"\\u200b"'),
    "bom": ("\ufeff", '"\\ufeff"'),
    "replacement-char": ("\ufffd", '"\ufffd"'),
    "private-use-astral": ("\U000f0000", '"\\U000f0000"'),
    "unassigned": ("\U000e0080", '"\\U000e0080"'),
    "html-kept": ("<a&b>", '"<a&b>"'),
    "single-quote-kept": ("it's", '"it\'s"'),
    "raw-byte": ("a\udcffb", '"a\\xffb"'),
    "raw-bytes-of-broken-utf8": ("\udce2\udc82", '"\\xe2\\x82"'),
}


@pytest.mark.parametrize("name", QUOTES)
def test_go_quote(name: str) -> None:
    s, quoted = QUOTES[name]
    assert go_quote(s) == quoted
    assert go_unquote(quoted) == s


def test_lone_surrogate_quotes_as_replacement_character() -> None:
    assert go_quote("a\ud800b") == '"a\ufffdb"'
    assert go_quote("\udc00") == '"\ufffd"'


UNQUOTES: dict[str, tuple[str, str]] = {
    "octal": ('"\\101\\000\\377"', "A\x00\udcff"),
    "hex-upper": ('"\\x4A\\u00E9"', "J\u00e9"),
    "big-u": ('"\\U0001F600"', "\U0001f600"),
    "utf8-via-hex-bytes": ('"\\xc3\\xa9"', "\u00e9"),
    "raw-control-allowed": ('"a\tb\x01"', "a\tb\x01"),
    "raw-non-ascii": ('"\u00e9\u2028"', "\u00e9\u2028"),
}


@pytest.mark.parametrize("name", UNQUOTES)
def test_go_unquote(name: str) -> None:
    quoted, s = UNQUOTES[name]
    assert go_unquote(quoted) == s


BAD_QUOTED = [
    "",
    "abc",
    '"abc',
    '"a"b',
    '"\\q"',
    '"\\\'"',
    '"\\x4"',
    '"\\xzz"',
    '"\\u12"',
    '"\\ud800"',
    '"\\U00110000"',
    '"\\400"',
    '"\\12"',
    '"a\nb"',
    '"\\',
    '"\ud800"',
]


@pytest.mark.parametrize("quoted", BAD_QUOTED)
def test_go_unquote_rejects(quoted: str) -> None:
    with pytest.raises(ValueError):
        go_unquote(quoted)


@given(st.text())
@example("\"\\'\a\x00\x7f\u2028\ufeff\U0001f600<>&")
def test_quote_unquote_round_trip(s: str) -> None:
    quoted = go_quote(s)
    assert quoted.isprintable(), quoted  # Go's IsPrint is a subset of Python's
    quoted.encode("utf-8")  # always valid UTF-8: no surrogate survives
    assert go_unquote(quoted) == "".join(
        "\ufffd" if 0xD800 <= ord(c) <= 0xDFFF and not 0xDC80 <= ord(c) <= 0xDCFF else c for c in s
    )


@given(st.binary())
def test_quote_of_raw_bytes_round_trips(b: bytes) -> None:
    s = b.decode("utf-8", "surrogateescape")
    back = go_unquote(go_quote(s))
    assert back.encode("utf-8", "surrogateescape") == b


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_ascii_in_printable_ascii_out(s: str) -> None:
    assert all(32 <= ord(c) < 127 for c in go_quote(s))


# --- bad lines ---------------------------------------------------------------------------

GOOD = EXAMPLES["admin-two-groups"][2]

BAD_LINES: dict[str, tuple[str, int, str]] = {
    "empty": ("", 1, "RFC 3339 timestamp"),
    "json": ('{"kind":"Event"}', 1, "RFC 3339 timestamp"),
    "bad-time": (GOOD.replace("2024-05-06T07", "2024-13-06T07", 1), 1, "RFC 3339"),
    "no-marker": (GOOD.replace(" AUDIT: ", " audit: "), 31, "AUDIT"),
    "missing-field": (GOOD.replace(' stage="RequestReceived"', ""), 80, "stage="),
    "fields-swapped": (GOOD.replace("ip=", "IP="), 104, "ip="),
    "unquoted-value": (GOOD.replace('method="get"', "method=get"), 127, "found 'get user"),
    "unterminated": (GOOD[: GOOD.index("uri=") + 10], 285, "unterminated"),
    "bad-escape": (GOOD.replace('user="admin"', 'user="ad\\min"'), 141, "unknown escape"),
    "bad-groups": (GOOD.replace('groups="\\"system:masters\\",', 'groups="x,'), 153, "groups"),
    "bad-response": (GOOD.replace('response="200"', 'response="ok"'), 321, "response"),
    "trailing-text": (GOOD + " extra", len(GOOD) + 1, "end of line"),
}


@pytest.mark.parametrize("name", BAD_LINES)
def test_bad_lines(name: str) -> None:
    line, col, expected = BAD_LINES[name]
    with pytest.raises(DecodeError) as info:
        parse_legacy(line)
    msg = str(info.value)
    assert msg.startswith(f"column {col}: "), msg
    assert expected in msg


def test_bad_line_with_location() -> None:
    with pytest.raises(DecodeError) as info:
        parse_legacy(GOOD.replace(" AUDIT: ", " AUDIT "), Location("audit.log", 7))
    assert info.value.location == Location("audit.log", 7, 31)
    assert str(info.value).startswith("audit.log:7:31: legacy audit line: expected ' AUDIT: '")


def test_crlf_and_newline_accepted() -> None:
    assert parse_legacy(GOOD + "\r\n").audit_id == parse_legacy(GOOD).audit_id


IS_LEGACY: dict[str, tuple[bytes, bool]] = {
    "example": (GOOD.encode(), True),
    "zero-time": (EXAMPLES["only-audit-id"][2].encode(), True),
    "offset": (EXAMPLES["impersonated-watch-offset-zone"][2].encode(), True),
    "json": (b'{"kind":"Event"}', False),
    "klog-line": (b"I0506 07:08:09.123456 1 audit.go:1] AUDIT: id=...", False),
    "no-marker": (b"2024-05-06T07:08:09Z something else", False),
    "empty": (b"", False),
}


@pytest.mark.parametrize("name", IS_LEGACY)
def test_is_legacy_line(name: str) -> None:
    data, want = IS_LEGACY[name]
    assert is_legacy_line(data) is want


# --- kaudit convert ----------------------------------------------------------------------

JSON_LINE = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",'
    b'"auditID":"2f1e5c1a-7b9d-4c3e-9a51-0d6f3b2a8c44","stage":"ResponseComplete",'
    b'"requestURI":"/api/v1/namespaces/default/pods?limit=500","verb":"list",'
    b'"user":{"username":"admin","groups":["system:masters","system:authenticated"]},'
    b'"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0",'
    b'"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},'
    b'"responseStatus":{"metadata":{},"code":200},'
    b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z",'
    b'"stageTimestamp":"2024-05-06T07:08:09.130001Z",'
    b'"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}\n'
)
JSON_LINE_AS_LEGACY = (
    b'2024-05-06T07:08:09.123456Z AUDIT: id="2f1e5c1a-7b9d-4c3e-9a51-0d6f3b2a8c44" '
    b'stage="ResponseComplete" ip="127.0.0.1" method="list" user="admin" '
    b'groups="\\"system:masters\\",\\"system:authenticated\\"" as="<self>" '
    b'asgroups="<lookup>" user-agent="kubectl/v1.36.0 (linux/amd64) kubernetes/abcdef0" '
    b'namespace="default" uri="/api/v1/namespaces/default/pods?limit=500" response="200"\n'
)
LEGACY_LINES = "".join(
    EXAMPLES[n][2] + "\n"
    for n in ("only-audit-id", "failed-authentication", "escaping-and-empty-asgroups")
).encode()


def _run(args: list[str], data: bytes) -> tuple[int, bytes, str]:
    from click.testing import CliRunner

    from kaudit.cli import main

    result = CliRunner().invoke(main, args, input=data)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def test_convert_json_to_legacy() -> None:
    code, out, err = _run(["convert", "--to", "legacy"], JSON_LINE)
    assert (code, out, err) == (0, JSON_LINE_AS_LEGACY, "")


def test_convert_json_to_json_is_identity() -> None:
    code, out, _ = _run(["convert", "--to", "json", "-"], JSON_LINE * 3)
    assert (code, out) == (0, JSON_LINE * 3)


def test_convert_legacy_round_trip() -> None:
    code, as_json, _ = _run(["convert", "--to", "json"], LEGACY_LINES)
    assert code == 0 and as_json.count(b"\n") == 3
    code, back, _ = _run(["convert", "--to", "legacy"], as_json)
    assert code == 0
    # Through JSON the empty impersonated group list is omitted (omitempty): <lookup>.
    assert back == LEGACY_LINES.replace(b'asgroups=""', b'asgroups="<lookup>"')


def test_convert_event_list_and_array() -> None:
    item = JSON_LINE[JSON_LINE.index(b'"level"') - 1 : -1]
    item = b"{" + item[1:]
    event_list = (
        b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
        + item
        + b","
        + item
        + b"]}\n"
    )
    code, out, _ = _run(["convert", "--to", "json"], event_list)
    assert (code, out) == (0, JSON_LINE * 2)
    pretty = json.dumps(json.loads(event_list), indent=2).encode()
    code, out, _ = _run(["convert", "--to", "json"], pretty)
    assert (code, out) == (0, JSON_LINE * 2)
    array = b"[\n" + JSON_LINE.rstrip() + b",\n" + item + b"\n]\n"
    code, out, _ = _run(["convert", "--to", "json"], array)
    assert (code, out) == (0, JSON_LINE * 2)


def test_convert_bad_lines_are_reported_and_skipped() -> None:
    data = JSON_LINE + b"not an event\n" + LEGACY_LINES[:40] + b"\n" + b'{"kind": 0}\n' + JSON_LINE
    code, out, err = _run(["convert", "--to", "json"], data)
    assert code == 1
    assert out == JSON_LINE * 2
    lines = err.splitlines()
    assert lines[0].startswith("<stdin>:2: expected a JSON audit event")
    assert lines[1] == "<stdin>:3: column 41: legacy audit line: id: unterminated quoted string"
    assert lines[2] == "<stdin>:4: Expected `str`, got `int` - at `$.kind`"
    assert lines[3] == "error: 3 bad record(s) skipped"


def test_convert_gzip_file_to_file(tmp_path: pytest.TempPathFactory) -> None:
    import gzip
    from pathlib import Path

    src = Path(str(tmp_path)) / "audit.log.gz"
    src.write_bytes(gzip.compress(JSON_LINE * 2))
    dst = Path(str(tmp_path)) / "audit.legacy"
    code, out, err = _run(["convert", "--to", "legacy", str(src), "-o", str(dst)], b"")
    assert (code, out, err) == (0, b"", "")
    assert dst.read_bytes() == JSON_LINE_AS_LEGACY * 2
    # gzip recognised by its magic number, whatever the name; .gz output compressed.
    plain_name = Path(str(tmp_path)) / "audit.log"
    plain_name.write_bytes(gzip.compress(JSON_LINE))
    out_gz = Path(str(tmp_path)) / "out.jsonl.gz"
    code, _, _ = _run(["convert", "--to", "json", str(plain_name), "-o", str(out_gz)], b"")
    assert code == 0 and gzip.decompress(out_gz.read_bytes()) == JSON_LINE


def test_convert_truncated_gzip(tmp_path: pytest.TempPathFactory) -> None:
    import gzip
    from pathlib import Path

    src = Path(str(tmp_path)) / "audit.log.gz"
    src.write_bytes(gzip.compress(JSON_LINE * 50)[:60])
    code, _, err = _run(["convert", "--to", "legacy", str(src)], b"")
    assert code == 1
    assert f"{src}: cannot read: " in err


def test_convert_usage_errors() -> None:
    code, _, err = _run(["convert"], b"")
    assert code == 2 and "--to" in err
    code, _, err = _run(["convert", "--to", "yaml"], b"")
    assert code == 2
    code, _, err = _run(["convert", "--to", "json", "/nonexistent/audit.log"], b"")
    assert code == 2 and "does not exist" in err


def test_convert_subprocess(tmp_path: pytest.TempPathFactory) -> None:
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "kaudit"
    src = Path(str(tmp_path)) / "legacy.log"
    src.write_bytes(LEGACY_LINES + b"garbage\n")
    proc = subprocess.run(
        [str(exe), "convert", "--to", "json", str(src)], capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stdout.count(b"\n") == 3
    assert proc.stderr.decode().splitlines() == [
        f"{src}:4: expected a JSON audit event, an EventList, a JSON array or a legacy "
        "audit line; got 'garbage'",
        "error: 1 bad record(s) skipped",
    ]
    proc = subprocess.run(
        [str(exe), "convert", "--to", "legacy"], input=proc.stdout, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == LEGACY_LINES.replace(b'asgroups=""', b'asgroups="<lookup>"')
