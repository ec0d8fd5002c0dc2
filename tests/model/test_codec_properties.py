"""Properties of the JSON codec over generated events (hypothesis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from kaudit.model.codec import (
    canonical,
    decode_event,
    decode_event_list,
    encode_event,
    encode_event_list,
)
from kaudit.model.types import (
    AuthenticationMetadata,
    Event,
    ObjectReference,
    Status,
    UserInfo,
)

# Text that stresses Go's escaping, mixed with arbitrary text (no lone surrogates: see
# test_lone_surrogates_become_replacement_characters).
TRICKY = "<>&\u2028\u2029\x00\x01\x08\x0c\x1f\x7f\"\\\n\r\t é日🎉\ufeff\ufffd/'"
text = st.one_of(st.text(max_size=16), st.text(alphabet=TRICKY, max_size=16))
nonempty = text.filter(bool)


def _opt(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(msgspec.UNSET), s)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def raw_bodies(draw: st.DrawFn) -> msgspec.Raw:
    value = draw(st.dictionaries(text, json_values, max_size=5))
    indent = draw(st.sampled_from([None, 1, 2]))
    ascii_only = draw(st.booleans())
    return msgspec.Raw(json.dumps(value, indent=indent, ensure_ascii=ascii_only).encode())


@st.composite
def timestamps(draw: st.DrawFn) -> str | None:
    dt = draw(
        st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
        )
    )
    kind = draw(st.sampled_from(["none", "micro", "seconds", "nanos", "offset"]))
    if kind == "none":
        return None
    if kind == "micro":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}Z"
    if kind == "seconds":
        return dt.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    if kind == "nanos":
        return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "789Z"
    minutes = draw(st.integers(-12 * 60, 12 * 60))
    return dt.astimezone(timezone(timedelta(minutes=minutes))).isoformat()


users = st.builds(
    UserInfo,
    username=_opt(text),
    uid=_opt(text),
    groups=_opt(st.lists(text, max_size=3)),
    extra=_opt(st.dictionaries(text, st.lists(text, max_size=2), max_size=3)),
)

statuses = st.builds(
    Status,
    kind=_opt(st.just("Status")),
    api_version=_opt(st.just("v1")),
    status=_opt(st.sampled_from(["Success", "Failure", ""])),
    message=_opt(text),
    reason=_opt(text),
    details=_opt(raw_bodies()),
    code=_opt(st.integers(0, 599)),
)

events = st.builds(
    Event,
    level=st.sampled_from(["Metadata", "Request", "RequestResponse", ""]),
    audit_id=nonempty,
    stage=st.sampled_from(["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]),
    request_uri=text,
    verb=text,
    user=users,
    impersonated_user=_opt(users),
    authentication_metadata=_opt(
        st.builds(AuthenticationMetadata, impersonation_constraint=_opt(text))
    ),
    source_ips=_opt(st.lists(text, max_size=3)),
    user_agent=_opt(text),
    object_ref=_opt(
        st.builds(
            ObjectReference,
            resource=_opt(text),
            namespace=_opt(text),
            name=_opt(text),
            api_group=_opt(text),
            api_version=_opt(text),
            subresource=_opt(text),
        )
    ),
    response_status=_opt(statuses),
    request_object=_opt(raw_bodies()),
    response_object=_opt(raw_bodies()),
    request_received_timestamp=timestamps(),
    stage_timestamp=timestamps(),
    annotations=_opt(st.dictionaries(text, text, max_size=4)),
)


def _plain_json(ev: Event) -> Any:
    """What ``ev`` means as JSON data, by msgspec's own (not Go-escaped) encoding."""
    data = json.loads(msgspec.json.encode(canonical(ev)))
    return {"kind": "Event", "apiVersion": "audit.k8s.io/v1", **data}


@settings(max_examples=300)
@given(events)
def test_encode_decode_encode_is_stable(ev: Event) -> None:
    out = encode_event(ev)
    again = decode_event(out)
    assert encode_event(again) == out
    assert encode_event(again, typed=False) == encode_event(ev, typed=False)


@settings(max_examples=300)
@given(events)
def test_output_is_go_shaped_json_with_the_same_data(ev: Event) -> None:
    out = encode_event(ev)
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert raw not in out
    assert not any(b < 0x20 for b in out[:-1])  # control characters all escaped
    data = json.loads(out)
    assert data == _plain_json(ev)
    for name, raw_body in (
        ("requestObject", ev.request_object),
        ("responseObject", ev.response_object),
    ):
        if raw_body is not msgspec.UNSET:
            assert data[name] == json.loads(bytes(raw_body))
    if ev.annotations:
        assert list(data["annotations"]) == sorted(ev.annotations)


@given(st.lists(events, max_size=4))
def test_event_list_round_trip(evs: list[Event]) -> None:
    body = encode_event_list(evs)
    back = decode_event_list(body)
    assert [encode_event(e) for e in back] == [encode_event(e) for e in evs]
    doc = json.loads(body)
    assert list(doc) == ["kind", "apiVersion", "metadata", "items"]
    assert all("kind" not in item and "apiVersion" not in item for item in doc["items"])


@given(st.text(alphabet=st.characters(categories=["Cs"]) | st.sampled_from("a<\u2028"), min_size=1))
def test_lone_surrogates_become_replacement_characters(s: str) -> None:
    """kaudit's choice, after Go: what is not UTF-8 is written as \\ufffd."""
    out = encode_event(Event(audit_id=s, annotations={s: s}))
    want = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
    data = json.loads(out)
    assert data["auditID"] == want
    assert data["annotations"] == {want: want}
    # Like Go: the \ufffd escape reads back as U+FFFD, which is then written raw.
    out2 = encode_event(decode_event(out))
    assert out2 == out.replace(b"\\ufffd", "\ufffd".encode())
    assert encode_event(decode_event(out2)) == out2


@given(st.binary(max_size=32))
def test_any_bytes_in_a_string_decode_as_go_would(b: bytes) -> None:
    line = b'{"auditID":"x","userAgent":"' + b.replace(b"\\", b"").replace(b'"', b"") + b'"}'
    try:
        ev = decode_event(line)
    except Exception as exc:  # control characters are not allowed raw in JSON strings
        assert type(exc).__name__ == "DecodeError"
        return
    out = encode_event(ev)
    assert encode_event(decode_event(out)) == out
