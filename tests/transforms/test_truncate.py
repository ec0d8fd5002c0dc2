"""Truncation exactly as the apiserver's truncate backend (spec 8.5)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kaudit.model import decode_event, encode_event
from kaudit.model.documents import Record
from kaudit.transforms.truncate import (
    ANNOTATION,
    Truncator,
    event_size,
    split_batches,
    truncate_event,
)


def make(level: str, body_bytes: int, audit_id: str = "a") -> Any:
    ev: dict[str, Any] = {
        "level": level,
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/configmaps",
        "verb": "create",
        "user": {"username": "u"},
        "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
        "stageTimestamp": "2024-05-06T07:08:09.123456Z",
    }
    if body_bytes and level != "Metadata":
        ev["requestObject"] = {"data": {"k": "x" * body_bytes}}
    return decode_event(json.dumps(ev))


def test_size_is_the_typed_encoding_with_newline() -> None:
    ev = make("Metadata", 0)
    assert event_size(ev) == len(encode_event(ev))
    assert encode_event(ev).startswith(b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",')


def test_small_events_pass_unchanged() -> None:
    ev = make("Request", 10)
    assert truncate_event(ev, 100_000) == (ev, False)


def test_bodies_removed_and_annotated_when_too_large() -> None:
    ev = make("Request", 5000)
    cut, truncated = truncate_event(ev, 1000)
    assert truncated and cut is not None
    data = json.loads(encode_event(cut))
    assert "requestObject" not in data and "responseObject" not in data
    assert data["annotations"] == {ANNOTATION: "true"}
    assert event_size(cut) <= 1000


def test_metadata_events_are_dropped_never_truncated() -> None:
    ev = make("Metadata", 0)
    assert truncate_event(ev, event_size(ev) - 1) == (None, False)
    assert truncate_event(ev, event_size(ev)) == (ev, False)  # the limit is inclusive


def test_still_too_large_after_truncating_is_dropped() -> None:
    ev = make("RequestResponse", 5000)
    assert truncate_event(ev, 50)[0] is None


def test_truncator_counts_and_reencodes() -> None:
    small, big, meta = (
        make("Request", 10, "s"),
        make("Request", 5000, "b"),
        make("Metadata", 0, "m"),
    )
    recs = [Record(e, encode_event(e)[:-1], "x", i) for i, e in enumerate((small, big, meta))]
    t = Truncator(max_event_bytes=400)
    out = t(recs)
    assert [r.event.audit_id for r in out] == ["s", "b", "m"]
    assert out[0] is recs[0]
    assert out[1].raw == encode_event(out[1].event)[:-1]
    assert (t.truncated, t.dropped) == (1, 0)
    t2 = Truncator(max_event_bytes=200)
    assert [r.event.audit_id for r in t2(recs)] == []
    assert t2.dropped == 3


def test_invalid_limit() -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        Truncator(max_event_bytes=0)


def test_batches_split_by_running_size() -> None:
    evs = [make("Request", 100, str(i)) for i in range(5)]
    n = event_size(evs[0])
    assert [len(b) for b in split_batches(evs, 2 * n)] == [2, 2, 1]
    assert [len(b) for b in split_batches(evs, 2 * n - 1)] == [1, 1, 1, 1, 1]
    # An event larger than the batch limit still goes, alone.
    assert [len(b) for b in split_batches(evs, 1)] == [1, 1, 1, 1, 1]
    assert list(split_batches([], 10)) == []
