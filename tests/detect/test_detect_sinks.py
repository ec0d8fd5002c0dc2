"""Sinks against real destinations: a file, an HTTP server, a real Alertmanager."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from kaudit.detect.alert import Alert
from kaudit.sinks import build_sink, deliver
from kaudit.sinks.alertmanager import AlertmanagerSink
from kaudit.sinks.file import FileSink
from kaudit.sinks.stdout import StdoutSink
from kaudit.sinks.webhook import WebhookSink

ALERT = Alert(
    id="0123456789abcdef0123456789abcdef",
    rule_id="pod-exec",
    severity="medium",
    title="Command executed in a pod",
    first_ts="2024-01-01T00:00:00.000000Z",
    last_ts="2024-01-01T00:00:01.000000Z",
    username="alice",
    source_ip="10.0.0.1",
    resource="pods",
    subresource="exec",
    namespace="default",
    name="web",
    audit_ids=["a1"],
    mitre=["T1609"],
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_file_sink_appends_jsonl_0600(tmp_path: Path) -> None:
    p = tmp_path / "alerts.jsonl"
    sink = FileSink("f", path=str(p))
    assert deliver(sink, [ALERT, ALERT])
    lines = p.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["object"] == "pods/exec default/web"
    assert p.stat().st_mode & 0o777 == 0o600
    assert sink.counters["alerts_sent"] == 2


def test_file_sink_failure_is_counted_not_raised(tmp_path: Path) -> None:
    sink = FileSink("f", path=str(tmp_path / "missing-dir" / "a.jsonl"))
    assert not deliver(sink, [ALERT], retries=2, sleep=lambda s: None)
    assert sink.counters == {
        "alerts_sent": 0,
        "alerts_failed": 1,
        "requests_failed": 3,
        "retries": 2,
    }


def test_stdout_sink() -> None:
    buf = io.StringIO()
    deliver(StdoutSink(stream=buf, format="text"), [ALERT])
    assert (
        "MEDIUM pod-exec: Command executed in a pod (alice pods/exec default/web)" in buf.getvalue()
    )


class _Recorder(BaseHTTPRequestHandler):
    bodies: list[bytes] = []
    fail_first = 0

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Recorder.fail_first > 0:
            _Recorder.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Recorder.bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Recorder.bodies = []
    srv = HTTPServer(("127.0.0.1", 0), _Recorder)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def test_webhook_json_and_slack_with_retry(http_server: str) -> None:
    _Recorder.fail_first = 1
    sink = WebhookSink("w", url=http_server)
    assert deliver(sink, [ALERT], sleep=lambda s: None)
    assert sink.counters["retries"] == 1 and sink.counters["alerts_sent"] == 1
    assert json.loads(_Recorder.bodies[0])["alerts"][0]["rule_id"] == "pod-exec"
    slack = build_sink("s", {"kind": "webhook", "url": http_server, "slack": True})
    assert deliver(slack, [ALERT])
    sink.close()
    slack.close()
    text = json.loads(_Recorder.bodies[1])["text"]
    assert text.startswith("*[MEDIUM] Command executed in a pod* (`pod-exec`)")


def test_webhook_unreachable_counts() -> None:
    sink = WebhookSink("w", url=f"http://127.0.0.1:{_free_port()}/x", timeout_secs=2)
    assert not deliver(sink, [ALERT], retries=1, sleep=lambda s: None)
    sink.close()
    assert sink.counters["alerts_failed"] == 1 and sink.counters["requests_failed"] == 2


def test_alertmanager_v2_real(alertmanager: str) -> None:
    sink = AlertmanagerSink(
        "am", url=alertmanager, generator_url="https://kaudit.example", resolve_after_secs=10**8
    )
    assert deliver(sink, [ALERT])
    sink.close()
    got = []
    with httpx.Client() as client:
        for _ in range(100):
            got = client.get(f"{alertmanager}/api/v2/alerts").json()
            if got:
                break
            time.sleep(0.05)
    assert len(got) == 1
    a = got[0]
    assert a["labels"]["alertname"] == "pod-exec"
    assert a["labels"]["severity"] == "medium" and a["labels"]["rule_id"] == "pod-exec"
    assert a["labels"]["username"] == "alice"
    assert a["annotations"]["summary"] == "Command executed in a pod"
    assert a["generatorURL"] == f"https://kaudit.example/alerts/{ALERT.id}"
    assert a["startsAt"].startswith("2024-01-01T00:00:00")
    assert sink.counters["alerts_sent"] == 1
