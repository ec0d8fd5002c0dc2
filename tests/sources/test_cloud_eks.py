"""EKS audit logs as CloudWatch Logs hands them out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from ingest_samples import expected, line, lines, stored_events, write

from kaudit.cli import main
from kaudit.errors import DecodeError, Location
from kaudit.model.documents import iter_records
from kaudit.sources.cloud import adapter
from kaudit.store import open_store

STREAM = "kube-apiserver-audit-0123456789abcdef0123456789abcdef"


def insights_row(i: int) -> bytes:
    return json.dumps(
        {
            "@timestamp": "2024-05-06 07:08:09.123",
            "@message": line(i).decode().rstrip("\n"),
            "@logStream": STREAM,
            "@log": "123456789012:/aws/eks/prod/cluster",
        }
    ).encode()


def filter_log_events(ids: range, stream: str = STREAM) -> bytes:
    doc = {
        "events": [
            {
                "logStreamName": stream,
                "timestamp": 1714979289123,
                "message": line(i).decode().rstrip("\n"),
                "ingestionTime": 1714979290000,
                "eventId": f"3792{i:052d}",
            }
            for i in ids
        ],
        "searchedLogStreams": [],
    }
    return json.dumps(doc, indent=4).encode()


def subscription(ids: range) -> bytes:
    return json.dumps(
        {
            "messageType": "DATA_MESSAGE",
            "owner": "123456789012",
            "logGroup": "/aws/eks/prod/cluster",
            "logStream": STREAM,
            "subscriptionFilters": ["to-kaudit"],
            "logEvents": [
                {"id": str(i), "timestamp": 1714979289123, "message": line(i).decode()[:-1]}
                for i in ids
            ],
        }
    ).encode()


def read(data: bytes, fmt: str | None = None) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    import io

    bad: list[tuple[str, bytes]] = []

    def on_error(err: DecodeError, raw: bytes) -> None:
        bad.append((str(err), raw))

    ad = adapter([fmt] if fmt else None, on_error)
    recs = list(iter_records(io.BytesIO(data), "x.json", on_error, [ad]))
    return [r.raw for r in recs], bad


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\n".join(insights_row(i) for i in range(3)), id="insights-rows"),
        pytest.param(
            b"\n".join(
                json.dumps({"timestamp": 1, "message": line(i).decode()[:-1]}).encode()
                for i in range(3)
            ),
            id="export-lines",
        ),
        pytest.param(filter_log_events(range(3)), id="filter-log-events"),
        pytest.param(subscription(range(3)), id="subscription"),
    ],
)
def test_shapes_give_the_apiserver_lines_back(data: bytes) -> None:
    raws, bad = read(data, "eks")
    assert bad == []
    assert raws == [line(i)[:-1] for i in range(3)]


def test_other_log_streams_are_reported_one_by_one() -> None:
    doc = json.loads(filter_log_events(range(2)))
    doc["events"].insert(
        1,
        {
            "logStreamName": "authenticator-0123",
            "timestamp": 1,
            "message": 'time="2024-05-06T07:08:09Z" level=info msg="access granted"',
        },
    )
    doc["events"].append({"logStreamName": STREAM, "timestamp": 1, "message": "{not json"})
    raws, bad = read(json.dumps(doc).encode())
    assert raws == [line(0)[:-1], line(1)[:-1]]
    assert len(bad) == 2
    assert bad[0][0] == (
        'x.json:1: events[1].logStreamName: log stream "authenticator-0123" is not an EKS '
        'audit stream (expected "kube-apiserver-audit-..."); not a Kubernetes audit event'
    )
    assert json.loads(bad[0][1])["logStreamName"] == "authenticator-0123"
    assert bad[1][0].startswith("x.json:1: events[3].message: ")


def test_control_message_holds_nothing() -> None:
    raws, bad = read(json.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []}).encode())
    assert raws == [] and bad == []


def test_ingest_cloudwatch_export(tmp_path: Path) -> None:
    store = tmp_path / "store"
    data = b"\n".join(insights_row(i) for i in range(5)) + b"\n"
    export = write(tmp_path / "eks.json", data)
    array = write(tmp_path / "events.json", filter_log_events(range(5, 8)))
    r = CliRunner().invoke(
        main,
        [
            "ingest",
            "--store",
            str(store),
            "--cluster",
            "prod",
            "--format",
            "eks",
            "--output",
            "json",
            str(export),
            str(array),
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 8
    assert stored_events(open_store(store)) == expected(lines(0, 8))


def test_errors_name_the_place() -> None:
    ad = adapter(["eks"])
    with pytest.raises(DecodeError) as exc:
        ad(json.dumps({"@message": 5}).encode(), Location("f", 3))
    assert str(exc.value) == (
        "f:3: @message: expected the audit event as a JSON string, got a number"
    )
