"""The native scanner: every line it accepts gives exactly the exact reader's row.

The exact reader is ``decode_event`` + ``flatten``. For each line the scanner accepts,
its row must equal that row column for column; a line it rejects is read by the exact
reader anyway, so rejecting is always allowed, but the shapes a real apiserver writes
must be accepted (else nothing is gained) and the shapes where JSON readers disagree
(repeated keys, null, other types, surrogates) must be rejected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaudit.store.scan as scan_mod
from kaudit.cli import main
from kaudit.errors import DecodeError
from kaudit.model.codec import decode_event, encode_event
from kaudit.model.documents import Record
from kaudit.store import open_store
from kaudit.store.dedup import keys_of
from kaudit.store.flatten import flatten
from kaudit.store.scan import available, scan_buffer, scan_lines
from kaudit.traffic import generate_lines

BASE: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "6f1c9a3e-0000-4000-8000-000000000001",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/configmaps/app?fieldManager=kubectl&x=<y>",
    "verb": "delete",
    "user": {
        "username": "alice@example.com",
        "uid": "u-1",
        "groups": ["dev", "system:authenticated"],
        "extra": {"scopes": ["openid", "email"]},
    },
    "sourceIPs": ["10.0.0.7", "192.168.1.1"],
    "userAgent": "kubectl/v1.30.0 (linux/amd64) kubernetes/abcdef",
    "objectRef": {
        "resource": "configmaps",
        "namespace": "default",
        "name": "app",
        "apiVersion": "v1",
    },
    "responseStatus": {"metadata": {}, "code": 200},
    "requestReceivedTimestamp": "2024-05-06T07:08:09.123456Z",
    "stageTimestamp": "2024-05-06T07:08:09.234567Z",
    "annotations": {
        "authorization.k8s.io/decision": "allow",
        "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "admin"',
    },
}


def line_of(obj: dict[str, Any]) -> bytes:
    """The apiserver's bytes for an event given as a dict (Go's order and escaping)."""
    return encode_event(decode_event(json.dumps(obj)))[:-1]


def exact(lines: list[bytes]) -> pa.Table:
    return flatten(
        [Record(decode_event(ln.rstrip(b"\r")), ln.rstrip(b"\r"), "t", 0) for ln in lines]
    )


def assert_same_rows(lines: list[bytes]) -> tuple[int, list[int]]:
    """Scan ``lines``; the accepted ones must give the exact reader's rows."""
    table, rejected = scan_lines(lines)
    accepted = [ln for i, ln in enumerate(lines) if i not in set(rejected)]
    assert sorted(rejected) == rejected
    if table is None:
        assert not accepted
        return 0, rejected
    want = exact(accepted)
    assert table.schema == want.schema
    for name in want.column_names:
        assert table[name].to_pylist() == want[name].to_pylist(), name
    return table.num_rows, rejected


def accepted(line: bytes) -> bool:
    n, _ = assert_same_rows([line])
    return n == 1


def test_the_scanner_is_built() -> None:
    # pip install compiles it; without it ingest is correct but several times slower.
    assert available()


def test_generated_traffic_gives_the_exact_rows_and_is_mostly_read_natively() -> None:
    lines = [ln.rstrip(b"\n") for ln in generate_lines(3000, seed=7)]
    n, rejected = assert_same_rows(lines)
    # Only events with a request or response body are left to the exact reader.
    with_bodies = [
        i for i, ln in enumerate(lines) if b'"requestObject"' in ln or b'"responseObject"' in ln
    ]
    assert rejected == with_bodies
    assert n == len(lines) - len(with_bodies) > 2000


def test_a_typical_line_is_accepted() -> None:
    assert accepted(line_of(BASE))


@pytest.mark.parametrize(
    "change",
    [
        {"objectRef": {"resource": "pods", "namespace": "", "name": ""}},  # "" -> null
        {"objectRef": {"resource": "pods", "apiGroup": "", "subresource": "exec"}},
        {"objectRef": {"namespace": "ns"}},  # no resource: api_group null
        {"objectRef": {"resource": "", "apiVersion": ""}},
        {"objectRef": {}},
        {
            "objectRef": {
                "resource": "deployments",
                "apiGroup": "apps",
                "uid": "x",
                "resourceVersion": "9",
            }
        },
        {"impersonatedUser": {"username": "system:serviceaccount:a:b", "groups": ["g"]}},
        {"impersonatedUser": {"groups": ["g"]}},  # impersonated user without a name
        {"impersonatedUser": {}},
        {"user": {}},
        {"user": {"groups": []}},
        {"sourceIPs": []},
        {"annotations": {}},
        {"annotations": {"a": "1", "b": "2"}},  # neither decision nor reason
        {"annotations": {"authorization.k8s.io/decision": "forbid"}},
        {
            "responseStatus": {
                "metadata": {},
                "status": "Failure",
                "message": 'pods "x" not found',
                "reason": "NotFound",
                "details": {
                    "name": "x",
                    "kind": "pods",
                    "causes": [{"reason": "FieldValueInvalid", "field": "a[0]"}],
                    "retryAfterSeconds": 1.5,
                },
                "code": 404,
            }
        },
        {"responseStatus": {"metadata": {"resourceVersion": "1", "continue": "c"}, "code": -7}},
        {"responseStatus": {"message": "", "reason": ""}},  # "" stays ""
        {"responseStatus": {"code": 2147483647}},
        {"userAgent": 'tab\there "quoted" back\\slash \u00e9\u4e2d\U0001f600 <&> \u2028'},
        {"requestURI": "/x?a=1&b=\u0000\u001f"},
        {"auditID": "", "stage": "", "verb": "", "level": "", "requestURI": ""},
        {
            "requestReceivedTimestamp": "2024-05-06T07:08:09Z",
            "stageTimestamp": "2024-05-06T07:08:09.1+02:00",
        },
        {"authenticationMetadata": {"impersonationConstraint": "constrained"}},
    ],
)
def test_accepted_shapes_give_the_exact_row(change: dict[str, Any]) -> None:
    obj = {**BASE}
    for k, v in change.items():
        obj[k] = v
    for k in [k for k, v in change.items() if v is None]:
        del obj[k]
    line = line_of(obj)
    assert accepted(line), line


def test_every_optional_field_may_be_absent() -> None:
    for key in ("sourceIPs", "userAgent", "objectRef", "responseStatus", "annotations"):
        obj = {k: v for k, v in BASE.items() if k != key}
        assert accepted(line_of(obj)), key


def test_escapes_in_values_are_decoded_as_the_exact_reader_does() -> None:
    raw = line_of(BASE).replace(b'"verb":"delete"', b'"verb":"d\\u0065l\\/ete\\n\\u00e9\\u4e2d"')
    assert accepted(raw)
    table, _ = scan_lines([raw])
    assert table is not None
    assert table["verb"].to_pylist() == ["del/ete\n\u00e9\u4e2d"]


def test_a_trailing_carriage_return_is_not_part_of_the_event() -> None:
    line = line_of(BASE)
    table, rejected = scan_lines([line + b"\r"])
    assert table is not None and not rejected
    assert table["event"].to_pylist() == [line.decode()]


def _swap(line: bytes, old: bytes, new: bytes) -> bytes:
    assert old in line, old
    return line.replace(old, new, 1)


L = line_of(BASE)

REJECTED = {
    # Keys repeated: JSON readers disagree on which value wins.
    "repeated top key": _swap(L, b'"verb":"delete",', b'"verb":"get","verb":"delete",'),
    "repeated nested key": _swap(L, b'"name":"app"', b'"name":"x","name":"app"'),
    "repeated annotation": _swap(
        L, b'"annotations":{', b'"annotations":{"authorization.k8s.io/decision":"forbid",'
    ),
    "unsorted annotations": _swap(L, b'"annotations":{', b'"annotations":{"z":"1",'),
    "escaped key": _swap(L, b'"verb":', b'"\\u0076erb":'),
    "key out of order": _swap(
        L,
        b'"level":"Metadata","auditID":"6f1c9a3e-0000-4000-8000-000000000001"',
        b'"auditID":"6f1c9a3e-0000-4000-8000-000000000001","level":"Metadata"',
    ),
    "unknown key": _swap(L, b'"verb":"delete",', b'"verb":"delete","extraKey":1,'),
    # null, and values of another type
    "null value": _swap(
        L, b'"userAgent":"kubectl/v1.30.0 (linux/amd64) kubernetes/abcdef"', b'"userAgent":null'
    ),
    "null in a list": _swap(L, b'"sourceIPs":["10.0.0.7"', b'"sourceIPs":[null,"10.0.0.7"'),
    "number for a string": _swap(L, b'"verb":"delete"', b'"verb":5'),
    "string for a code": _swap(L, b'"code":200', b'"code":"200"'),
    "float code": _swap(L, b'"code":200', b'"code":200.0'),
    "exponent code": _swap(L, b'"code":200', b'"code":2e2'),
    "minus zero code": _swap(L, b'"code":200', b'"code":-0'),
    "leading zero code": _swap(L, b'"code":200', b'"code":0200'),
    "code beyond int32": _swap(L, b'"code":200', b'"code":2147483648'),
    "object for a list": _swap(L, b'"groups":["dev","system:authenticated"]', b'"groups":{}'),
    "number annotation": _swap(
        L, b'"authorization.k8s.io/decision":"allow"', b'"authorization.k8s.io/decision":1'
    ),
    # strings the readers may treat differently
    "lone surrogate": _swap(L, b'"verb":"delete"', b'"verb":"\\ud800"'),
    "surrogate pair": _swap(L, b'"verb":"delete"', b'"verb":"\\ud83d\\ude00"'),
    "invalid utf-8": _swap(L, b'"verb":"delete"', b'"verb":"\xff"'),
    "overlong utf-8": _swap(L, b'"verb":"delete"', b'"verb":"\xc0\xaf"'),
    "encoded surrogate": _swap(L, b'"verb":"delete"', b'"verb":"\xed\xa0\x80"'),
    "raw control character": _swap(L, b'"verb":"delete"', b'"verb":"a\tb"'),
    "bad escape": _swap(L, b'"verb":"delete"', b'"verb":"\\x"'),
    "short unicode escape": _swap(L, b'"verb":"delete"', b'"verb":"\\u12"'),
    # what is not the apiserver's compact shape
    "whitespace": _swap(L, b'"verb":"delete"', b'"verb": "delete"'),
    "trailing text": L + b" x",
    "trailing space": L + b" ",
    "two objects": L + L,
    "cut short": L[:-1],
    "missing required field": _swap(L, b'"stage":"ResponseComplete",', b""),
    # timestamps not in Go's MicroTime form: their parsing is the exact reader's
    "timestamp without micros": _swap(
        L,
        b'"stageTimestamp":"2024-05-06T07:08:09.234567Z"',
        b'"stageTimestamp":"2024-05-06T07:08:09Z"',
    ),
    "timestamp with an offset": _swap(
        L,
        b'"stageTimestamp":"2024-05-06T07:08:09.234567Z"',
        b'"stageTimestamp":"2024-05-06T07:08:09.234567+00:00"',
    ),
    "year zero": _swap(L, b'"requestReceivedTimestamp":"2024', b'"requestReceivedTimestamp":"0000'),
    "not a time": _swap(
        L,
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z"',
        b'"requestReceivedTimestamp":"not a time"',
    ),
    "escaped time": _swap(
        L,
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z"',
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456\\u005a"',
    ),
    "EventList near the start": _swap(
        L, b'"auditID":"6f1c9a3e-0000-4000-8000-000000000001"', b'"auditID":"EventList"'
    ),
    "request body": _swap(
        L, b'"requestReceivedTimestamp"', b'"requestObject":{"a":1},"requestReceivedTimestamp"'
    ),
    "response body": _swap(
        L, b'"requestReceivedTimestamp"', b'"responseObject":{"a":1},"requestReceivedTimestamp"'
    ),
    "another kind": _swap(L, b'"kind":"Event"', b'"kind":"EventList"'),
    "v1beta1": _swap(L, b'"apiVersion":"audit.k8s.io/v1"', b'"apiVersion":"audit.k8s.io/v1beta1"'),
    "webhook item (no kind)": L.replace(b'"kind":"Event","apiVersion":"audit.k8s.io/v1",', b"", 1),
    "legacy line": b'2024-05-06T07:08:09.123456Z AUDIT: id="x" stage="ResponseComplete"',
    "empty": b"",
    "blank": b"   ",
    "bad details": _swap(L, b'"metadata":{}', b'"metadata":{},"details":{"a":tru}'),
    "nested too deep": _swap(L, b'"metadata":{}', b'"metadata":' + b"[" * 70 + b"]" * 70),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_shapes_where_readers_may_differ_are_left_to_the_exact_reader(name: str) -> None:
    table, rejected = scan_lines([REJECTED[name]])
    assert table is None and rejected == [0], name


def test_the_dedup_keys_the_scanner_computes_are_the_stores() -> None:
    # Lines of every length modulo 64 (SHA-256 pads to 64-byte blocks).
    lines = [_swap(L, b'"userAgent":"', b'"userAgent":"' + b"x" * k) for k in range(130)]
    lines += [ln.rstrip(b"\n") for ln in generate_lines(500, seed=5)]
    got = scan_buffer(b"".join(ln + b"\n" for ln in lines), final=True)
    assert got.table is not None
    native = scan_mod._native
    assert native is not None
    assert (got.keys is not None) == native.hashes()
    if got.keys is not None:
        assert got.keys == keys_of(got.table)


def test_a_rows_timestamps_do_not_depend_on_its_batch() -> None:
    # Arrow's parser takes year 0; Python's does not take 7 fraction digits: whatever
    # the batch, a value is parsed as it would be alone.
    a = _swap(L, b'"requestReceivedTimestamp":"2024', b'"requestReceivedTimestamp":"0000')
    b = _swap(
        L,
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.123456Z"',
        b'"requestReceivedTimestamp":"2024-05-06T07:08:09.1234567Z"',
    )
    alone = [exact([x])["ts"][0].value for x in (a, b)]
    together = exact([a, b])["ts"].cast(pa.int64()).to_pylist()
    assert together == alone
    assert alone[0] == -62156307110876544  # 0000-05-06T07:08:09.123456Z, as Arrow reads it


def test_a_rejected_line_among_accepted_ones_keeps_its_index() -> None:
    lines = [L, REJECTED["null value"], L, b"garbage", L]
    table, rejected = scan_lines(lines)
    assert rejected == [1, 3]
    assert table is not None and table.num_rows == 3


_JSON_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    verb=_JSON_TEXT,
    name=_JSON_TEXT,
    ns=_JSON_TEXT,
    user=_JSON_TEXT,
    groups=st.lists(_JSON_TEXT, max_size=3),
    ips=st.lists(_JSON_TEXT, max_size=3),
    ann=st.dictionaries(_JSON_TEXT, _JSON_TEXT, max_size=4),
    code=st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
)
def test_generated_events_give_the_exact_rows(
    verb: str,
    name: str,
    ns: str,
    user: str,
    groups: list[str],
    ips: list[str],
    ann: dict[str, str],
    code: int | None,
) -> None:
    obj: dict[str, Any] = {**BASE, "verb": verb, "sourceIPs": ips, "annotations": ann}
    obj["user"] = {"username": user, "groups": groups}
    obj["objectRef"] = {"resource": "pods", "namespace": ns, "name": name}
    obj["responseStatus"] = {"metadata": {}} if code is None else {"metadata": {}, "code": code}
    line = line_of(obj)
    n, _ = assert_same_rows([line])
    # Go's encoding is always accepted, unless an annotation key needs an escape.
    if not any("\\" in json.dumps(k) or k in ("<", ">", "&") for k in ann):
        assert n == 1, line


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_damaged_lines_are_rejected_or_give_the_exact_row(data: st.DataObject) -> None:
    # Cut, repeat or replace any byte range of a real line: whatever the scanner
    # still accepts must be what the exact reader reads.
    line = L
    i = data.draw(st.integers(0, len(line)))
    j = data.draw(st.integers(i, min(len(line), i + 40)))
    filler = data.draw(
        st.sampled_from(
            [
                b"",
                b"null",
                b",",
                b'"',
                b"\\",
                b" ",
                b"{}",
                b"[]",
                b"1",
                line[i:j],
                b'"x":"y"',
                b"\xc3",
            ]
        )
    )
    damaged = line[:i] + filler + line[j:]
    try:
        decode_event(damaged)
    except DecodeError:
        table, rejected = scan_lines([damaged])
        assert table is None and rejected == [0]
        return
    assert_same_rows([damaged])


# --- through the importer ------------------------------------------------------------


def _rows(store_path: Path) -> list[dict[str, Any]]:
    store = open_store(store_path)
    table = store.query("SELECT * EXCLUDE (ts) FROM events ORDER BY audit_id, stage, event")
    return table.to_pylist()


def test_ingest_stores_the_same_rows_with_and_without_the_scanner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [ln.rstrip(b"\n") for ln in generate_lines(2000, seed=3)]
    bad = [b"not json", REJECTED["null value"], b'{"kind":"Event"', REJECTED["repeated top key"]]
    for k, b in enumerate(bad):
        lines.insert(100 + 300 * k, b)
    log = tmp_path / "audit.log"
    log.write_bytes(b"\r\n".join(lines) + b"\r\n")

    def run(store: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        q = tmp_path / f"{store.name}.quarantine.jsonl"
        res = CliRunner().invoke(
            main,
            [
                "ingest",
                "--store",
                str(store),
                "--cluster",
                "c1",
                "--output",
                "json",
                "--quarantine",
                str(q),
                "--batch-size",
                "700",
                str(log),
            ],
        )
        assert res.exit_code == 0, res.output
        quarantined = [json.loads(x) for x in q.read_text().splitlines()]
        return json.loads(res.output), quarantined

    fast, fast_q = run(tmp_path / "fast")
    monkeypatch.setattr(scan_mod, "_native", None)
    slow, slow_q = run(tmp_path / "slow")
    for key in ("events_read", "stored", "duplicates", "quarantined", "redacted"):
        assert fast[key] == slow[key], key
    # The line with a repeated key is an event (the exact reader keeps the last value);
    # the other three are quarantined, with the same line numbers and reasons.
    assert fast["stored"] == 2001
    assert [(q["line"], q["reason"]) for q in fast_q] == [(q["line"], q["reason"]) for q in slow_q]
    assert [q["line"] for q in fast_q] == [101, 401, 701]
    assert _rows(tmp_path / "fast") == _rows(tmp_path / "slow")


@pytest.mark.parametrize(
    "value",
    [
        b'{"a":1e999}',
        b"-0",
        b"123456789012345678901234567890",
        b"[" * 60 + b"]" * 60,
        b"0.5e-3",
        b"1E+2",
        b'"\\u00e9\\u0000"',
        b"true",
        b"null",
        b'{"causes":[{"a":[]}]}',
    ],
)
def test_details_may_hold_any_json_value(value: bytes) -> None:
    # responseStatus.details is kept raw by the exact reader: any JSON value.
    assert accepted(_swap(L, b'"metadata":{}', b'"metadata":{},"details":' + value))


@pytest.mark.parametrize("native", [True, False])
def test_scan_buffer_reads_whole_lines_and_leaves_the_rest(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not native:  # the same contract without the extension: every line rejected
        monkeypatch.setattr(scan_mod, "_native", None)
    buf = b"garbage\r\n" + L + b"\n" + L + b"\r\n" + L[:40]
    got = scan_buffer(buf, 0)
    assert got.lines == 3
    assert got.end == len(buf) - 40  # the cut last line waits for more
    assert buf[got.end :] == L[:40]
    assert got.rejected[0] == (0, 0, len(b"garbage\r"))  # "\r" kept, "\n" not
    if native:
        assert got.table is not None and got.table.num_rows == 2
        assert got.table["event"].to_pylist() == [L.decode()] * 2
    assert [i for i, _, _ in got.rejected] == ([0] if native else [0, 1, 2])
    tail = scan_buffer(buf, got.end, final=True)  # at the end of the input
    assert (tail.lines, tail.end, [r[0] for r in tail.rejected]) == (1, len(buf), [0])
    empty = scan_buffer(buf, len(buf), final=True)
    assert (empty.lines, empty.end, empty.rejected, empty.table) == (0, len(buf), [], None)


def test_an_import_keeps_its_batch_size_and_quarantines_bad_lines_first(tmp_path: Path) -> None:
    from kaudit.sources.files import Input
    from kaudit.sources.importer import ingest
    from kaudit.sources.quarantine import Quarantine

    good = [ln.rstrip(b"\n") for ln in generate_lines(9, seed=11)]
    log = tmp_path / "audit.log"
    log.write_bytes(b"\n".join([good[0], b"bad line", *good[1:]]) + b"\n")
    store = open_store(tmp_path / "s")
    calls: list[tuple[int, int]] = []  # (rows stored, lines quarantined by then)
    with store.writer() as w, Quarantine(tmp_path / "q.jsonl") as q:

        class Recording:
            def append_table(
                self, table: pa.Table, *, durable: bool = True, keys: list[str] | None = None
            ) -> object:
                calls.append((table.num_rows, q.count))
                return w.append_table(table, durable=durable, keys=keys)

        st = ingest([Input(str(log), log)], Recording(), q, batch_size=4)
    assert (st.read, st.stored, st.quarantined) == (9, 9, 1)
    assert [n for n, _ in calls] == [4, 4, 1]
    assert calls[0][1] == 1  # line 2 was quarantined before any row after it was stored


def test_a_line_over_64_mib_is_left_to_the_exact_reader() -> None:
    # The columns' offsets are 32-bit: huge lines never reach them.
    huge = _swap(L, b'"userAgent":"', b'"userAgent":"' + b"x" * (64 << 20))
    table, rejected = scan_lines([L, huge])
    assert rejected == [1]
    assert table is not None and table.num_rows == 1


def test_scan_buffer_takes_only_bytes() -> None:
    native = scan_mod._native
    assert native is not None
    with pytest.raises(TypeError):
        native.scan(bytearray(L + b"\n"), 0, True)  # could change while it is read
    with pytest.raises(ValueError, match="outside"):
        native.scan(L, len(L) + 1, True)


def test_kaudit_scanner_off_reads_every_line_exactly(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = "from kaudit.store import scan; print(scan.available())"
    env = {k: v for k, v in os.environ.items() if k != "KAUDIT_SCANNER"}
    run = [sys.executable, "-c", code]
    off = subprocess.run(run, env={**env, "KAUDIT_SCANNER": "off"}, capture_output=True, text=True)
    on = subprocess.run(run, env=env, capture_output=True, text=True)
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True")
