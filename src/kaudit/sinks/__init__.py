"""Where alerts go: stdout, a JSON Lines file, a webhook, Prometheus Alertmanager.

Every sink has a ``name``, a ``send(alerts)`` that raises :class:`SinkError` when
the destination refuses, and ``counters`` (a plain dict a ``/metrics`` endpoint
can render). :func:`deliver` is how callers use a sink: it retries with backoff,
counts and logs failures with the sink's name and the number of alerts, and never
raises - a failing sink must not take the process down. Sinks are built from
settings by :func:`build_sink`, which the built-in kinds are registered in the
same way another kind would be (:data:`SINK_KINDS`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kaudit.detect.alert import Alert
from kaudit.errors import ConfigError, SinkError

log = logging.getLogger("kaudit.sinks")


class Sink(Protocol):
    name: str
    counters: dict[str, int]

    def send(self, alerts: Sequence[Alert]) -> None: ...

    def close(self) -> None: ...


def new_counters() -> dict[str, int]:
    return {"alerts_sent": 0, "alerts_failed": 0, "requests_failed": 0, "retries": 0}


def deliver(
    sink: Sink,
    alerts: Sequence[Alert],
    *,
    retries: int = 3,
    backoff_secs: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send ``alerts`` to ``sink`` with up to ``retries`` retries; True when delivered."""
    if not alerts:
        return True
    delay = backoff_secs
    for attempt in range(retries + 1):
        try:
            sink.send(alerts)
        except SinkError as exc:
            sink.counters["requests_failed"] += 1
            if attempt < retries:
                sink.counters["retries"] += 1
                sleep(delay)
                delay *= 2
                continue
            sink.counters["alerts_failed"] += len(alerts)
            log.error("sink %s: %d alerts not delivered: %s", sink.name, len(alerts), exc)
            return False
        sink.counters["alerts_sent"] += len(alerts)
        return True
    return False  # pragma: no cover - the loop always returns


def _stdout(name: str, cfg: dict[str, Any]) -> Sink:
    from kaudit.sinks.stdout import StdoutSink

    return StdoutSink(name, **cfg)


def _file(name: str, cfg: dict[str, Any]) -> Sink:
    from kaudit.sinks.file import FileSink

    return FileSink(name, **cfg)


def _webhook(name: str, cfg: dict[str, Any]) -> Sink:
    from kaudit.sinks.webhook import WebhookSink

    return WebhookSink(name, **cfg)


def _alertmanager(name: str, cfg: dict[str, Any]) -> Sink:
    from kaudit.sinks.alertmanager import AlertmanagerSink

    return AlertmanagerSink(name, **cfg)


#: kind -> factory(name, settings). Register another kind by adding to this table.
SINK_KINDS: dict[str, Callable[[str, dict[str, Any]], Sink]] = {
    "stdout": _stdout,
    "file": _file,
    "webhook": _webhook,
    "alertmanager": _alertmanager,
}


#: What a sink spec names its target as, per kind (``KIND:TARGET``).
_SPEC_TARGET: dict[str, str | None] = {
    "stdout": None,
    "file": "path",
    "webhook": "url",
    "slack": "url",
    "alertmanager": "url",
}
SPEC_HELP = (
    "`stdout`, `file:PATH` (JSON Lines, 0600), `webhook:URL` (JSON POST), `slack:URL` "
    "(Slack-compatible webhook), `alertmanager:URL` (Prometheus Alertmanager v2 API)"
)


def parse_sink_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``KIND[:TARGET]`` as (name, settings for :func:`build_sink`); raises ConfigError.

    The name is the spec itself (what logs and ``/metrics`` show).
    """
    kind, sep, target = spec.partition(":")
    kind = kind.strip()
    if kind not in _SPEC_TARGET:
        raise ConfigError(
            f"alert_sinks: {spec!r}: unknown sink kind {kind!r}: expected {SPEC_HELP}"
        )
    field = _SPEC_TARGET[kind]
    if field is None:
        if sep and target:
            raise ConfigError(f"alert_sinks: {spec!r}: {kind} takes no target")
        return spec, {"kind": kind}
    if not target:
        raise ConfigError(
            f"alert_sinks: {spec!r}: {kind} needs a {field.upper()} ({kind}:{field.upper()})"
        )
    if field == "url" and not target.startswith(("http://", "https://")):
        raise ConfigError(f"alert_sinks: {spec!r}: expected an http(s) URL, got {target!r}")
    if kind == "slack":
        return spec, {"kind": "webhook", "url": target, "slack": True}
    return spec, {"kind": kind, field: target}


def check_sink_spec(spec: str) -> list[str]:
    """Problems with one sink spec (syntax, and that a file sink's directory exists)."""
    try:
        _, settings = parse_sink_spec(spec)
    except ConfigError as exc:
        return [exc.message]
    if settings["kind"] == "file":
        import os
        from pathlib import Path

        parent = Path(settings["path"]).parent
        if not parent.is_dir():
            return [f"alert_sinks: {spec!r}: the directory {parent} does not exist"]
        if not os.access(parent, os.W_OK):
            return [f"alert_sinks: {spec!r}: the directory {parent} is not writable"]
    return []


def sink_from_spec(spec: str) -> Sink:
    """The sink a ``KIND[:TARGET]`` spec describes."""
    name, settings = parse_sink_spec(spec)
    return build_sink(name, settings)


def build_sink(name: str, settings: dict[str, Any]) -> Sink:
    """A sink from settings: ``{"kind": "webhook", "url": ..., ...}``."""
    cfg = dict(settings)
    kind = cfg.pop("kind", None)
    if kind not in SINK_KINDS:
        raise ConfigError(
            f"sinks.{name}.kind: Unsupported value: {kind!r}: supported values: "
            + ", ".join(f'"{k}"' for k in SINK_KINDS)
        )
    try:
        return SINK_KINDS[kind](name, cfg)
    except TypeError as exc:
        raise ConfigError(f"sinks.{name}: {exc}") from None


__all__ = [
    "SINK_KINDS",
    "Sink",
    "build_sink",
    "check_sink_spec",
    "deliver",
    "new_counters",
    "parse_sink_spec",
    "sink_from_spec",
]
