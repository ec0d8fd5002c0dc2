"""Detection in a child process of its own: batches over a pipe, alerts to a file sink,
a killed child restarted with what it had not acknowledged, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from kaudit.detect.process import DetectorProcess, pack_batch, settings_for, unpack_batch
from kaudit.detect.testing import expand_events
from kaudit.errors import ConfigError
from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.model.types import Event
from kaudit.traffic import generate

EXEC = {
    "verb": "create",
    "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
    "objectRef": {"resource": "pods", "namespace": "web", "name": "web-1", "subresource": "exec"},
    "requestURI": "/api/v1/namespaces/web/pods/web-1/exec?command=sh&container=app&stdin=true",
    "responseStatus": {"metadata": {}, "code": 101},
}


def _records(events: list[Event]) -> list[Record]:
    return [Record(e, encode_event(e)[:-1], "test", i + 1) for i, e in enumerate(events)]


def _file_alerts(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _wait(fn: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


def test_pack_and_unpack_keep_lines_cluster_and_order() -> None:
    recs = _records(list(generate(50, seed=1)))
    seq, item = unpack_batch(pack_batch(7, recs, "prod-eu", 3))
    assert seq == 7
    assert item.cluster == "prod-eu" and item.duplicates == 3
    assert item.raws == [r.raw for r in recs]
    assert [e.audit_id for e in item.events] == [r.event.audit_id for r in recs]


def test_child_process_raises_alerts_and_stops_cleanly(tmp_path: Path) -> None:
    sink_file = tmp_path / "alerts.jsonl"
    det = DetectorProcess(settings_for(tmp_path / "store", [], None, [f"file:{sink_file}"]))
    try:
        assert det.pid is not None and det.pid != os.getpid()
        det.submit(_records(list(generate(200, seed=2))))
        det.submit(_records(expand_events([EXEC])), cluster="prod")
    finally:
        det.stop()  # evaluates what is queued before returning
    got = [a for a in _file_alerts(sink_file) if a["rule_id"] == "pod-exec"]
    assert len(got) == 1 and got[0]["username"] == "mallory@example.com"
    text = det.render_metrics()
    assert _metric(text, "kaudit_detect_events_total") == 201
    assert _metric(text, "kaudit_detect_queued_events") == 0
    assert 'kaudit_alerts_total{rule="pod-exec",severity="medium"} 1' in text
    assert (tmp_path / "store" / "detect" / "state.json").exists()


def test_a_killed_child_is_restarted_and_gets_the_unacknowledged_batches(
    tmp_path: Path,
) -> None:
    sink_file = tmp_path / "alerts.jsonl"
    det = DetectorProcess(
        settings_for(tmp_path / "store", [], None, [f"file:{sink_file}"]),
        restart_delay_secs=0.05,
    )
    try:
        det.submit(_records(list(generate(100, seed=4))))
        _wait(lambda: det.queued_events == 0, "the first batch evaluated")
        first = det.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # Queued while the child is dead or restarting: sent again to the new one.
        det.submit(_records(expand_events([EXEC])))
        _wait(lambda: det.pid not in (None, first) and det.restarts == 1, "a new child")
        got = _wait(
            lambda: [a for a in _file_alerts(sink_file) if a["rule_id"] == "pod-exec"],
            "the alert from the restarted child",
        )
        assert len(got) == 1
    finally:
        det.stop()
    assert det.queued_events == 0
    text = det.render_metrics()
    assert _metric(text, "kaudit_detect_events_total") >= 101
    assert _metric(text, "kaudit_detect_process_restarts_total") == 1
    assert _metric(text, "kaudit_detect_given_up_events_total") == 0


def test_a_bad_sink_fails_the_start_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="detection: .*unknown sink kind 'pagerduty'"):
        DetectorProcess(settings_for(tmp_path / "store", [], None, ["pagerduty:x"]))


def test_without_waiting_a_failed_start_is_logged_retried_and_given_up_on_stop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    det = DetectorProcess(
        settings_for(tmp_path / "store", [], None, ["pagerduty:x"]),
        wait_ready=False,
        restart_delay_secs=0.01,
    )
    det.submit(_records(list(generate(10, seed=5))))
    _wait(lambda: det.restarts >= 1, "a second attempt to start")
    det.stop()
    assert "cannot start: alert_sinks: 'pagerduty:x': unknown sink kind" in caplog.text
    assert "stopping without it: 10 queued events are not evaluated" in caplog.text
    text = det.render_metrics()
    assert _metric(text, "kaudit_detect_given_up_events_total") == 10
    assert _metric(text, "kaudit_detect_queued_events") == 0
