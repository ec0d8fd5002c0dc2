"""The importer's JSON Lines reader gives exactly what ``iter_records`` gives.

It reads in large chunks and decodes plain event lines itself; everything else goes
through the general parser. These tests compare the two readers on the same bytes
(records, line numbers, quarantined lines and reasons), at many chunk sizes.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from typing import IO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaudit.errors import DecodeError
from kaudit.model.codec import encode_event, encode_event_list
from kaudit.model.documents import Record, iter_records
from kaudit.sources import cloud
from kaudit.sources.importer import _json_lines, _NoLegacy
from kaudit.traffic import generate

EVENTS = list(generate(12, seed=7))
LINES = [encode_event(e)[:-1] for e in EVENTS]
WEBHOOK_ITEM = encode_event(EVENTS[0], typed=False)[:-1]
V1BETA1 = (
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":'
    b'{"creationTimestamp":"2024-05-06T07:08:09Z"},"level":"Metadata","timestamp":'
    b'"2024-05-06T07:08:09Z","auditID":"b1","stage":"ResponseComplete","requestURI":"/api",'
    b'"verb":"get","user":{"username":"u"}}'
)
LEGACY = (
    b'2024-05-06T07:08:09.123456Z AUDIT: id="a1" stage="ResponseComplete" ip="10.0.0.1" '
    b'method="get" user="alice" groups="\\"system:authenticated\\"" as="<self>" '
    b'asgroups="<lookup>" user-agent="kubectl" namespace="default" uri="/api/v1/pods" '
    b'response="200"'
)
PIECES = [
    *LINES,
    WEBHOOK_ITEM,
    V1BETA1,
    LEGACY,
    encode_event_list(EVENTS[:3])[:-1],
    b"[" + b",".join(LINES[3:5]) + b"]",
    b"",
    b"   ",
    b'{"not":"an event"}',
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":',  # cut short
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v2","auditID":"x"}',
    b"hello",
    b'{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"\xff\xfe"}',
    LINES[0] + b"\r",
    LINES[1],  # a duplicate line is still a record (the store drops it)
]


def both(data: bytes, *, no_legacy: bool = False, chunk: int = 1 << 20) -> tuple[list, list]:
    """(records, errors) from the fast reader and from ``iter_records``."""
    out = []
    for fast in (True, False):
        errors: list[tuple[str, bytes]] = []

        def on_error(err: DecodeError, raw: bytes, errors: list = errors) -> None:
            errors.append((str(err), raw))

        adapters = () if no_legacy else (cloud.adapter(None, on_error),)
        stream: IO[bytes] = io.BytesIO(data)
        recs: Iterator[Record]
        if fast:
            recs = _json_lines(
                stream, "in.log", on_error, adapters, no_legacy=no_legacy, chunk_bytes=chunk
            )
        else:
            if no_legacy:
                stream = _NoLegacy(stream, "in.log", on_error)  # type: ignore[assignment]
            recs = iter_records(stream, "in.log", on_error, adapters)
        got = [(encode_event(r.event), r.raw, r.source, r.line) for r in recs]
        out.append((got, errors))
    return out[0], out[1]


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 1 << 22])
@pytest.mark.parametrize("no_legacy", [False, True])
def test_every_kind_of_line_at_every_chunk_size(chunk: int, no_legacy: bool) -> None:
    data = b"\n".join(PIECES) + b"\n"
    fast, general = both(data, no_legacy=no_legacy, chunk=chunk)
    assert fast == general
    records, errors = fast
    assert len(records) >= len(LINES) + 5
    assert errors  # the bad lines were reported, with their line numbers


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbf" + LINES[0] + b"\n" + LINES[1], id="bom-and-no-final-newline"),
        pytest.param(b"\n\n  \n" + LINES[0] + b"\r\n" + LINES[1] + b"\r\n", id="blank-head-crlf"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\n\n", id="only-blank"),
        pytest.param(
            b"\n" + encode_event_list(EVENTS[:4]).replace(b",", b",\n  "), id="pretty-eventlist"
        ),
        pytest.param(b"[\n" + b",\n".join(LINES[:4]) + b"\n]\n", id="array-document"),
        pytest.param(b"[\n" + LINES[0] + b",\n" + LINES[1] + b"\n", id="broken-document"),
        pytest.param(b"{\n" + LINES[0][1:] + b"\n" + LINES[1] + b"\n", id="not-one-document"),
        pytest.param(LEGACY + b"\n" + b"[" + LINES[2] + b"]\n", id="legacy-then-array"),
    ],
)
@pytest.mark.parametrize("chunk", [3, 64, 1 << 20])
def test_file_shapes(data: bytes, chunk: int) -> None:
    for no_legacy in (False, True):
        fast, general = both(data, no_legacy=no_legacy, chunk=chunk)
        assert fast == general


@settings(max_examples=60, deadline=None)
@given(
    picks=st.lists(st.integers(0, len(PIECES) - 1), max_size=25),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    chunk=st.integers(1, 3000),
)
def test_any_mix_of_lines(picks: list[int], crlf: bool, final_newline: bool, chunk: int) -> None:
    sep = b"\r\n" if crlf else b"\n"
    data = sep.join(PIECES[i] for i in picks) + (sep if final_newline and picks else b"")
    assert both(data, chunk=chunk)[0] == both(data, chunk=chunk)[1]


class _Failing(io.RawIOBase):
    """Gives ``data`` in small reads, then fails like a disk (an injected fault)."""

    def __init__(self, data: bytes, fail_at: int) -> None:
        self._data = data
        self._pos = 0
        self._fail_at = fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        if self._pos >= self._fail_at:
            raise OSError(5, "Input/output error")
        n = min(len(b), 50, self._fail_at - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_a_read_error_comes_after_every_complete_line_before_it() -> None:
    data = b"\n".join(LINES) + b"\n"
    cut = len(b"\n".join(LINES[:5])) + 1 + 10  # ten bytes into line 6
    stream = io.BufferedReader(_Failing(data, cut), 64)
    got: list[Record] = []
    with pytest.raises(OSError, match="Input/output error"):
        for rec in _json_lines(stream, "in.log", _no_errors, (), no_legacy=False):
            got.append(rec)
    assert [r.line for r in got] == [1, 2, 3, 4, 5]
    assert [r.raw for r in got] == LINES[:5]


def test_gzip_read_in_small_steps() -> None:
    data = gzip.compress(b"\n".join(LINES) + b"\n")
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        got = list(_json_lines(f, "in.log.gz", _no_errors, (), no_legacy=False))  # type: ignore[arg-type]
    assert [r.raw for r in got] == LINES


def _no_errors(err: DecodeError, raw: bytes) -> None:
    raise AssertionError(f"unexpected error: {err}")


def test_a_document_with_invalid_utf8_is_read_line_by_line() -> None:
    # A first line that opens a document, then a line that is not UTF-8: the reader
    # falls back to lines (invalid bytes read as U+FFFD, as Go's decoder reads them)
    # instead of raising, and reports the lines that are not events.
    data = b'[\n{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"\xff\xfe"}\n]\n'
    errors: list[tuple[str, bytes]] = []
    recs = list(
        iter_records(io.BytesIO(data), "in.log", lambda e, raw: errors.append((str(e), raw)))
    )
    assert [(r.event.audit_id, r.line) for r in recs] == [("\ufffd\ufffd", 2)]
    assert [raw for _, raw in errors] == [b"[", b"]"]
    assert "in.log:1" in errors[0][0] and "in.log:3" in errors[1][0]
