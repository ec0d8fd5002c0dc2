"""Alerts POSTed as JSON to a URL; ``slack=True`` sends Slack's ``{"text": ...}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from kaudit.detect.alert import Alert
from kaudit.errors import SinkError
from kaudit.sinks import new_counters


def slack_text(alerts: Sequence[Alert]) -> str:
    lines = []
    for a in alerts:
        who = a.username or a.source_ip or "unknown"
        obj = f" on `{a.object}`" if a.object else ""
        lines.append(
            f"*[{a.severity.upper()}] {a.title}* (`{a.rule_id}`)\n"
            f"{who}{obj} at {a.last_ts} - {len(a.audit_ids)} event(s)"
        )
    return "\n".join(lines)


class WebhookSink:
    """POST ``{"alerts": [...]}`` (or Slack text) to ``url``; 2xx is success."""

    def __init__(
        self,
        name: str = "webhook",
        *,
        url: str,
        slack: bool = False,
        headers: dict[str, str] | None = None,
        timeout_secs: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise TypeError(f"url: expected an http(s) URL, got {url!r}")
        self.name = name
        self.url = url
        self.slack = slack
        self.counters = new_counters()
        self._client = client or httpx.Client(timeout=timeout_secs, headers=headers or {})

    def body(self, alerts: Sequence[Alert]) -> dict[str, Any]:
        if self.slack:
            return {"text": slack_text(alerts)}
        return {"alerts": [a.to_dict() for a in alerts]}

    def send(self, alerts: Sequence[Alert]) -> None:
        try:
            resp = self._client.post(self.url, json=self.body(alerts))
        except httpx.HTTPError as exc:
            raise SinkError(f"sink {self.name}: POST {self.url}: {exc}") from None
        if not 200 <= resp.status_code < 300:
            raise SinkError(
                f"sink {self.name}: POST {self.url}: HTTP {resp.status_code}: {resp.text[:200]}"
            )

    def close(self) -> None:
        self._client.close()
