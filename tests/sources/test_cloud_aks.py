"""AKS audit logs from Azure diagnostic settings."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ingest_samples import event, expected, line, lines, stored_events, write

from kaudit.cli import main
from kaudit.errors import DecodeError
from kaudit.model.documents import iter_records
from kaudit.sources.cloud import adapter
from kaudit.store import open_store

RESOURCE = (
    "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/"
    "MANAGEDCLUSTERS/PROD"
)


def record(i: int, *, category: str = "kube-audit", as_object: bool = False) -> dict[str, Any]:
    text = line(i).decode().rstrip("\n")
    return {
        "attrs": "",
        "category": category,
        "ccpNamespace": "abc",
        "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "properties": {
            "log": json.loads(text) if as_object else text,
            "pod": "kube-apiserver-7d9c",
            "stream": "stdout",
        },
        "resourceId": RESOURCE,
        "time": "2024-05-06T07:08:10.0000000Z",
        "Cloud": "AzureCloud",
    }


ACTIVITY = {
    "category": "Administrative",
    "operationName": "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/WRITE",
    "resourceId": RESOURCE,
    "time": "2024-05-06T07:08:10Z",
}


def read(data: bytes) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    bad: list[tuple[str, bytes]] = []

    def on_error(err: DecodeError, raw: bytes) -> None:
        bad.append((str(err), raw))

    recs = list(iter_records(io.BytesIO(data), "aks.json", on_error, [adapter(["aks"], on_error)]))
    return [r.raw for r in recs], bad


@pytest.mark.parametrize("as_object", [False, True], ids=["log-string", "log-object"])
def test_records_one_per_line(as_object: bool) -> None:
    data = b"\n".join(json.dumps(record(i, as_object=as_object)).encode() for i in range(3))
    raws, bad = read(data)
    assert bad == []
    assert raws == [line(i)[:-1] for i in range(3)]


def test_records_envelope_keeps_good_records_and_reports_others() -> None:
    doc = {
        "records": [
            record(0),
            record(1, category="kube-audit-admin"),
            record(2, category="kube-apiserver"),
            ACTIVITY,
            {"category": "kube-audit", "properties": {"log": '{"verb": 3}'}},
            {"category": "kube-audit", "properties": {}},
        ]
    }
    raws, bad = read(json.dumps(doc, indent=2).encode())
    assert raws == [line(0)[:-1], line(1)[:-1]]
    assert [b[0] for b in bad] == [
        'aks.json:1: records[2].category: "kube-apiserver" is not a Kubernetes audit record '
        '(expected "kube-audit" or "kube-audit-admin")',
        'aks.json:1: records[3].category: "Administrative" is not a Kubernetes audit record '
        '(expected "kube-audit" or "kube-audit-admin")',
        "aks.json:1: records[4].properties.log: Expected `str`, got `int` - at `$.verb`",
        "aks.json:1: records[5].properties.log: expected the audit event (a JSON string or "
        "object); the record has none",
    ]
    assert json.loads(bad[1][1]) == ACTIVITY


def test_ingest_event_hub_export(tmp_path: Path) -> None:
    store = tmp_path / "store"
    data = json.dumps({"records": [record(i) for i in range(4)] + [ACTIVITY]}).encode()
    lines_file = b"\n".join(json.dumps(record(i)).encode() for i in range(4, 6))
    a = write(tmp_path / "PT1H.json", data)
    b = write(tmp_path / "lines.json", lines_file)
    args = ["ingest", "--store", str(store), "--format", "aks", "--output", "json"]
    r = CliRunner().invoke(main, [*args, "--cluster", "aks-prod", str(a), str(b)])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["stored"], s["quarantined"]) == (6, 1)
    st = open_store(store)
    assert stored_events(st) == expected(lines(0, 6))
    assert st.query("select distinct cluster from events").to_pylist() == [{"cluster": "aks-prod"}]
    (q,) = (store / "quarantine").iterdir()
    entry = json.loads(q.read_text())
    assert entry["source"] == str(a) and json.loads(entry["raw"]) == ACTIVITY


def test_auto_detects_every_format_in_one_file(tmp_path: Path) -> None:
    from test_cloud_eks import insights_row
    from test_cloud_gke import POD_CREATE

    data = b"\n".join(
        [
            line(0).rstrip(b"\n"),
            json.dumps(record(1)).encode(),
            insights_row(2),
            json.dumps(POD_CREATE).encode(),
        ]
    )
    store = tmp_path / "store"
    r = CliRunner().invoke(
        main,
        ["ingest", "--store", str(store), "--output", "json", str(write(tmp_path / "m", data))],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stored"] == 4
    ids = {
        row["audit_id"]
        for row in open_store(store).query("select audit_id from events").to_pylist()
    }
    assert ids == {event(0).audit_id, event(1).audit_id, event(2).audit_id, POD_CREATE["insertId"]}
