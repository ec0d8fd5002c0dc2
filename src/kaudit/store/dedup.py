"""Deduplication on (audit_id, stage) with bounded memory.

The apiserver retries a webhook batch byte for byte, and files get imported twice:
an event whose (audit_id, stage) is already stored is dropped. Events with an
empty ``auditID`` are keyed on the MD5 of their raw bytes instead.

Memory holds the keys of every stored event whose ``ts`` hour is at or after a
watermark ``W`` (the newest hour seen minus ``dedup_window_secs``, raised further
when ``dedup_max_keys`` is exceeded), plus the keys of the unflushed WAL. Events
of an hour before ``W`` — a re-imported old file — are checked with one DuckDB
query over just the segments of the partitions their ts falls in. Events of one
request arrive close in time, so live traffic is answered from memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from kaudit.store.manifest import SegmentInfo
from kaudit.store.segments import hour_of_partition, hours
from kaudit.store.settings import StoreSettings

_SEP = "\x1f"


def keys_of(table: pa.Table) -> list[str]:
    """The dedup key of every row."""
    ids = table["audit_id"].to_pylist()
    stages = table["stage"].to_pylist()
    out = [a + _SEP + s for a, s in zip(ids, stages, strict=True)]
    if "" in ids:
        events = table["event"]
        for i, a in enumerate(ids):
            if not a:
                out[i] = "#" + hashlib.md5(events[i].as_py().encode()).hexdigest()
    return out


_KEY_SQL = "CASE WHEN audit_id = '' THEN '#' || md5(event) ELSE audit_id || chr(31) || stage END"


class Deduper:
    def __init__(self, root: Path, settings: StoreSettings) -> None:
        self.root = root
        self.window_hours = max(1, int(settings.dedup_window_secs // 3600) + 1)
        self.max_keys = settings.dedup_max_keys
        self.watermark: int | None = None  # None: everything stored is in memory
        self.buckets: dict[int, set[str]] = {}
        self.pending_old: set[str] = set()
        self.disk_checks = 0

    # --- startup -------------------------------------------------------------------

    def warm(self, segments: Sequence[SegmentInfo]) -> None:
        """Load the keys of the newest ``window`` hours from disk."""
        by_hour: dict[int, list[str]] = {}
        for seg in segments:
            h = hour_of_partition(seg.path)
            if h is not None:
                by_hour.setdefault(h, []).append(str(self.root / seg.path))
        if not by_hour:
            return
        newest = max(by_hour)
        self.watermark = newest - self.window_hours
        files = [f for h, fs in by_hour.items() if h >= self.watermark for f in fs]
        if not files:
            return
        con = duckdb.connect()
        try:
            rows = con.sql(
                f"SELECT {_KEY_SQL} AS k, epoch_us(ts) // 3600000000 AS h FROM read_parquet(?)",
                params=[files],
            ).to_arrow_table()
        finally:
            con.close()
        for k, h in zip(rows["k"].to_pylist(), rows["h"].to_pylist(), strict=True):
            self.buckets.setdefault(int(h), set()).add(k)
        self._bound()

    # --- per batch -----------------------------------------------------------------

    def check(
        self, table: pa.Table, segments_for: Callable[[set[int]], list[str]]
    ) -> tuple[pa.Array | None, list[tuple[int, str]]]:
        """Which rows are new: (mask or None when all are, [(hour, key)] of the kept rows).

        Nothing is remembered until :meth:`commit` (after the WAL write succeeded).
        """
        keys = keys_of(table)
        hs = hours(table).to_pylist()
        wm = self.watermark
        old_rows: list[int] = []
        keep = [True] * len(keys)
        seen: set[str] = set()
        kept: list[tuple[int, str]] = []
        for i, (k, h) in enumerate(zip(keys, hs, strict=True)):
            if k in seen:
                keep[i] = False
                continue
            seen.add(k)
            if wm is not None and h < wm:
                if k in self.pending_old:
                    keep[i] = False
                else:
                    old_rows.append(i)
                continue
            bucket = self.buckets.get(h)
            if bucket is not None and k in bucket:
                keep[i] = False
        if old_rows:
            stored = self._on_disk(
                {hs[i] for i in old_rows}, [keys[i] for i in old_rows], segments_for
            )
            for i in old_rows:
                if keys[i] in stored:
                    keep[i] = False
        for i, ok in enumerate(keep):
            if ok:
                kept.append((hs[i], keys[i]))
        if all(keep):
            return None, kept
        return pa.array(keep, pa.bool_()), kept

    def _on_disk(
        self, hour_set: set[int], keys: list[str], segments_for: Callable[[set[int]], list[str]]
    ) -> set[str]:
        files = segments_for(hour_set)
        if not files:
            return set()
        self.disk_checks += 1
        cand = pa.table({"k": pa.array(keys, pa.string())})
        ids = pa.table(
            {
                "a": pa.array(
                    sorted({k.split(_SEP, 1)[0] if not k.startswith("#") else "" for k in keys}),
                    pa.string(),
                )
            }
        )
        con = duckdb.connect()
        try:
            con.register("cand", cand)
            con.register("ids", ids)
            found = con.sql(
                f"SELECT DISTINCT k FROM (SELECT {_KEY_SQL} AS k FROM read_parquet(?) "
                "WHERE audit_id IN (SELECT a FROM ids)) WHERE k IN (SELECT k FROM cand)",
                params=[files],
            ).to_arrow_table()
        finally:
            con.close()
        return set(found["k"].to_pylist())

    def commit(self, kept: list[tuple[int, str]]) -> None:
        wm = self.watermark
        buckets = self.buckets
        for h, k in kept:
            if wm is not None and h < wm:
                self.pending_old.add(k)
            else:
                b = buckets.get(h)
                if b is None:
                    b = buckets[h] = set()
                b.add(k)

    def flushed(self) -> None:
        """The WAL is on disk as segments: move the watermark and forget what it passed."""
        self.pending_old.clear()
        if self.buckets:
            newest = max(self.buckets)
            wm = newest - self.window_hours
            if self.watermark is None or wm > self.watermark:
                self.watermark = wm
        self._bound()

    def _bound(self) -> None:
        if self.watermark is not None:
            for h in [h for h in self.buckets if h < self.watermark]:
                del self.buckets[h]
        total = sum(len(b) for b in self.buckets.values())
        while total > self.max_keys and len(self.buckets) > 1:
            oldest = min(self.buckets)
            total -= len(self.buckets.pop(oldest))
            self.watermark = max(self.watermark or oldest + 1, oldest + 1)

    @property
    def keys_in_memory(self) -> int:
        return sum(len(b) for b in self.buckets.values()) + len(self.pending_old)


def mask_or_all(table: pa.Table, mask: pa.Array | None) -> pa.Table:
    return table if mask is None else table.filter(mask)


__all__ = ["Deduper", "keys_of", "mask_or_all"]
