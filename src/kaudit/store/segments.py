"""Parquet segments: one file per (date, hour) partition per flush.

A segment is written whole in memory, hashed, then written under a temporary name,
fsynced and renamed (:func:`kaudit.store.layout.write_atomic`): a reader sees the
complete file or nothing. Rows are sorted within a segment by
(resource, namespace, name, ts) — neighbours then share most of their bytes, which
zstd turns into a much smaller ``event`` column, and a history of one object reads
few row groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kaudit.store.layout import partition_dir, write_atomic
from kaudit.store.manifest import SegmentInfo
from kaudit.store.settings import StoreSettings

HOUR_US: Final = 3_600_000_000
SORT_KEYS: Final = (
    ("resource", "ascending"),
    ("namespace", "ascending"),
    ("name", "ascending"),
    ("ts", "ascending"),
)
# Low-cardinality columns: dictionary pages. The rest (ids, bodies, the event) plain.
DICTIONARY_COLUMNS: Final = [
    "stage",
    "level",
    "verb",
    "username",
    "groups.list.element",
    "impersonated_user",
    "source_ip",
    "source_ips.list.element",
    "user_agent",
    "api_group",
    "api_version",
    "resource",
    "subresource",
    "namespace",
    "name",
    "status_reason",
    "status_message",
    "decision",
    "authz_reason",
    "annotations.key_value.key",
    "annotations.key_value.value",
    "cluster",
]


#: Columns without min/max statistics: nobody filters on the big ones or the nested
#: ones, and working them out costs as much as compressing a column.
NO_STATISTICS: Final = (
    "event",
    "request_object",
    "response_object",
    "annotations",
    "groups",
    "source_ips",
)


def hours(table: pa.Table) -> pa.Array:
    """The hour number (since the epoch) of each row's ``ts``."""
    us = table["ts"].cast(pa.int64())
    return pc.floor(pc.divide(us.cast(pa.float64()), float(HOUR_US))).cast(pa.int64())


def partition_of(hour: int) -> str:
    dt = datetime.fromtimestamp(hour * 3600, UTC)
    return partition_dir(dt.strftime("%Y-%m-%d"), dt.hour)


def hour_of_partition(path: str) -> int | None:
    """The hour number of a segment path ``events/date=.../hour=../x.parquet``."""
    try:
        parts = path.split("/")
        date = parts[1].removeprefix("date=")
        hour = int(parts[2].removeprefix("hour="))
        dt = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    except (IndexError, ValueError):
        return None
    return int(dt.timestamp()) // 3600 + hour


def split_by_hour(table: pa.Table) -> Iterator[tuple[int, pa.Table]]:
    """(hour, rows of that hour) for every hour present in ``table``."""
    if table.num_rows == 0:
        return
    h = hours(table)
    uniq = pc.unique(h).to_pylist()
    if len(uniq) == 1:
        yield int(uniq[0]), table
        return
    for value in sorted(uniq):
        yield int(value), table.filter(pc.equal(h, value))


def encode_segment(table: pa.Table, settings: StoreSettings) -> bytes:
    """The Parquet bytes of ``table`` (sorted, zstd).

    The rows are sorted by index and taken one row group at a time from one
    contiguous copy (taking from many chunks costs twice as much), so encoding holds
    that copy and one row group's, not a sorted copy of all of it too.
    """
    table = table.combine_chunks()
    n = table.num_rows
    order = (
        pc.sort_indices(table.select([k for k, _ in SORT_KEYS]), sort_keys=list(SORT_KEYS))
        if SORT_KEYS
        else None
    )
    rg = max(1, settings.row_group_rows)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        compression_level=settings.zstd_level,
        use_dictionary=DICTIONARY_COLUMNS,
        write_statistics=[c for c in table.column_names if c not in NO_STATISTICS],
    ) as writer:
        for start in range(0, n, rg):
            part = table.slice(start, rg) if order is None else table.take(order.slice(start, rg))
            writer.write_table(part, row_group_size=rg)
        if n == 0:
            writer.write_table(table)
    data: bytes = sink.getvalue().to_pybytes()
    return data


def write_segment(
    root: Path, hour: int, segment_id: str, table: pa.Table, settings: StoreSettings
) -> SegmentInfo:
    """Write ``table`` (rows of one hour) as ``<partition>/<segment_id>.parquet``."""
    rel = f"{partition_of(hour)}/{segment_id}.parquet"
    data = encode_segment(table, settings)
    write_atomic(root / rel, data)
    ts = table["ts"].cast(pa.int64())
    mm = pc.min_max(ts).as_py()
    return SegmentInfo(
        rel,
        len(data),
        table.num_rows,
        hashlib.sha256(data).hexdigest(),
        int(mm["min"]),
        int(mm["max"]),
    )


def write_segments(
    root: Path, segment_id: str, table: pa.Table, settings: StoreSettings
) -> list[SegmentInfo]:
    """Write ``table`` as one segment per hour partition, all named ``segment_id``."""
    return [
        write_segment(root, hour, segment_id, part, settings) for hour, part in split_by_hour(table)
    ]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


__all__ = [
    "HOUR_US",
    "SORT_KEYS",
    "encode_segment",
    "hour_of_partition",
    "hours",
    "partition_of",
    "sha256_file",
    "split_by_hour",
    "write_segment",
    "write_segments",
]
