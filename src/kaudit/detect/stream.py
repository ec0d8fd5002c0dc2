"""Streaming detection beside a writer: each durable batch through the rules, alerts to sinks.

:class:`StreamingDetector` is what ``kaudit serve`` runs. The store writer hands it
each batch *after* the batch is durable (:meth:`StreamingDetector.submit` only
queues it, so the acknowledgement never waits for detection); one detection thread
flattens the queued batches together, runs :class:`~kaudit.detect.engine.Engine`
(state in ``<store>/detect/``, so windows and first-seen terms survive a restart),
stores new alerts in ``<store>/alerts/`` and hands them to one delivery thread per
sink (:func:`kaudit.sinks.deliver`: retries, counts, never raises).

Batches the store partly recognised as duplicates (an apiserver retry) are
filtered against the recently seen ``(auditID, stage)`` keys, so a retry does not
count twice in a window. When detection falls far behind (``max_queued_events``),
``submit`` waits: the receiver then pushes back instead of memory growing.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kaudit.detect.alert import Alert, AlertStore
from kaudit.detect.engine import Engine
from kaudit.detect.rule import Rule
from kaudit.model.documents import Record
from kaudit.model.types import Event
from kaudit.sinks import Sink, deliver
from kaudit.store.flatten import flatten_events

log = logging.getLogger("kaudit.detect")

LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class _Item:
    """One durable batch: decoded events, their original lines, and where from."""

    events: list[Event]
    raws: list[bytes]
    cluster: str
    duplicates: int
    durable_at: float


class _Recent:
    """The last ``size`` event keys, as hashes (bounded memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.keys: OrderedDict[int, None] = OrderedDict()

    def filter_new(self, table: pa.Table, *, check: bool) -> pa.Table:
        ids = table.column("audit_id").to_pylist()
        stages = table.column("stage").to_pylist()
        keep: list[bool] = []
        keys = self.keys
        for a, s in zip(ids, stages, strict=True):
            h = hash((a, s))
            seen = h in keys
            keep.append(not (check and seen))
            if not seen:
                keys[h] = None
        while len(keys) > self.size:
            keys.popitem(last=False)
        if check and not all(keep):
            return table.filter(pa.array(keep))
        return table


class _Delivery:
    """One sink's queue and thread: a slow or failing sink delays no one else."""

    def __init__(self, sink: Sink, max_queued: int = 10_000) -> None:
        self.sink = sink
        self.max_queued = max_queued
        self.dropped = 0
        self._q: queue.Queue[list[Alert] | None] = queue.Queue()
        self._queued = 0
        self._t = threading.Thread(target=self._run, name=f"kaudit-sink-{sink.name}", daemon=True)
        self._t.start()

    def put(self, alerts: list[Alert]) -> None:
        if self._queued + len(alerts) > self.max_queued:
            self.dropped += len(alerts)
            self.sink.counters["alerts_failed"] += len(alerts)
            log.error(
                "sink %s: %d alerts not queued: the sink is %d alerts behind",
                self.sink.name,
                len(alerts),
                self._queued,
            )
            return
        self._queued += len(alerts)
        self._q.put(alerts)

    def _run(self) -> None:
        while True:
            alerts = self._q.get()
            if alerts is None:
                return
            deliver(self.sink, alerts)
            self._queued -= len(alerts)

    def stop(self) -> None:
        self._q.put(None)
        self._t.join()
        try:
            self.sink.close()
        except Exception as exc:  # a sink's close must not stop the shutdown
            log.warning("sink %s: close failed: %s", self.sink.name, exc)


class DetectionCore:
    """The rules, their state, the alert store and the sinks: what evaluates batches.

    Used by :class:`StreamingDetector` (a thread of the server) and by the detection
    process of :mod:`kaudit.detect.process`; not thread-safe (one caller at a time).
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        rules: Sequence[Rule],
        sinks: Sequence[Sink] = (),
        *,
        save_interval_secs: float = 1.0,
        recent_keys: int = 200_000,
    ) -> None:
        self.engine = Engine.for_store(store_path, rules, save_interval_secs=save_interval_secs)
        # New alerts are stored here (not by the engine) so that only they reach the sinks.
        self.engine.alert_store = None
        self.alerts = AlertStore(Path(store_path))
        self.deliveries = [_Delivery(s) for s in sinks]
        self._recent = _Recent(recent_keys)
        self.alert_counts: dict[tuple[str, str], int] = {}
        self.lag = _Histogram(LAG_BUCKETS)
        self.batches = 0
        self.events = 0
        self.errors = 0
        self.duplicates_skipped = 0
        self.last_error: str | None = None
        # Called with new alerts counted but not yet handed to the sinks (the detection
        # process publishes its metrics there, so they never lag what a sink shows).
        self.before_delivery: Callable[[], None] | None = None

    def run(self, items: list[_Item]) -> None:
        """Evaluate ``items``; a failure is counted and logged, never raised."""
        try:
            self._process(items)
        except Exception as exc:  # counted and logged; the next batch goes on
            self.fail(sum(len(i.events) for i in items), str(exc))

    def fail(self, events: int, error: str) -> None:
        self.errors += 1
        self.last_error = error
        log.error("detection failed", extra={"fields": {"events": events, "error": error}})

    def _process(self, items: list[_Item]) -> None:
        tables = []
        for it in items:
            t = flatten_events(it.events, it.raws, it.cluster)
            before = t.num_rows
            t = self._recent.filter_new(t, check=it.duplicates > 0)
            self.duplicates_skipped += before - t.num_rows
            tables.append(t)
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if len(tables) > 1:
            # Group commits of several clusters come in time order per cluster only.
            idx = pc.sort_indices(
                table,
                sort_keys=[("ts", "ascending"), ("audit_id", "ascending"), ("stage", "ascending")],
            )
            table = table.take(idx)
        alerts = self.engine.process(table)
        self.batches += 1
        self.events += table.num_rows
        new = self.alerts.add(alerts) if alerts else []
        for a in new:
            k = (a.rule_id, a.severity)
            self.alert_counts[k] = self.alert_counts.get(k, 0) + 1
        if new:
            if self.before_delivery is not None:
                self.before_delivery()
            for d in self.deliveries:
                d.put(list(new))
        done = time.monotonic()
        for it in items:
            self.lag.observe(done - it.durable_at)

    def close(self) -> None:
        """Save the state, deliver what is queued, close the sinks."""
        self.engine.close()
        for d in self.deliveries:
            d.stop()

    def snapshot(self) -> Snapshot:
        """The metrics as plain data (picklable; see :func:`render_metrics`)."""
        counts, total, n = self.lag.values()
        return {
            "alerts": dict(self.alert_counts),
            "events": self.events,
            "errors": self.errors,
            "batches": self.batches,
            "duplicates_skipped": self.duplicates_skipped,
            "lag_counts": counts,
            "lag_sum": total,
            "lag_n": n,
            "watermark_us": self.engine.watermark_us,
            "state": dict(self.engine.state_sizes()),
            "sinks": [(d.sink.name, dict(d.sink.counters)) for d in self.deliveries],
        }


Snapshot = dict[str, Any]


def empty_snapshot() -> Snapshot:
    return {
        "alerts": {},
        "events": 0,
        "errors": 0,
        "batches": 0,
        "duplicates_skipped": 0,
        "lag_counts": [0] * (len(LAG_BUCKETS) + 1),
        "lag_sum": 0.0,
        "lag_n": 0,
        "watermark_us": None,
        "state": {},
        "sinks": [],
    }


def merge_snapshots(base: Snapshot, new: Snapshot) -> Snapshot:
    """Counters of ``base`` plus those of ``new``; gauges of ``new`` (or ``base``'s)."""
    alerts = dict(base["alerts"])
    for k, v in new["alerts"].items():
        alerts[k] = alerts.get(k, 0) + v
    sinks: dict[str, dict[str, int]] = {name: dict(c) for name, c in base["sinks"]}
    for name, c in new["sinks"]:
        have = sinks.setdefault(name, {})
        for k, v in c.items():
            have[k] = have.get(k, 0) + v
    return {
        "alerts": alerts,
        "events": base["events"] + new["events"],
        "errors": base["errors"] + new["errors"],
        "batches": base["batches"] + new["batches"],
        "duplicates_skipped": base["duplicates_skipped"] + new["duplicates_skipped"],
        "lag_counts": [a + b for a, b in zip(base["lag_counts"], new["lag_counts"], strict=True)],
        "lag_sum": base["lag_sum"] + new["lag_sum"],
        "lag_n": base["lag_n"] + new["lag_n"],
        "watermark_us": new["watermark_us"]
        if new["watermark_us"] is not None
        else base["watermark_us"],
        "state": new["state"] or base["state"],
        "sinks": list(sinks.items()),
    }


def render_metrics(snap: Snapshot, queued_events: int) -> str:
    """Prometheus text lines for ``/metrics`` from a :meth:`DetectionCore.snapshot`."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("kaudit_alerts_total", "counter", "Alerts raised, by rule and severity.")
    for (rule, sev), n in sorted(snap["alerts"].items()):
        out.append(f'kaudit_alerts_total{{rule="{rule}",severity="{sev}"}} {n}')
    family("kaudit_detect_events_total", "counter", "Events evaluated by the rules.")
    out.append(f"kaudit_detect_events_total {snap['events']}")
    family("kaudit_detect_errors_total", "counter", "Detection batches that failed.")
    out.append(f"kaudit_detect_errors_total {snap['errors']}")
    family(
        "kaudit_detect_queued_events",
        "gauge",
        "Events durable but not yet evaluated (detection backlog).",
    )
    out.append(f"kaudit_detect_queued_events {queued_events}")
    family(
        "kaudit_detect_lag_seconds",
        "histogram",
        "Seconds from a batch being durable to its alerts being stored.",
    )
    cum = 0
    for b, c in zip((*LAG_BUCKETS, "+Inf"), snap["lag_counts"], strict=True):
        cum += c
        out.append(f'kaudit_detect_lag_seconds_bucket{{le="{b}"}} {cum}')
    out.append(f"kaudit_detect_lag_seconds_sum {snap['lag_sum']}")
    out.append(f"kaudit_detect_lag_seconds_count {snap['lag_n']}")
    wm = snap["watermark_us"]
    family(
        "kaudit_detect_watermark_seconds",
        "gauge",
        "Newest event time evaluated (Unix seconds).",
    )
    out.append(f"kaudit_detect_watermark_seconds {wm / 1e6 if wm is not None else 0}")
    family("kaudit_detect_state_entries", "gauge", "Window/first-seen entries held per rule.")
    for rule, n in sorted(snap["state"].items()):
        out.append(f'kaudit_detect_state_entries{{rule="{rule}"}} {n}')
    for metric, key, help_text in (
        ("kaudit_sink_alerts_sent_total", "alerts_sent", "Alerts delivered, by sink."),
        ("kaudit_sink_alerts_failed_total", "alerts_failed", "Alerts not delivered."),
        ("kaudit_sink_requests_failed_total", "requests_failed", "Failed sink attempts."),
        ("kaudit_sink_retries_total", "retries", "Sink attempts retried."),
    ):
        family(metric, "counter", help_text)
        for sink_name, counters in snap["sinks"]:
            name = sink_name.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'{metric}{{sink="{name}"}} {counters.get(key, 0)}')
    return "\n".join(out) + "\n"


class StreamingDetector:
    """Detection on durable batches in a thread of the calling process (see the module doc)."""

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        rules: Sequence[Rule],
        sinks: Sequence[Sink] = (),
        *,
        max_batch_events: int = 50_000,
        gather_secs: float = 0.2,
        max_queued_events: int = 1_000_000,
        save_interval_secs: float = 1.0,
        recent_keys: int = 200_000,
    ) -> None:
        self.core = DetectionCore(
            store_path,
            rules,
            sinks,
            save_interval_secs=save_interval_secs,
            recent_keys=recent_keys,
        )
        self.max_batch_events = max_batch_events
        self.gather_secs = gather_secs
        self.max_queued_events = max_queued_events
        self._q: queue.Queue[_Item | None] = queue.Queue()
        self._queued = 0
        self._cv = threading.Condition()
        self._t = threading.Thread(target=self._run, name="kaudit-detect", daemon=True)
        self._t.start()

    @property
    def queued_events(self) -> int:
        return self._queued

    def submit(self, records: list[Record], *, cluster: str = "", duplicates: int = 0) -> None:
        """Queue a batch that is durable now (``duplicates``: how many the store dropped)."""
        if not records or duplicates >= len(records):
            return
        n = len(records)
        with self._cv:
            while self._queued and self._queued + n > self.max_queued_events:
                self._cv.wait(1.0)
            self._queued += n
        item = _Item([r.event for r in records], [r.raw for r in records], cluster, duplicates, 0.0)
        item.durable_at = time.monotonic()
        self._q.put(item)

    def _take(self) -> list[_Item] | None:
        first = self._q.get()
        if first is None:
            return None
        items = [first]
        events = len(first.events)
        # Gather for a moment: the pack costs far less per event on larger batches, and
        # alerts a second later are still alerts within seconds.
        deadline = time.monotonic() + self.gather_secs
        while events < self.max_batch_events:
            try:
                nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if nxt is None:
                self._q.put(None)  # stop after this batch
                break
            items.append(nxt)
            events += len(nxt.events)
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            try:
                self.core.run(items)
            finally:
                n = sum(len(i.events) for i in items)
                with self._cv:
                    self._queued -= n
                    self._cv.notify_all()

    def stop(self) -> None:
        """Process everything queued, save the state, flush and close the sinks."""
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()
        self.core.close()

    def render_metrics(self) -> str:
        """Prometheus text lines for ``/metrics``."""
        return render_metrics(self.core.snapshot(), self._queued)


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.n = 0
        self._lock = threading.Lock()

    def observe(self, v: float) -> None:
        with self._lock:
            for i, b in enumerate(self.buckets):
                if v <= b:
                    self.counts[i] += 1
                    break
            else:
                self.counts[-1] += 1
            self.sum += v
            self.n += 1

    def values(self) -> tuple[list[int], float, int]:
        with self._lock:
            return list(self.counts), self.sum, self.n


__all__ = [
    "DetectionCore",
    "Snapshot",
    "StreamingDetector",
    "empty_snapshot",
    "merge_snapshots",
    "render_metrics",
]
