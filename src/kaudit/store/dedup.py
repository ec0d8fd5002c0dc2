"""Deduplication with bounded memory: the same event is stored once.

The apiserver retries a webhook batch byte for byte, and files get imported twice:
an event already stored is dropped. "The same event" is the same ``(auditID, stage)``
**and the same bytes** (a SHA-256 of the original line). The auditID alone is not
enough: the apiserver keeps a client-supplied ``Audit-ID`` header verbatim (spec
4.1), so anyone could send a harmless request, then a harmful one with the same ID,
and have the second dropped as a "duplicate" if only the ID counted. Events without
an auditID are covered by the same key.

Memory holds the keys of every stored event whose ``ts`` hour is at or after a
watermark ``W`` (the newest hour seen minus ``dedup_window_secs``, raised further
when ``dedup_max_keys`` is exceeded), plus the keys of every WAL file not yet
flushed (one may be being written to segments while appends go to the next). Events
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
import pyarrow.compute as pc

from kaudit.store.manifest import SegmentInfo
from kaudit.store.segments import hour_of_partition, hours
from kaudit.store.settings import StoreSettings

_SEP = "\x1f"


def fingerprints(events: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The first 128 bits (32 hex digits) of the SHA-256 of each event's bytes."""
    out: list[str] = []
    chunks = events.chunks if isinstance(events, pa.ChunkedArray) else [events]
    sha = hashlib.sha256
    for chunk in chunks:
        if chunk.type != pa.large_string():
            chunk = chunk.cast(pa.large_string())  # 64-bit offsets: one layout to read
        _, offsets_buf, data_buf = chunk.buffers()
        base = chunk.offset
        offsets = memoryview(offsets_buf).cast("q")[base : base + len(chunk) + 1]
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        out.extend(
            sha(data[offsets[i] : offsets[i + 1]]).hexdigest()[:32] for i in range(len(chunk))
        )
    return pa.array(out, pa.string())


def keys_of(table: pa.Table) -> list[str]:
    """The dedup key of every row: auditID, stage and a hash of the event's bytes."""
    joined = pc.binary_join_element_wise(
        table["audit_id"], table["stage"], fingerprints(table["event"]), _SEP
    )
    out: list[str] = joined.to_pylist()
    return out


#: The same key, computed by DuckDB over stored segments.
_KEY_SQL = "audit_id || chr(31) || stage || chr(31) || left(sha256(event), 32)"


#: Keys of kept rows by hour: what :meth:`Deduper.check` returns for :meth:`Deduper.commit`.
Kept = dict[int, list[str]]


class Deduper:
    def __init__(self, root: Path, settings: StoreSettings) -> None:
        self.root = root
        self.window_hours = max(1, int(settings.dedup_window_secs // 3600) + 1)
        self.max_keys = settings.dedup_max_keys
        self.watermark: int | None = None  # None: everything stored is in memory
        self.buckets: dict[int, set[str]] = {}
        # Keys (by hour) of every WAL file not yet flushed to segments, by its name:
        # they are on no disk a check could read, whatever the watermark does.
        self.unflushed: dict[str, dict[int, set[str]]] = {}
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
        self,
        table: pa.Table,
        segments_for: Callable[[set[int] | None], list[str]],
        keys: list[str] | None = None,
    ) -> tuple[pa.Array | None, Kept]:
        """Which rows are new: (mask or None when all are, the kept rows' keys by hour).

        The first row of a key is kept unless the key is stored for its hour; later
        rows of the same key in the batch are dropped. Nothing is remembered until
        :meth:`commit` (after the WAL write succeeded). Set operations per hour do the
        work; a loop over the rows runs only when something is dropped. ``keys``: the
        rows' keys (:func:`keys_of`) when the caller has them already.
        """
        if keys is None:
            keys = keys_of(table)
        hs: list[int] = hours(table).to_pylist()
        by_hour: Kept = {}
        if hs and hs[0] == hs[-1] and min(hs) == max(hs):
            by_hour[hs[0]] = keys
        else:
            for h, k in zip(hs, keys, strict=True):
                ks = by_hour.get(h)
                if ks is None:
                    by_hour[h] = [k]
                else:
                    ks.append(k)
        wm = self.watermark
        stored: dict[int, set[str]] = {}  # keys already stored, by hour
        old_hours: set[int] = set()
        old_keys: list[str] = []
        for h, ks in by_hour.items():
            known: set[str] = set()
            bucket = self.buckets.get(h)
            if bucket and not bucket.isdisjoint(ks):
                known.update(bucket.intersection(ks))
            for wal in self.unflushed.values():
                pending = wal.get(h)
                if pending and not pending.isdisjoint(ks):
                    known.update(pending.intersection(ks))
            if known:
                stored[h] = known
            if wm is not None and h < wm:
                old_hours.add(h)
                old_keys.extend(k for k in ks if k not in known)
        if old_keys:
            found = self._on_disk(old_hours, old_keys, segments_for)
            for h in old_hours:
                hit = found.intersection(by_hour[h])
                if hit:
                    stored.setdefault(h, set()).update(hit)
        self._undated(table, keys, hs, stored, segments_for)
        if not stored and len(set(keys)) == len(keys):
            return None, by_hour
        keep: list[bool] = []
        seen: set[str] = set()
        kept: Kept = {}
        empty: set[str] = set()
        for h, k in zip(hs, keys, strict=True):
            if k in seen or k in stored.get(h, empty):
                keep.append(False)
                continue
            seen.add(k)
            keep.append(True)
            kept.setdefault(h, []).append(k)
        return pa.array(keep, pa.bool_()), kept

    def _undated(
        self,
        table: pa.Table,
        keys: list[str],
        hs: list[int],
        stored: dict[int, set[str]],
        segments_for: Callable[[set[int] | None], list[str]],
    ) -> None:
        """Events without any timestamp have the time they were stored as ``ts``, so a
        re-import another day lands in another hour: look for them in every hour."""
        if "stage_ts" not in table.column_names or not table["stage_ts"].null_count:
            return
        rows = [i for i, null in enumerate(table["stage_ts"].is_null().to_pylist()) if null]
        wanted = {keys[i] for i in rows}
        known: set[str] = set()
        for bucket in self.buckets.values():
            known.update(bucket.intersection(wanted))
        for wal in self.unflushed.values():
            for pending in wal.values():
                known.update(pending.intersection(wanted))
        rest = [k for k in wanted if k not in known]
        if rest:
            known.update(self._on_disk(None, rest, segments_for))
        for i in rows:
            if keys[i] in known:
                stored.setdefault(hs[i], set()).add(keys[i])

    def _on_disk(
        self,
        hour_set: set[int] | None,
        keys: list[str],
        segments_for: Callable[[set[int] | None], list[str]],
    ) -> set[str]:
        files = segments_for(hour_set)
        if not files:
            return set()
        self.disk_checks += 1
        cand = pa.table({"k": pa.array(keys, pa.string())})
        ids = pa.table({"a": pa.array(sorted({k.split(_SEP, 1)[0] for k in keys}), pa.string())})
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

    def commit(self, kept: Kept, wal: str) -> None:
        """Remember ``kept`` (from :meth:`check`), now durable in the WAL file ``wal``."""
        wm = self.watermark
        buckets = self.buckets
        pending = self.unflushed.setdefault(wal, {})
        for h, ks in kept.items():
            p = pending.get(h)
            if p is None:
                pending[h] = set(ks)
            else:
                p.update(ks)
            if wm is None or h >= wm:
                b = buckets.get(h)
                if b is None:
                    buckets[h] = set(ks)
                else:
                    b.update(ks)

    def flushed(self, wal: str) -> None:
        """The WAL file ``wal`` is on disk as segments: forget its own keys, move the
        watermark and forget what it passed (still-unflushed keys stay known)."""
        self.unflushed.pop(wal, None)
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
        held = sum(len(b) for b in self.buckets.values())
        return held + sum(len(s) for w in self.unflushed.values() for s in w.values())


def mask_or_all(table: pa.Table, mask: pa.Array | None) -> pa.Table:
    return table if mask is None else table.filter(mask)


__all__ = ["Deduper", "Kept", "keys_of", "mask_or_all"]
