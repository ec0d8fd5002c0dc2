"""Alerts to Prometheus Alertmanager through its v2 API (``POST /api/v2/alerts``).

Each alert becomes ``{labels, annotations, startsAt, endsAt, generatorURL}``:
labels ``alertname`` (the rule title's id form), ``severity``, ``rule_id``,
``username``, ``namespace``, ``cluster`` and ``alert_id`` (so two alerts never
merge); annotations ``summary``, ``description``, ``object``, ``audit_ids``,
``mitre``. ``endsAt`` is ``resolve_after_secs`` after the last event, so the
alert resolves by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx

from kaudit.detect.alert import Alert
from kaudit.errors import SinkError
from kaudit.model.codec import parse_time
from kaudit.sinks import new_counters


def _rfc3339(dt: Any) -> str:
    return str(dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


class AlertmanagerSink:
    def __init__(
        self,
        name: str = "alertmanager",
        *,
        url: str,
        generator_url: str = "",
        resolve_after_secs: int = 3600,
        extra_labels: dict[str, str] | None = None,
        timeout_secs: float = 10.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise TypeError(f"url: expected an http(s) URL, got {url!r}")
        self.name = name
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self.generator_url = generator_url
        self.resolve_after = timedelta(seconds=resolve_after_secs)
        self.extra_labels = dict(extra_labels or {})
        self.counters = new_counters()
        self._client = httpx.Client(timeout=timeout_secs)

    def payload(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        out = []
        for a in alerts:
            labels = {
                "alertname": a.rule_id,
                "severity": a.severity,
                "rule_id": a.rule_id,
                "alert_id": a.id,
                **self.extra_labels,
            }
            for k, v in (
                ("username", a.username),
                ("namespace", a.namespace),
                ("cluster", a.cluster),
                ("source_ip", a.source_ip),
            ):
                if v:
                    labels[k] = v
            who = a.username or a.source_ip or "-"
            start = parse_time(a.first_ts)
            end = parse_time(a.last_ts) + self.resolve_after
            item: dict[str, Any] = {
                "labels": labels,
                "annotations": {
                    "summary": a.title,
                    "object": a.object,
                    "audit_ids": ",".join(a.audit_ids),
                    "mitre": ",".join(a.mitre),
                    "description": f"{a.title}: {who} {a.object}".strip(),
                },
                "startsAt": _rfc3339(start),
                "endsAt": _rfc3339(end),
            }
            if self.generator_url:
                item["generatorURL"] = f"{self.generator_url.rstrip('/')}/alerts/{a.id}"
            out.append(item)
        return out

    def send(self, alerts: Sequence[Alert]) -> None:
        try:
            resp = self._client.post(self.endpoint, json=self.payload(alerts))
        except httpx.HTTPError as exc:
            raise SinkError(f"sink {self.name}: POST {self.endpoint}: {exc}") from None
        if resp.status_code != 200:
            raise SinkError(
                f"sink {self.name}: POST {self.endpoint}: "
                f"HTTP {resp.status_code}: {resp.text[:200]}"
            )

    def close(self) -> None:
        self._client.close()
