"""Fuzzing the webhook body decoder: arbitrary bytes never raise anything but DecodeError."""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaudit.errors import DecodeError
from kaudit.model.codec import encode_event_list
from kaudit.sources.webhook import decode_body
from kaudit.traffic import generate

SEED = encode_event_list(list(generate(5, seed=3)))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _check(body: bytes) -> None:
    try:
        out = decode_body(body)
    except DecodeError as err:
        assert err.location is not None and err.location.source == "webhook"
        return
    for rec in out.records:
        assert b"\n" not in rec.raw
        msgspec.json.decode(rec.raw)  # every stored line is JSON
    for bad in out.bad:
        assert bad.error.detail.startswith(f"items[{bad.index}]")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(body: bytes) -> None:
    _check(body)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    _check(msgspec.json.encode(value))
    _check(msgspec.json.encode({"kind": "EventList", "items": [value]}))


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(SEED)), st.binary(max_size=8))
def test_mutated_real_bodies(cut: int, junk: bytes) -> None:
    _check(SEED[:cut] + junk + SEED[cut:])
    _check(SEED[:cut])
