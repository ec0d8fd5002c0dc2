"""A small Prometheus text exposition (format 0.0.4) for kaudit's own metrics.

Counters, gauges and histograms with fixed label names, registered in a
:class:`Registry` and rendered by :meth:`Registry.render`. Updates are plain
attribute arithmetic under the GIL from the event loop and one writer thread;
nothing here blocks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labels}")
        return tuple(labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


M = TypeVar("M", bound=_Metric)


class Counter(_Metric):
    """A monotonically increasing count."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[LabelValues, float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up (got {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read when the metrics are scraped (``func``) or set directly."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, func: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text)
        self._func = func
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = value

    def value(self) -> float:
        return float(self._func()) if self._func is not None else self._value

    def samples(self) -> list[str]:
        try:
            v = self.value()
        except Exception:  # a failing probe must not break the scrape
            v = math.nan
        return [f"{self.name} {_num(v) if not math.isnan(v) else 'NaN'}"]


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
                    break
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def samples(self) -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        out: list[str] = []
        cumulative = 0
        for bound, c in zip(self.buckets, counts, strict=True):
            cumulative += c
            out.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}')
        out.append(f"{self.name}_sum {_num(total)}")
        out.append(f"{self.name}_count {n}")
        return out


class Collected(_Metric):
    """Labelled values read when the metrics are scraped: ``func`` returns them by
    label values (e.g. the counters of each transform of the pipeline)."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str],
        func: Callable[[], dict[LabelValues, float]],
        kind: str = "counter",
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.kind = kind
        self._func = func

    def samples(self) -> list[str]:
        try:
            items = sorted(self._func().items())
        except Exception:  # a failing probe must not break the scrape
            return []
        return [f"{self.name}{_labels(self.labelnames, k)} {_num(v)}" for k, v in items]


class Registry:
    """A set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def register(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


class ServeMetrics:
    """Every metric ``kaudit serve`` exposes on ``/metrics``."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.register(
            Counter(
                "kaudit_webhook_requests_total",
                "Webhook requests answered, by HTTP status code.",
                ["code"],
            )
        )
        self.events_received = r.register(
            Counter("kaudit_events_received_total", "Audit events decoded from webhook bodies.")
        )
        self.events_stored = r.register(
            Counter("kaudit_events_stored_total", "Audit events made durable in the store.")
        )
        self.events_duplicate = r.register(
            Counter(
                "kaudit_events_duplicate_total",
                "Audit events already stored (same auditID and stage), e.g. from a retry.",
            )
        )
        self.events_quarantined = r.register(
            Counter(
                "kaudit_events_quarantined_total",
                "Items of a webhook body that were not audit events, kept in the quarantine.",
            )
        )
        self.rejected = r.register(
            Counter(
                "kaudit_webhook_rejected_total",
                "Webhook requests refused, by reason.",
                ["reason"],
            )
        )
        self.batch_events = r.register(
            Histogram(
                "kaudit_webhook_batch_events",
                "Audit events per accepted webhook request.",
                [1, 10, 50, 100, 200, 400, 800, 1600],
            )
        )
        self.ack_seconds = r.register(
            Histogram(
                "kaudit_webhook_ack_seconds",
                "Time from the end of a webhook body to its durable acknowledgement.",
                [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
            )
        )
        self.commit_batches = r.register(
            Histogram(
                "kaudit_commit_batches",
                "Webhook batches made durable together by one store append (group commit).",
                [1, 2, 4, 8, 16, 32, 64],
            )
        )
        self.pending_batches = r.register(
            Gauge("kaudit_pending_batches", "Batches decoded and waiting to be made durable.")
        )
        self.inflight_bytes = r.register(
            Gauge("kaudit_inflight_bytes", "Webhook body bytes received but not yet acknowledged.")
        )
        self.wal_backlog_bytes = r.register(
            Gauge(
                "kaudit_wal_backlog_bytes",
                "Bytes in the store's write-ahead log not yet flushed to Parquet segments.",
            )
        )

    def render(self) -> str:
        return self.registry.render()
