"""Streaming detection inside a real ``kaudit serve`` process: alerts in seconds, to the
store (``kaudit alerts``), a JSON Lines file and a real Alertmanager; state across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "serve"))

from serve_harness import AUTH, TOKEN, ServerProcess, event_list  # noqa: E402

from kaudit.cli import main  # noqa: E402
from kaudit.detect.testing import expand_events  # noqa: E402
from kaudit.model.codec import format_micro  # noqa: E402
from kaudit.traffic import generate  # noqa: E402

EXEC = {
    "verb": "create",
    "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
    "objectRef": {"resource": "pods", "namespace": "web", "name": "web-1", "subresource": "exec"},
    "requestURI": "/api/v1/namespaces/web/pods/web-1/exec?command=sh&container=app&stdin=true",
    "responseStatus": {"metadata": {}, "code": 101},
}

FAILED_AUTH = {
    "verb": "get",
    "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
    "sourceIPs": ["203.0.113.9"],
    "requestURI": "/api/v1/secrets",
    "responseStatus": {"metadata": {}, "code": 401},
    "repeat": 20,
}


def _wait(fn: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _post(url: str, body: bytes) -> None:
    r = httpx.post(url, content=body, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text


def _file_alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _server(store: Path, *extra: str) -> ServerProcess:
    return ServerProcess(["--port", "0", "--store", str(store), "--token", f"prod={TOKEN}", *extra])


def test_serve_raises_alerts_to_store_file_and_alertmanager(
    tmp_path: Path, alertmanager: str
) -> None:
    store, sink_file = tmp_path / "store", tmp_path / "alerts.jsonl"
    background = list(generate(300, seed=3))
    now = format_micro(time.time_ns() // 1000)  # Alertmanager keeps only unresolved alerts
    incident = expand_events([{**EXEC, "requestReceivedTimestamp": now, "stageTimestamp": now}])
    with _server(
        store, "--alert-sink", f"file:{sink_file}", "--alert-sink", f"alertmanager:{alertmanager}"
    ) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        _post(f"{base}/audit/webhook", event_list(background + incident))
        got = _wait(
            lambda: [a for a in _file_alerts(sink_file) if a["rule_id"] == "pod-exec"],
            "the pod-exec alert in the file sink",
        )
        assert got[0]["username"] == "mallory@example.com"
        assert got[0]["audit_ids"] == [incident[0].audit_id]
        assert got[0]["object"] == "pods/exec web/web-1"
        assert (sink_file.stat().st_mode & 0o777) == 0o600

        def am_alerts() -> list[dict[str, Any]]:
            alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
            return [a for a in alerts if a["labels"]["rule_id"] == "pod-exec"]

        am = _wait(am_alerts, "the alert in Alertmanager")
        assert am[0]["labels"]["username"] == "mallory@example.com"

        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'kaudit_alerts_total{rule="pod-exec",severity="medium"} 1' in metrics
        assert f'kaudit_sink_alerts_sent_total{{sink="file:{sink_file}"}}' in metrics
        assert "kaudit_sink_alerts_failed_total" in metrics
        assert "kaudit_detect_lag_seconds_count" in metrics
        assert 'kaudit_detect_state_entries{rule="first-seen-source-ip"}' in metrics

        # A retry of the same batch is acknowledged and raises nothing new.
        _post(f"{base}/audit/webhook", event_list(incident))
        time.sleep(0.5)
        assert len([a for a in _file_alerts(sink_file) if a["rule_id"] == "pod-exec"]) == 1

    res = CliRunner().invoke(main, ["alerts", "--store", str(store), "--format", "json"])
    assert res.exit_code == 0, res.output
    stored = json.loads(res.output)
    assert [a["rule_id"] for a in stored].count("pod-exec") == 1


@pytest.mark.slow
def test_serve_window_state_survives_restart(tmp_path: Path) -> None:
    store, sink_file = tmp_path / "store", tmp_path / "alerts.jsonl"
    burst = expand_events([FAILED_AUTH])
    with _server(store, "--alert-sink", f"file:{sink_file}") as srv:
        _post(f"http://127.0.0.1:{srv.port}/audit/webhook", event_list(burst[:12]))
        time.sleep(0.5)
    assert (store / "detect" / "state.json").stat().st_mode & 0o777 == 0o600
    assert not [a for a in _file_alerts(sink_file) if a["rule_id"] == "unauthorized-burst"]
    with _server(store, "--alert-sink", f"file:{sink_file}") as srv:
        _post(f"http://127.0.0.1:{srv.port}/audit/webhook", event_list(burst[12:]))
        got = _wait(
            lambda: [a for a in _file_alerts(sink_file) if a["rule_id"] == "unauthorized-burst"],
            "the burst alert after the restart",
        )
    assert got[0]["count"] == 20 and got[0]["source_ip"] == "203.0.113.9"
    assert set(got[0]["audit_ids"]) == {e.audit_id for e in burst}


def test_serve_refuses_a_bad_sink_spec(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "kaudit", "serve", "--store", str(tmp_path / "store")]
        + ["--alert-sink", "pagerduty:x", "--alert-sink", f"file:{tmp_path}/no/such/a.jsonl"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 78, r.stderr
    assert "alert_sinks: 'pagerduty:x': unknown sink kind 'pagerduty'" in r.stderr
    assert f"the directory {tmp_path}/no/such does not exist" in r.stderr


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_detection_runs_in_a_process_of_its_own_that_ends_with_a_killed_server(
    tmp_path: Path,
) -> None:
    store, sink_file = tmp_path / "store", tmp_path / "alerts.jsonl"
    now = format_micro(time.time_ns() // 1000)
    incident = expand_events([{**EXEC, "requestReceivedTimestamp": now, "stageTimestamp": now}])
    with _server(store, "--alert-sink", f"file:{sink_file}") as srv:
        assert srv.proc is not None
        detectors = _wait(
            lambda: [c for c in _children(srv.proc.pid) if "spawn_main" in _cmdline(c)],
            "the detection process",
        )
        _post(f"http://127.0.0.1:{srv.port}/audit/webhook", event_list(incident))
        _wait(
            lambda: [a for a in _file_alerts(sink_file) if a["rule_id"] == "pod-exec"],
            "the pod-exec alert",
        )
        srv.kill()
        # No orphan: the pipe from the server closes, and the detection process exits.
        _wait(lambda: not any(_cmdline(c) for c in detectors), "the detection process to exit")
