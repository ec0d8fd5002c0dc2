"""Alerts to standard output, one JSON object per line (or one readable line)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TextIO

from kaudit.detect.alert import Alert
from kaudit.sinks import new_counters


class StdoutSink:
    def __init__(
        self, name: str = "stdout", *, format: str = "jsonl", stream: TextIO | None = None
    ) -> None:
        if format not in ("jsonl", "text"):
            raise TypeError(f"format: expected jsonl or text, got {format!r}")
        self.name = name
        self.format = format
        self.stream = stream
        self.counters = new_counters()

    def send(self, alerts: Sequence[Alert]) -> None:
        out = self.stream or sys.stdout
        for a in alerts:
            if self.format == "jsonl":
                out.write(json.dumps(a.to_dict(), separators=(",", ":")) + "\n")
            else:
                who = a.username or a.source_ip or "-"
                out.write(
                    f"{a.last_ts} {a.severity.upper()} {a.rule_id}: {a.title} ({who} {a.object})\n"
                )
        out.flush()

    def close(self) -> None:
        pass
