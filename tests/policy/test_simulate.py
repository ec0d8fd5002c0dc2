"""``kaudit policy simulate``: exact bytes against the one-event path, estimates, the CLI."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from kaudit.cli import main
from kaudit.model import encode_event
from kaudit.model.documents import iter_records
from kaudit.policy import Evaluator, apply, load_policy_bytes
from kaudit.policy.simulate import (
    capture_from_logs,
    capture_from_store,
    names_of,
    simulate,
)
from kaudit.policy.types import Policy
from kaudit.store import open_store
from kaudit.traffic import generate_lines

N_EVENTS = 3000

LOWER = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: None
  resources: [{group: coordination.k8s.io}]
- level: None
  resources: [{group: "", resources: [configmaps], resourceNames: [kube-root-ca.crt]}]
- level: Request
  resources: [{group: apps}]
- level: Metadata
  nonResourceURLs: ["/metrics"]
- level: Metadata
  resources: [{group: ""}]
"""
METADATA = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
"""
EVERYTHING = """\
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
"""


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "audit.log"
    path.write_bytes(b"".join(generate_lines(N_EVENTS, seed=7)))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, log: Path) -> Path:
    root = tmp_path_factory.mktemp("sim") / "store"
    st = open_store(root)
    with st.writer() as w, open(log, "rb") as f:
        w.append(iter_records(f, str(log)))
    return root


def policy(text: str, name: str = "p.yaml") -> Policy:
    return load_policy_bytes(text, name)


def one_by_one(pol: Policy, data: bytes) -> tuple[int, int, int]:
    """Events, bytes and events above the capture, the slow exact way."""
    ev = Evaluator(pol)
    n = size = above = 0
    for rec in iter_records(io.BytesIO(data), "x"):
        r = apply(ev, rec.event)
        if r.event is not None:
            n += 1
            size += len(encode_event(r.event))
            above += r.above_capture
    return n, size, above


@pytest.mark.parametrize("text", [LOWER, METADATA], ids=["lower", "metadata"])
def test_bytes_are_exact_from_logs_and_store(text: str, log: Path, store: Path) -> None:
    pol = policy(text)
    n, size, above = one_by_one(pol, log.read_bytes())
    assert above == 0
    for cap in (
        capture_from_logs([str(log)], names=names_of([pol])),
        capture_from_store(str(store), names=names_of([pol])),
    ):
        assert cap.events == N_EVENTS
        sim = simulate(pol, cap)
        assert (round(sim.simulated.events), round(sim.simulated.bytes)) == (n, size)
        assert not sim.estimated


def test_json_shape_and_totals(store: Path) -> None:
    pol = policy(LOWER)
    d = simulate(pol, capture_from_store(str(store))).to_dict()
    assert sum(d["events_by_level"].values()) == d["simulated"]["events"]
    assert sum(d["bytes_by_level"].values()) == d["simulated"]["bytes"]
    assert sum(d["events_by_rule"].values()) == d["simulated"]["events"]
    assert d["events_by_level"]["RequestResponse"] == 0
    assert d["captured"]["events"] == N_EVENTS
    assert "rules[0]" not in d["events_by_rule"]  # level None logs nothing
    assert d["dropped"]["level_none"] > 0 and d["dropped"]["omitted_stage"] > 0
    assert d["top_resources"][0]["bytes"] >= d["top_resources"][-1]["bytes"]
    assert list(d["by_day"]) == ["2025-03-03"]


def test_resource_names_are_honoured(store: Path) -> None:
    pol = policy(LOWER)
    sim = simulate(pol, capture_from_store(str(store), names=names_of([pol])))
    # The generated traffic watches kube-root-ca.crt (the name is in each watch's objectRef).
    assert sim.dropped_by_rule[1] > 0
    # Without the names, no request could match rules[1].
    blind = simulate(pol, capture_from_store(str(store)))
    assert blind.dropped_by_rule.get(1, 0) == 0
    assert blind.simulated.events > sim.simulated.events


def test_above_the_capture_is_estimated(tmp_path: Path, log: Path) -> None:
    # A capture at Metadata without RequestReceived, replayed at RequestResponse.
    low = tmp_path / "low.log"
    ev = Evaluator(policy(METADATA))
    with open(low, "wb") as f:
        for rec in iter_records(io.BytesIO(log.read_bytes()), "x"):
            r = apply(ev, rec.event)
            if r.event is not None:
                f.write(encode_event(r.event))
    cap = capture_from_logs([str(low)])
    base = simulate(policy(METADATA), cap)
    sim = simulate(policy(EVERYTHING), cap)
    d = sim.to_dict()
    assert d["estimated"] is True
    assert d["above_capture"]["events"] == round(base.simulated.events)
    assert d["estimated_by_level"]["RequestResponse"] is True
    assert sum(c["above_capture"] for c in d["changes"]) > 0
    assert d["added_request_received"]["events"] > 0
    assert d["added_request_received"]["estimated"] is True
    assert sim.simulated.bytes > base.simulated.bytes


def test_since_until(store: Path) -> None:
    t0 = datetime(2025, 3, 3, 9, 0, 1, tzinfo=UTC)
    t1 = datetime(2025, 3, 3, 9, 0, 2, tzinfo=UTC)
    whole = capture_from_store(str(store))
    part = capture_from_store(str(store), since=t0, until=t1)
    assert 0 < part.events < whole.events
    assert part.first_ts is not None and part.first_ts >= t0.timestamp()
    assert part.last_ts is not None and part.last_ts < t1.timestamp()


def test_gzip_rotated_and_bad_lines(tmp_path: Path, log: Path) -> None:
    data = log.read_bytes()
    (tmp_path / "audit.log").write_bytes(data[: len(data) // 2].rsplit(b"\n", 1)[0] + b"\n")
    rest = data[len(data) // 2 :].split(b"\n", 1)[1]
    backup = tmp_path / "audit-2025-03-03T09-00-00.000.log.gz"
    backup.write_bytes(gzip.compress(b"{not json}\n" + rest))
    errors: list[str] = []
    cap = capture_from_logs([str(tmp_path / "audit.log")], on_error=lambda e: errors.append(str(e)))
    assert cap.events == N_EVENTS - 1  # the line cut in half is lost with the split
    assert cap.bad_lines == 1 and "audit-2025-03-03T09-00-00.000.log.gz:1" in errors[0]


# --- CLI -----------------------------------------------------------------------------


def _policy_file(tmp_path: Path, text: str, name: str = "policy.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_cli_json(tmp_path: Path, store: Path) -> None:
    pf = _policy_file(tmp_path, LOWER)
    r = CliRunner().invoke(
        main, ["policy", "simulate", "--policy", pf, "--store", str(store), "--format", "json"]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in ("events_by_level", "bytes_by_level", "events_by_rule", "by_day", "top_users"):
        assert key in d
    assert d["policy"] == pf


def test_cli_table_and_chart(tmp_path: Path, log: Path) -> None:
    pf = _policy_file(tmp_path, LOWER)
    chart = tmp_path / "out.html"
    r = CliRunner().invoke(
        main, ["policy", "simulate", "--policy", pf, str(log), "--chart", str(chart)]
    )
    assert r.exit_code == 0, r.output
    assert "by level" in r.output and "by rule" in r.output and "top users" in r.output
    page = chart.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in page
    assert chart.stat().st_mode & 0o777 == 0o600


def test_cli_usage_errors(tmp_path: Path, log: Path, store: Path) -> None:
    pf = _policy_file(tmp_path, LOWER)
    runner = CliRunner()
    r = runner.invoke(main, ["policy", "simulate", "--policy", pf, "--store", str(store), str(log)])
    assert r.exit_code == 2 and "either --store DIR or LOG files" in r.output
    r = runner.invoke(main, ["policy", "simulate", "--policy", pf, str(log), "--chart", "x.png"])
    assert r.exit_code == 2 and "expected an .html file" in r.output
    r = runner.invoke(main, ["policy", "simulate", "--policy", pf, "--store", str(tmp_path / "no")])
    assert r.exit_code == 1 and "no store here" in r.output
    r = runner.invoke(
        main, ["policy", "simulate", "--policy", pf, str(log), "--since", "yesterday-ish"]
    )
    assert r.exit_code == 1 and "--since: invalid time" in r.output
