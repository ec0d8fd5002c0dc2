"""Compaction: merge a partition's small segments into one.

The merged segment is written first (temp name, fsync, rename), then one manifest
entry (``op: compact``) adds it and removes the old ones, then the old files are
deleted. A reader holding an older snapshot may find a file gone; queries retry
once with a fresh snapshot.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kaudit.store.layout import new_id
from kaudit.store.manifest import Manifest, SegmentInfo
from kaudit.store.segments import hour_of_partition, write_segment
from kaudit.store.settings import StoreSettings

#: Segments smaller than this, and with fewer than SMALL_SEGMENT_ROWS rows, are merged.
SMALL_SEGMENT_BYTES = 64 * 1024 * 1024
#: A segment with at least this many rows is big enough to be left alone (an import
#: writes segments of up to :data:`kaudit.store.writer.FLUSH_MAX_ROWS` rows: merging
#: them again would only write every event twice).
SMALL_SEGMENT_ROWS = 100_000
#: At most this many rows are merged into one segment (the merge is held in memory,
#: and an Arrow string column holds at most 2 GiB).
MERGE_MAX_ROWS = 500_000


@dataclass(frozen=True, slots=True)
class CompactResult:
    partitions: int
    merged_segments: int
    new_segments: int


def compact(
    root: Path,
    manifest: Manifest,
    settings: StoreSettings,
    small_bytes: int = SMALL_SEGMENT_BYTES,
    *,
    min_segments: int = 2,
    before_hour: int | None = None,
    lock: AbstractContextManager[object] | None = None,
    max_rows: int = MERGE_MAX_ROWS,
    small_rows: int = SMALL_SEGMENT_ROWS,
) -> CompactResult:
    """Merge the small segments of each partition, a group at a time.

    A group holds at most ``max_rows`` rows and ``small_bytes`` of segments, so memory
    stays bounded however much one hour holds (a big partition ends with several
    merged segments instead of one).

    Only partitions with at least ``min_segments`` small segments, and (with
    ``before_hour``) only those of hours before it: a writer compacts the hours that are
    over, not the one still being written. With ``lock`` (the writer's), the merging
    runs outside it and only reading the plan and recording the result take it, so
    appends are not held up by the reading and writing of segments.
    """
    guard: AbstractContextManager[object] = lock if lock is not None else nullcontext()
    with guard:
        plan = _plan(manifest, small_bytes, small_rows, max(2, min_segments), before_hour, max_rows)
    partitions = merged = 0
    for hour, segs in plan:
        table = pa.concat_tables([pq.read_table(root / s.path) for s in segs])
        info = write_segment(root, hour, new_id(), table, settings)
        old = sorted(s.path for s in segs)
        with guard:
            if any(rel not in manifest.state.segments for rel in old):
                # Gone meanwhile (retention): forget the merge.
                (root / info.path).unlink(missing_ok=True)
                continue
            manifest.append("compact", add=[info], remove=old, rows=table.num_rows)
        for rel in old:
            (root / rel).unlink(missing_ok=True)
        partitions += 1
        merged += len(segs)
    return CompactResult(partitions, merged, partitions)


def _plan(
    manifest: Manifest,
    small_bytes: int,
    small_rows: int,
    min_segments: int,
    before_hour: int | None,
    max_rows: int,
) -> list[tuple[int, list[SegmentInfo]]]:
    by_part: dict[str, list[SegmentInfo]] = {}
    for seg in manifest.state.segments.values():
        if seg.size < small_bytes and seg.rows < small_rows:
            by_part.setdefault(seg.partition, []).append(seg)
    plan = []
    for _part, segs in sorted(by_part.items()):
        if len(segs) < min_segments:
            continue
        hour = hour_of_partition(segs[0].path)
        if hour is None or (before_hour is not None and hour >= before_hour):
            continue
        group: list[SegmentInfo] = []
        rows = size = 0
        for seg in sorted(segs, key=lambda s: s.path):
            if group and (rows + seg.rows > max_rows or size + seg.size > small_bytes):
                if len(group) >= min_segments:
                    plan.append((hour, group))
                group, rows, size = [], 0, 0
            group.append(seg)
            rows += seg.rows
            size += seg.size
        if len(group) >= min_segments:
            plan.append((hour, group))
    return plan


__all__ = [
    "MERGE_MAX_ROWS",
    "SMALL_SEGMENT_BYTES",
    "SMALL_SEGMENT_ROWS",
    "CompactResult",
    "compact",
]
