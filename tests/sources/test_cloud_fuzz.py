"""Untrusted cloud records: any JSON gives events, ``None`` or a DecodeError, never a crash."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_cloud_aks import record
from test_cloud_eks import insights_row
from test_cloud_gke import EXEC, POD_CREATE

from kaudit.errors import DecodeError, Location
from kaudit.model.codec import encode_event
from kaudit.sources.cloud import adapter

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)

SEEDS: list[dict[str, Any]] = [POD_CREATE, EXEC, record(1), json.loads(insights_row(2))]


def mutate(seed: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(seed))
    node = doc
    for key in path[:-1]:
        nxt = node.get(key) if isinstance(node, dict) else None
        if not isinstance(nxt, dict):
            break
        node = nxt
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    return doc


KEYS = st.sampled_from(
    [
        "protoPayload",
        "methodName",
        "resourceName",
        "labels",
        "operation",
        "status",
        "requestMetadata",
        "authorizationInfo",
        "authenticationInfo",
        "request",
        "response",
        "timestamp",
        "insertId",
        "category",
        "properties",
        "log",
        "records",
        "events",
        "logEvents",
        "message",
        "@message",
        "logStreamName",
        "callerIp",
        "code",
        "time",
    ]
)


def check(doc: object) -> None:
    ad = adapter(None, on_error=lambda err, raw: None)
    try:
        found = ad(json.dumps(doc).encode(), Location("fuzz"))
    except DecodeError:
        return
    for ev in found or []:
        encode_event(ev)  # whatever came out can be stored and written


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(KEYS, min_size=1, max_size=3), json_values)
def test_mutated_records(seed: dict[str, Any], path: list[str], value: Any) -> None:
    check(mutate(seed, path, value))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(KEYS, json_values, max_size=5))
def test_arbitrary_objects(doc: dict[str, Any]) -> None:
    check(doc)
